//! PATCH (RFC 7644 §3.5.2): `add`, `replace` and `remove`, with or without
//! a path, on simple, complex and multi-valued attributes, value filters
//! (`members[value eq "…"]`, `emails[type eq "work"].value`) and whole
//! extensions.
//!
//! The operations of a request apply to a copy of the resource; the store
//! keeps the result only if every operation succeeded.
//!
//! Beyond the RFC, as the common clients expect: operation names in any
//! case (`"Replace"`), booleans as strings (`"False"`), path-named keys in
//! a path-less value (`{"name.givenName": "…"}`), `remove` with a `value`
//! listing the values to take out of a multi-valued attribute, and an
//! `add`/`replace` through an equality filter that matches nothing creating
//! the value (`emails[type eq "work"].value` on a user without a work
//! email adds one).

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::{self, AttrRef, Container, Expr, Op, RawPatchPath, RawPath, Subject, Target};
use crate::resource::{normalize_value, prune};
use crate::schema::{self, Attribute, Kind, Type};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Add,
    Replace,
    Remove,
}

/// Applies a PATCH request body to `attrs`.
pub(crate) fn apply(
    kind: Kind,
    attrs: &mut Map<String, Value>,
    body: Value,
) -> Result<(), ScimError> {
    let Value::Object(body) = body else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    let mut operations = None;
    for (key, value) in body {
        if key.eq_ignore_ascii_case("schemas") {
            schema::require_listed(&value, schema::PATCH_OP)?;
        } else if key.eq_ignore_ascii_case("Operations") {
            operations = Some(value);
        }
    }
    let Some(Value::Array(operations)) = operations else {
        return Err(ScimError::invalid_syntax("Operations must be an array"));
    };
    for operation in operations {
        apply_operation(kind, attrs, operation)?;
    }
    prune(attrs);
    Ok(())
}

fn apply_operation(
    kind: Kind,
    attrs: &mut Map<String, Value>,
    operation: Value,
) -> Result<(), ScimError> {
    let Value::Object(operation) = operation else {
        return Err(ScimError::invalid_syntax(
            "each operation must be an object",
        ));
    };
    let (mut name, mut path, mut value) = (None, None, None);
    for (key, v) in operation {
        match key.to_ascii_lowercase().as_str() {
            "op" => name = Some(v),
            "path" => path = Some(v),
            "value" => value = Some(v),
            _ => {}
        }
    }
    let op = match name
        .as_ref()
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("add") => Operation::Add,
        Some("replace") => Operation::Replace,
        Some("remove") => Operation::Remove,
        _ => {
            return Err(ScimError::invalid_syntax(
                "op must be \"add\", \"replace\" or \"remove\"",
            ))
        }
    };
    let path = match path {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(p),
        Some(_) => return Err(ScimError::invalid_path("path must be a string")),
    };
    match path {
        Some(path) => {
            let parsed = filter::parse_patch_path(&path)?;
            if op != Operation::Remove && value.is_none() {
                return Err(ScimError::invalid_value(format!("{path}: missing value")));
            }
            apply_path(kind, attrs, op, &parsed, value, true)
        }
        None if op == Operation::Remove => Err(ScimError::no_target("remove needs a path")),
        None => {
            let Some(Value::Object(values)) = value else {
                return Err(ScimError::invalid_value(
                    "without a path, value must be an object of attributes",
                ));
            };
            for (key, value) in values {
                if ["schemas", "id", "meta"]
                    .iter()
                    .any(|k| key.eq_ignore_ascii_case(k))
                {
                    continue;
                }
                let parsed = filter::parse_patch_path(&key)?;
                apply_path(kind, attrs, op, &parsed, Some(value), false)?;
            }
            Ok(())
        }
    }
}

