//! SCIM filters and attribute paths (RFC 7644 §3.4.2.2, §3.5.2).
//!
//! Parsing yields expressions over raw paths ([`RawPath`]); resolving binds
//! every path to its attribute definition for one resource type, checking
//! that each operator suits the attribute's type, so evaluation never meets
//! an unknown attribute.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::schema::{Attribute, Kind, Schema, Type, ABSENT, COMMON};
use crate::store::Resource;

/// Nesting deeper than this is refused, so that a hostile filter cannot
/// exhaust the stack.
const MAX_DEPTH: usize = 32;

/// An attribute path as written: `[URN ":"] name ["." sub]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawPath {
    pub(crate) urn: Option<String>,
    pub(crate) name: String,
    pub(crate) sub: Option<String>,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn parse(word: &str) -> Option<Op> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }

    fn is_ordering(self) -> bool {
        matches!(self, Op::Gt | Op::Ge | Op::Lt | Op::Le)
    }

    fn is_substring(self) -> bool {
        matches!(self, Op::Co | Op::Sw | Op::Ew)
    }
}

/// A filter expression over paths of type `P`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr<P> {
    /// `path op value`.
    Compare(P, Op, Value),
    /// `path pr`.
    Present(P),
    /// `not (expr)`.
    Not(Box<Expr<P>>),
    /// `a and b`.
    And(Box<Expr<P>>, Box<Expr<P>>),
    /// `a or b`.
    Or(Box<Expr<P>>, Box<Expr<P>>),
    /// `path[expr]`: some value of a multi-valued complex attribute matches
    /// `expr`, whose paths name its sub-attributes.
    ValuePath(P, Box<Expr<P>>),
}

/// A PATCH path as written: `attrPath`, or `valuePath ["." subAttr]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawPatchPath {
    pub(crate) attr: RawPath,
    pub(crate) filter: Option<Expr<RawPath>>,
    pub(crate) sub: Option<String>,
}

/// Parses a filter (`?filter=` or a search request's `filter`).
pub(crate) fn parse_filter(input: &str) -> Result<Expr<RawPath>, ScimError> {
    let mut parser = Parser::new(input);
    let expr = parser.or_expr(0)?;
    parser.skip_ws();
    if !parser.at_end() {
        return Err(parser.error("unexpected input"));
    }
    Ok(expr)
}

