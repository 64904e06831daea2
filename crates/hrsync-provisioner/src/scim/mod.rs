//! A SCIM 2.0 client (RFC 7644) that behaves like the clients app vendors
//! test against: match with a `userName eq` filter, create with
//! `externalId`, update with PATCH where the server supports it (PUT
//! otherwise), deactivate with `active: false`, never DELETE.
//!
//! It takes real servers as they answer: `active` and `primary` as the
//! strings `"True"`/`"False"`, PATCH answered 200 with the resource or 204
//! without, a create without `Location`, answers without `schemas`, and
//! list paging that answers the first page again past the end. Where the
//! server supports ETags, writes can carry `If-Match` with the version last
//! seen ([`Versioned`]).
//!
//! - `client`: the client and its requests.
//! - `error`: why a call failed, and whether retrying can help.
//! - `resource`: reading answers (resources, list pages, capabilities,
//!   versions) and writing PATCH operations, with no I/O.

mod client;
mod error;
mod resource;

pub use client::{ScimClient, MAX_ANSWER_BYTES};
pub use error::{ClientError, ScimError, MAX_RETRY_AFTER};
pub use resource::{
    filter_value, meta_version, normalize_booleans, parse_retry_after, read_answer, read_bool,
    read_capabilities, read_page, read_resource, Capabilities, Page, Paging, PatchOp, Versioned,
};

/// The SCIM content type.
pub const SCIM_JSON: &str = "application/scim+json";
/// Schema URN of a PATCH request.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Schema URN of the core User.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Schema URN of the enterprise User extension.
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Result of SCIM calls.
pub type Result<T, E = ScimError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