/// Applies one operation at `path`. `explicit`: the client named the path
/// (writing a read-only attribute is then an error, where a path-less
/// value's read-only attributes are ignored, as in a PUT).
fn apply_path(
    kind: Kind,
    attrs: &mut Map<String, Value>,
    op: Operation,
    path: &RawPatchPath,
    value: Option<Value>,
    explicit: bool,
) -> Result<(), ScimError> {
    let attr = match filter::resolve(kind, &path.attr)? {
        Target::Extension(index) => {
            if path.filter.is_some() || path.sub.is_some() {
                return Err(ScimError::invalid_path(
                    "an extension has no values to filter",
                ));
            }
            return apply_extension(kind, attrs, op, index, value);
        }
        Target::Attr(attr) => attr,
    };
    if attr.container == Container::Common {
        return refuse_read_only(explicit, attr.attr);
    }
    let filter = match &path.filter {
        None => None,
        Some(raw) => {
            if attr.attr.ty != Type::Complex || !attr.attr.multi_valued {
                return Err(ScimError::invalid_path(format!(
                    "{} is not a multi-valued complex attribute",
                    attr.attr.name
                )));
            }
            let resolved = filter::resolve_element_filter(attr.attr, raw)
                .map_err(ScimError::into_invalid_path)?;
            Some((resolved, raw))
        }
    };
    let after = match &path.sub {
        None => None,
        Some(name) => Some(attr.attr.sub(name).ok_or_else(|| {
            ScimError::invalid_path(format!("{} has no sub-attribute {name:?}", attr.attr.name))
        })?),
    };
    let leaf = after.unwrap_or(attr.leaf());
    if attr.attr.read_only() || leaf.read_only() {
        return refuse_read_only(explicit, leaf);
    }
    let Some(container) = container_mut(kind, attrs, attr.container, op != Operation::Remove)
    else {
        return Ok(());
    };
    match filter {
        Some((filter, raw)) => {
            edit_filtered(container, op, attr.attr, (&filter, raw), after, value)
        }
        None => edit(container, op, attr, value),
    }
}

fn refuse_read_only(explicit: bool, attr: &Attribute) -> Result<(), ScimError> {
    if explicit {
        Err(ScimError::mutability(format!("{} is read-only", attr.name)))
    } else {
        Ok(())
    }
}

fn apply_extension(
    kind: Kind,
    attrs: &mut Map<String, Value>,
    op: Operation,
    index: usize,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let extension = kind.extensions()[index];
    let values = match (op, value) {
        (Operation::Remove, _) | (_, Some(Value::Null)) => {
            attrs.remove(extension.id);
            return Ok(());
        }
        (_, Some(Value::Object(values))) => values,
        _ => {
            return Err(ScimError::invalid_value(format!(
                "{} must be set with an object",
                extension.id
            )))
        }
    };
    for (name, value) in values {
        // Some clients send the extension as a model of its own, listing
        // its schema.
        if name.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let attr = extension.attribute(&name).ok_or_else(|| {
            ScimError::invalid_path(format!("unknown attribute {name:?} of {}", extension.id))
        })?;
        if attr.read_only() {
            continue;
        }
        let Some(container) = container_mut(kind, attrs, Container::Ext(index), true) else {
            continue;
        };
        let attr = AttrRef {
            container: Container::Ext(index),
            attr,
            sub: None,
            exact: false,
        };
        edit(container, op, attr, Some(value))?;
    }
    Ok(())
}

/// The object holding the attributes of `container`, created if asked.
fn container_mut(
    kind: Kind,
    attrs: &mut Map<String, Value>,
    container: Container,
    create: bool,
) -> Option<&mut Map<String, Value>> {
    match container {
        Container::Core => Some(attrs),
        Container::Ext(index) => {
            let id = kind.extensions()[index].id;
            if create {
                let slot = attrs.entry(id).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                slot.as_object_mut()
            } else {
                attrs.get_mut(id).and_then(Value::as_object_mut)
            }
        }
        Container::Common | Container::Element | Container::Absent => None,
    }
}