/// Parses a PATCH operation's `path`.
pub(crate) fn parse_patch_path(input: &str) -> Result<RawPatchPath, ScimError> {
    let mut parser = Parser::new(input);
    parser.skip_ws();
    let attr = parser.path()?;
    let mut filter = None;
    let mut sub = None;
    if parser.eat('[') {
        if attr.sub.is_some() {
            return Err(ScimError::invalid_path(format!(
                "{input:?}: a value filter applies to an attribute, not to a sub-attribute"
            )));
        }
        filter = Some(parser.or_expr(1).map_err(ScimError::into_invalid_path)?);
        parser.skip_ws();
        if !parser.eat(']') {
            return Err(ScimError::invalid_path(format!("{input:?}: missing ']'")));
        }
        if parser.eat('.') {
            let name = parser.word();
            if name.is_empty() {
                return Err(ScimError::invalid_path(format!(
                    "{input:?}: missing the sub-attribute after '.'"
                )));
            }
            sub = Some(name.to_owned());
        }
    }
    parser.skip_ws();
    if !parser.at_end() {
        return Err(ScimError::invalid_path(format!(
            "{input:?}: unexpected input at offset {}",
            parser.pos
        )));
    }
    Ok(RawPatchPath { attr, filter, sub })
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser { input, pos: 0 }
    }

    fn error(&self, what: &str) -> ScimError {
        ScimError::invalid_filter(format!(
            "{what} at offset {} of filter {:?}",
            self.pos, self.input
        ))
    }

    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.input.len() - trimmed.len();
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// A run of characters that may appear in an attribute path or keyword.
    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '$' | ':' | '.')))
            .unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// Consumes keyword `kw` (any case) if it comes next as a whole word.
    fn keyword(&mut self, kw: &str) -> bool {
        let rest = self.rest();
        if rest.len() >= kw.len()
            && rest.is_char_boundary(kw.len())
            && rest[..kw.len()].eq_ignore_ascii_case(kw)
        {
            let after = rest[kw.len()..].chars().next();
            if after.is_none_or(|c| c.is_whitespace() || c == '(') {
                self.pos += kw.len();
                return true;
            }
        }
        false
    }

    fn or_expr(&mut self, depth: usize) -> Result<Expr<RawPath>, ScimError> {
        let mut left = self.and_expr(depth)?;
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.keyword("or") {
                let right = self.and_expr(depth)?;
                left = Expr::Or(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn and_expr(&mut self, depth: usize) -> Result<Expr<RawPath>, ScimError> {
        let mut left = self.unary(depth)?;
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.keyword("and") {
                let right = self.unary(depth)?;
                left = Expr::And(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Expr<RawPath>, ScimError> {
        if depth > MAX_DEPTH {
            return Err(self.error("filter nested too deeply"));
        }
        self.skip_ws();
        if self.keyword("not") {
            self.skip_ws();
            if !self.eat('(') {
                return Err(self.error("expected '(' after 'not'"));
            }
            let inner = self.group_rest(depth)?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if self.eat('(') {
            return self.group_rest(depth);
        }
        self.attr_expr(depth)
    }

    /// The rest of a parenthesized group, after its '('.
    fn group_rest(&mut self, depth: usize) -> Result<Expr<RawPath>, ScimError> {
        let inner = self.or_expr(depth + 1)?;
        self.skip_ws();
        if !self.eat(')') {
            return Err(self.error("expected ')'"));
        }
        Ok(inner)
    }

    fn path(&mut self) -> Result<RawPath, ScimError> {
        let start = self.pos;
        let word = self.word();
        if word.is_empty() {
            return Err(self.error("expected an attribute name"));
        }
        split_path(word).ok_or_else(|| {
            self.pos = start;
            self.error("invalid attribute path")
        })
    }

    fn attr_expr(&mut self, depth: usize) -> Result<Expr<RawPath>, ScimError> {
        let path = self.path()?;
        if self.eat('[') {
            if path.sub.is_some() {
                return Err(
                    self.error("a value filter applies to an attribute, not a sub-attribute")
                );
            }
            let inner = self.or_expr(depth + 1)?;
            self.skip_ws();
            if !self.eat(']') {
                return Err(self.error("expected ']'"));
            }
            return Ok(Expr::ValuePath(path, Box::new(inner)));
        }
        self.skip_ws();
        let op_start = self.pos;
        let word = self.word();
        if word.eq_ignore_ascii_case("pr") {
            return Ok(Expr::Present(path));
        }
        let Some(op) = Op::parse(word) else {
            self.pos = op_start;
            return Err(self.error("expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)"));
        };
        self.skip_ws();
        let value = self.value()?;
        Ok(Expr::Compare(path, op, value))
    }

    fn value(&mut self) -> Result<Value, ScimError> {
        let rest = self.rest();
        if rest.starts_with('"') {
            // Find the closing quote, stepping over escapes, then let the
            // JSON parser decode the string (filters quote as JSON does).
            let bytes = rest.as_bytes();
            let mut i = 1;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' => break,
                    _ => i += 1,
                }
            }
            if i >= bytes.len() {
                return Err(self.error("unterminated string"));
            }
            let literal = &rest[..=i];
            let value: Value =
                serde_json::from_str(literal).map_err(|_| self.error("invalid string literal"))?;
            self.pos += literal.len();
            return Ok(value);
        }
        let start = self.pos;
        let len = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | ']'))
            .unwrap_or(rest.len());
        let literal = &rest[..len];
        let value = match literal.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ => match serde_json::from_str::<Value>(literal) {
                Ok(number @ Value::Number(_)) => number,
                _ => {
                    self.pos = start;
                    return Err(self.error(
                        "expected a value (a quoted string, a number, true, false or null)",
                    ));
                }
            },
        };
        self.pos += len;
        Ok(value)
    }
}

/// Parses one attribute path (as listed in `attributes`).
pub(crate) fn parse_attr_path(input: &str) -> Option<RawPath> {
    split_path(input)
}

/// Splits `urn:…:Schema:name.sub`, `name.sub` or `name`.
fn split_path(word: &str) -> Option<RawPath> {
    let (urn, rest) = if word.len() > 4 && word[..4].eq_ignore_ascii_case("urn:") {
        let colon = word.rfind(':')?;
        (Some(word[..colon].to_owned()), &word[colon + 1..])
    } else {
        (None, word)
    };
    let (name, sub) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    if name.is_empty() || sub.is_some_and(|s| s.is_empty() || s.contains('.')) {
        return None;
    }
    Some(RawPath {
        urn,
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    })
}

/// Where a resolved attribute lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Container {
    /// `id` and `meta`.
    Common,
    /// The core schema (and `externalId`).
    Core,
    /// Extension number `n` of the resource type, stored under its URN.
    Ext(usize),
    /// A value of a multi-valued complex attribute (inside a value filter).
    Element,
    /// Nowhere: an attribute the resource type does not have (in a query
    /// over several types), which never has a value.
    Absent,
}

