//! Finding the account a person already has in an app, so that it is
//! linked rather than duplicated.
//!
//! Each app has a match chain: SCIM attribute paths tried in order, for
//! example `userName`, then the work e-mail, then `externalId`:
//!
//! ```toml
//! match_attributes = ["userName", 'emails[type eq "work"].value', "externalId"]
//! ```
//!
//! For each path, the person's value (from the user hrsync would send) is
//! looked up with a filter (`emails.value eq "…"`), and hrsync itself keeps
//! only the accounts whose value equals it ignoring case (and that pass the
//! path's `[type eq "work"]` selector): a server that compares
//! case-sensitively, or that ignores the filter, cannot make hrsync link the
//! wrong account. The first path that finds accounts decides: one is
//! linked, several are [`ScimError::Ambiguous`].
//!
//! A server whose filter compares case-sensitively misses an account whose
//! `userName` differs only in case, then refuses the create with 409. After
//! a 409, [`resolve_conflict`] tries the chain again (the account may have
//! been created meanwhile), then lowercase and uppercase variants of each
//! value, then reads the app's users page by page (at most
//! `match_scan_limit`), comparing ignoring case. If nothing matches, the
//! change fails once with [`ScimError::Unmatched`], which names the
//! attribute and is not retried.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use crate::scim::{ScimClient, ScimError};

/// Top-level attributes a match path may not use: the server assigns or
/// hides them, or they are not identifiers.
const NOT_MATCHABLE: [&str; 6] = ["id", "meta", "schemas", "password", "active", "groups"];

/// One strategy of a match chain: where a user's identifying value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchPath {
    /// As configured.
    source: String,
    /// An extension's URN, for an extension attribute.
    schema: Option<String>,
    attribute: String,
    /// `[name eq "value"]`: only values of elements whose `name` equals
    /// `value` (ignoring case) count.
    selector: Option<(String, String)>,
    sub_attribute: Option<String>,
}

impl MatchPath {
    /// Parses `attribute`, `attribute.sub`, `attribute[name eq "value"].sub`
    /// (`.value` when left out), each optionally after an extension's URN
    /// and a colon
    /// (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`).
    ///
    /// # Errors
    /// Why `path` is not one of these.
    pub fn parse(path: &str) -> Result<MatchPath, MatchPathError> {
        let source = path.trim();
        let bad = |why: &str| MatchPathError {
            path: source.to_owned(),
            reason: why.to_owned(),
        };
        let (head, selector_and_rest) = match source.find('[') {
            Some(at) => (&source[..at], Some(&source[at..])),
            None => (source, None),
        };
        let (schema, head) = if head.starts_with("urn:") {
            match head.rsplit_once(':') {
                Some((urn, rest)) if urn.matches(':').count() >= 2 => (Some(urn.to_owned()), rest),
                _ => return Err(bad("an extension attribute is written URN:attribute")),
            }
        } else {
            (None, head)
        };
        let (attribute, mut sub_attribute) = match head.split_once('.') {
            Some((a, s)) => (a, Some(s.to_owned())),
            None => (head, None),
        };
        let selector = match selector_and_rest {
            None => None,
            Some(rest) => {
                if sub_attribute.is_some() {
                    return Err(bad("a [selector] follows the attribute, before any .sub"));
                }
                let close = rest
                    .rfind(']')
                    .ok_or_else(|| bad("the [selector] is not closed"))?;
                let (inner, after) = (&rest[1..close], &rest[close + 1..]);
                sub_attribute = match after {
                    "" => Some("value".to_owned()),
                    _ => Some(
                        after
                            .strip_prefix('.')
                            .ok_or_else(|| bad("only .subAttribute may follow the [selector]"))?
                            .to_owned(),
                    ),
                };
                Some(parse_selector(inner).map_err(|why| bad(&why))?)
            }
        };
        if !is_name(attribute) || !sub_attribute.as_deref().is_none_or(is_name) {
            return Err(bad(
                "not a SCIM attribute path (attribute, attribute.sub or attribute[name eq \"value\"].sub)",
            ));
        }
        if schema.is_none()
            && NOT_MATCHABLE
                .iter()
                .any(|n| n.eq_ignore_ascii_case(attribute))
        {
            return Err(bad(&format!("{attribute} cannot identify an account")));
        }
        Ok(MatchPath {
            source: source.to_owned(),
            schema,
            attribute: attribute.to_owned(),
            selector,
            sub_attribute,
        })
    }

    /// The attribute path filtered on (`emails.value`: the selector is
    /// checked by hrsync, as not every server takes value filters).
    pub fn filter_path(&self) -> String {
        let mut path = String::new();
        if let Some(schema) = &self.schema {
            path.push_str(schema);
            path.push(':');
        }
        path.push_str(&self.attribute);
        if let Some(sub) = &self.sub_attribute {
            path.push('.');
            path.push_str(sub);
        }
        path
    }

