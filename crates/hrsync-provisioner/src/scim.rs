//! A SCIM 2.0 client (RFC 7644) that behaves like the clients app vendors
//! test against: match with a `userName eq` filter, create with
//! `externalId`, update with PATCH where the server supports it (PUT
//! otherwise), deactivate with `active: false`, never DELETE.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use tracing::Instrument;

use crate::auth::{Authenticator, Credentials};
use crate::limit::{Limiter, Limits};

/// The SCIM content type.
pub const SCIM_JSON: &str = "application/scim+json";
/// Schema URN of a PATCH request.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Schema URN of the core User.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Schema URN of the enterprise User extension.
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

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

impl ScimError {
    /// Whether a retry may succeed: 408, 429, 5xx and transport failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            ScimError::Status { status, .. } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            ScimError::Transport { .. } => true,
            ScimError::Ambiguous { .. } | ScimError::Decode { .. } => false,
        }
    }

    /// The server's `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ScimError::Status { retry_after, .. } => *retry_after,
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
            ScimError::Ambiguous { .. } => None,
        }
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ScimError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Result of SCIM calls.
pub type Result<T, E = ScimError> = std::result::Result<T, E>;

/// What the server says it supports (`/ServiceProviderConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// PATCH is supported.
    pub patch: bool,
    /// Filtering is supported.
    pub filter: bool,
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

    fn to_json(&self) -> Value {
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

/// A SCIM server of one app.
#[derive(Debug, Clone)]
pub struct ScimClient {
    http: reqwest::Client,
    base: String,
    /// The app's name, for metrics.
    app: Arc<str>,
    auth: Arc<Authenticator>,
    limiter: Arc<Limiter>,
}

impl ScimClient {
    /// A client for the server at `base_url` (`https://app/scim/v2`),
    /// authenticating with a static `bearer` token, without limits, giving up
    /// on a request after `timeout`.
    ///
    /// # Errors
    /// A token that is not a valid header value, or a client that cannot
    /// be built.
    pub fn new(base_url: &str, bearer: &str, timeout: Duration) -> Result<Self, String> {
        Self::with(
            base_url,
            Credentials::Bearer(bearer.to_owned()),
            timeout,
            Limits::default(),
        )
    }

    /// A client for the server at `base_url` with `credentials` and request
    /// `limits`.
    ///
    /// # Errors
    /// Credentials that cannot be used, or a client that cannot be built.
    pub fn with(
        base_url: &str,
        credentials: Credentials,
        timeout: Duration,
        limits: Limits,
    ) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(SCIM_JSON));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(ScimClient {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            app: Arc::from(""),
            auth: Arc::new(Authenticator::new(credentials, timeout)?),
            limiter: Arc::new(Limiter::new(limits)),
        })
    }

    /// The client, its requests counted under app `name` in the metrics.
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.app = Arc::from(name);
        self
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        let _admission = self.limiter.admit().await;
        let mut renewed = false;
        loop {
            let authorization = self.auth.header().await?;
            // One span per request, in the change's trace; the app receives
            // it as a W3C `traceparent` header.
            let span = tracing::info_span!(
                "scim.request",
                app = %self.app,
                method = %method,
                resource = path.split('/').nth(1).unwrap_or_default(),
            );
            match self
                .send(method.clone(), path, query, body, authorization.clone())
                .instrument(span)
                .await
            {
                // An access token revoked or expired early: fetch a new one,
                // once.
                Err(ScimError::Status { status: 401, .. }) if self.auth.renews() && !renewed => {
                    self.auth.reject(&authorization).await;
                    renewed = true;
                }
                other => return other,
            }
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        authorization: HeaderValue,
    ) -> Result<Option<Value>> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .header(AUTHORIZATION, authorization);
        for (name, value) in hrsync_telemetry::propagation::inject(&tracing::Span::current()) {
            request = request.header(name, value);
        }
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, SCIM_JSON)
                .body(body.to_string());
        }
        let started = std::time::Instant::now();
        let sent = request.send().await;
        let status = match &sent {
            Ok(response) => response.status().as_str().to_owned(),
            Err(e) if e.is_timeout() => "timeout".to_owned(),
            Err(_) => "connection".to_owned(),
        };
        // Low cardinality: the method and the resource type, never an id.
        let resource = path.split('/').nth(1).unwrap_or_default();
        metrics::histogram!(
            "hrsync_provisioner_scim_request_seconds",
            "app" => self.app.to_string(),
            "operation" => format!("{method} {resource}"),
            "status" => status,
        )
        .record(started.elapsed().as_secs_f64());
        let response = sent.map_err(|e| ScimError::Transport {
            method: method.to_string(),
            path: path.to_owned(),
            reason: transport_reason(&e),
            // A request that timed out or was cut after sending may have
            // been applied.
            maybe_applied: !e.is_connect(),
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.map_err(|e| ScimError::Transport {
            method: method.to_string(),
            path: path.to_owned(),
            reason: transport_reason(&e),
            maybe_applied: true,
        })?;
        read_answer(
            method.as_str(),
            path,
            status.as_u16(),
            retry_after.as_deref(),
            &text,
        )
    }

    /// Reads `/ServiceProviderConfig`.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn capabilities(&self) -> Result<Capabilities> {
        let config = self
            .call(Method::GET, "/ServiceProviderConfig", &[], None)
            .await?;
        Ok(read_capabilities(config.as_ref()))
    }

    /// The users whose `attribute` equals `value`, following pages until
    /// `startIndex` passes `totalResults` (even if a server keeps returning
    /// items).
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn find(&self, resource: &str, attribute: &str, value: &str) -> Result<Vec<Value>> {
        let filter = format!("{attribute} eq {}", filter_value(value));
        let path = format!("/{resource}");
        let mut found = Vec::new();
        let mut start = 1usize;
        loop {
            let answer = match self
                .call(
                    Method::GET,
                    &path,
                    &[
                        ("filter", filter.clone()),
                        ("startIndex", start.to_string()),
                        ("count", "100".to_owned()),
                    ],
                    None,
                )
                .await
            {
                Ok(answer) => answer,
                // Some servers answer a filter with no match with 404.
                Err(ScimError::Status { status: 404, .. }) => return Ok(found),
                Err(e) => return Err(e),
            };
            let page = read_page("GET", &path, answer)?;
            let got = page.resources.len();
            found.extend(page.resources);
            start = start.saturating_add(got);
            if got == 0 || start > page.total || found.len() >= 10_000 {
                return Ok(found);
            }
        }
    }

    /// The one user whose `attribute` equals `value`, if any.
    ///
    /// # Errors
    /// [`ScimError::Ambiguous`] when several match; see [`ScimError`].
    pub async fn find_user(&self, attribute: &str, value: &str) -> Result<Option<Value>> {
        let mut users = self.find("Users", attribute, value).await?;
        match users.len() {
            0 => Ok(None),
            1 => Ok(users.pop()),
            count => Err(ScimError::Ambiguous {
                filter_attribute: attribute.to_owned(),
                count,
            }),
        }
    }

    /// One page of every `resource` (`GET /Users?startIndex=&count=`,
    /// unfiltered), for reading all of an app's accounts.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn list(&self, resource: &str, start_index: usize, count: usize) -> Result<Page> {
        let path = format!("/{resource}");
        let query = [
            ("startIndex", start_index.to_string()),
            ("count", count.to_string()),
        ];
        let answer = self.call(Method::GET, &path, &query, None).await?;
        read_page("GET", &path, answer)
    }

    /// A resource by id; `None` when the server says 404.
    ///
    /// # Errors
    /// See [`ScimError`]; [`ScimError::Decode`] when a success carries no
    /// resource with an id.
    pub async fn get(&self, resource: &str, id: &str) -> Result<Option<Value>> {
        let path = format!("/{resource}/{id}");
        match self.call(Method::GET, &path, &[], None).await {
            Ok(answer) => read_resource("GET", &path, answer).map(Some),
            Err(ScimError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a resource; returns it as the server stored it.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn create(&self, resource: &str, body: &Value) -> Result<Value> {
        let path = format!("/{resource}");
        let answer = self.call(Method::POST, &path, &[], Some(body)).await?;
        read_resource("POST", &path, answer)
    }

    /// Replaces a resource (PUT); returns it as stored.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn replace(&self, resource: &str, id: &str, body: &Value) -> Result<Option<Value>> {
        self.call(Method::PUT, &format!("/{resource}/{id}"), &[], Some(body))
            .await
    }

    /// Applies PATCH operations; returns the resource if the server sent it
    /// (200) and `None` for 204.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn patch(&self, resource: &str, id: &str, ops: &[PatchOp]) -> Result<Option<Value>> {
        self.patch_with(resource, id, ops, &[]).await
    }

    /// Changes a group's members, asking the server to leave the members
    /// out of its answer (`excludedAttributes=members`): a large group's
    /// whole member list is not sent back for every joiner.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn patch_members(&self, id: &str, ops: &[PatchOp]) -> Result<()> {
        self.patch_with(
            "Groups",
            id,
            ops,
            &[("excludedAttributes", "members".to_owned())],
        )
        .await
        .map(|_| ())
    }

    async fn patch_with(
        &self,
        resource: &str,
        id: &str,
        ops: &[PatchOp],
        query: &[(&str, String)],
    ) -> Result<Option<Value>> {
        let body = json!({
            "schemas": [PATCH_OP],
            "Operations": ops.iter().map(PatchOp::to_json).collect::<Vec<_>>(),
        });
        self.call(
            Method::PATCH,
            &format!("/{resource}/{id}"),
            query,
            Some(&body),
        )
        .await
    }

    /// Sets a user's `active` flag: PATCH `{"op":"replace","value":{"active":…}}`
    /// where supported, else GET + PUT of the full object.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn set_active(&self, id: &str, active: bool, patch: bool) -> Result<()> {
        if patch {
            let op = PatchOp {
                op: "replace",
                path: None,
                value: Some(json!({ "active": active })),
            };
            self.patch("Users", id, &[op]).await?;
            return Ok(());
        }
        let path = format!("/Users/{id}");
        let mut user = self
            .get("Users", id)
            .await?
            .ok_or_else(|| ScimError::Status {
                method: "GET".to_owned(),
                path: path.clone(),
                status: StatusCode::NOT_FOUND.as_u16(),
                scim_type: None,
                detail: Some("user vanished".to_owned()),
                retry_after: None,
            })?;
        user["active"] = Value::Bool(active);
        if let Some(object) = user.as_object_mut() {
            object.remove("meta");
        }
        self.replace("Users", id, &user).await?;
        Ok(())
    }
}