/// An operation on an attribute or `attribute.sub`, without a value filter.
fn edit(
    container: &mut Map<String, Value>,
    op: Operation,
    target: AttrRef,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let attr = target.attr;
    match (target.sub, op) {
        (None, Operation::Remove) => {
            match value {
                // `{"op":"remove","path":"members","value":[{"value":"…"}]}`
                Some(value) if attr.multi_valued && !value.is_null() => {
                    let gone = normalize_value(attr, value, true)?.unwrap_or(Value::Null);
                    let gone = gone.as_array().map(Vec::as_slice).unwrap_or_default();
                    if let Some(Value::Array(items)) = container.get_mut(attr.name) {
                        items.retain(|item| !gone.iter().any(|g| same_value(item, g)));
                    }
                }
                _ => {
                    container.remove(attr.name);
                }
            }
            Ok(())
        }
        (None, _) => set_attribute(container, op, attr, value),
        (Some(sub), Operation::Remove) => {
            match container.get_mut(attr.name) {
                Some(Value::Array(items)) => items.iter_mut().for_each(|item| {
                    if let Some(item) = item.as_object_mut() {
                        item.remove(sub.name);
                    }
                }),
                Some(Value::Object(object)) => {
                    object.remove(sub.name);
                }
                _ => {}
            }
            Ok(())
        }
        (Some(sub), _) => {
            let new = normalize_value(sub, value.unwrap_or(Value::Null), true)?;
            if !attr.multi_valued {
                let slot = container
                    .entry(attr.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                set_sub(slot, sub, new);
                return Ok(());
            }
            // `emails.value` without a filter: every value, or a first one.
            let items = list_mut(container, attr.name);
            if items.is_empty() {
                items.push(Value::Object(Map::new()));
            }
            for item in items.iter_mut() {
                set_sub(item, sub, new.clone());
            }
            Ok(())
        }
    }
}

/// An add or replace of a whole attribute: a multi-valued one gains (or,
/// replaced, is) the values, a complex one merges the sub-attributes given.
fn set_attribute(
    container: &mut Map<String, Value>,
    op: Operation,
    attr: &'static Attribute,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let Some(new) = normalize_value(attr, value.unwrap_or(Value::Null), true)? else {
        container.remove(attr.name);
        return Ok(());
    };
    match (attr.multi_valued, attr.ty, op) {
        (true, _, Operation::Replace) => {
            container.insert(attr.name.to_owned(), new);
        }
        (true, _, _) => {
            let items = list_mut(container, attr.name);
            let mut touched = Vec::new();
            for item in into_items(new) {
                match items.iter().position(|old| same_value(old, &item)) {
                    Some(at) => {
                        merge(&mut items[at], item);
                        touched.push(at);
                    }
                    None => {
                        items.push(item);
                        touched.push(items.len() - 1);
                    }
                }
            }
            demote_other_primaries(items, &touched);
        }
        (false, Type::Complex, _) => {
            let slot = container
                .entry(attr.name)
                .or_insert_with(|| Value::Object(Map::new()));
            merge(slot, new);
        }
        (false, _, _) => {
            container.insert(attr.name.to_owned(), new);
        }
    }
    Ok(())
}