    /// The top-level attribute it reads (`emails`).
    pub fn attribute(&self) -> &str {
        &self.attribute
    }

    /// The values `user` has at this path (non-empty strings).
    pub fn values<'a>(&self, user: &'a Value) -> Vec<&'a str> {
        let container = match &self.schema {
            Some(urn) => user.as_object().and_then(|o| get(o, urn)),
            None => Some(user),
        };
        let Some(value) = container
            .and_then(Value::as_object)
            .and_then(|o| get(o, &self.attribute))
        else {
            return Vec::new();
        };
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        items
            .into_iter()
            .filter(|item| match &self.selector {
                None => true,
                Some((name, wanted)) => item
                    .as_object()
                    .and_then(|o| get(o, name))
                    .and_then(Value::as_str)
                    .is_some_and(|v| same(v, wanted)),
            })
            .filter_map(|item| match &self.sub_attribute {
                None => Some(item),
                Some(sub) => item.as_object().and_then(|o| get(o, sub)),
            })
            .filter_map(Value::as_str)
            .filter(|v| !v.trim().is_empty())
            .collect()
    }

    /// The person's value: the first of `desired`'s values.
    pub fn key<'a>(&self, desired: &'a Value) -> Option<&'a str> {
        self.values(desired).into_iter().next()
    }

    /// Whether `candidate` has `key` at this path, ignoring case.
    pub fn matches(&self, candidate: &Value, key: &str) -> bool {
        self.values(candidate).into_iter().any(|v| same(v, key))
    }
}

impl fmt::Display for MatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A match path that is not one; shown as `"path": why`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path:?}: {reason}")]
pub struct MatchPathError {
    /// The path, as configured.
    pub path: String,
    /// Why it is not a match path.
    pub reason: String,
}

/// A match chain that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchChainError {
    /// No path at all.
    #[error("name at least one attribute")]
    Empty,
    /// A path that is not one.
    #[error("{source}")]
    Path {
        /// Its place in the chain.
        index: usize,
        /// Why.
        source: MatchPathError,
    },
    /// A path listed twice.
    #[error("{path:?} is listed twice")]
    Twice {
        /// The second place it is listed at.
        index: usize,
        /// The path.
        path: String,
    },
}

impl MatchChainError {
    /// The place in the chain of the path at fault (0 for an empty chain).
    pub fn index(&self) -> usize {
        match self {
            MatchChainError::Empty => 0,
            MatchChainError::Path { index, .. } | MatchChainError::Twice { index, .. } => *index,
        }
    }
}

/// `name eq "value"` inside a selector.
fn parse_selector(inner: &str) -> Result<(String, String), Cow<'static, str>> {
    let inner = inner.trim();
    let (name, rest) = inner
        .split_once(char::is_whitespace)
        .ok_or(Cow::Borrowed("the selector is written [name eq \"value\"]"))?;
    let rest = rest.trim_start();
    let value = rest
        .get(..2)
        .filter(|op| op.eq_ignore_ascii_case("eq"))
        .map(|_| rest[2..].trim())
        .ok_or(Cow::Borrowed("the selector compares with eq only"))?;
    let value: String = serde_json::from_str::<Value>(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or(Cow::Borrowed("the selector's value is a quoted string"))?;
    if !is_name(name) {
        return Err(Cow::Owned(format!("{name:?} is not a sub-attribute name")));
    }
    Ok((name.to_owned(), value))
}

fn is_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

/// A field of `object` by name, ignoring case (SCIM attribute names are
/// case-insensitive).
fn get<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Two values compared as hrsync compares identifiers: ignoring case.
fn same(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// An app's match chain: the paths tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchChain {
    paths: Vec<MatchPath>,
}

impl Default for MatchChain {
    /// `userName` alone.
    fn default() -> Self {
        MatchChain::parse(&["userName"]).unwrap_or(MatchChain { paths: Vec::new() })
    }
}

impl MatchChain {
    /// Parses a chain from its paths.
    ///
    /// # Errors
    /// The index of the first path that does not parse (or is given twice)
    /// and why; an empty chain is refused with index 0.
    pub fn parse<S: AsRef<str>>(paths: &[S]) -> Result<MatchChain, MatchChainError> {
        if paths.is_empty() {
            return Err(MatchChainError::Empty);
        }
        let mut parsed: Vec<MatchPath> = Vec::new();
        for (index, path) in paths.iter().enumerate() {
            let path = MatchPath::parse(path.as_ref())
                .map_err(|source| MatchChainError::Path { index, source })?;
            if parsed.iter().any(|p| p.source == path.source) {
                return Err(MatchChainError::Twice {
                    index,
                    path: path.source,
                });
            }
            parsed.push(path);
        }
        Ok(MatchChain { paths: parsed })
    }

