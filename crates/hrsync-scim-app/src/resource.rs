//! Resources in and out: request bodies checked against the schema and
//! stored under canonical attribute names, and responses rendered with the
//! attributes a client asked for (RFC 7644 §3.9).

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::{self, Container, Target};
use crate::schema::{Attribute, Kind, Returned, Type, COMMON};
use crate::store::{GroupRef, Resource};

/// Reads a POST or PUT body into stored attributes: names in their
/// canonical case, read-only attributes dropped (RFC 7644 §3.3), values
/// checked against their type, booleans sent as strings accepted.
pub(crate) fn normalize_body(kind: Kind, body: Value) -> Result<Map<String, Value>, ScimError> {
    let Value::Object(body) = body else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    let mut attrs = Map::new();
    for (key, value) in body {
        if key.eq_ignore_ascii_case("schemas") {
            check_schemas(kind, &value)?;
            continue;
        }
        if key.eq_ignore_ascii_case("id") || key.eq_ignore_ascii_case("meta") {
            continue;
        }
        if let Some((_, extension)) = kind.extension(&key) {
            let object = match value {
                Value::Null => continue,
                Value::Object(object) => object,
                _ => {
                    return Err(ScimError::invalid_value(format!(
                        "{} must be an object",
                        extension.id
                    )))
                }
            };
            let mut out = Map::new();
            for (name, value) in object {
                if name.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                let attr = extension
                    .attribute(&name)
                    .ok_or_else(|| unknown_attribute(kind, &name))?;
                if attr.read_only() {
                    continue;
                }
                if let Some(value) = normalize_value(attr, value, true)? {
                    out.insert(attr.name.to_owned(), value);
                }
            }
            if !out.is_empty() {
                attrs.insert(extension.id.to_owned(), Value::Object(out));
            }
            continue;
        }
        let attr = kind
            .core()
            .attribute(&key)
            .ok_or_else(|| unknown_attribute(kind, &key))?;
        if attr.read_only() {
            continue;
        }
        if let Some(value) = normalize_value(attr, value, true)? {
            attrs.insert(attr.name.to_owned(), value);
        }
    }
    Ok(attrs)
}

fn unknown_attribute(kind: Kind, name: &str) -> ScimError {
    ScimError::invalid_syntax(format!(
        "unknown attribute {name:?} for resource type {}",
        kind.name()
    ))
}

fn check_schemas(kind: Kind, value: &Value) -> Result<(), ScimError> {
    let listed = value
        .as_array()
        .filter(|urns| urns.iter().all(Value::is_string))
        .ok_or_else(|| ScimError::invalid_syntax("schemas must be an array of URNs"))?;
    let core = kind.core().id;
    if listed
        .iter()
        .filter_map(Value::as_str)
        .any(|urn| urn.eq_ignore_ascii_case(core))
    {
        Ok(())
    } else {
        Err(ScimError::invalid_syntax(format!(
            "schemas must list {core}"
        )))
    }
}