/// A path bound to its definition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttrRef {
    pub(crate) container: Container,
    pub(crate) attr: &'static Attribute,
    pub(crate) sub: Option<&'static Attribute>,
    /// Compare strings case-exactly whatever the definition says (the
    /// `case-sensitive-filter` quirk).
    pub(crate) exact: bool,
}

impl AttrRef {
    /// Whether strings compare case-exactly.
    pub(crate) fn case_exact(&self) -> bool {
        self.exact || self.leaf().case_exact
    }

    /// The definition of what the path designates.
    pub(crate) fn leaf(&self) -> &'static Attribute {
        self.sub.unwrap_or(self.attr)
    }
}

/// What a top-level path designates.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// An attribute or sub-attribute.
    Attr(AttrRef),
    /// A whole extension object (`urn:…:enterprise:2.0:User`).
    Extension(usize),
}

/// Binds `raw` to its definition for resource type `kind`.
///
/// Extension attributes should be qualified by their schema URN (RFC 7644
/// §3.10); unqualified names that only an extension defines are accepted
/// too, as many clients write them so.
pub(crate) fn resolve(kind: Kind, raw: &RawPath) -> Result<Target, ScimError> {
    let unknown = || {
        ScimError::invalid_path(format!(
            "unknown attribute {:?} for resource type {}",
            display_path(raw),
            kind.name()
        ))
    };
    let (container, attr): (Container, &'static Attribute) = match &raw.urn {
        Some(urn) => {
            let full = format!("{urn}:{}", raw.name);
            if let Some((index, _)) = kind.extension(&full) {
                if raw.sub.is_some() {
                    return Err(unknown());
                }
                return Ok(Target::Extension(index));
            }
            if urn.eq_ignore_ascii_case(kind.core().id) {
                let attr = lookup(kind.core(), &raw.name).ok_or_else(unknown)?;
                (Container::Core, attr)
            } else if let Some((index, schema)) = kind.extension(urn) {
                let attr = lookup(schema, &raw.name).ok_or_else(unknown)?;
                (Container::Ext(index), attr)
            } else {
                return Err(unknown());
            }
        }
        None => {
            if let Some(attr) = COMMON
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(&raw.name))
            {
                (Container::Common, attr)
            } else if let Some(attr) = lookup(kind.core(), &raw.name) {
                (Container::Core, attr)
            } else {
                kind.extensions()
                    .iter()
                    .enumerate()
                    .find_map(|(i, s)| lookup(s, &raw.name).map(|a| (Container::Ext(i), a)))
                    .ok_or_else(unknown)?
            }
        }
    };
    let sub = match &raw.sub {
        None => None,
        Some(name) => Some(attr.sub(name).ok_or_else(unknown)?),
    };
    Ok(Target::Attr(AttrRef {
        container,
        attr,
        sub,
        exact: false,
    }))
}