/// An operation through a value filter (resolved, and as written):
/// `attr[filter]` or `attr[filter].sub`.
fn edit_filtered(
    container: &mut Map<String, Value>,
    op: Operation,
    attr: &'static Attribute,
    (filter, raw_filter): (&Expr<AttrRef>, &Expr<RawPath>),
    sub: Option<&'static Attribute>,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let items = list_mut(container, attr.name);
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| {
            item.as_object()
                .is_some_and(|o| filter::matches(filter, Subject::Element(o)))
        })
        .map(|(i, _)| i)
        .collect();
    if op == Operation::Remove {
        match sub {
            None => {
                let mut index = 0;
                items.retain(|_| {
                    let keep = !matched.contains(&index);
                    index += 1;
                    keep
                });
            }
            Some(sub) => {
                for &i in &matched {
                    if let Some(item) = items[i].as_object_mut() {
                        item.remove(sub.name);
                    }
                }
            }
        }
        return Ok(());
    }
    let new = match sub {
        None => normalize_value(attr, value.unwrap_or(Value::Null), false)?,
        Some(sub) => normalize_value(sub, value.unwrap_or(Value::Null), true)?,
    };
    let apply = |item: &mut Value| match (sub, &new) {
        (None, Some(new)) => merge(item, new.clone()),
        (None, None) => {}
        (Some(sub), new) => set_sub(item, sub, new.clone()),
    };
    let touched = if matched.is_empty() {
        let Some(seed) = equality_seed(attr, raw_filter) else {
            return Err(ScimError::no_target(format!(
                "no value of {} matches the filter",
                attr.name
            )));
        };
        let mut item = Value::Object(seed);
        apply(&mut item);
        items.push(item);
        vec![items.len() - 1]
    } else {
        for &i in &matched {
            apply(&mut items[i]);
        }
        matched
    };
    demote_other_primaries(items, &touched);
    Ok(())
}

/// The value of `parent` an equality filter describes (`type eq "work"
/// and primary eq true`), as written, to create when the filter matches
/// nothing; `None` for other filters.
fn equality_seed(parent: &Attribute, filter: &Expr<RawPath>) -> Option<Map<String, Value>> {
    match filter {
        Expr::Compare(raw, Op::Eq, value) if !value.is_null() => {
            let sub = parent.sub(&raw.name)?;
            let value = normalize_value(sub, value.clone(), true).ok()??;
            let mut seed = Map::new();
            seed.insert(sub.name.to_owned(), value);
            Some(seed)
        }
        Expr::And(a, b) => {
            let mut seed = equality_seed(parent, a)?;
            seed.extend(equality_seed(parent, b)?);
            Some(seed)
        }
        _ => None,
    }
}

/// The list stored under `name`, created empty (and replacing a value
/// that is not a list).
fn list_mut<'a>(container: &'a mut Map<String, Value>, name: &str) -> &'a mut Vec<Value> {
    let slot = container
        .entry(name)
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(items) => items,
        _ => unreachable!("just made a list"),
    }
}

fn into_items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        single => vec![single],
    }
}

/// Sets (or with `None`, removes) `sub` in the complex value `slot`.
fn set_sub(slot: &mut Value, sub: &Attribute, value: Option<Value>) {
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Some(object) = slot.as_object_mut() {
        match value {
            Some(value) => {
                object.insert(sub.name.to_owned(), value);
            }
            None => {
                object.remove(sub.name);
            }
        }
    }
}

/// Merges the sub-attributes of `new` into the complex value `slot`:
/// those `new` names are replaced, the others kept (RFC 7644 §3.5.2.3).
fn merge(slot: &mut Value, new: Value) {
    match (slot.as_object_mut(), new) {
        (Some(object), Value::Object(new)) => object.extend(new),
        (_, new) => *slot = new,
    }
}

/// Whether two values of a multi-valued attribute are the same value: the
/// same `value` (and `type`, when both have one), or equal throughout for
/// values without a `value`.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.get("value"), b.get("value")) {
        (Some(x), Some(y)) => {
            x == y
                && match (a.get("type"), b.get("type")) {
                    (Some(s), Some(t)) => s == t,
                    _ => true,
                }
        }
        (None, None) => a == b,
        _ => false,
    }
}

/// A value made primary takes the flag from the others (RFC 7644 §3.5.2).
fn demote_other_primaries(items: &mut [Value], touched: &[usize]) {
    let promoted = touched
        .iter()
        .any(|&i| items.get(i).and_then(|v| v.get("primary")) == Some(&Value::Bool(true)));
    if !promoted {
        return;
    }
    for (i, item) in items.iter_mut().enumerate() {
        if touched.contains(&i) {
            continue;
        }
        if let Some(primary) = item.get_mut("primary") {
            if primary == &Value::Bool(true) {
                *primary = Value::Bool(false);
            }
        }
    }
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;
