//! The SCIM 2.0 client of one app: its requests, authenticated and
//! limited, and their answers.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tracing::Instrument;

use super::error::transport_reason;
use super::resource::{meta_version, Versioned};
use super::{
    filter_value, read_answer, read_capabilities, read_page, read_resource, Capabilities,
    ClientError, Paging, PatchOp, Result, ScimError, PATCH_OP, SCIM_JSON,
};
use crate::auth::{Authenticator, Credentials};
use crate::limit::{Limiter, Limits};

/// The body and the `ETag` of a successful answer.
pub(super) struct Answer {
    pub(super) body: Option<Value>,
    pub(super) etag: Option<String>,
}

impl Answer {
    /// The body as a [`Versioned`] resource.
    pub(super) fn versioned(self) -> Versioned {
        let version = self
            .etag
            .or_else(|| self.body.as_ref().and_then(meta_version));
        Versioned {
            resource: self.body,
            version,
        }
    }
}

/// One request to the app.
struct Request<'a> {
    method: Method,
    /// Below the base URL: `/Users/{id}`.
    path: &'a str,
    query: &'a [(&'a str, String)],
    body: Option<&'a Value>,
    /// Sent as `If-Match` when given.
    if_match: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// `method` on `path`, with no query, no body and no `If-Match`.
    fn new(method: Method, path: &'a str) -> Self {
        Request {
            method,
            path,
            query: &[],
            body: None,
            if_match: None,
        }
    }

    /// The resource type (`Users` in `/Users/{id}`): low cardinality, for
    /// spans and metrics.
    fn resource(&self) -> &'a str {
        self.path.split('/').nth(1).unwrap_or_default()
    }

    /// The request failed in transit; `maybe_applied` if the app may have
    /// received it.
    fn transport_error(&self, error: &reqwest::Error, maybe_applied: bool) -> ScimError {
        ScimError::Transport {
            method: self.method.to_string(),
            path: self.path.to_owned(),
            reason: transport_reason(error),
            maybe_applied,
        }
    }
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
    pub fn new(base_url: &str, bearer: &str, timeout: Duration) -> Result<Self, ClientError> {
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
    ) -> Result<Self, ClientError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(SCIM_JSON));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(ClientError::Http)?;
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
        let request = Request {
            query,
            body,
            ..Request::new(method, path)
        };
        Ok(self.exchange(&request).await?.body)
    }

    /// One request, renewing the access token once if the app rejects it;
    /// the answer's body and `ETag`.
    async fn exchange(&self, request: &Request<'_>) -> Result<Answer> {
        let _admission = self.limiter.admit().await;
        let mut renewed = false;
        loop {
            let authorization = self.auth.header().await?;
            // One span per request, in the change's trace; the app receives
            // it as a W3C `traceparent` header.
            let span = tracing::info_span!(
                "scim.request",
                app = %self.app,
                method = %request.method,
                resource = request.resource(),
            );
            match self
                .send(request, authorization.clone())
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

    async fn send(&self, request: &Request<'_>, authorization: HeaderValue) -> Result<Answer> {
        let &Request {
            ref method,
            path,
            query,
            body,
            if_match,
        } = request;
        let url = format!("{}{path}", self.base);
        let mut builder = self
            .http
            .request(method.clone(), &url)
            .header(AUTHORIZATION, authorization);
        for (name, value) in hrsync_telemetry::propagation::inject(&tracing::Span::current()) {
            builder = builder.header(name, value);
        }
        if !query.is_empty() {
            builder = builder.query(query);
        }
        if let Some(version) = if_match.and_then(|v| HeaderValue::from_str(v).ok()) {
            builder = builder.header(IF_MATCH, version);
        }
        if let Some(body) = body {
            builder = builder
                .header(CONTENT_TYPE, SCIM_JSON)
                .body(body.to_string());
        }
        let started = std::time::Instant::now();
        let sent = builder.send().await;
        let status = match &sent {
            Ok(response) => response.status().as_str().to_owned(),
            Err(e) if e.is_timeout() => "timeout".to_owned(),
            Err(_) => "connection".to_owned(),
        };
        // Low cardinality: the method and the resource type, never an id.
        metrics::histogram!(
            "hrsync_provisioner_scim_request_seconds",
            "app" => self.app.to_string(),
            "operation" => format!("{method} {}", request.resource()),
            "status" => status,
        )
        .record(started.elapsed().as_secs_f64());
        // A request that timed out or was cut after sending may have been
        // applied.
        let response = sent.map_err(|e| request.transport_error(&e, !e.is_connect()))?;
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
        let text = read_body(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| match e {
                BodyError::Transport(e) => request.transport_error(&e, true),
                BodyError::TooLarge => ScimError::Decode {
                    method: method.to_string(),
                    path: path.to_owned(),
                    reason: format!(
                        "answer larger than {} MiB; not read",
                        MAX_ANSWER_BYTES >> 20
                    ),
                },
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
        let path = resource_path("GET", resource, id)?;
        match self.exchange(&Request::new(Method::GET, &path)).await {
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
        let request = Request {
            body: Some(body),
            ..Request::new(Method::POST, &path)
        };
        let answer = self.exchange(&request).await?;
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
        let path = resource_path("PUT", resource, id)?;
        let request = Request {
            body: Some(body),
            if_match,
            ..Request::new(Method::PUT, &path)
        };
        Ok(self.exchange(&request).await?.versioned())
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
        let path = resource_path("PATCH", resource, id)?;
        let body = patch_body(ops);
        let request = Request {
            body: Some(&body),
            if_match,
            ..Request::new(Method::PATCH, &path)
        };
        Ok(self.exchange(&request).await?.versioned())
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
            &resource_path("PATCH", resource, id)?,
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
        let path = resource_path("GET", "Users", id)?;
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

/// `/{resource}/{id}`, the id percent-encoded as one path segment: an id is
/// the app's, and may hold `/`, `?`, `#` or spaces, which must not change
/// the request's target. An id of `.` or `..` cannot be sent at all (a URL
/// reads it as a step up or in place, encoded or not).
///
/// # Errors
/// [`ScimError::Decode`] for such an id.
pub(crate) fn resource_path(method: &str, resource: &str, id: &str) -> Result<String> {
    use std::fmt::Write as _;
    let mut path = format!("/{resource}/");
    if id.is_empty() || (id.len() <= 2 && id.bytes().all(|b| b == b'.')) {
        return Err(ScimError::Decode {
            method: method.to_owned(),
            path: format!("{path}{id}"),
            reason: format!("the app's resource id {id:?} cannot name a resource in a URL"),
        });
    }
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            path.push(char::from(byte));
        } else {
            let _ = write!(path, "%{byte:02X}");
        }
    }
    Ok(path)
}

/// The largest answer read from an app (a page of users, a group with
/// every member): a larger one is refused rather than held in memory, so a
/// broken or hostile app cannot exhaust the provisioner that serves every
/// other app too.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Why an answer's body was not read.
enum BodyError {
    /// The connection failed while reading.
    Transport(reqwest::Error),
    /// It is (or says it is) larger than the limit.
    TooLarge,
}

/// The body of `response` as text (invalid UTF-8 replaced), read chunk by
/// chunk up to `limit` bytes.
async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<String, BodyError> {
    let declared = response.content_length().unwrap_or(0);
    if declared > u64::try_from(limit).unwrap_or(u64::MAX) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}
