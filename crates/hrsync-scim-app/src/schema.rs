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

fn string(name: &'static str, description: &'static str) -> Attribute {
    Attribute::new(name, Type::String, description)
}

fn complex(name: &'static str, description: &'static str, subs: Vec<Attribute>) -> Attribute {
    Attribute::new(name, Type::Complex, description).subs(subs)
}

/// The usual `value`/`display`/`type`/`primary` multi-valued attribute.
fn plural(
    name: &'static str,
    description: &'static str,
    value: Attribute,
    types: &'static [&'static str],
) -> Attribute {
    complex(
        name,
        description,
        vec![
            value,
            string(
                "display",
                "A human-readable name, primarily used for display purposes.",
            ),
            string("type", "A label indicating the attribute's function.").canonical(types),
            Attribute::new(
                "primary",
                Type::Boolean,
                "Whether this is the preferred value. `true` appears no more than once.",
            ),
        ],
    )
    .multi()
}

fn external_id() -> Attribute {
    string(
        "externalId",
        "An identifier for the resource as defined by the provisioning client.",
    )
    .case_exact()
    .hidden()
}

/// The core User schema (RFC 7643 §4.1).
pub(crate) static USER_SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    use Mutability::{ReadOnly, WriteOnly};
    Schema {
        id: USER,
        name: "User",
        description: "User Account",
        attributes: vec![
            external_id(),
            string(
                "userName",
                "Unique identifier for the User, used to authenticate.",
            )
            .required()
            .unique(),
            complex(
                "name",
                "The components of the user's real name.",
                vec![
                    string("formatted", "The full name, formatted for display."),
                    string("familyName", "The family name (last name)."),
                    string("givenName", "The given name (first name)."),
                    string("middleName", "The middle name(s)."),
                    string("honorificPrefix", "The honorific prefix(es), e.g. 'Ms.'."),
                    string("honorificSuffix", "The honorific suffix(es), e.g. 'III'."),
                ],
            ),
            string("displayName", "The name of the User, suitable for display."),
            string("nickName", "The casual way to address the user."),
            Attribute::new(
                "profileUrl",
                Type::Reference,
                "A URI to the user's online profile.",
            )
            .refs(&["external"]),
            string("title", "The user's title, such as 'Vice President'."),
            string(
                "userType",
                "The relationship to the organization, e.g. 'Employee'.",
            ),
            string(
                "preferredLanguage",
                "The user's preferred written or spoken language.",
            ),
            string("locale", "The user's default location, e.g. 'en-US'."),
            string("timezone", "The user's time zone in IANA format."),
            Attribute::new("active", Type::Boolean, "The user's administrative status."),
            string("password", "The user's cleartext password, never returned.")
                .mutability(WriteOnly)
                .returned(Returned::Never),
            plural(
                "emails",
                "Email addresses for the user.",
                string("value", "Email address."),
                &["work", "home", "other"],
            ),
            plural(
                "phoneNumbers",
                "Phone numbers for the User.",
                string("value", "Phone number."),
                &["work", "home", "mobile", "fax", "pager", "other"],
            ),
            plural(
                "ims",
                "Instant messaging addresses for the User.",
                string("value", "Instant messaging address."),
                &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
            ),
            plural(
                "photos",
                "URLs of photos of the User.",
                Attribute::new("value", Type::Reference, "URL of a photo.").refs(&["external"]),
                &["photo", "thumbnail"],
            ),
            complex(
                "addresses",
                "Physical mailing addresses for this User.",
                vec![
                    string("formatted", "The full mailing address."),
                    string("streetAddress", "The full street address component."),
                    string("locality", "The city or locality component."),
                    string("region", "The state or region component."),
                    string("postalCode", "The zip code or postal code component."),
                    string("country", "The country name component."),
                    string("type", "A label indicating the address's function.")
                        .canonical(&["work", "home", "other"]),
                    Attribute::new(
                        "primary",
                        Type::Boolean,
                        "Whether this is the preferred address.",
                    ),
                ],
            )
            .multi(),
            complex(
                "groups",
                "The groups the user belongs to, maintained by the service provider.",
                vec![
                    string("value", "The identifier of the User's group.").mutability(ReadOnly),
                    Attribute::new("$ref", Type::Reference, "The URI of the group.")
                        .refs(&["User", "Group"])
                        .mutability(ReadOnly),
                    string("display", "The group's display name.").mutability(ReadOnly),
                    string("type", "How the membership was derived.")
                        .canonical(&["direct", "indirect"])
                        .mutability(ReadOnly),
                ],
            )
            .multi()
            .mutability(ReadOnly),
            plural(
                "entitlements",
                "Entitlements of the User.",
                string("value", "The value of an entitlement."),
                &[],
            ),
            plural(
                "roles",
                "Roles of the User.",
                string("value", "The value of a role."),
                &[],
            ),
            plural(
                "x509Certificates",
                "X.509 certificates issued to the User.",
                Attribute::new("value", Type::Binary, "The value of an X.509 certificate."),
                &[],
            ),
        ],
    }
});

