//! SCIM filters and attribute paths (RFC 7644 §3.4.2.2, §3.5.2).
//!
//! Parsing yields expressions over raw paths ([`RawPath`]); resolving binds
//! every path to its attribute definition for one resource type, checking
//! that each operator suits the attribute's type, so evaluation never meets
//! an unknown attribute.

use serde_json::Value;

use crate::error::ScimError;
use crate::schema::{Attribute, Kind, Schema, Type, ABSENT, COMMON};

mod eval;

pub(crate) use eval::{fold, matches, parse_bool, Subject};

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

/// Builds `a and b` or `a or b` (`Expr::And`, `Expr::Or`).
type JoinFn = fn(Box<Expr<RawPath>>, Box<Expr<RawPath>>) -> Expr<RawPath>;

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
        self.joined(depth, "or", Self::and_expr, Expr::Or)
    }

    fn and_expr(&mut self, depth: usize) -> Result<Expr<RawPath>, ScimError> {
        self.joined(depth, "and", Self::unary, Expr::And)
    }

    /// `operand (keyword operand)*`, joined from the left with `join`.
    fn joined(
        &mut self,
        depth: usize,
        keyword: &str,
        operand: fn(&mut Self, usize) -> Result<Expr<RawPath>, ScimError>,
        join: JoinFn,
    ) -> Result<Expr<RawPath>, ScimError> {
        let mut left = operand(self, depth)?;
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.keyword(keyword) {
                let right = operand(self, depth)?;
                left = join(Box::new(left), Box::new(right));
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

/// Whether `attr` holds text that compares as strings.
fn is_textual(attr: &Attribute) -> bool {
    matches!(attr.ty, Type::String | Type::Reference | Type::Binary)
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