fn lookup(schema: &'static Schema, name: &str) -> Option<&'static Attribute> {
    schema.attribute(name)
}

fn display_path(raw: &RawPath) -> String {
    let mut out = String::new();
    if let Some(urn) = &raw.urn {
        out.push_str(urn);
        out.push(':');
    }
    out.push_str(&raw.name);
    if let Some(sub) = &raw.sub {
        out.push('.');
        out.push_str(sub);
    }
    out
}

/// Binds every path of a filter for resource type `kind`.
#[cfg(test)]
pub(crate) fn resolve_filter(kind: Kind, expr: &Expr<RawPath>) -> Result<Expr<AttrRef>, ScimError> {
    resolve_filter_as(kind, expr, false, false)
}

/// Binds every path of a filter for resource type `kind`. With `lenient`,
/// the attributes it does not have are taken as never having a value: for
/// a query over several types (`userName eq "x" or displayName eq "y"` at
/// the root). With `exact`, every string compares case-exactly (the
/// `case-sensitive-filter` quirk).
pub(crate) fn resolve_filter_as(
    kind: Kind,
    expr: &Expr<RawPath>,
    lenient: bool,
    exact: bool,
) -> Result<Expr<AttrRef>, ScimError> {
    let absent = AttrRef {
        container: Container::Absent,
        attr: &ABSENT,
        sub: None,
        exact,
    };
    let bind = |raw: &RawPath| -> Result<AttrRef, ScimError> {
        match resolve(kind, raw) {
            Ok(Target::Attr(attr)) => Ok(AttrRef { exact, ..attr }),
            Ok(Target::Extension(_)) => Err(ScimError::invalid_filter(format!(
                "{:?} is a schema, not an attribute",
                display_path(raw)
            ))),
            Err(_) if lenient => Ok(absent),
            Err(error) => Err(error.into_invalid_filter()),
        }
    };
    map_expr(expr, &|raw| bind(raw), &|raw, inner| {
        let attr = bind(raw)?;
        if attr.container == Container::Absent {
            // No values, so no value matches: whatever `inner` says.
            return Ok((attr, Expr::Present(absent)));
        }
        if attr.sub.is_some() || attr.attr.ty != Type::Complex || !attr.attr.multi_valued {
            return Err(ScimError::invalid_filter(format!(
                "{:?} is not a multi-valued complex attribute",
                display_path(raw)
            )));
        }
        let inner = resolve_element_filter_as(attr.attr, inner, exact)?;
        Ok((attr, inner))
    })
}

/// Binds the paths of a value filter to the sub-attributes of `parent`.
pub(crate) fn resolve_element_filter(
    parent: &'static Attribute,
    expr: &Expr<RawPath>,
) -> Result<Expr<AttrRef>, ScimError> {
    resolve_element_filter_as(parent, expr, false)
}

fn resolve_element_filter_as(
    parent: &'static Attribute,
    expr: &Expr<RawPath>,
    exact: bool,
) -> Result<Expr<AttrRef>, ScimError> {
    let bind = |raw: &RawPath| -> Result<AttrRef, ScimError> {
        let sub = (raw.urn.is_none() && raw.sub.is_none())
            .then(|| parent.sub(&raw.name))
            .flatten()
            .ok_or_else(|| {
                ScimError::invalid_filter(format!(
                    "{:?} is not a sub-attribute of {}",
                    display_path(raw),
                    parent.name
                ))
            })?;
        Ok(AttrRef {
            container: Container::Element,
            attr: sub,
            sub: None,
            exact,
        })
    };
    map_expr(expr, &bind, &|_, _| {
        Err(ScimError::invalid_filter(
            "value filters cannot be nested".to_owned(),
        ))
    })
}

type ValuePathFn<'f> =
    dyn Fn(&RawPath, &Expr<RawPath>) -> Result<(AttrRef, Expr<AttrRef>), ScimError> + 'f;

fn map_expr(
    expr: &Expr<RawPath>,
    bind: &dyn Fn(&RawPath) -> Result<AttrRef, ScimError>,
    value_path: &ValuePathFn<'_>,
) -> Result<Expr<AttrRef>, ScimError> {
    Ok(match expr {
        Expr::Compare(raw, op, value) => {
            let mut attr = bind(raw)?;
            if attr.container == Container::Absent {
                return Ok(Expr::Compare(attr, *op, value.clone()));
            }
            // A complex attribute compared as a whole means its `value`
            // (`emails eq "…"` is `emails.value eq "…"`).
            if attr.sub.is_none() && attr.attr.ty == Type::Complex {
                attr.sub = Some(attr.attr.sub("value").ok_or_else(|| {
                    ScimError::invalid_filter(format!(
                        "{:?} is complex: name one of its sub-attributes",
                        display_path(raw)
                    ))
                })?);
            }
            check_operator(attr.leaf(), *op, value)?;
            // Fold a case-insensitive operand once, not at each comparison.
            let value = match value {
                Value::String(s) if !attr.case_exact() && is_textual(attr.leaf()) => {
                    Value::String(fold(s).into_owned())
                }
                other => other.clone(),
            };
            Expr::Compare(attr, *op, value)
        }
        Expr::Present(raw) => Expr::Present(bind(raw)?),
        Expr::Not(inner) => Expr::Not(Box::new(map_expr(inner, bind, value_path)?)),
        Expr::And(a, b) => Expr::And(
            Box::new(map_expr(a, bind, value_path)?),
            Box::new(map_expr(b, bind, value_path)?),
        ),
        Expr::Or(a, b) => Expr::Or(
            Box::new(map_expr(a, bind, value_path)?),
            Box::new(map_expr(b, bind, value_path)?),
        ),
        Expr::ValuePath(raw, inner) => {
            let (attr, inner) = value_path(raw, inner)?;
            Expr::ValuePath(attr, Box::new(inner))
        }
    })
}

fn check_operator(attr: &Attribute, op: Op, value: &Value) -> Result<(), ScimError> {
    let refuse = |why: &str| {
        Err(ScimError::invalid_filter(format!(
            "{:?} cannot be applied to {} ({why})",
            op, attr.name
        )))
    };
    match attr.ty {
        Type::Boolean if op.is_ordering() || op.is_substring() => refuse("a boolean"),
        Type::Binary if op.is_ordering() => refuse("a binary"),
        Type::Integer if op.is_substring() => refuse("a number"),
        _ if value.is_null() && op != Op::Eq && op != Op::Ne => {
            refuse("null only compares with eq and ne")
        }
        _ => Ok(()),
    }
}

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

fn is_textual(attr: &Attribute) -> bool {
    matches!(attr.ty, Type::String | Type::Reference | Type::Binary)
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::ENTERPRISE_USER;

    fn path(name: &str) -> RawPath {
        split_path(name).expect("valid path")
    }

    fn cmp(name: &str, op: Op, value: Value) -> Expr<RawPath> {
        Expr::Compare(path(name), op, value)
    }

    #[test]
    fn parses_a_comparison() {
        assert_eq!(
            parse_filter(r#"userName eq "bjensen""#).expect("parse"),
            cmp("userName", Op::Eq, json!("bjensen"))
        );
        assert_eq!(
            parse_filter(r#"  userName   EQ   "b j"  "#).expect("parse"),
            cmp("userName", Op::Eq, json!("b j"))
        );
    }

    #[test]
    fn parses_values_of_every_kind() {
        assert_eq!(
            parse_filter("active eq true").expect("parse"),
            cmp("active", Op::Eq, json!(true))
        );
        assert_eq!(
            parse_filter("x ge -1.5e2").expect("parse"),
            cmp("x", Op::Ge, json!(-150.0))
        );
        assert_eq!(
            parse_filter("x eq null").expect("parse"),
            cmp("x", Op::Eq, Value::Null)
        );
        assert_eq!(
            parse_filter(r#"x eq "a \"quoted\" \\ \u00e9""#).expect("parse"),
            cmp("x", Op::Eq, json!("a \"quoted\" \\ é"))
        );
        assert_eq!(
            parse_filter("title pr").expect("parse"),
            Expr::Present(path("title"))
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let parsed = parse_filter(r#"a eq "1" or b eq "2" and c eq "3""#).expect("parse");
        assert_eq!(
            parsed,
            Expr::Or(
                Box::new(cmp("a", Op::Eq, json!("1"))),
                Box::new(Expr::And(
                    Box::new(cmp("b", Op::Eq, json!("2"))),
                    Box::new(cmp("c", Op::Eq, json!("3")))
                ))
            )
        );
        let grouped = parse_filter(r#"(a eq "1" or b eq "2") and not (c pr)"#).expect("parse");
        assert_eq!(
            grouped,
            Expr::And(
                Box::new(Expr::Or(
                    Box::new(cmp("a", Op::Eq, json!("1"))),
                    Box::new(cmp("b", Op::Eq, json!("2")))
                )),
                Box::new(Expr::Not(Box::new(Expr::Present(path("c")))))
            )
        );
    }

    #[test]
    fn parses_urns_and_value_paths() {
        let parsed =
            parse_filter(&format!(r#"{ENTERPRISE_USER}:manager.value eq "42""#)).expect("parse");
        assert_eq!(
            parsed,
            Expr::Compare(
                RawPath {
                    urn: Some(ENTERPRISE_USER.to_owned()),
                    name: "manager".to_owned(),
                    sub: Some("value".to_owned())
                },
                Op::Eq,
                json!("42")
            )
        );
        let parsed =
            parse_filter(r#"emails[type eq "work" and value co "@example.com"]"#).expect("parse");
        assert!(matches!(parsed, Expr::ValuePath(ref p, _) if p.name == "emails"));
    }

    #[test]
    fn refuses_malformed_filters() {
        for bad in [
            "",
            "userName",
            "userName eq",
            r#"userName eq "unterminated"#,
            r#"userName like "x""#,
            r#"(userName eq "x""#,
            r#"userName eq "x" and"#,
            r#"emails[type eq "work""#,
            r#"userName eq "x" trailing"#,
            "userName eq bareword",
        ] {
            let error = parse_filter(bad).expect_err(bad);
            assert_eq!(error.scim_type(), Some("invalidFilter"), "{bad}");
        }
        let deep = format!("{}a pr{}", "(".repeat(100), ")".repeat(100));
        assert!(parse_filter(&deep).is_err());
    }

    #[test]
    fn parses_patch_paths() {
        let p = parse_patch_path(r#"members[value eq "2819c223"]"#).expect("parse");
        assert_eq!(p.attr.name, "members");
        assert_eq!(p.filter, Some(cmp("value", Op::Eq, json!("2819c223"))));
        assert_eq!(p.sub, None);

        let p = parse_patch_path(r#"emails[type eq "work"].value"#).expect("parse");
        assert_eq!(p.attr.name, "emails");
        assert_eq!(p.sub.as_deref(), Some("value"));

        let p = parse_patch_path("name.givenName").expect("parse");
        assert_eq!(p.attr.sub.as_deref(), Some("givenName"));

        let p = parse_patch_path(ENTERPRISE_USER).expect("parse");
        assert_eq!(
            p.attr.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0")
        );
        assert!(matches!(
            resolve(Kind::User, &p.attr),
            Ok(Target::Extension(0))
        ));

        for bad in [
            "",
            "emails[type eq \"work\"",
            "emails[type eq \"work\"].",
            "a b",
        ] {
            assert!(parse_patch_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolves_names_case_insensitively() {
        let Ok(Target::Attr(a)) = resolve(Kind::User, &path("USERNAME")) else {
            panic!("userName")
        };
        assert_eq!((a.container, a.attr.name), (Container::Core, "userName"));
        let Ok(Target::Attr(a)) = resolve(
            Kind::User,
            &path("urn:ietf:params:scim:schemas:core:2.0:User:Name.GivenName"),
        ) else {
            panic!("name.givenName")
        };
        assert_eq!(a.leaf().name, "givenName");
        let Ok(Target::Attr(a)) = resolve(Kind::User, &path("department")) else {
            panic!("department")
        };
        assert_eq!(a.container, Container::Ext(0));
        assert!(resolve(Kind::User, &path("nope")).is_err());
        assert!(resolve(Kind::Group, &path("userName")).is_err());
    }

    #[test]
    fn refuses_operators_unfit_for_the_type() {
        for bad in [
            "active gt true",
            "active co \"t\"",
            "userName gt null",
            "name eq \"x\"",
        ] {
            let parsed = parse_filter(bad).expect(bad);
            assert!(resolve_filter(Kind::User, &parsed).is_err(), "{bad}");
        }
        let parsed = parse_filter("emails eq \"a@b.c\"").expect("parse");
        let Expr::Compare(attr, ..) = resolve_filter(Kind::User, &parsed).expect("resolve") else {
            panic!("compare")
        };
        assert_eq!(attr.leaf().name, "value");
    }

    fn user(attrs: Value) -> Resource {
        let Value::Object(attrs) = attrs else {
            panic!("object")
        };
        Resource::for_tests("id-1", attrs)
    }

    fn check(filter: &str, subject: &Resource) -> bool {
        let parsed = parse_filter(filter).expect(filter);
        let resolved = resolve_filter(Kind::User, &parsed).expect(filter);
        matches(&resolved, Subject::Resource(Kind::User, subject))
    }

    #[test]
    fn evaluates_filters() {
        let u = user(json!({
            "userName": "BJensen@Example.com",
            "externalId": "E-1",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "name": {"givenName": "Barbara"},
            ENTERPRISE_USER: {"department": "Sales", "manager": {"value": "m-1"}}
        }));
        // userName is case-insensitive; externalId and id are case-exact.
        assert!(check(r#"userName eq "bjensen@example.com""#, &u));
        assert!(check(r#"externalId eq "E-1""#, &u));
        assert!(!check(r#"externalId eq "e-1""#, &u));
        assert!(check(r#"id eq "id-1""#, &u));
        assert!(check(r#"userName sw "bjen" and userName ew ".COM""#, &u));
        assert!(check(r#"name.givenName co "arb""#, &u));
        assert!(check("active eq true", &u));
        assert!(check(r#"active eq "True""#, &u));
        assert!(!check("active ne true", &u));
        assert!(check(r#"emails.value eq "babs@jensen.org""#, &u));
        assert!(check(r#"emails eq "babs@jensen.org""#, &u));
        assert!(check(
            r#"emails[type eq "work" and value ew "example.com"]"#,
            &u
        ));
        assert!(!check(
            r#"emails[type eq "home" and value ew "example.com"]"#,
            &u
        ));
        assert!(check(r#"emails[type eq "work"] and not (title pr)"#, &u));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales""#,
            &u
        ));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m-1""#,
            &u
        ));
        assert!(check(r#"title eq null"#, &u));
        assert!(check(r#"meta.resourceType eq "User""#, &u));
        assert!(check(r#"meta.created gt "2000-01-01T00:00:00Z""#, &u));
        assert!(!check(r#"userName eq "x" or displayName pr"#, &u));
    }

    #[test]
    fn compares_case_insensitively_with_or_without_ascii() {
        let u = user(json!({"userName": "Ünïcode.User@Example.COM", "displayName": "Plain Ascii"}));
        assert!(check(r#"userName eq "üNÏCODE.user@example.com""#, &u));
        assert!(check(
            r#"userName sw "ÜN" and userName ew ".com" and userName co "E.U""#,
            &u
        ));
        assert!(check(
            r#"displayName co "N ASC" and displayName sw "plain" and displayName ew "CII""#,
            &u
        ));
        assert!(check(
            r#"displayName co "" and displayName gt "PLAIN" and displayName lt "Q""#,
            &u
        ));
        assert!(!check(
            r#"displayName co "ascii plain" or displayName sw "Plain Ascii!""#,
            &u
        ));
        assert!(!check(r#"displayName eq "plain ascii ""#, &u));
        assert!(!check(r#"displayName eq "Pläin Ascii""#, &u));
    }

    #[test]
    fn a_lenient_filter_takes_unknown_attributes_as_unassigned() {
        let u = user(json!({"userName": "bjensen"}));
        let check = |filter: &str| {
            let parsed = parse_filter(filter).expect(filter);
            assert!(resolve_filter(Kind::User, &parsed).is_err(), "{filter}");
            let resolved = resolve_filter_as(Kind::User, &parsed, true, false).expect(filter);
            matches(&resolved, Subject::Resource(Kind::User, &u))
        };
        assert!(check(r#"members.value eq "x" or userName eq "bjensen""#));
        assert!(!check(r#"members.value eq "x""#));
        assert!(check(r#"not (members.value eq "x")"#));
        assert!(check(r#"members eq null"#));
        assert!(!check(r#"members pr"#));
        assert!(!check(r#"members[value eq "x"]"#));
    }
}
