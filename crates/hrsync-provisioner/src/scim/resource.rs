//! Reading a SCIM server's answers and writing PATCH operations, with no
//! I/O: resources, list pages, capabilities, versions, booleans given as
//! strings, `Retry-After`.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::error::decode_error;
use super::{Result, ScimError};

/// What the server says it supports (`/ServiceProviderConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// PATCH is supported.
    pub patch: bool,
    /// Filtering is supported.
    pub filter: bool,
    /// Versions (ETags) are supported: writes can carry `If-Match`.
    pub etag: bool,
}

/// A resource as the server answered a read or a write, and its version
/// (the answer's `ETag` header, else the resource's `meta.version`), for
/// `If-Match` on the next write.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The resource, if the answer carried it (a PATCH answered 204 does
    /// not).
    pub resource: Option<Value>,
    /// Its version, if the server gave one.
    pub version: Option<String>,
}

/// A resource's `meta.version`, if it has one.
pub fn meta_version(resource: &Value) -> Option<String> {
    resource
        .get("meta")
        .and_then(|m| m.get("version"))
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// One RFC 7644 PATCH operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    /// `add`, `replace` or `remove` (lowercase, as the RFC writes them).
    pub op: &'static str,
    /// Attribute path, if any.
    pub path: Option<String>,
    /// Value (absent for `remove`).
    pub value: Option<Value>,
}

impl PatchOp {
    /// `replace` of `path` with `value`.
    pub fn replace(path: impl Into<String>, value: Value) -> Self {
        PatchOp {
            op: "replace",
            path: Some(path.into()),
            value: Some(value),
        }
    }

    /// `add` of `value` at `path`.
    pub fn add(path: impl Into<String>, value: Value) -> Self {
        PatchOp {
            op: "add",
            path: Some(path.into()),
            value: Some(value),
        }
    }

    /// `remove` of `path`.
    pub fn remove(path: impl Into<String>) -> Self {
        PatchOp {
            op: "remove",
            path: Some(path.into()),
            value: None,
        }
    }

    pub(super) fn to_json(&self) -> Value {
        let mut op = json!({ "op": self.op });
        if let Some(path) = &self.path {
            op["path"] = Value::String(path.clone());
        }
        if let Some(value) = &self.value {
            op["value"] = value.clone();
        }
        op
    }
}

/// Quotes a value for a SCIM filter: `"` and `\` escaped as in JSON.
pub fn filter_value(value: &str) -> String {
    Value::String(value.to_owned()).to_string()
}

/// Where paging through a list answer stands: the next `startIndex`, the
/// resources read so far (each id once), and whether to stop. Pure, so
/// that the stopping rules are tested without a server.
#[derive(Debug)]
pub struct Paging {
    limit: usize,
    next: usize,
    done: bool,
    seen: HashSet<String>,
    resources: Vec<Value>,
}

impl Paging {
    /// Paging from the first resource, keeping at most `limit`.
    pub fn new(limit: usize) -> Self {
        Paging {
            limit,
            next: 1,
            done: limit == 0,
            seen: HashSet::new(),
            resources: Vec::new(),
        }
    }

    /// The `startIndex` to ask for next, or `None` when done.
    pub fn next_start(&self) -> Option<usize> {
        (!self.done).then_some(self.next)
    }

    /// Takes one page. Stops at an empty page, at a page with no resource
    /// not seen before, once `startIndex` passes `totalResults` (when
    /// given), and at the limit.
    pub fn take(&mut self, page: Page) {
        let listed = page.resources.len();
        let mut fresh = 0;
        for resource in page.resources {
            if self.resources.len() >= self.limit {
                break;
            }
            let id = resource["id"].as_str().unwrap_or_default().to_owned();
            if self.seen.insert(id) {
                fresh += 1;
                self.resources.push(resource);
            }
        }
        self.next = self.next.saturating_add(listed);
        self.done = listed == 0
            || fresh == 0
            || (page.total > 0 && self.next > page.total)
            || self.resources.len() >= self.limit;
    }

    /// The resources read, in the order listed.
    pub fn into_resources(self) -> Vec<Value> {
        self.resources
    }
}