    /// The paths, in order.
    pub fn paths(&self) -> &[MatchPath] {
        &self.paths
    }

    /// The first path by which `candidate` is `desired`'s account (its
    /// value there equals the person's, ignoring case), if any.
    pub fn matched_by(&self, desired: &Value, candidate: &Value) -> Option<&MatchPath> {
        self.paths.iter().find(|path| {
            path.key(desired)
                .is_some_and(|key| path.matches(candidate, key))
        })
    }
}

impl fmt::Display for MatchChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sources: Vec<&str> = self.paths.iter().map(|p| p.source.as_str()).collect();
        f.write_str(&sources.join(", "))
    }
}

/// The accounts of `found` that `path` matches to `key`, each once.
fn keep_matching(path: &MatchPath, key: &str, found: Vec<Value>) -> Vec<Value> {
    let mut kept: Vec<Value> = Vec::new();
    for user in found {
        if path.matches(&user, key) && !kept.iter().any(|k| k["id"] == user["id"]) {
            kept.push(user);
        }
    }
    kept
}

/// One account, none, or [`ScimError::Ambiguous`] naming `path`.
fn one(path: &MatchPath, mut accounts: Vec<Value>) -> Result<Option<Value>, ScimError> {
    match accounts.len() {
        0 => Ok(None),
        1 => Ok(accounts.pop()),
        count => Err(ScimError::Ambiguous {
            filter_attribute: path.source.clone(),
            count,
        }),
    }
}

/// Looks `key` up at `path` with a filter and keeps what matches.
async fn lookup(
    client: &ScimClient,
    path: &MatchPath,
    key: &str,
) -> Result<Option<Value>, ScimError> {
    let found = client.find("Users", &path.filter_path(), key).await?;
    one(path, keep_matching(path, key, found))
}

/// The account `desired` (the user hrsync would send) has in the app: the
/// first path of `chain` that finds one decides. A path the person has no
/// value for is skipped.
///
/// # Errors
/// [`ScimError::Ambiguous`] when one path finds several accounts; request
/// failures.
pub async fn find_account(
    client: &ScimClient,
    chain: &MatchChain,
    desired: &Value,
) -> Result<Option<Value>, ScimError> {
    for path in chain.paths() {
        let Some(key) = path.key(desired) else {
            continue;
        };
        if let Some(account) = lookup(client, path, key).await? {
            return Ok(Some(account));
        }
    }
    Ok(None)
}

/// The account a create of `desired` conflicted with (`conflict`, a 409):
/// the chain again, then each value in lowercase and uppercase, then a
/// search of at most `scan_limit` users ignoring case.
///
/// # Errors
/// [`ScimError::Unmatched`] when nothing matches; [`ScimError::Ambiguous`];
/// request failures.
pub async fn resolve_conflict(
    client: &ScimClient,
    chain: &MatchChain,
    desired: &Value,
    scan_limit: usize,
    conflict: &ScimError,
) -> Result<Value, ScimError> {
    // Created meanwhile, or an earlier create whose answer was lost.
    if let Some(account) = find_account(client, chain, desired).await? {
        return Ok(account);
    }
    // A filter that compares case-sensitively finds the account under the
    // case it was stored in: the usual ones first.
    for path in chain.paths() {
        let Some(key) = path.key(desired) else {
            continue;
        };
        let mut variants = vec![key.to_lowercase(), key.to_uppercase()];
        variants.dedup();
        for variant in variants.iter().filter(|v| v.as_str() != key) {
            let found = client.find("Users", &path.filter_path(), variant).await?;
            if let Some(account) = one(path, keep_matching(path, key, found))? {
                tracing::info!(path = %path, "an account differing in case found after a conflict");
                return Ok(account);
            }
        }
    }
    // Any other case: read the users and compare here.
    let users = client.list("Users", None, scan_limit).await?;
    let scanned = users.len();
    for path in chain.paths() {
        let Some(key) = path.key(desired) else {
            continue;
        };
        // Each user is listed once (paging drops repeats).
        let matching: Vec<Value> = users
            .iter()
            .filter(|u| path.matches(u, key))
            .cloned()
            .collect();
        if let Some(account) = one(path, matching)? {
            tracing::info!(path = %path, scanned, "an account found by searching the app's users after a conflict");
            return Ok(account);
        }
    }
    Err(ScimError::Unmatched {
        attribute: conflicting_attribute(chain, conflict),
        strategies: chain.to_string(),
        scanned,
        complete: scanned < scan_limit,
    })
}

