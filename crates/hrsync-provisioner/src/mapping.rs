//! From the canonical profile to an app's SCIM User.
//!
//! Every app starts from the default mapping ([`Mapping::user`] with no
//! expressions): `userName` (work e-mail, else employee id), `externalId`
//! (the stable person id), `name`, `displayName`, `nickName`, `title`,
//! `emails`, `phoneNumbers`, and the enterprise extension's
//! `employeeNumber`, `department`, `costCenter` and `manager` (the SCIM id of
//! the manager's account in the same app, once it has one).
//!
//! `[provisioner.apps.attributes]` overrides or extends it per app, each
//! attribute a CEL expression (the language of the group rules, see
//! `hrsync-expr`):
//!
//! ```toml
//! [provisioner.apps.attributes]
//! "userName" = 'person.work_email != "" ? person.work_email : employee_id + "@example.com"'
//! "title" = 'person.title == "" ? null : person.title.upperAscii()'
//! "name.formatted" = 'person.given_name + " " + person.family_name'
//! "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division" = 'person.custom["division"]'
//! "urn:example:params:scim:schemas:extension:acme:2.0:User:badge" = '"badge" in person.custom ? person.custom["badge"] : null'
//! ```
//!
//! A key is a core attribute, optionally with one sub-attribute
//! (`name.givenName`), or an extension attribute written as the schema URN,
//! a colon and the attribute; an extension that is not yet in `schemas` is
//! added to it. A `null` result leaves the attribute out (and removes it
//! from the account if it was sent before). Expressions read `person`,
//! `employee_id`, `person_id`, `state` (the lifecycle state), `app` and
//! `groups` (the person's groups that grant this app).
//!
//! `active`, `externalId`, `id`, `meta`, `schemas` and `groups` cannot be
//! mapped: the lifecycle, the person id and the server decide them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use cel::common::types::{CelList, CelString};
use cel::common::value::Val;
use cel::{Context, Env, Program, Value as CelValue};
use hrsync_domain::DirectoryChange;
use serde_json::{json, Map, Value};

use crate::scim::{ENTERPRISE_SCHEMA, USER_SCHEMA};

/// What a mapping expression can read.
const VARIABLES: [&str; 6] = [
    "person",
    "employee_id",
    "person_id",
    "state",
    "app",
    "groups",
];

/// Attributes a mapping may not set.
const RESERVED: [&str; 6] = ["active", "externalId", "id", "meta", "schemas", "groups"];

/// Where a mapped value goes in the SCIM User.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// `None` for the core schema, else the extension's URN.
    schema: Option<String>,
    attribute: String,
    sub_attribute: Option<String>,
}

/// An attribute of `[provisioner.apps.attributes]` that cannot be mapped;
/// shown as `"key": why`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key:?}: {reason}")]
pub struct CompileError {
    /// The attribute's key, as configured.
    pub key: String,
    /// Why it cannot be mapped.
    pub reason: String,
}

impl Target {
    fn parse(key: &str) -> Result<Target, CompileError> {
        let bad = |reason: String| CompileError {
            key: key.to_owned(),
            reason,
        };
        let (schema, path) = if key.starts_with("urn:") {
            let (schema, path) = key
                .rsplit_once(':')
                .filter(|(schema, _)| schema.matches(':').count() >= 2)
                .ok_or_else(|| bad("an extension attribute is written URN:attribute".to_owned()))?;
            (Some(schema.to_owned()), path)
        } else {
            (None, key)
        };
        let (attribute, sub_attribute) = match path.split_once('.') {
            Some((a, s)) => (a, Some(s)),
            None => (path, None),
        };
        let valid = |name: &str| {
            name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        };
        if !valid(attribute) || !sub_attribute.is_none_or(valid) {
            return Err(bad(
                "not a SCIM attribute path (attribute or attribute.subAttribute)".to_owned(),
            ));
        }
        let schema = schema.filter(|s| s != USER_SCHEMA);
        if schema.is_none() && RESERVED.contains(&attribute) {
            return Err(bad(format!(
                "{attribute} is not mapped: the lifecycle, the person id or the server decides it"
            )));
        }
        Ok(Target {
            schema,
            attribute: attribute.to_owned(),
            sub_attribute: sub_attribute.map(str::to_owned),
        })
    }

