//! The schemas this app serves, written once and used everywhere: to publish
//! `/Schemas`, `/ResourceTypes` and `/ServiceProviderConfig`, to read and
//! validate request bodies, to resolve filter and PATCH paths, and to decide
//! what a response returns.
//!
//! The attribute characteristics follow RFC 7643 §4 (User, Group) and §4.3
//! (enterprise extension), with what most implementations settle where the
//! RFC's §8.7.1 representation and its text differ: `Group.displayName` is
//! required (as §4.2 says), group members carry a `display`, addresses a
//! `primary`.

use std::sync::LazyLock;

use serde_json::{json, Map, Value};

use crate::error::ScimError;

mod served;

use served::DISCOVERY_SCHEMAS;
pub(crate) use served::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

/// Core User schema URN.
pub(crate) const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Enterprise User extension URN.
pub(crate) const ENTERPRISE_USER: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Core Group schema URN.
pub(crate) const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// List response message URN.
pub(crate) const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// Error message URN.
pub(crate) const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// PATCH request message URN.
pub(crate) const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Search request message URN.
pub(crate) const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// Service provider configuration schema URN.
pub(crate) const SERVICE_PROVIDER_CONFIG: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// Resource type schema URN.
pub(crate) const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// Schema schema URN.
pub(crate) const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    String,
    Boolean,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Boolean => "boolean",
            Type::Integer => "integer",
            Type::DateTime => "dateTime",
            Type::Binary => "binary",
            Type::Reference => "reference",
            Type::Complex => "complex",
        }
    }
}

/// Whether and how clients may write an attribute (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// When an attribute is returned (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returned {
    Always,
    Never,
    Default,
    Request,
}

/// One attribute definition.
#[derive(Debug)]
pub(crate) struct Attribute {
    pub(crate) name: &'static str,
    pub(crate) ty: Type,
    pub(crate) multi_valued: bool,
    pub(crate) required: bool,
    pub(crate) case_exact: bool,
    pub(crate) mutability: Mutability,
    pub(crate) returned: Returned,
    /// `server` uniqueness (only `userName` has it here).
    pub(crate) unique: bool,
    pub(crate) canonical_values: &'static [&'static str],
    pub(crate) reference_types: &'static [&'static str],
    pub(crate) sub_attributes: Vec<Attribute>,
    pub(crate) description: &'static str,
    /// Listed in `/Schemas`. `externalId` is a common attribute (RFC 7643
    /// §3.1), handled like a core attribute but defined by no schema.
    pub(crate) published: bool,
}

impl Attribute {
    fn new(name: &'static str, ty: Type, description: &'static str) -> Self {
        Attribute {
            name,
            ty,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            unique: false,
            canonical_values: &[],
            reference_types: &[],
            sub_attributes: Vec::new(),
            description,
            published: true,
        }
    }

    fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }

    fn required(mut self) -> Self {
        self.required = true;
        self
    }

    fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }

    fn mutability(mut self, mutability: Mutability) -> Self {
        self.mutability = mutability;
        self
    }

    fn returned(mut self, returned: Returned) -> Self {
        self.returned = returned;
        self
    }

    fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical_values = values;
        self
    }

    fn refs(mut self, types: &'static [&'static str]) -> Self {
        self.reference_types = types;
        self
    }

    fn subs(mut self, subs: Vec<Attribute>) -> Self {
        self.sub_attributes = subs;
        self
    }

    fn hidden(mut self) -> Self {
        self.published = false;
        self
    }

    /// Sub-attribute `name`, compared case-insensitively (RFC 7643 §2.1).
    pub(crate) fn sub(&self, name: &str) -> Option<&Attribute> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Whether the attribute is read-only for clients.
    pub(crate) fn read_only(&self) -> bool {
        self.mutability == Mutability::ReadOnly
    }

    /// The SCIM representation of this definition (RFC 7643 §7).
    fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), self.name.into());
        out.insert("type".into(), self.ty.as_str().into());
        out.insert("multiValued".into(), self.multi_valued.into());
        out.insert("description".into(), self.description.into());
        out.insert("required".into(), self.required.into());
        if self.ty != Type::Complex && self.ty != Type::Boolean {
            out.insert("caseExact".into(), self.case_exact.into());
        }
        if !self.canonical_values.is_empty() {
            out.insert("canonicalValues".into(), json!(self.canonical_values));
        }
        if self.ty == Type::Reference {
            out.insert("referenceTypes".into(), json!(self.reference_types));
        }
        let mutability = match self.mutability {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        };
        out.insert("mutability".into(), mutability.into());
        let returned = match self.returned {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        };
        out.insert("returned".into(), returned.into());
        out.insert(
            "uniqueness".into(),
            if self.unique { "server" } else { "none" }.into(),
        );
        if self.ty == Type::Complex {
            let subs: Vec<Value> = self.sub_attributes.iter().map(Attribute::to_json).collect();
            out.insert("subAttributes".into(), subs.into());
        }
        Value::Object(out)
    }
}

/// A schema: a URN and its attributes.
#[derive(Debug)]
pub(crate) struct Schema {
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) attributes: Vec<Attribute>,
}

impl Schema {
    /// Attribute `name`, compared case-insensitively.
    pub(crate) fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The SCIM representation of this schema (RFC 7643 §7), served under
    /// `base`.
    pub(crate) fn to_json(&self, base: &str) -> Value {
        let attributes: Vec<Value> = self
            .attributes
            .iter()
            .filter(|a| a.published)
            .map(Attribute::to_json)
            .collect();
        json!({
            "schemas": [SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": attributes,
            "meta": {
                "resourceType": "Schema",
                "location": format!("{base}/Schemas/{}", self.id),
            },
        })
    }
}

/// The resource types served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// `/Users`.
    User,
    /// `/Groups`.
    Group,
}

