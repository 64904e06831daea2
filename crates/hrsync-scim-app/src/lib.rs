//! A small, fast SCIM 2.0 service provider (RFC 7643, RFC 7644) that keeps
//! users and groups in memory: the app hrsync provisions into in its demo,
//! its benchmarks and its compose stack.
//!
//! - Discovery: `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`
//!   (core User with the enterprise extension, Group).
//! - `/Users` and `/Groups`: create, read, replace (PUT), PATCH (`add`,
//!   `replace`, `remove`, value filters), delete; lists with filters (every
//!   operator, `and`/`or`/`not`, value filters), paging, `attributes` and
//!   `excludedAttributes`; `POST …/.search`, and queries at the root.
//! - Versions as weak ETags (`If-Match`, `If-None-Match`), `userName`
//!   unique whatever its case, `User.groups` kept from group memberships.
//! - A static bearer token on every endpoint but `/healthz`, and optionally
//!   OAuth 2.0 access tokens from its own `/oauth/token` endpoint (client
//!   credentials grant, the client authenticated by its secret or by a
//!   `private_key_jwt` assertion, see [`OAuthClient`]); SCIM errors;
//!   `application/scim+json`; a request body limit.
//!
//! - Quirk modes ([`Quirk`], off by default): departures from the RFC that
//!   real apps make, for testing clients against them.
//!
//! Not supported (and announced so in `/ServiceProviderConfig`): bulk
//! operations and sorting.
//!
//! ```no_run
//! # async fn serve() -> std::io::Result<()> {
//! let app = hrsync_scim_app::router(hrsync_scim_app::AppState::new("s3cret"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! The crate passes the `scim2-tester` conformance checks (PyPI); see
//! `tests/conformance.rs`.

mod api;
mod error;
mod filter;
mod oauth;
mod patch;
mod quirks;
mod resource;
mod schema;
mod store;

pub use api::{router, AppState, Options};
pub use oauth::{ClientCredential, ClientPublicKey, KeyError, OAuthClient, MAX_ASSERTION_LIFETIME};
pub use quirks::{Quirk, UnknownQuirk};