/// The enterprise User extension (RFC 7643 §4.3).
pub(crate) static ENTERPRISE_USER_SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema {
    id: ENTERPRISE_USER,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: vec![
        string(
            "employeeNumber",
            "Numeric or alphanumeric identifier assigned to a person.",
        ),
        string("costCenter", "Identifies the name of a cost center."),
        string("organization", "Identifies the name of an organization."),
        string("division", "Identifies the name of a division."),
        string("department", "Identifies the name of a department."),
        complex(
            "manager",
            "The User's manager.",
            vec![
                string(
                    "value",
                    "The id of the SCIM resource representing the manager.",
                ),
                Attribute::new(
                    "$ref",
                    Type::Reference,
                    "The URI of the manager's resource.",
                )
                .refs(&["User"]),
                string("displayName", "The displayName of the User's manager.")
                    .mutability(Mutability::ReadOnly),
            ],
        ),
    ],
});

/// The core Group schema (RFC 7643 §4.2).
pub(crate) static GROUP_SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    use Mutability::Immutable;
    Schema {
        id: GROUP,
        name: "Group",
        description: "Group",
        attributes: vec![
            external_id(),
            string("displayName", "A human-readable name for the Group.").required(),
            complex(
                "members",
                "A list of members of the Group.",
                vec![
                    string("value", "Identifier of the member of this Group.")
                        .case_exact()
                        .mutability(Immutable),
                    Attribute::new("$ref", Type::Reference, "The URI of the member resource.")
                        .refs(&["User", "Group"])
                        .mutability(Immutable),
                    string("type", "The type of the member.")
                        .canonical(&["User", "Group"])
                        .mutability(Immutable),
                    string("display", "A human-readable name of the member.").mutability(Immutable),
                ],
            )
            .multi(),
        ],
    }
});

