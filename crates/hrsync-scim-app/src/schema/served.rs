//! The schemas this app serves, as data: the core User and Group schemas,
//! the enterprise User extension, and the schemas of the discovery
//! resources.

use std::sync::LazyLock;

use super::*;

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
pub(super) static DISCOVERY_SCHEMAS: LazyLock<Vec<Schema>> = LazyLock::new(|| {
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