impl Kind {
    /// Every resource type, in the order they are listed.
    pub(crate) const ALL: [Kind; 2] = [Kind::User, Kind::Group];

    /// The resource type name (`meta.resourceType`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }

    /// The endpoint, without a leading slash.
    pub(crate) fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }

    /// The core schema.
    pub(crate) fn core(self) -> &'static Schema {
        match self {
            Kind::User => &USER_SCHEMA,
            Kind::Group => &GROUP_SCHEMA,
        }
    }

    /// The schema extensions the resource type allows.
    pub(crate) fn extensions(self) -> &'static [&'static Schema] {
        static USER_EXTENSIONS: LazyLock<[&'static Schema; 1]> =
            LazyLock::new(|| [&*ENTERPRISE_USER_SCHEMA]);
        match self {
            Kind::User => &*USER_EXTENSIONS,
            Kind::Group => &[],
        }
    }

    /// Extension `urn` (case-insensitive), with its index.
    pub(crate) fn extension(self, urn: &str) -> Option<(usize, &'static Schema)> {
        self.extensions()
            .iter()
            .enumerate()
            .find(|(_, s)| s.id.eq_ignore_ascii_case(urn))
            .map(|(i, s)| (i, *s))
    }

    /// The attribute indexed for fast `eq` filters and, for users, kept
    /// unique: `userName` or the group's `displayName`.
    pub(crate) fn name_attribute(self) -> &'static str {
        match self {
            Kind::User => "userName",
            Kind::Group => "displayName",
        }
    }

    /// The SCIM representation of the resource type (RFC 7643 §6).
    pub(crate) fn resource_type_json(self, base: &str) -> Value {
        let extensions: Vec<Value> = self
            .extensions()
            .iter()
            .map(|s| json!({ "schema": s.id, "required": false }))
            .collect();
        let mut out = json!({
            "schemas": [RESOURCE_TYPE],
            "id": self.name(),
            "name": self.name(),
            "description": match self {
                Kind::User => "User Account",
                Kind::Group => "Group",
            },
            "endpoint": format!("/{}", self.endpoint()),
            "schema": self.core().id,
            "meta": {
                "resourceType": "ResourceType",
                "location": format!("{base}/ResourceTypes/{}", self.name()),
            },
        });
        if !extensions.is_empty() {
            out["schemaExtensions"] = extensions.into();
        }
        out
    }
}

/// `id` and `meta` (RFC 7643 §3.1): read-only attributes every resource
/// has, resolvable in filters and `attributes` but never written by clients.
pub(crate) static COMMON: LazyLock<Vec<Attribute>> = LazyLock::new(|| {
    use Mutability::ReadOnly;
    vec![
        Attribute::new("id", Type::String, "Unique identifier for the resource.")
            .case_exact()
            .mutability(ReadOnly)
            .returned(Returned::Always),
        Attribute::new("meta", Type::Complex, "Resource metadata.")
            .mutability(ReadOnly)
            .subs(vec![
                Attribute::new("resourceType", Type::String, "The resource type.")
                    .case_exact()
                    .mutability(ReadOnly),
                Attribute::new("created", Type::DateTime, "When the resource was added.")
                    .mutability(ReadOnly),
                Attribute::new(
                    "lastModified",
                    Type::DateTime,
                    "When the resource last changed.",
                )
                .mutability(ReadOnly),
                Attribute::new("location", Type::Reference, "The URI of the resource.")
                    .case_exact()
                    .mutability(ReadOnly)
                    .refs(&["uri"]),
                Attribute::new(
                    "version",
                    Type::String,
                    "The version (ETag) of the resource.",
                )
                .case_exact()
                .mutability(ReadOnly),
            ]),
    ]
});

/// Stands for an attribute a resource type does not have, in a query over
/// several types: it never has a value.
pub(crate) static ABSENT: LazyLock<Attribute> = LazyLock::new(|| {
    Attribute::new(
        "",
        Type::String,
        "An attribute the resource type does not have.",
    )
    .mutability(Mutability::ReadOnly)
});

/// Checks a request message's `schemas`: they must list `urn`, the
/// message's own (compared case-insensitively).
///
/// # Errors
/// `invalidSyntax` when they do not.
pub(crate) fn require_listed(schemas: &Value, urn: &str) -> Result<(), ScimError> {
    let listed = schemas.as_array().is_some_and(|urns| {
        urns.iter()
            .filter_map(Value::as_str)
            .any(|listed| listed.eq_ignore_ascii_case(urn))
    });
    if listed {
        Ok(())
    } else {
        Err(ScimError::invalid_syntax(format!(
            "schemas must list {urn}"
        )))
    }
}

/// Every schema served by `/Schemas`, in order.
pub(crate) fn all_schemas() -> impl Iterator<Item = &'static Schema> {
    [&*USER_SCHEMA, &*ENTERPRISE_USER_SCHEMA, &*GROUP_SCHEMA]
        .into_iter()
        .chain(DISCOVERY_SCHEMAS.iter())
}

/// The service provider configuration (RFC 7643 §5).
pub(crate) fn service_provider_config(base: &str, max_results: usize) -> Value {
    json!({
        "schemas": [SERVICE_PROVIDER_CONFIG],
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": max_results },
        "changePassword": { "supported": true },
        "sort": { "supported": false },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a static bearer token (RFC 6750).",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