/// Checks and canonicalizes a value for `attr`. With `whole`, a value of
/// a multi-valued attribute is the whole list (a single value is taken as
/// a list of one); without, it is one of its values. `None` means
/// unassigned (null, an empty list or an empty object).
pub(crate) fn normalize_value(
    attr: &Attribute,
    value: Value,
    whole: bool,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attr.multi_valued && whole {
        let items = match value {
            Value::Array(items) => items,
            single => vec![single],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(item) = normalize_value(attr, item, false)? {
                out.push(item);
            }
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    let wrong = |expected: &str, value: &Value| {
        ScimError::invalid_value(format!(
            "{} must be {expected}, not {}",
            attr.name,
            json_type(value)
        ))
    };
    match attr.ty {
        Type::Complex => {
            let Value::Object(object) = value else {
                return Err(wrong("an object", &value));
            };
            let mut out = Map::new();
            for (name, value) in object {
                let sub = attr.sub(&name).ok_or_else(|| {
                    ScimError::invalid_syntax(format!(
                        "unknown sub-attribute {name:?} of {}",
                        attr.name
                    ))
                })?;
                if sub.read_only() {
                    continue;
                }
                if let Some(value) = normalize_value(sub, value, true)? {
                    out.insert(sub.name.to_owned(), value);
                }
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
        Type::Boolean => match &value {
            Value::Bool(_) => Ok(Some(value)),
            Value::String(s) => filter::parse_bool(s)
                .map(|b| Some(Value::Bool(b)))
                .ok_or_else(|| wrong("a boolean", &value)),
            _ => Err(wrong("a boolean", &value)),
        },
        Type::Integer if value.is_i64() || value.is_u64() => Ok(Some(value)),
        Type::Integer => Err(wrong("an integer", &value)),
        Type::DateTime => match value.as_str() {
            Some(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => Ok(Some(value)),
            _ => Err(wrong("an RFC 3339 date-time", &value)),
        },
        Type::String | Type::Reference | Type::Binary if value.is_string() => Ok(Some(value)),
        Type::String | Type::Reference | Type::Binary => Err(wrong("a string", &value)),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Drops what counts as unassigned (RFC 7643 §2.5): nulls, empty lists,
/// empty objects, and extensions left empty.
pub(crate) fn prune(attrs: &mut Map<String, Value>) {
    fn assigned(value: &mut Value) -> bool {
        match value {
            Value::Null => false,
            Value::Array(items) => {
                items.retain_mut(assigned);
                !items.is_empty()
            }
            Value::Object(object) => {
                object.retain(|_, v| assigned(v));
                !object.is_empty()
            }
            _ => true,
        }
    }
    attrs.retain(|_, v| assigned(v));
}

/// Checks what a stored resource must satisfy after every write: required
/// attributes present, at most one `primary` value per attribute.
pub(crate) fn check_invariants(kind: Kind, attrs: &Map<String, Value>) -> Result<(), ScimError> {
    let schemas = std::iter::once((kind.core(), Some(attrs))).chain(
        kind.extensions()
            .iter()
            .map(|s| (*s, attrs.get(s.id).and_then(Value::as_object))),
    );
    for (schema, values) in schemas {
        for attr in &schema.attributes {
            let value = values.and_then(|v| v.get(attr.name));
            // An extension that is absent is not checked: none is required.
            if attr.required && value.is_none() && values.is_some() {
                return Err(ScimError::invalid_value(format!(
                    "{} is required",
                    attr.name
                )));
            }
            if let (Some(Value::Array(items)), Some(_)) = (value, attr.sub("primary")) {
                let primaries = items
                    .iter()
                    .filter(|v| v.get("primary") == Some(&Value::Bool(true)))
                    .count();
                if primaries > 1 {
                    return Err(ScimError::invalid_value(format!(
                        "{}: at most one value may be primary",
                        attr.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// One attribute named in `attributes` or `excludedAttributes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Selection {
    container: Container,
    /// `None`: the whole extension.
    attr: Option<&'static str>,
    sub: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Default,
    Only,
    Except,
}

/// Which attributes a response returns (RFC 7644 §3.4.2.5, §3.9).
#[derive(Debug, Clone)]
pub(crate) struct Projection {
    mode: Mode,
    selections: Vec<Selection>,
}

/// What to do with one attribute.
enum Decision {
    Skip,
    All,
    Only(Vec<&'static str>),
    Except(Vec<&'static str>),
}

impl Projection {
    /// Every attribute returned by default.
    pub(crate) fn default_set() -> Self {
        Projection {
            mode: Mode::Default,
            selections: Vec::new(),
        }
    }

    /// The projection `attributes` or `excludedAttributes` (comma-separated
    /// attribute paths) asks for, for resource type `kind`. Names the
    /// resource type does not know are ignored.
    pub(crate) fn parse(
        kind: Kind,
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> Result<Self, ScimError> {
        let (mode, list) = match (attributes, excluded) {
            (Some(_), Some(_)) => {
                return Err(ScimError::invalid_value(
                    "attributes and excludedAttributes are mutually exclusive",
                ))
            }
            (Some(list), None) => (Mode::Only, list),
            (None, Some(list)) => (Mode::Except, list),
            (None, None) => return Ok(Self::default_set()),
        };
        let selections = list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .filter_map(filter::parse_attr_path)
            .filter_map(|raw| match filter::resolve(kind, &raw) {
                Ok(Target::Attr(a)) => Some(Selection {
                    container: a.container,
                    attr: Some(a.attr.name),
                    sub: a.sub.map(|s| s.name),
                }),
                Ok(Target::Extension(index)) => Some(Selection {
                    container: Container::Ext(index),
                    attr: None,
                    sub: None,
                }),
                Err(_) => None,
            })
            .collect();
        Ok(Projection { mode, selections })
    }

    fn decide(&self, container: Container, attr: &Attribute) -> Decision {
        match attr.returned {
            Returned::Never => return Decision::Skip,
            Returned::Always => return Decision::All,
            Returned::Default | Returned::Request => {}
        }
        let mine = || {
            self.selections
                .iter()
                .filter(move |s| s.container == container && s.attr.is_none_or(|a| a == attr.name))
        };
        let whole = mine().any(|s| s.sub.is_none());
        let subs: Vec<&'static str> = mine().filter_map(|s| s.sub).collect();
        match self.mode {
            Mode::Default if attr.returned == Returned::Request => Decision::Skip,
            Mode::Default => Decision::All,
            Mode::Only if whole => Decision::All,
            Mode::Only if !subs.is_empty() => Decision::Only(subs),
            Mode::Only => Decision::Skip,
            Mode::Except if attr.returned == Returned::Request || whole => Decision::Skip,
            Mode::Except if !subs.is_empty() => Decision::Except(subs),
            Mode::Except => Decision::All,
        }
    }
}

/// Applies a decision to the value of complex or simple attribute `attr`.
fn project(attr: &Attribute, value: Value, decision: &Decision) -> Option<Value> {
    let keep_sub = |sub: &Attribute| {
        sub.returned != Returned::Never
            && match decision {
                Decision::Skip => false,
                Decision::All => true,
                Decision::Only(names) => {
                    sub.returned == Returned::Always || names.contains(&sub.name)
                }
                Decision::Except(names) => {
                    sub.returned == Returned::Always || !names.contains(&sub.name)
                }
            }
    };
    let filter_object = |mut object: Map<String, Value>| {
        object.retain(|name, _| attr.sub(name).is_some_and(keep_sub));
        (!object.is_empty()).then_some(Value::Object(object))
    };
    match (attr.ty, value) {
        (_, _) if matches!(decision, Decision::Skip) => None,
        (Type::Complex, Value::Object(object)) => filter_object(object),
        (Type::Complex, Value::Array(items)) => {
            let items: Vec<Value> = items
                .into_iter()
                .filter_map(|item| match item {
                    Value::Object(object) => filter_object(object),
                    other => Some(other),
                })
                .collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        (_, value) => Some(value),
    }
}

/// The SCIM representation of `resource`, served under `base`, with the
/// attributes `projection` selects. `groups` are the groups a user is a
/// direct member of (the read-only `User.groups`).
pub(crate) fn render(
    kind: Kind,
    resource: &Resource,
    groups: &[GroupRef],
    projection: &Projection,
    base: &str,
) -> Value {
    let mut out = Map::new();
    let mut schemas = vec![Value::from(kind.core().id)];
    out.insert("id".to_owned(), resource.id.clone().into());
    let meta = &COMMON[1];
    let decision = projection.decide(Container::Common, meta);
    let mut meta_value = resource.meta(kind);
    meta_value["location"] = location(base, kind, &resource.id).into();
    if let Some(meta_value) = project(meta, meta_value, &decision) {
        out.insert("meta".to_owned(), meta_value);
    }
    for attr in &kind.core().attributes {
        let value = if kind == Kind::User && attr.name == "groups" {
            render_groups(groups, base)
        } else if kind == Kind::Group && attr.name == "members" {
            resource
                .attrs
                .get(attr.name)
                .map(|members| with_member_refs(members.clone(), base))
        } else {
            resource.attrs.get(attr.name).cloned()
        };
        let Some(value) = value else { continue };
        let decision = projection.decide(Container::Core, attr);
        if let Some(value) = project(attr, value, &decision) {
            out.insert(attr.name.to_owned(), value);
        }
    }
    for (index, extension) in kind.extensions().iter().enumerate() {
        let Some(Value::Object(values)) = resource.attrs.get(extension.id) else {
            continue;
        };
        let mut rendered = Map::new();
        for attr in &extension.attributes {
            let Some(value) = values.get(attr.name) else {
                continue;
            };
            let decision = projection.decide(Container::Ext(index), attr);
            if let Some(value) = project(attr, value.clone(), &decision) {
                rendered.insert(attr.name.to_owned(), value);
            }
        }
        if !rendered.is_empty() {
            schemas.push(extension.id.into());
            out.insert(extension.id.to_owned(), Value::Object(rendered));
        }
    }
    out.insert("schemas".to_owned(), Value::Array(schemas));
    Value::Object(out)
}

/// `meta.location` of a resource.
pub(crate) fn location(base: &str, kind: Kind, id: &str) -> String {
    format!("{base}/{}/{id}", kind.endpoint())
}

fn render_groups(groups: &[GroupRef], base: &str) -> Option<Value> {
    if groups.is_empty() {
        return None;
    }
    let items = groups
        .iter()
        .map(|g| {
            let mut item = Map::new();
            item.insert("value".to_owned(), g.id.clone().into());
            item.insert("$ref".to_owned(), location(base, Kind::Group, &g.id).into());
            if let Some(display) = &g.display {
                item.insert("display".to_owned(), display.clone().into());
            }
            item.insert("type".to_owned(), "direct".into());
            Value::Object(item)
        })
        .collect();
    Some(Value::Array(items))
}

/// Fills the `$ref` of members stored without one.
fn with_member_refs(mut members: Value, base: &str) -> Value {
    for member in members.as_array_mut().into_iter().flatten() {
        let Some(member) = member.as_object_mut() else {
            continue;
        };
        if member.contains_key("$ref") {
            continue;
        }
        let kind = match member.get("type").and_then(Value::as_str) {
            Some("User") => Kind::User,
            Some("Group") => Kind::Group,
            _ => continue,
        };
        if let Some(id) = member.get("value").and_then(Value::as_str) {
            let reference = location(base, kind, id);
            member.insert("$ref".to_owned(), reference.into());
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::ENTERPRISE_USER;

    fn body(value: Value) -> Result<Map<String, Value>, ScimError> {
        normalize_body(Kind::User, value)
    }

    #[test]
    fn canonicalizes_names_and_drops_read_only_attributes() {
        let attrs = body(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "client-chosen",
            "meta": {"version": "x"},
            "USERNAME": "bjensen",
            "Name": {"GivenName": "Barbara"},
            "groups": [{"value": "g"}],
            "Active": "False",
            ENTERPRISE_USER: {"Department": "Sales", "manager": {"value": "m", "displayName": "ro"}},
        }))
        .expect("valid");
        assert_eq!(
            Value::Object(attrs),
            json!({
                "userName": "bjensen",
                "name": {"givenName": "Barbara"},
                "active": false,
                ENTERPRISE_USER: {"department": "Sales", "manager": {"value": "m"}},
            })
        );
    }

    #[test]
    fn refuses_unknown_attributes_and_wrong_types() {
        assert!(body(json!({"userName": "a", "shoeSize": 42})).is_err());
        assert!(body(json!({"userName": "a", "name": {"nick": "x"}})).is_err());
        assert!(body(json!({"userName": 1})).is_err());
        assert!(body(json!({"userName": "a", "active": "yes"})).is_err());
        assert!(body(json!({"userName": "a", "emails": [{"value": 3}]})).is_err());
        assert!(body(json!({"schemas": ["urn:other"], "userName": "a"})).is_err());
        assert!(body(json!(["not", "an", "object"])).is_err());
    }

    #[test]
    fn takes_a_single_value_as_a_list_and_prunes_empty_values() {
        let attrs =
            body(json!({"userName": "a", "emails": {"value": "a@b.c"}, "name": {}, "roles": []}))
                .expect("valid");
        assert_eq!(
            Value::Object(attrs),
            json!({"userName": "a", "emails": [{"value": "a@b.c"}]})
        );
    }

    #[test]
    fn checks_required_attributes_and_single_primary() {
        let missing = body(json!({"displayName": "x"})).expect("valid");
        assert!(check_invariants(Kind::User, &missing).is_err());
        let two = body(json!({"userName": "a", "emails": [
            {"value": "a@b.c", "primary": true}, {"value": "d@e.f", "primary": true}
        ]}))
        .expect("valid");
        assert!(check_invariants(Kind::User, &two).is_err());
        let group = normalize_body(Kind::Group, json!({"members": []})).expect("valid");
        assert!(check_invariants(Kind::Group, &group).is_err());
    }

    fn rendered(attributes: Option<&str>, excluded: Option<&str>) -> Value {
        let attrs = body(json!({
            "userName": "bjensen",
            "externalId": "e1",
            "password": "secret",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "a@b.c", "type": "work"}],
            ENTERPRISE_USER: {"department": "Sales", "costCenter": "42"},
        }))
        .expect("valid");
        let resource = Resource::for_tests("u1", attrs);
        let projection = Projection::parse(Kind::User, attributes, excluded).expect("projection");
        let groups = [GroupRef {
            id: "g1".to_owned(),
            display: Some("Sales".to_owned()),
        }];
        render(Kind::User, &resource, &groups, &projection, "http://h")
    }

    #[test]
    fn renders_every_default_attribute_but_never_the_password() {
        let user = rendered(None, None);
        assert_eq!(user["id"], "u1");
        assert_eq!(user["userName"], "bjensen");
        assert!(user.get("password").is_none());
        assert_eq!(user["meta"]["location"], "http://h/Users/u1");
        assert_eq!(user["meta"]["resourceType"], "User");
        assert_eq!(
            user["schemas"],
            json!([crate::schema::USER, ENTERPRISE_USER])
        );
        assert_eq!(
            user["groups"],
            json!([{"value": "g1", "$ref": "http://h/Groups/g1", "display": "Sales", "type": "direct"}])
        );
    }

    #[test]
    fn renders_only_the_requested_attributes() {
        let user = rendered(Some("userName,name.givenName,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department,bogus"), None);
        assert_eq!(
            user,
            json!({
                "schemas": [crate::schema::USER, ENTERPRISE_USER],
                "id": "u1",
                "userName": "bjensen",
                "name": {"givenName": "Barbara"},
                ENTERPRISE_USER: {"department": "Sales"},
            })
        );
        let only_core = rendered(Some("EMAILS"), None);
        assert_eq!(only_core["schemas"], json!([crate::schema::USER]));
        assert_eq!(only_core["emails"][0]["value"], "a@b.c");
        assert!(only_core.get("meta").is_none());
    }

    #[test]
    fn renders_all_but_the_excluded_attributes() {
        let user = rendered(None, Some("name.familyName,emails,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User,id"));
        assert_eq!(user["id"], "u1");
        assert_eq!(user["name"], json!({"givenName": "Barbara"}));
        assert!(user.get("emails").is_none());
        assert!(user.get(ENTERPRISE_USER).is_none());
        assert_eq!(user["schemas"], json!([crate::schema::USER]));
        assert!(Projection::parse(Kind::User, Some("a"), Some("b")).is_err());
    }
}