/// The attribute a 409 is about: the first of the chain's attributes (or
/// `userName`, which SCIM makes unique) that the answer's `detail` names,
/// else `userName`. Only the name is taken from the detail, never a value.
fn conflicting_attribute(chain: &MatchChain, conflict: &ScimError) -> String {
    let detail = match conflict {
        ScimError::Status {
            detail: Some(detail),
            ..
        } => detail.to_lowercase(),
        _ => String::new(),
    };
    chain
        .paths()
        .iter()
        .map(MatchPath::attribute)
        .chain(["userName"])
        .find(|attribute| detail.contains(&attribute.to_lowercase()))
        .unwrap_or("userName")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn path(p: &str) -> MatchPath {
        MatchPath::parse(p).unwrap_or_else(|e| panic!("{e}"))
    }

    fn user() -> Value {
        json!({
            "userName": "Ada.Lovelace@Example.com",
            "externalId": "p-ada",
            "emails": [
                {"value": "ada@home.example", "type": "home"},
                {"value": "ADA@example.com", "type": "Work", "primary": true},
            ],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "E1"},
        })
    }

    #[test]
    fn paths_read_plain_sub_selected_and_extension_values() {
        let u = user();
        assert_eq!(path("userName").values(&u), ["Ada.Lovelace@Example.com"]);
        assert_eq!(path("USERNAME").values(&u), ["Ada.Lovelace@Example.com"]);
        assert_eq!(
            path("emails.value").values(&u),
            ["ada@home.example", "ADA@example.com"]
        );
        let work = path(r#"emails[type eq "work"].value"#);
        assert_eq!(work.values(&u), ["ADA@example.com"]);
        assert_eq!(work.filter_path(), "emails.value");
        assert_eq!(
            path(r#"emails[type eq "work"]"#).values(&u),
            ["ADA@example.com"]
        );
        let number =
            path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber");
        assert_eq!(number.values(&u), ["E1"]);
        assert_eq!(
            number.filter_path(),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"
        );
        assert!(path("nickName").values(&u).is_empty());
    }

    #[test]
    fn matching_ignores_case_and_respects_the_selector() {
        let desired = json!({
            "userName": "ada.lovelace@example.com",
            "emails": [{"value": "ada@example.com", "type": "work"}],
            "externalId": "p-ada",
        });
        let work = path(r#"emails[type eq "work"].value"#);
        assert!(work.matches(&user(), "ada@example.com"));
        assert!(!work.matches(&user(), "ada@home.example"), "a home e-mail");
        let chain =
            MatchChain::parse(&["externalId", "userName"]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            chain.matched_by(&desired, &user()).map(ToString::to_string),
            Some("externalId".to_owned())
        );
        let other = json!({"userName": "grace@example.com", "externalId": "p-grace"});
        assert_eq!(chain.matched_by(&desired, &other), None);
        // Ignoring case also beyond ASCII.
        assert!(path("userName").matches(&json!({"userName": "ÉMILE@x"}), "émile@x"));
    }

    #[test]
    fn bad_paths_and_chains_are_refused_with_the_reason() {
        for (bad, why) in [
            ("", "not a SCIM attribute path"),
            ("user name", "not a SCIM attribute path"),
            ("id", "id cannot identify an account"),
            ("active", "cannot identify"),
            (r#"emails[type eq "work""#, "not closed"),
            (r#"emails[type co "work"].value"#, "eq only"),
            ("emails[type eq work].value", "quoted string"),
            (r#"emails.value[type eq "work"]"#, "before any .sub"),
            (r#"emails[type eq "work"]value"#, "only .subAttribute"),
            ("urn:x:y", "written URN:attribute"),
        ] {
            let error = MatchPath::parse(bad).expect_err(bad).to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
        let twice = MatchChain::parse(&["userName", "externalId", "userName"]).unwrap_err();
        assert_eq!(
            (twice.index(), twice.to_string()),
            (2, "\"userName\" is listed twice".to_owned())
        );
        assert_eq!(
            MatchChain::parse::<&str>(&[]).map_err(|e| e.index()),
            Err(0)
        );
        assert_eq!(MatchChain::default().to_string(), "userName");
    }

    #[test]
    fn the_conflicting_attribute_is_named_from_the_detail_without_its_value() {
        let chain = MatchChain::parse(&["externalId", "emails.value"]).expect("chain");
        let conflict = |detail: &str| ScimError::Status {
            method: "POST".into(),
            path: "/Users".into(),
            status: 409,
            scim_type: Some("uniqueness".into()),
            detail: Some(detail.into()),
            retry_after: None,
        };
        assert_eq!(
            conflicting_attribute(&chain, &conflict(r#"EMAILS "a@b" taken"#)),
            "emails"
        );
        assert_eq!(
            conflicting_attribute(&chain, &conflict(r#"username "a@b" is taken"#)),
            "userName"
        );
        assert_eq!(
            conflicting_attribute(&chain, &conflict("conflict")),
            "userName"
        );
    }
}
