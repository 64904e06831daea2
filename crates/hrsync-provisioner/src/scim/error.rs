//! Why a SCIM call failed, whose fault it is, and whether retrying can help.

use std::time::Duration;

/// Why a SCIM call failed.
#[derive(Debug, thiserror::Error)]
pub enum ScimError {
    /// The server answered with an error status.
    #[error("{method} {path}: HTTP {status}{}{}", scim_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default(), detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// Request method.
        method: String,
        /// Request path (no query: filters may hold personal data).
        path: String,
        /// HTTP status.
        status: u16,
        /// SCIM `scimType`, if given.
        scim_type: Option<String>,
        /// SCIM `detail`, if given.
        detail: Option<String>,
        /// `Retry-After`, if given.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, timeout.
    #[error("{method} {path}: {reason}")]
    Transport {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// What happened (no URL or credentials).
        reason: String,
        /// The request may have reached the server (a lost response).
        maybe_applied: bool,
    },
    /// A filter matched more than one resource; never guessed.
    #[error("{filter_attribute} matches {count} users; resolve the duplicates in the app")]
    Ambiguous {
        /// The attribute filtered on.
        filter_attribute: String,
        /// How many matched.
        count: usize,
    },
    /// A create was refused as a conflict (409), yet no strategy of the
    /// match chain finds the account it conflicts with, not even ignoring
    /// case; only values' attribute names are given, never the values.
    #[error("POST /Users: HTTP 409: the app holds an account whose {attribute} conflicts with this user's, but no account matches by {strategies} even ignoring case ({scanned} accounts searched{}); link or correct that account in the app, then re-drive the change", if *complete { "" } else { ", the search stopped at the limit" })]
    Unmatched {
        /// The attribute the app found in conflict (as its answer names
        /// it, else `userName`, the one SCIM makes unique).
        attribute: String,
        /// The match chain tried, as configured.
        strategies: String,
        /// Accounts read in the case-insensitive search.
        scanned: usize,
        /// Whether the search read every account (not stopped at the
        /// limit).
        complete: bool,
    },
    /// The answer was not the JSON expected.
    #[error("{method} {path}: unreadable answer: {reason}")]
    Decode {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A SCIM client that cannot be set up: a fault of the configuration, which
/// retrying does not cure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The bearer token cannot be sent as an HTTP header value.
    #[error("the bearer token is not a valid HTTP header value")]
    Token,
    /// The OAuth token endpoint is not an http(s) URL.
    #[error("oauth.token_url must be an http(s) URL")]
    TokenUrl,
    /// The HTTP client could not be built (its TLS backend failed).
    #[error("building the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// The longest a server's `Retry-After` is waited for before an attempt.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl ScimError {
    /// Whether a retry may succeed: 408, 429, 5xx except 501, and transport
    /// failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            // 501: the server does not implement the request; asking
            // again gets the same answer.
            ScimError::Status { status, .. } => {
                *status == 408 || *status == 429 || ((500..600).contains(status) && *status != 501)
            }
            ScimError::Transport { .. } => true,
            ScimError::Ambiguous { .. }
            | ScimError::Decode { .. }
            | ScimError::Unmatched { .. } => false,
        }
    }

    /// The server's `Retry-After`, if any, at most [`MAX_RETRY_AFTER`]: a
    /// change waiting longer would hold its person (a termination too)
    /// behind one app's say-so; after its attempts it is parked instead.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ScimError::Status { retry_after, .. } => retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
            _ => None,
        }
    }

    /// The request that failed (method, path without query), if one was
    /// made (an ambiguous match is a finding, not a failed request).
    pub fn request(&self) -> Option<(&str, &str)> {
        match self {
            ScimError::Status { method, path, .. }
            | ScimError::Transport { method, path, .. }
            | ScimError::Decode { method, path, .. } => Some((method, path)),
            ScimError::Unmatched { .. } => Some(("POST", "/Users")),
            ScimError::Ambiguous { .. } => None,
        }
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ScimError::Status { status, .. } => Some(*status),
            ScimError::Unmatched { .. } => Some(409),
            _ => None,
        }
    }
}

pub(super) fn decode_error(method: &str, path: &str, reason: &str) -> ScimError {
    ScimError::Decode {
        method: method.to_owned(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A transport failure described without the URL (which may carry
/// personal data in a filter) or credentials.
pub(super) fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading the answer".to_owned()
    } else {
        "connection dropped".to_owned()
    }
}