    /// The top-level key of the User this target writes under.
    fn top_key(&self) -> &str {
        self.schema.as_deref().unwrap_or(&self.attribute)
    }
}

struct Entry {
    key: String,
    target: Target,
    program: Program,
}

impl Entry {
    fn error(&self, reason: String) -> MappingError {
        MappingError {
            attribute: self.key.clone(),
            top_key: self.target.top_key().to_owned(),
            reason,
        }
    }
}

/// An app's compiled attribute mapping.
pub struct Mapping {
    env: Arc<Env>,
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.key))
            .finish()
    }
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            env: Arc::new(hrsync_expr::env()),
            entries: Vec::new(),
        }
    }
}

/// A mapping expression that failed for one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    /// The attribute's key in the config.
    pub attribute: String,
    /// The top-level User attribute it is part of: left out of the user,
    /// so that the app keeps what it has.
    pub top_key: String,
    /// Why (never the person's data).
    pub reason: String,
}

impl Mapping {
    /// Compiles `[provisioner.apps.attributes]`.
    ///
    /// # Errors
    /// The first attribute that is not a valid path, is reserved, is not
    /// CEL, or reads an unknown variable or attribute.
    pub fn compile<'a>(
        attributes: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Mapping, CompileError> {
        let env = Arc::new(hrsync_expr::env());
        let mut entries = Vec::new();
        for (key, expression) in attributes {
            let target = Target::parse(key)?;
            let bad = |reason: String| CompileError {
                key: key.clone(),
                reason,
            };
            let program = env
                .compile(expression)
                .map_err(|errors| bad(hrsync_expr::parse_reason(&errors)))?;
            hrsync_expr::check_references(program.expression(), &env, &VARIABLES)
                .map_err(|e| bad(e.to_string()))?;
            entries.push(Entry {
                key: key.clone(),
                target,
                program,
            });
        }
        Ok(Mapping { env, entries })
    }

    /// The top-level User attributes this mapping may write: what it sent
    /// before but leaves out now is removed from the account.
    pub fn managed(&self) -> BTreeSet<String> {
        let mut keys: BTreeSet<String> = [
            "userName",
            "name",
            "displayName",
            "nickName",
            "title",
            "emails",
            "phoneNumbers",
            ENTERPRISE_SCHEMA,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        keys.extend(self.entries.iter().map(|e| e.target.top_key().to_owned()));
        keys
    }

    /// The SCIM User `change` asks for in `app`, `active` as given, and
    /// the expressions that failed for this person (the top-level attribute
    /// each belongs to is left out, so the app keeps what it has). `manager` is the SCIM id of the manager's account in the
    /// app, if it has one.
    pub fn user(
        &self,
        change: &DirectoryChange,
        app: &str,
        active: bool,
        manager: Option<&str>,
    ) -> (Value, Vec<MappingError>) {
        let mut user = default_user(change, active, manager);
        if self.entries.is_empty() {
            return (user, Vec::new());
        }
        let mut errors = Vec::new();
        let groups: Vec<&str> = change
            .apps
            .iter()
            .filter(|a| a.app == app)
            .flat_map(|a| a.groups.iter().map(String::as_str))
            .collect();
        let mut context = Context::with_env(Arc::clone(&self.env));
        context.add_variable_as_val(
            "person",
            Box::new(hrsync_expr::person(&change.profile.attributes)),
        );
        context.add_variable_as_val("employee_id", string(change.employee_id.as_str()));
        context.add_variable_as_val("person_id", string(change.person_id.as_str()));
        context.add_variable_as_val("state", string(change.lifecycle_state.as_str()));
        context.add_variable_as_val("app", string(app));
        let groups: Vec<Box<dyn Val + '_>> = groups.into_iter().map(string).collect();
        context.add_variable_as_val("groups", Box::new(CelList::from(groups)));
        for entry in &self.entries {
            let value = match entry.program.execute(&context) {
                Ok(CelValue::Null) => None,
                Ok(value) => match value.json() {
                    Ok(json) => Some(json),
                    Err(_) => {
                        errors.push(
                            entry.error(format!("a {} is not a SCIM value", value.type_of())),
                        );
                        continue;
                    }
                },
                Err(error) => {
                    errors.push(entry.error(format!(
                        "the expression failed: {}",
                        hrsync_expr::describe_failure(&error)
                    )));
                    continue;
                }
            };
            set(&mut user, &entry.target, value);
        }
        // What failed is left out whole, so the app keeps what it has.
        if let Some(object) = user.as_object_mut() {
            for error in &errors {
                object.remove(&error.top_key);
            }
        }
        (user, errors)
    }
}

fn string<'a>(value: &'a str) -> Box<dyn Val + 'a> {
    Box::new(CelString::from(value))
}

