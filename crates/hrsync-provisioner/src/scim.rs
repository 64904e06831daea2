//! A SCIM 2.0 client (RFC 7644) that behaves like the clients app vendors
//! test against: match with a `userName eq` filter, create with
//! `externalId`, update with PATCH where the server supports it (PUT
//! otherwise), deactivate with `active: false`, never DELETE.
//!
//! It takes real servers as they answer: `active` and `primary` as the
//! strings `"True"`/`"False"`, PATCH answered 200 with the resource or 204
//! without, a create without `Location`, answers without `schemas`, and
//! list paging that answers the first page again past the end. Where the
//! server supports ETags, writes can carry `If-Match` with the version last
//! seen ([`Versioned`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, RETRY_AFTER,
};
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

impl ScimError {
    /// Whether a retry may succeed: 408, 429, 5xx and transport failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            ScimError::Status { status, .. } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            ScimError::Transport { .. } => true,
            ScimError::Ambiguous { .. }
            | ScimError::Decode { .. }
            | ScimError::Unmatched { .. } => false,
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

/// Result of SCIM calls.
pub type Result<T, E = ScimError> = std::result::Result<T, E>;

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

/// The body and the `ETag` of a successful answer.
struct Answer {
    body: Option<Value>,
    etag: Option<String>,
}

impl Answer {
    /// The body as a [`Versioned`] resource.
    fn versioned(self) -> Versioned {
        let version = self
            .etag
            .or_else(|| self.body.as_ref().and_then(meta_version));
        Versioned {
            resource: self.body,
            version,
        }
    }
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
        Ok(self.exchange(method, path, query, body, None).await?.body)
    }

