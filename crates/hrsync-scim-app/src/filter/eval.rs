//! Evaluating a resolved filter against a resource or one value of a
//! multi-valued attribute.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::{AttrRef, Container, Expr, Op};
use crate::schema::{Kind, Type};
use crate::store::Resource;

/// What a filter is evaluated against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    /// A whole resource of type `kind`.
    Resource(Kind, &'a Resource),
    /// One value of a multi-valued complex attribute.
    Element(&'a Map<String, Value>),
}

/// Whether `subject` matches `expr`.
pub(crate) fn matches(expr: &Expr<AttrRef>, subject: Subject<'_>) -> bool {
    match expr {
        Expr::And(a, b) => matches(a, subject) && matches(b, subject),
        Expr::Or(a, b) => matches(a, subject) || matches(b, subject),
        Expr::Not(inner) => !matches(inner, subject),
        Expr::Present(attr) => values(attr, subject).iter().any(|v| is_assigned(v)),
        Expr::Compare(attr, op, expected) => {
            let found = values(attr, subject);
            match (op, expected) {
                (Op::Eq, Value::Null) => !found.iter().any(|v| is_assigned(v)),
                (Op::Ne, Value::Null) => found.iter().any(|v| is_assigned(v)),
                // `ne` is the negation of `eq`: no value equals.
                (Op::Ne, _) => !found.iter().any(|v| compare(attr, v, Op::Eq, expected)),
                _ => found.iter().any(|v| compare(attr, v, *op, expected)),
            }
        }
        Expr::ValuePath(attr, inner) => values(attr, subject).iter().any(|v| {
            v.as_object()
                .is_some_and(|o| matches(inner, Subject::Element(o)))
        }),
    }
}

fn is_assigned(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Every value `attr` designates in `subject`, multi-valued attributes
/// flattened.
pub(crate) fn values<'a>(attr: &AttrRef, subject: Subject<'a>) -> Vec<Cow<'a, Value>> {
    let top: Option<Cow<'a, Value>> = match (subject, attr.container) {
        (Subject::Element(element), _) => element.get(attr.attr.name).map(Cow::Borrowed),
        (Subject::Resource(kind, resource), Container::Common) => {
            if attr.attr.name == "id" {
                Some(Cow::Owned(Value::String(resource.id.clone())))
            } else {
                Some(Cow::Owned(resource.meta(kind)))
            }
        }
        (Subject::Resource(_, resource), Container::Core) => {
            resource.attrs.get(attr.attr.name).map(Cow::Borrowed)
        }
        (Subject::Resource(kind, resource), Container::Ext(index)) => resource
            .attrs
            .get(kind.extensions()[index].id)
            .and_then(|e| e.get(attr.attr.name))
            .map(Cow::Borrowed),
        (Subject::Resource(..), Container::Element | Container::Absent) => None,
    };
    let Some(top) = top else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push_sub = |v: Cow<'a, Value>| match attr.sub {
        None => out.push(v),
        Some(sub) => match v {
            Cow::Borrowed(v) => {
                if let Some(s) = v.get(sub.name) {
                    out.push(Cow::Borrowed(s));
                }
            }
            Cow::Owned(mut v) => {
                if let Some(s) = v.get_mut(sub.name) {
                    out.push(Cow::Owned(s.take()));
                }
            }
        },
    };
    match top {
        Cow::Borrowed(Value::Array(items)) => items.iter().for_each(|v| push_sub(Cow::Borrowed(v))),
        Cow::Owned(Value::Array(items)) => items.into_iter().for_each(|v| push_sub(Cow::Owned(v))),
        other => push_sub(other),
    }
    out
}

/// `actual op expected` for attribute `attr`.
fn compare(attr: &AttrRef, actual: &Value, op: Op, expected: &Value) -> bool {
    match attr.leaf().ty {
        Type::Boolean => {
            let expected = match expected {
                Value::Bool(b) => Some(*b),
                Value::String(s) => parse_bool(s),
                _ => None,
            };
            matches!((actual.as_bool(), expected, op), (Some(a), Some(e), Op::Eq) if a == e)
        }
        Type::Integer => match (actual.as_f64(), expected.as_f64()) {
            (Some(a), Some(e)) => ordering_matches(a.partial_cmp(&e), op),
            _ => false,
        },
        Type::DateTime => {
            let (Some(a), Some(e)) = (actual.as_str(), expected.as_str()) else {
                return false;
            };
            let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
            match (parse(a), parse(e)) {
                (Some(a), Some(e)) if !op.is_substring() => ordering_matches(a.partial_cmp(&e), op),
                _ => compare_strings(a, e, op, true),
            }
        }
        _ => match (actual.as_str(), expected.as_str()) {
            (Some(a), Some(e)) => compare_strings(a, e, op, attr.case_exact()),
            _ => false,
        },
    }
}

/// `actual op expected`; for a case-insensitive comparison, `expected` is
/// already folded (see `map_expr`).
fn compare_strings(actual: &str, expected: &str, op: Op, case_exact: bool) -> bool {
    if !case_exact && actual.is_ascii() {
        // Without allocating: an ASCII value folds to its ASCII lowercase.
        let (a, e) = (actual.as_bytes(), expected.as_bytes());
        let at = |i: usize| a[i..i + e.len()].eq_ignore_ascii_case(e);
        match op {
            Op::Eq => return a.eq_ignore_ascii_case(e),
            Op::Ne => return !a.eq_ignore_ascii_case(e),
            Op::Sw => return a.len() >= e.len() && at(0),
            Op::Ew => return a.len() >= e.len() && at(a.len() - e.len()),
            Op::Co => {
                return e.is_empty() || (a.len() >= e.len() && (0..=a.len() - e.len()).any(at))
            }
            Op::Gt | Op::Ge | Op::Lt | Op::Le => {}
        }
    }
    let actual: Cow<'_, str> = if case_exact {
        actual.into()
    } else {
        fold(actual)
    };
    match op {
        Op::Eq => actual == expected,
        Op::Ne => actual != expected,
        Op::Co => actual.contains(expected),
        Op::Sw => actual.starts_with(expected),
        Op::Ew => actual.ends_with(expected),
        _ => ordering_matches(Some((*actual).cmp(expected)), op),
    }
}

fn ordering_matches(ordering: Option<Ordering>, op: Op) -> bool {
    let Some(ordering) = ordering else {
        return false;
    };
    match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
        Op::Co | Op::Sw | Op::Ew => false,
    }
}

/// Case folding for case-insensitive comparisons (and index keys).
pub(crate) fn fold(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_uppercase) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// `true`/`false` in any case, as some clients send booleans as strings.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}