/// Reads an app's answer to `method path`: a success's body as JSON (`None`
/// when the body is empty), or the [`ScimError::Status`] of a failure, with
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
        return Ok(json);
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

/// What a `/ServiceProviderConfig` answer says the app supports. A feature
/// the answer does not mark `"supported": true` (or no answer at all) is
/// taken as unsupported.
pub fn read_capabilities(config: Option<&Value>) -> Capabilities {
    let supported = |name: &str| {
        config
            .and_then(|c| c.get(name))
            .and_then(|feature| feature.get("supported"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    Capabilities {
        patch: supported("patch"),
        filter: supported("filter"),
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

fn decode_error(method: &str, path: &str, reason: &str) -> ScimError {
    ScimError::Decode {
        method: method.to_owned(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A transport failure described without the URL (which may carry
/// personal data in a filter) or credentials.
fn transport_reason(e: &reqwest::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_reason(error: ScimError) -> String {
        match error {
            ScimError::Decode { reason, .. } => reason,
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn a_failure_carries_the_scim_error_and_retry_after() {
        let error = read_answer(
            "POST",
            "/Users",
            409,
            None,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"409","scimType":"uniqueness","detail":"taken"}"#,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "POST /Users: HTTP 409 (uniqueness): taken"
        );
        assert!(!error.is_retryable());

        let error =
            read_answer("GET", "/Users", 429, Some("7"), "<html>slow down</html>").unwrap_err();
        assert_eq!(error.to_string(), "GET /Users: HTTP 429");
        assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
        assert!(error.is_retryable());
    }

    #[test]
    fn a_success_that_is_not_json_is_a_decode_error_naming_the_request() {
        let error = read_answer("GET", "/Users/u1", 200, None, "<html>login</html>").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("GET /Users/u1: unreadable answer: expected value at line 1"),
            "{error}"
        );
        assert_eq!(
            read_answer("PATCH", "/Users/u1", 204, None, " \n").unwrap(),
            None
        );
    }

    #[test]
    fn capabilities_are_read_as_unsupported_unless_marked_so() {
        let config: Value = serde_json::from_str(
            r#"{"patch":{"supported":true},"filter":{"supported":"yes"},"bulk":{"supported":true}}"#,
        )
        .unwrap();
        assert_eq!(
            read_capabilities(Some(&config)),
            Capabilities {
                patch: true,
                filter: false
            }
        );
        let none = Capabilities {
            patch: false,
            filter: false,
        };
        assert_eq!(read_capabilities(None), none);
        assert_eq!(read_capabilities(Some(&json!([1, 2]))), none);
    }

    #[test]
    fn a_list_page_gives_total_and_resources() {
        let page = read_page(
            "GET",
            "/Users",
            Some(json!({"totalResults": 3, "Resources": [{"id": "u1", "userName": "ada"}]})),
        )
        .unwrap();
        assert_eq!(page.total, 3);
        assert_eq!(page.resources, vec![json!({"id": "u1", "userName": "ada"})]);
        // Nothing matched: Resources may be left out, or the body empty.
        let empty = Page {
            total: 0,
            resources: Vec::new(),
        };
        assert_eq!(
            read_page("GET", "/Users", Some(json!({"totalResults": 0}))).unwrap(),
            empty
        );
        assert_eq!(read_page("GET", "/Users", None).unwrap(), empty);
    }

    /// A listed resource without a usable id used to be linked with an
    /// empty SCIM id (and a group without one created again); a list that
    /// is not an array read as "no match", so the user was created again.
    #[test]
    fn a_list_page_with_a_resource_without_id_or_no_array_is_rejected() {
        for (answer, reason) in [
            (
                json!({"totalResults": 2, "Resources": [{"id": "u1"}, {"userName": "ada"}]}),
                "Resources[1]: no id",
            ),
            (
                json!({"totalResults": 1, "Resources": [{"id": ""}]}),
                "Resources[0]: id is empty",
            ),
            (
                json!({"totalResults": 1, "Resources": [{"id": 17}]}),
                "Resources[0]: id is not a string",
            ),
            (
                json!({"totalResults": 1, "Resources": ["u1"]}),
                "Resources[0]: not a JSON object",
            ),
            (
                json!({"totalResults": 1, "Resources": {"id": "u1"}}),
                "Resources is not an array",
            ),
            (
                json!([{"id": "u1"}]),
                "the list answer is not a JSON object",
            ),
        ] {
            let error = read_page("GET", "/Groups", Some(answer)).unwrap_err();
            assert_eq!(error.request(), Some(("GET", "/Groups")));
            assert_eq!(decode_reason(error), reason);
        }
    }

    /// A `200 OK` with an empty body to a GET used to read as "no such
    /// account", so the account was created again.
    #[test]
    fn a_resource_answer_needs_a_body_with_an_id() {
        let user = json!({"id": "u1", "active": false});
        assert_eq!(
            read_resource("GET", "/Users/u1", Some(user.clone())).unwrap(),
            user
        );
        for (answer, reason) in [
            (None, "the answer has no body"),
            (Some(json!({"userName": "ada"})), "no id"),
            (Some(json!({"id": null})), "no id"),
            (Some(json!("u1")), "not a JSON object"),
        ] {
            let error = read_resource("GET", "/Users/u1", answer).unwrap_err();
            assert_eq!(error.request(), Some(("GET", "/Users/u1")));
            assert_eq!(decode_reason(error), reason);
        }
    }
}
