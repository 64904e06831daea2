//! Query parameters shared by the list endpoints: paging by cursor, limits
//! and times; and a query extractor whose refusals are problem details.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use chrono::{DateTime, SecondsFormat};
use hrsync_auth::Problem;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Items per page unless `limit` says otherwise.
const DEFAULT_LIMIT: i64 = 50;
/// The most items one page holds.
const MAX_LIMIT: i64 = 500;

/// One page of a list, newest first.
#[derive(Debug, Serialize)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub(crate) next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of `items` asked with `limit`, the cursor made from the last
    /// item's `(time, id)` when the page is full.
    pub(crate) fn new(items: Vec<T>, limit: i64, key: impl Fn(&T) -> (i64, &str)) -> Self {
        let full = i64::try_from(items.len()).unwrap_or(i64::MAX) >= limit;
        let next = items.last().filter(|_| full).map(|last| {
            let (at, id) = key(last);
            (at, id.to_owned())
        });
        Page::with_next(items, next)
    }

    /// A page of `items` whose next page starts after `next`, a `(time,
    /// id)` the store gave (a page may then hold fewer items than asked).
    pub(crate) fn with_next(items: Vec<T>, next: Option<(i64, String)>) -> Self {
        let next_cursor = next.map(|(at, id)| format!("{at}~{id}"));
        Page { items, next_cursor }
    }
}

/// The page size asked for, checked.
pub(crate) fn limit(asked: Option<i64>) -> Result<i64, Problem> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(Problem::bad_request(format!(
            "limit={n}: between 1 and {MAX_LIMIT}"
        ))),
    }
}

/// A cursor from an earlier page.
pub(crate) fn cursor(text: Option<&str>) -> Result<Option<(i64, String)>, Problem> {
    let Some(text) = text else {
        return Ok(None);
    };
    text.split_once('~')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.to_owned())))
        .filter(|(_, id)| !id.is_empty())
        .map(Some)
        .ok_or_else(|| {
            Problem::bad_request("cursor: not a cursor this API gave (pass next_cursor as it is)")
        })
}

/// An RFC 3339 time parameter, as ms since the epoch.
pub(crate) fn time(name: &str, text: Option<&str>) -> Result<Option<i64>, Problem> {
    text.map(|text| {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                Problem::bad_request(format!(
                    "{name}={text:?}: not an RFC 3339 time such as 2027-01-31T09:00:00Z ({e})"
                ))
            })
    })
    .transpose()
}

/// ms since the epoch as RFC 3339 in UTC, with milliseconds.
pub(crate) fn rfc3339(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// A comma-separated list parameter, each value one of `allowed`.
pub(crate) fn one_of(
    name: &str,
    text: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<String>, Problem> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(|v| {
            let v = v.trim();
            if allowed.contains(&v) {
                Ok(v.to_owned())
            } else {
                Err(Problem::bad_request(format!(
                    "{name}: {v:?} is not one of {}",
                    allowed.join(", ")
                )))
            }
        })
        .collect()
}

/// [`Query`], refusing unknown or malformed parameters with a problem.
#[derive(Debug)]
pub(crate) struct Params<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| Params(t))
            .map_err(|e| Problem::bad_request(e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_parameters_are_checked() {
        assert_eq!(limit(None).unwrap(), 50);
        assert_eq!(limit(Some(500)).unwrap(), 500);
        assert_eq!(limit(Some(0)).unwrap_err().status(), 400);
        assert_eq!(
            cursor(Some("17~a-b")).unwrap(),
            Some((17, "a-b".to_owned()))
        );
        assert!(cursor(Some("garbage")).is_err());
        assert!(cursor(Some("17~")).is_err());
        assert_eq!(
            time("from", Some("2027-01-31T09:00:00Z")).unwrap(),
            Some(1_801_386_000_000)
        );
        assert!(time("from", Some("yesterday"))
            .unwrap_err()
            .detail()
            .contains("from="));
        assert_eq!(
            one_of("outcome", Some("FAILED,RETRY"), &["FAILED", "RETRY"]).unwrap(),
            vec!["FAILED", "RETRY"]
        );
        assert!(one_of("outcome", Some("BAD"), &["FAILED"]).is_err());
        let page = Page::new(vec![(5, "x".to_owned())], 1, |(at, id)| (*at, id.as_str()));
        assert_eq!(page.next_cursor.as_deref(), Some("5~x"));
        let page = Page::new(vec![(5, "x".to_owned())], 2, |(at, id)| (*at, id.as_str()));
        assert_eq!(page.next_cursor, None);
    }
}