    /// One request, with `If-Match: if_match` when given; the answer's
    /// body and `ETag`.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Answer> {
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
                .send(
                    method.clone(),
                    path,
                    query,
                    body,
                    if_match,
                    authorization.clone(),
                )
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
        if_match: Option<&str>,
        authorization: HeaderValue,
    ) -> Result<Answer> {
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
        if let Some(version) = if_match.and_then(|v| HeaderValue::from_str(v).ok()) {
            request = request.header(IF_MATCH, version);
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
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let text = response.text().await.map_err(|e| ScimError::Transport {
            method: method.to_string(),
            path: path.to_owned(),
            reason: transport_reason(&e),
            maybe_applied: true,
        })?;
        let body = read_answer(
            method.as_str(),
            path,
            status.as_u16(),
            retry_after.as_deref(),
            &text,
        )?;
        Ok(Answer { body, etag })
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

    /// The resources whose `attribute` equals `value` (as the server
    /// compares them), at most 10,000; see [`ScimClient::list`] for how
    /// pages are followed.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn find(&self, resource: &str, attribute: &str, value: &str) -> Result<Vec<Value>> {
        let filter = format!("{attribute} eq {}", filter_value(value));
        self.list(resource, Some(&filter), 10_000).await
    }

    /// The resources of type `resource` that `filter` selects (every one
    /// without), at most `limit`, read page by page. Paging stops at
    /// `totalResults`, at an empty page, and at a page that brings no
    /// resource not seen before (a server that answers the first page again
    /// past the end, or ignores `startIndex`); a resource listed twice is
    /// kept once. A 404 (some servers' "no match") is an empty list.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn list(
        &self,
        resource: &str,
        filter: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Value>> {
        let path = format!("/{resource}");
        let mut paging = Paging::new(limit);
        while let Some(start) = paging.next_start() {
            let mut query = vec![
                ("startIndex", start.to_string()),
                ("count", PAGE_SIZE.to_string()),
            ];
            if let Some(filter) = filter {
                query.push(("filter", filter.to_owned()));
            }
            let answer = match self.call(Method::GET, &path, &query, None).await {
                Ok(answer) => answer,
                Err(ScimError::Status { status: 404, .. }) => break,
                Err(e) => return Err(e),
            };
            paging.take(read_page("GET", &path, answer)?);
        }
        Ok(paging.into_resources())
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

    /// A resource by id; `None` when the server says 404.
    ///
    /// # Errors
    /// See [`ScimError`]; [`ScimError::Decode`] when a success carries no
    /// resource with an id.
    pub async fn get(&self, resource: &str, id: &str) -> Result<Option<Value>> {
        Ok(self
            .get_versioned(resource, id)
            .await?
            .and_then(|v| v.resource))
    }

    /// [`ScimClient::get`] with the resource's version.
    ///
    /// # Errors
    /// See [`ScimClient::get`].
    pub async fn get_versioned(&self, resource: &str, id: &str) -> Result<Option<Versioned>> {
        let path = format!("/{resource}/{id}");
        match self.exchange(Method::GET, &path, &[], None, None).await {
            Ok(answer) => {
                let resource = read_resource("GET", &path, answer.body)?;
                Ok(Some(
                    Answer {
                        body: Some(resource),
                        etag: answer.etag,
                    }
                    .versioned(),
                ))
            }
            Err(ScimError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a resource; returns it as the server stored it.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn create(&self, resource: &str, body: &Value) -> Result<Value> {
        let (created, _) = self.create_versioned(resource, body).await?;
        Ok(created)
    }

    /// [`ScimClient::create`] with the created resource's version. Neither
    /// a `Location` header nor `schemas` in the answer is needed.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn create_versioned(
        &self,
        resource: &str,
        body: &Value,
    ) -> Result<(Value, Option<String>)> {
        let path = format!("/{resource}");
        let answer = self
            .exchange(Method::POST, &path, &[], Some(body), None)
            .await?;
        let created = read_resource("POST", &path, answer.body)?;
        let version = answer.etag.or_else(|| meta_version(&created));
        Ok((created, version))
    }

    /// Replaces a resource (PUT); returns it as stored.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn replace(&self, resource: &str, id: &str, body: &Value) -> Result<Option<Value>> {
        Ok(self
            .replace_versioned(resource, id, body, None)
            .await?
            .resource)
    }

    /// Replaces a resource (PUT) with `If-Match: if_match` when given (a
    /// server that holds another version answers 412).
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn replace_versioned(
        &self,
        resource: &str,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Versioned> {
        let path = format!("/{resource}/{id}");
        Ok(self
            .exchange(Method::PUT, &path, &[], Some(body), if_match)
            .await?
            .versioned())
    }

    /// Applies PATCH operations; returns the resource if the server sent it
    /// (200) and `None` for 204.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn patch(&self, resource: &str, id: &str, ops: &[PatchOp]) -> Result<Option<Value>> {
        self.patch_with(resource, id, ops, &[]).await
    }

    /// Applies PATCH operations with `If-Match: if_match` when given (a
    /// server that holds another version answers 412); the resource if the
    /// server sent it (200, or none with 204) and its version.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn patch_versioned(
        &self,
        resource: &str,
        id: &str,
        ops: &[PatchOp],
        if_match: Option<&str>,
    ) -> Result<Versioned> {
        let body = patch_body(ops);
        Ok(self
            .exchange(
                Method::PATCH,
                &format!("/{resource}/{id}"),
                &[],
                Some(&body),
                if_match,
            )
            .await?
            .versioned())
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
        let body = patch_body(ops);
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
        self.set_active_versioned(id, active, patch, None)
            .await
            .map(|_| ())
    }

    /// [`ScimClient::set_active`] with `If-Match: if_match` on the PATCH
    /// when given; without PATCH, the PUT carries the version the GET
    /// read (if any). Returns the user's new version.
    ///
    /// # Errors
    /// See [`ScimError`].
    pub async fn set_active_versioned(
        &self,
        id: &str,
        active: bool,
        patch: bool,
        if_match: Option<&str>,
    ) -> Result<Versioned> {
        if patch {
            let op = PatchOp {
                op: "replace",
                path: None,
                value: Some(json!({ "active": active })),
            };
            return self.patch_versioned("Users", id, &[op], if_match).await;
        }
        let path = format!("/Users/{id}");
        let read = self
            .get_versioned("Users", id)
            .await?
            .ok_or_else(|| ScimError::Status {
                method: "GET".to_owned(),
                path: path.clone(),
                status: StatusCode::NOT_FOUND.as_u16(),
                scim_type: None,
                detail: Some("user vanished".to_owned()),
                retry_after: None,
            })?;
        let mut user = read.resource.unwrap_or_default();
        user["active"] = Value::Bool(active);
        if let Some(object) = user.as_object_mut() {
            object.remove("meta");
        }
        // Only when the caller uses versions: the PUT then replaces the
        // user as just read, not a version changed in between.
        let version = if_match.and(read.version.as_deref());
        self.replace_versioned("Users", id, &user, version).await
    }
}

/// Most resources asked for per list page.
const PAGE_SIZE: usize = 100;

/// The body of a PATCH request.
fn patch_body(ops: &[PatchOp]) -> Value {
    json!({
        "schemas": [PATCH_OP],
        "Operations": ops.iter().map(PatchOp::to_json).collect::<Vec<_>>(),
    })
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
            r#"{"patch":{"supported":true},"filter":{"supported":"yes"},"etag":{"supported":"True"},"bulk":{"supported":true}}"#,
        )
        .unwrap();
        assert_eq!(
            read_capabilities(Some(&config)),
            Capabilities {
                patch: true,
                filter: false,
                etag: true,
            }
        );
        let none = Capabilities {
            patch: false,
            filter: false,
            etag: false,
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

    /// Servers that send booleans as strings (`"True"`): `active` and
    /// `primary` are read as booleans wherever they are; other strings
    /// are left alone.
    #[test]
    fn string_booleans_are_read_as_booleans() {
        let answer = read_answer(
            "GET",
            "/Users",
            200,
            None,
            r#"{"totalResults":1,"Resources":[{"id":"u1","active":"False","title":"True",
                "emails":[{"value":"a@example.com","primary":"TRUE"}],"x":{"active":"maybe"}}]}"#,
        )
        .unwrap();
        let page = read_page("GET", "/Users", answer).unwrap();
        assert_eq!(
            page.resources[0],
            json!({"id": "u1", "active": false, "title": "True",
                "emails": [{"value": "a@example.com", "primary": true}], "x": {"active": "maybe"}})
        );
        assert_eq!(read_bool(&json!(" false ")), Some(false));
        assert_eq!(read_bool(&json!(1)), None);
    }

    fn page(total: usize, ids: &[&str]) -> Page {
        Page {
            total,
            resources: ids.iter().map(|id| json!({ "id": id })).collect(),
        }
    }

    fn ids(paging: Paging) -> Vec<String> {
        paging
            .into_resources()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Paging stops at `totalResults`, at a page that brings nothing new
    /// (the first page answered again past the end, or `startIndex`
    /// ignored) and at the limit; nothing is listed twice.
    #[test]
    fn paging_stops_by_total_by_ids_seen_and_at_the_limit() {
        let mut paging = Paging::new(100);
        assert_eq!(paging.next_start(), Some(1));
        paging.take(page(3, &["a", "b"]));
        assert_eq!(paging.next_start(), Some(3));
        paging.take(page(3, &["c"]));
        assert_eq!(paging.next_start(), None, "past totalResults");
        assert_eq!(ids(paging), ["a", "b", "c"]);

        // No totalResults: a server that answers the first page again past
        // the end stops the paging, its repeats dropped.
        let mut paging = Paging::new(100);
        paging.take(page(0, &["a", "b"]));
        paging.take(page(0, &["c", "a"]));
        assert_eq!(paging.next_start(), Some(5));
        paging.take(page(0, &["a", "b"]));
        assert_eq!(paging.next_start(), None, "nothing new");
        assert_eq!(ids(paging), ["a", "b", "c"]);

        // Accounts removed while paging: the total shrinks, the restarted
        // first page adds nothing twice.
        let mut paging = Paging::new(100);
        paging.take(page(4, &["a", "b"]));
        paging.take(page(2, &["a", "d"]));
        assert_eq!(paging.next_start(), None);
        assert_eq!(ids(paging), ["a", "b", "d"]);

        let mut paging = Paging::new(3);
        paging.take(page(10, &["a", "b"]));
        paging.take(page(10, &["c", "d"]));
        assert_eq!(paging.next_start(), None, "at the limit");
        assert_eq!(ids(paging), ["a", "b", "c"]);
        assert_eq!(Paging::new(0).next_start(), None);

        let mut paging = Paging::new(100);
        paging.take(page(7, &[]));
        assert_eq!(paging.next_start(), None, "an empty page");
    }

    #[test]
    fn a_version_is_the_etag_else_meta_version() {
        let user = json!({"id": "u1", "meta": {"version": "W/\"3\""}});
        let answer = |etag: Option<&str>, body: Option<Value>| Answer {
            body,
            etag: etag.map(str::to_owned),
        };
        assert_eq!(
            answer(Some("W/\"4\""), Some(user.clone()))
                .versioned()
                .version
                .as_deref(),
            Some("W/\"4\"")
        );
        assert_eq!(
            answer(None, Some(user)).versioned().version.as_deref(),
            Some("W/\"3\"")
        );
        assert_eq!(answer(None, None).versioned().version, None);
        assert_eq!(meta_version(&json!({"meta": {"version": ""}})), None);
    }

    /// The conflict that matches no account names attribute names, never
    /// values, and is not retried.
    #[test]
    fn an_unmatched_conflict_names_the_attributes_and_is_final() {
        let error = ScimError::Unmatched {
            attribute: "userName".into(),
            strategies: "userName, externalId".into(),
            scanned: 20,
            complete: false,
        };
        assert_eq!(
            error.to_string(),
            "POST /Users: HTTP 409: the app holds an account whose userName conflicts with this \
             user's, but no account matches by userName, externalId even ignoring case (20 \
             accounts searched, the search stopped at the limit); link or correct that account \
             in the app, then re-drive the change"
        );
        assert!(!error.is_retryable());
        assert_eq!(error.request(), Some(("POST", "/Users")));
        assert_eq!(error.status(), Some(409));
    }
}