/// Writes (or with `None` removes) one target in `user`.
fn set(user: &mut Value, target: &Target, value: Option<Value>) {
    let Some(object) = user.as_object_mut() else {
        return;
    };
    let container = match &target.schema {
        None => &mut *object,
        Some(schema) => {
            if value.is_some() {
                let schemas = object.entry("schemas").or_insert_with(|| json!([]));
                if let Some(list) = schemas.as_array_mut() {
                    if !list.iter().any(|s| s == schema) {
                        list.push(Value::String(schema.clone()));
                    }
                }
            }
            let extension = object
                .entry(schema.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            match extension.as_object_mut() {
                Some(extension) => extension,
                None => return,
            }
        }
    };
    match (&target.sub_attribute, value) {
        (None, Some(value)) => {
            container.insert(target.attribute.clone(), value);
        }
        (None, None) => {
            container.remove(&target.attribute);
        }
        (Some(sub), value) => {
            let parent = container
                .entry(target.attribute.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !parent.is_object() {
                *parent = Value::Object(Map::new());
            }
            if let Some(parent) = parent.as_object_mut() {
                match value {
                    Some(value) => {
                        parent.insert(sub.clone(), value);
                    }
                    None => {
                        parent.remove(sub);
                    }
                }
            }
            if container
                .get(&target.attribute)
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
            {
                container.remove(&target.attribute);
            }
        }
    }
    // An extension left empty goes, with its URN.
    if let Some(schema) = &target.schema {
        let empty = object
            .get(schema)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty);
        if empty {
            object.remove(schema);
            if let Some(list) = object.get_mut("schemas").and_then(Value::as_array_mut) {
                list.retain(|s| s != schema);
            }
        }
    }
}

/// The default mapping.
fn default_user(change: &DirectoryChange, active: bool, manager: Option<&str>) -> Value {
    let a = &change.profile.attributes;
    let user_name = a
        .work_email
        .clone()
        .unwrap_or_else(|| change.employee_id.as_str().to_owned());
    let display = a.display_name.clone().unwrap_or_else(|| {
        format!(
            "{} {}",
            a.preferred_name.as_deref().unwrap_or(&a.given_name),
            a.family_name
        )
    });
    let mut user = Map::new();
    user.insert("schemas".into(), json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
    user.insert("userName".into(), json!(user_name));
    user.insert("externalId".into(), json!(change.person_id.as_str()));
    user.insert(
        "name".into(),
        json!({"givenName": a.given_name, "familyName": a.family_name}),
    );
    user.insert("displayName".into(), json!(display));
    user.insert("active".into(), json!(active));
    if let Some(email) = &a.work_email {
        user.insert(
            "emails".into(),
            json!([{"value": email, "type": "work", "primary": true}]),
        );
    }
    if let Some(title) = &a.title {
        user.insert("title".into(), json!(title));
    }
    if let Some(phone) = &a.phone {
        user.insert(
            "phoneNumbers".into(),
            json!([{"value": phone, "type": "work"}]),
        );
    }
    if let Some(name) = &a.preferred_name {
        user.insert("nickName".into(), json!(name));
    }
    let mut enterprise = Map::new();
    enterprise.insert("employeeNumber".into(), json!(change.employee_id.as_str()));
    if let Some(d) = &a.department {
        enterprise.insert("department".into(), json!(d));
    }
    if let Some(c) = &a.cost_center {
        enterprise.insert("costCenter".into(), json!(c));
    }
    if let Some(id) = manager.filter(|id| !id.is_empty()) {
        enterprise.insert("manager".into(), json!({ "value": id }));
    }
    user.insert(ENTERPRISE_SCHEMA.into(), Value::Object(enterprise));
    Value::Object(user)
}

/// The compiled mappings of every app, by app name.
pub type Mappings = HashMap<String, Arc<Mapping>>;

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