/// The schemas describing the discovery resources themselves (RFC 7643
/// §5, §6, §7), served so that a client can check every object it reads.
static DISCOVERY_SCHEMAS: LazyLock<Vec<Schema>> = LazyLock::new(|| {
    use Mutability::ReadOnly;
    let ro = |a: Attribute| a.mutability(ReadOnly);
    let supported = |name: &'static str, description: &'static str, extra: Vec<Attribute>| {
        let mut subs = vec![ro(Attribute::new(
            "supported",
            Type::Boolean,
            "Whether the operation is supported.",
        )
        .required())];
        subs.extend(extra);
        ro(complex(name, description, subs).required())
    };
    let integer = |name: &'static str, description: &'static str| {
        ro(Attribute::new(name, Type::Integer, description).required())
    };
    let attribute_subs = || {
        vec![
            ro(string("name", "The attribute's name.")
                .case_exact()
                .required()),
            ro(string("type", "The attribute's data type.").required()),
            ro(Attribute::new(
                "multiValued",
                Type::Boolean,
                "Whether the attribute is multi-valued.",
            )
            .required()),
            ro(string("description", "The attribute's description.")),
            ro(Attribute::new(
                "required",
                Type::Boolean,
                "Whether the attribute is required.",
            )),
            ro(string("canonicalValues", "Suggested canonical values.").multi()),
            ro(Attribute::new(
                "caseExact",
                Type::Boolean,
                "Whether values are case-sensitive.",
            )),
            ro(string(
                "mutability",
                "Whether the attribute can be written.",
            )),
            ro(string("returned", "When the attribute is returned.")),
            ro(string("uniqueness", "How unique the values are.")),
            ro(string(
                "referenceTypes",
                "The resource types a reference may point to.",
            )
            .multi()),
        ]
    };
    // An attribute definition, whose sub-attributes are definitions too.
    let mut attribute_definition = attribute_subs();
    attribute_definition.push(ro(complex(
        "subAttributes",
        "The sub-attributes of a complex attribute.",
        attribute_subs(),
    )
    .multi()));
    vec![
        Schema {
            id: SERVICE_PROVIDER_CONFIG,
            name: "ServiceProviderConfig",
            description: "Service Provider Configuration",
            attributes: vec![
                ro(Attribute::new(
                    "documentationUri",
                    Type::Reference,
                    "Help for the service provider.",
                )
                .refs(&["external"])),
                supported("patch", "PATCH configuration options.", vec![]),
                supported(
                    "bulk",
                    "Bulk configuration options.",
                    vec![
                        integer("maxOperations", "Maximum number of operations."),
                        integer("maxPayloadSize", "Maximum payload size in bytes."),
                    ],
                ),
                supported(
                    "filter",
                    "Filter options.",
                    vec![integer(
                        "maxResults",
                        "Maximum number of resources returned.",
                    )],
                ),
                supported(
                    "changePassword",
                    "Change password configuration options.",
                    vec![],
                ),
                supported("sort", "Sort configuration options.", vec![]),
                supported("etag", "ETag configuration options.", vec![]),
                ro(complex(
                    "authenticationSchemes",
                    "Supported authentication scheme properties.",
                    vec![
                        ro(string("type", "The authentication scheme.").required()),
                        ro(string("name", "The common authentication scheme name.").required()),
                        ro(string("description", "A description of the scheme.").required()),
                        ro(Attribute::new(
                            "specUri",
                            Type::Reference,
                            "The scheme's specification.",
                        )
                        .refs(&["external"])),
                        ro(Attribute::new(
                            "documentationUri",
                            Type::Reference,
                            "The scheme's documentation.",
                        )
                        .refs(&["external"])),
                        ro(Attribute::new(
                            "primary",
                            Type::Boolean,
                            "Whether this is the preferred scheme.",
                        )),
                    ],
                )
                .multi()
                .required()),
            ],
        },
        Schema {
            id: RESOURCE_TYPE,
            name: "ResourceType",
            description: "Resource Type",
            attributes: vec![
                ro(string("id", "The resource type's identifier.").case_exact()),
                ro(string("name", "The resource type name.").required()),
                ro(string("description", "The resource type's description.")),
                ro(
                    Attribute::new("endpoint", Type::Reference, "The resource type's endpoint.")
                        .refs(&["uri"])
                        .required(),
                ),
                ro(Attribute::new(
                    "schema",
                    Type::Reference,
                    "The resource type's core schema.",
                )
                .refs(&["uri"])
                .case_exact()
                .required()),
                ro(complex(
                    "schemaExtensions",
                    "The resource type's schema extensions.",
                    vec![
                        ro(
                            Attribute::new("schema", Type::Reference, "The extension schema URI.")
                                .refs(&["uri"])
                                .case_exact()
                                .required(),
                        ),
                        ro(Attribute::new(
                            "required",
                            Type::Boolean,
                            "Whether the extension is required.",
                        )
                        .required()),
                    ],
                )
                .multi()),
            ],
        },
        Schema {
            id: SCHEMA,
            name: "Schema",
            description: "Schema",
            attributes: vec![
                ro(string("id", "The schema URI.").case_exact().required()),
                ro(string("name", "The schema's name.")),
                ro(string("description", "The schema's description.")),
                ro(complex(
                    "attributes",
                    "The schema's attributes.",
                    attribute_definition,
                )
                .multi()
                .required()),
            ],
        },
    ]
});

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
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case() {
        assert_eq!(
            USER_SCHEMA.attribute("USERNAME").map(|a| a.name),
            Some("userName")
        );
        let emails = USER_SCHEMA.attribute("emails").expect("emails");
        assert_eq!(emails.sub("VALUE").map(|a| a.name), Some("value"));
        assert!(Kind::User
            .extension(&ENTERPRISE_USER.to_uppercase())
            .is_some());
        assert!(Kind::Group.extension(ENTERPRISE_USER).is_none());
    }

    #[test]
    fn external_id_is_not_published() {
        let user = USER_SCHEMA.to_json("http://x");
        let names: Vec<&str> = user["attributes"]
            .as_array()
            .expect("attributes")
            .iter()
            .filter_map(|a| a["name"].as_str())
            .collect();
        assert!(!names.contains(&"externalId"));
        assert!(names.contains(&"userName"));
        assert_eq!(user["attributes"][0]["uniqueness"], "server");
    }

    #[test]
    fn every_schema_is_served_once() {
        let mut ids: Vec<&str> = all_schemas().map(|s| s.id).collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count);
        assert_eq!(count, 6);
    }
}