/// Reads an app's answer to `method path`: a success's body as JSON (`None`
/// when the body is empty; `active` and `primary` given as the strings
/// `"true"`/`"false"` in any case read as booleans, see
/// [`normalize_booleans`]), or the [`ScimError::Status`] of a failure, with
/// the SCIM error's `scimType` and `detail` and the `Retry-After` header
/// (`retry_after`) when given. A failure's body that is not JSON is ignored:
/// the status says enough.
///
/// # Errors
/// [`ScimError::Status`] for a status outside 200–299;
/// [`ScimError::Decode`] for a success whose body is not JSON.
pub fn read_answer(
    method: &str,
    path: &str,
    status: u16,
    retry_after: Option<&str>,
    text: &str,
) -> Result<Option<Value>> {
    let success = (200..300).contains(&status);
    let json = if text.trim().is_empty() {
        None
    } else {
        match serde_json::from_str::<Value>(text) {
            Ok(v) => Some(v),
            Err(e) if success => return Err(decode_error(method, path, &e.to_string())),
            Err(_) => None,
        }
    };
    if success {
        return Ok(json.map(|mut body| {
            normalize_booleans(&mut body);
            body
        }));
    }
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            })
    };
    Err(ScimError::Status {
        method: method.to_owned(),
        path: path.to_owned(),
        status,
        scim_type: field("scimType"),
        detail: field("detail"),
        retry_after: retry_after.and_then(parse_retry_after),
    })
}

/// The SCIM attributes of the core schemas that are booleans and that
/// some servers send as strings: `User.active`, and `primary` of every
/// multi-valued attribute.
const BOOLEAN_ATTRIBUTES: [&str; 2] = ["active", "primary"];

/// A SCIM boolean as servers send it: `true`/`false`, or the strings
/// `"true"`/`"false"` in any case (`"True"`); anything else is `None`.
pub fn read_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Turns every `active` and `primary` in `value` given as a string that
/// [`read_bool`] reads into that boolean, at any depth; other values are
/// left as they are (a `title` of `"True"` stays a string).
pub fn normalize_booleans(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if BOOLEAN_ATTRIBUTES
                    .iter()
                    .any(|b| b.eq_ignore_ascii_case(name))
                    && field.is_string()
                {
                    if let Some(b) = read_bool(field) {
                        *field = Value::Bool(b);
                    }
                } else {
                    normalize_booleans(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_booleans),
        _ => {}
    }
}

/// What a `/ServiceProviderConfig` answer says the app supports. A feature
/// the answer does not mark `"supported": true` (or `"True"`), or no answer
/// at all, is taken as unsupported.
pub fn read_capabilities(config: Option<&Value>) -> Capabilities {
    let supported = |name: &str| {
        config
            .and_then(|c| c.get(name))
            .and_then(|feature| feature.get("supported"))
            .and_then(read_bool)
            .unwrap_or(false)
    };
    Capabilities {
        patch: supported("patch"),
        filter: supported("filter"),
        etag: supported("etag"),
    }
}

/// One page of a SCIM list answer (RFC 7644 §3.4.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// `totalResults`: matches in all pages (0 when not given).
    pub total: usize,
    /// `Resources`: this page's resources, each with an id.
    pub resources: Vec<Value>,
}

/// Reads a list answer to `method path`. `Resources` may be left out when
/// nothing matched; when given it must be an array of resources, each a
/// JSON object with a non-empty string `id` (a resource without one could
/// not be linked or changed).
///
/// # Errors
/// [`ScimError::Decode`] naming what is wrong: an answer that is not an
/// object, a `Resources` that is not an array, a resource without an id.
pub fn read_page(method: &str, path: &str, answer: Option<Value>) -> Result<Page> {
    let mut page = match answer {
        None => {
            return Ok(Page {
                total: 0,
                resources: Vec::new(),
            })
        }
        Some(Value::Object(page)) => page,
        Some(_) => {
            return Err(decode_error(
                method,
                path,
                "the list answer is not a JSON object",
            ))
        }
    };
    let total = page
        .get("totalResults")
        .and_then(Value::as_u64)
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let resources = match page.remove("Resources") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(decode_error(method, path, "Resources is not an array")),
    };
    for (index, resource) in resources.iter().enumerate() {
        if let Err(reason) = resource_id(resource) {
            return Err(decode_error(
                method,
                path,
                &format!("Resources[{index}]: {reason}"),
            ));
        }
    }
    Ok(Page { total, resources })
}

/// Reads an answer to `method path` that must carry one resource (a
/// created or fetched User or Group): a JSON object with a non-empty string
/// `id`.
///
/// # Errors
/// [`ScimError::Decode`] naming what is missing.
pub fn read_resource(method: &str, path: &str, answer: Option<Value>) -> Result<Value> {
    let Some(resource) = answer else {
        return Err(decode_error(method, path, "the answer has no body"));
    };
    match resource_id(&resource) {
        Ok(_) => Ok(resource),
        Err(reason) => Err(decode_error(method, path, reason)),
    }
}

/// The `id` of a resource, or why it has none.
fn resource_id(resource: &Value) -> Result<&str, &'static str> {
    let Value::Object(object) = resource else {
        return Err("not a JSON object");
    };
    match object.get("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id),
        Some(Value::String(_)) => Err("id is empty"),
        None | Some(Value::Null) => Err("no id"),
        Some(_) => Err("id is not a string"),
    }
}

pub use hrsync_domain::parse_retry_after;
