//! The HTTP endpoints (RFC 7644 §3, §4): discovery, `/Users` and `/Groups`,
//! searches, bearer authentication, SCIM errors and content type.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{
    DefaultBodyLimit, Extension, FromRequest, FromRequestParts, Path, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::error::ScimError;
use crate::filter::{self, AttrRef, Expr};
use crate::oauth::{Issued, OAuthClient};
use crate::quirks::{self, Quirk};
use crate::resource::{self, Projection};
use crate::schema::{self, Kind};
use crate::store::{self, Snapshot, Store};

/// The media type of every SCIM body (RFC 7644 §8.1).
const SCIM_JSON: &str = "application/scim+json";

/// Settings of the app besides its token.
#[derive(Debug, Clone)]
pub struct Options {
    /// The absolute URL clients reach the app at (`https://scim.example/v2`),
    /// for `Location` and `meta.location`. `None`: `http://` and the
    /// request's `Host`, which suits the app served at the root of its own
    /// address.
    pub base_url: Option<String>,
    /// The most resources one list response holds, announced as
    /// `filter.maxResults`; also the page size when a client asks none.
    pub max_results: usize,
    /// The largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// An OAuth 2.0 client: `POST /oauth/token` then issues access tokens
    /// (client credentials grant), accepted beside the static token.
    pub oauth: Option<OAuthClient>,
    /// The quirk modes switched on (none by default: the app is then
    /// conformant).
    pub quirks: BTreeSet<Quirk>,
    /// How long a PATCH waits between reading and writing back the
    /// resource with [`Quirk::ReadChangeWritePatch`].
    pub patch_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            base_url: None,
            max_results: 1000,
            max_body_bytes: 1 << 20,
            oauth: None,
            quirks: BTreeSet::new(),
            patch_delay: Duration::from_millis(100),
        }
    }
}

/// The app: its store, bearer token and options. Cheap to clone (shared).
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    token: String,
    options: Options,
    issued: Issued,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("AppState")
            .field("users", &self.user_count())
            .field("groups", &self.group_count())
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// An empty app accepting requests bearing `token`, with default
    /// options. An empty token authenticates nothing.
    pub fn new(token: impl Into<String>) -> Self {
        Self::with_options(token, Options::default())
    }

    /// An empty app accepting requests bearing `token`.
    pub fn with_options(token: impl Into<String>, options: Options) -> Self {
        let mut options = options;
        options.max_results = options.max_results.max(1);
        if let Some(base) = &mut options.base_url {
            let trimmed = base.trim_end_matches('/').len();
            base.truncate(trimmed);
        }
        AppState {
            shared: Arc::new(Shared {
                store: Store::new(
                    options.quirks.contains(&Quirk::UniqueGroupNames),
                    options.quirks.contains(&Quirk::DuplicateUserNames),
                ),
                token: token.into(),
                options,
                issued: Issued::default(),
            }),
        }
    }

    /// How many users the app holds.
    pub fn user_count(&self) -> usize {
        self.shared.store.len(Kind::User)
    }

    /// How many groups the app holds.
    pub fn group_count(&self) -> usize {
        self.shared.store.len(Kind::Group)
    }

    /// Revokes every OAuth access token issued so far.
    pub fn revoke_access_tokens(&self) {
        self.shared.issued.revoke_all();
    }

    /// How many OAuth access tokens were issued so far.
    pub fn access_tokens_issued(&self) -> u64 {
        self.shared.issued.count()
    }

    pub(crate) fn oauth_client(&self) -> Option<&OAuthClient> {
        self.shared.options.oauth.as_ref()
    }

    pub(crate) fn issued(&self) -> &Issued {
        &self.shared.issued
    }

    fn store(&self) -> &Store {
        &self.shared.store
    }

    fn max_results(&self) -> usize {
        self.shared.options.max_results
    }

    /// Whether `quirk` is switched on.
    fn quirk(&self, quirk: Quirk) -> bool {
        self.shared.options.quirks.contains(&quirk)
    }

    /// A rendered resource or list response as the quirks switched on
    /// bend it.
    fn bend(&self, mut body: Value) -> Value {
        if self.quirk(Quirk::NoSchemas) {
            if let Value::Object(fields) = &mut body {
                fields.remove("schemas");
            }
        }
        if self.quirk(Quirk::StringBooleans) {
            quirks::stringify_booleans(&mut body);
        }
        body
    }

    /// Whether `presented` is the token, compared in constant time.
    fn token_matches(&self, presented: &str) -> bool {
        let expected = self.shared.token.as_bytes();
        let presented = presented.as_bytes();
        !expected.is_empty()
            && expected.len() == presented.len()
            && expected
                .iter()
                .zip(presented)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }

    /// The URL resources are located under, for this request.
    pub(crate) fn base(&self, headers: &HeaderMap) -> String {
        if let Some(base) = &self.shared.options.base_url {
            return base.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && !h.contains(['/', ' ']))
            .unwrap_or("localhost");
        format!("http://{host}")
    }
}

/// The SCIM app as an axum router: every endpoint at the root of the
/// router, bearer authentication on all of them but `/healthz` and the
/// OAuth token endpoint `/oauth/token`.
pub fn router(state: AppState) -> Router {
    let max_body = state.shared.options.max_body_bytes;
    let not_allowed =
        |allow: &'static str| move || async move { ScimError::method_not_allowed(allow) };
    let mut scim = Router::new()
        .route(
            "/ServiceProviderConfig",
            get(service_provider_config).fallback(not_allowed("GET")),
        )
        .route(
            "/ResourceTypes",
            get(resource_types).fallback(not_allowed("GET")),
        )
        .route(
            "/ResourceTypes/{id}",
            get(resource_type).fallback(not_allowed("GET")),
        )
        .route("/Schemas", get(schemas).fallback(not_allowed("GET")))
        .route(
            "/Schemas/{id}",
            get(schema_by_id).fallback(not_allowed("GET")),
        )
        .route("/", get(root_query).fallback(not_allowed("GET")))
        .route("/.search", post(root_search).fallback(not_allowed("POST")));
    for kind in Kind::ALL {
        let base = format!("/{}", kind.endpoint());
        let routes = Router::new()
            .route(
                &base,
                get(list).post(create).fallback(not_allowed("GET, POST")),
            )
            .route(
                &format!("{base}/.search"),
                post(search).fallback(not_allowed("POST")),
            )
            .route(
                &format!("{base}/{{id}}"),
                get(read)
                    .put(replace)
                    .patch(patch)
                    .delete(delete)
                    .fallback(not_allowed("GET, PUT, PATCH, DELETE")),
            )
            .layer(Extension(kind));
        scim = scim.merge(routes);
    }
    scim.fallback(|| async { ScimError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/oauth/token", post(crate::oauth::token))
        .layer(middleware::from_fn(log_request))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if presented.is_some_and(|token| {
        state.token_matches(token)
            || (state.oauth_client().is_some() && state.issued().accepts(token))
    }) {
        next.run(request).await
    } else {
        ScimError::unauthorized().into_response()
    }
}

/// Logs each request at debug level: method, path (never the query, which
/// may hold personal data in a filter, nor the headers), status, latency.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// A SCIM JSON response.
pub(crate) fn scim_json(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

/// The query string, names compared case-insensitively.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ScimError::invalid_value(format!("invalid query string: {e}")))?;
        Ok(Params(pairs))
    }
}

/// What a request about one resource (`/Users/{id}`) names, read from its
/// head: the kind (the route's), the id, the headers and the query string.
struct ResourceRequest {
    kind: Kind,
    id: String,
    headers: HeaderMap,
    params: Params,
}

impl<S: Send + Sync> FromRequestParts<S> for ResourceRequest {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A bad query string is reported before a bad path.
        let (Extension(kind), params, Path(id)) =
            <(Extension<Kind>, Params, Path<String>)>::from_request_parts(parts, state).await?;
        Ok(ResourceRequest {
            kind,
            id,
            headers: parts.headers.clone(),
            params,
        })
    }
}

impl ResourceRequest {
    /// `200 OK` with the resource as this request asks for it.
    fn answer(&self, state: &AppState, snapshot: &Snapshot) -> Result<Response, ScimError> {
        resource_response(state, &self.headers, &self.params, StatusCode::OK, snapshot)
    }
}

/// A JSON request body, whatever its declared type (`application/scim+json`
/// or `application/json`), within the body limit.
struct ScimBody(Value);

impl<S: Send + Sync> FromRequest<S> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| ScimError::status(rejection.status(), rejection.body_text()))?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| ScimError::invalid_syntax(format!("the body is not valid JSON: {e}")))?;
        Ok(ScimBody(value))
    }
}

fn list_response(total: usize, start: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [schema::LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

async fn service_provider_config(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = state.base(&headers);
    scim_json(
        StatusCode::OK,
        &schema::service_provider_config(&base, state.max_results()),
    )
}

async fn resource_types(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = state.base(&headers);
    let types: Vec<Value> = Kind::ALL
        .iter()
        .map(|k| k.resource_type_json(&base))
        .collect();
    scim_json(StatusCode::OK, &list_response(types.len(), 1, types))
}

async fn resource_type(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let base = state.base(&headers);
    let found = Kind::ALL.into_iter().find(|k| k.name() == id);
    discovered(
        found.map(|k| k.resource_type_json(&base)),
        "resource type",
        &id,
    )
}

async fn schemas(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = state.base(&headers);
    let schemas: Vec<Value> = schema::all_schemas().map(|s| s.to_json(&base)).collect();
    scim_json(StatusCode::OK, &list_response(schemas.len(), 1, schemas))
}

async fn schema_by_id(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let base = state.base(&headers);
    let found = schema::all_schemas().find(|s| s.id == id);
    discovered(found.map(|s| s.to_json(&base)), "schema", &id)
}

/// A discovery resource found by its id, or a 404 naming `what` was not.
fn discovered(found: Option<Value>, what: &str, id: &str) -> Result<Response, ScimError> {
    found
        .map(|json| scim_json(StatusCode::OK, &json))
        .ok_or_else(|| ScimError::not_found(format!("no {what} {id:?}")))
}

/// What a query asks for, from a query string or a search request.
struct QuerySpec {
    filter: Option<String>,
    start: usize,
    count: usize,
    attributes: Option<String>,
    excluded: Option<String>,
}

fn parse_index(name: &str, value: Option<&Value>) -> Result<Option<i64>, ScimError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ScimError::invalid_value(format!("{name} must be an integer"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer"))),
        Some(_) => Err(ScimError::invalid_value(format!(
            "{name} must be an integer"
        ))),
    }
}

impl QuerySpec {
    fn new(
        filter: Option<String>,
        start: Option<i64>,
        count: Option<i64>,
        attributes: Option<String>,
        excluded: Option<String>,
        max_results: usize,
    ) -> Self {
        // RFC 7644 §3.4.2.4: a startIndex below 1 means 1, a negative count 0.
        let start = usize::try_from(start.unwrap_or(1).max(1)).unwrap_or(usize::MAX);
        let count = count.map_or(max_results, |c| {
            usize::try_from(c.max(0))
                .unwrap_or(usize::MAX)
                .min(max_results)
        });
        QuerySpec {
            filter: filter.filter(|f| !f.trim().is_empty()),
            start,
            count,
            attributes: attributes.filter(|a| !a.trim().is_empty()),
            excluded: excluded.filter(|a| !a.trim().is_empty()),
        }
    }

    fn from_params(params: &Params, max_results: usize) -> Result<Self, ScimError> {
        let index = |name: &str| {
            parse_index(
                name,
                params
                    .get(name)
                    .map(|v| Value::String(v.to_owned()))
                    .as_ref(),
            )
        };
        Ok(Self::new(
            params.get("filter").map(str::to_owned),
            index("startIndex")?,
            index("count")?,
            params.get("attributes").map(str::to_owned),
            params.get("excludedAttributes").map(str::to_owned),
            max_results,
        ))
    }

    /// From a search request body (RFC 7644 §3.4.3).
    fn from_body(body: Value, max_results: usize) -> Result<Self, ScimError> {
        let Value::Object(body) = body else {
            return Err(ScimError::invalid_syntax(
                "the search request must be a JSON object",
            ));
        };
        let field = |name: &str| {
            body.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
        };
        if let Some(schemas) = field("schemas") {
            schema::require_listed(schemas, schema::SEARCH_REQUEST)?;
        }
        let names = |name: &str| -> Result<Option<String>, ScimError> {
            match field(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(list)) => Ok(Some(list.clone())),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .map(|names| Some(names.join(",")))
                    .ok_or_else(|| {
                        ScimError::invalid_value(format!("{name} must list attribute names"))
                    }),
                Some(_) => Err(ScimError::invalid_value(format!(
                    "{name} must list attribute names"
                ))),
            }
        };
        let filter = match field("filter") {
            None | Some(Value::Null) => None,
            Some(Value::String(f)) => Some(f.clone()),
            Some(_) => return Err(ScimError::invalid_value("filter must be a string")),
        };
        Ok(Self::new(
            filter,
            parse_index("startIndex", field("startIndex"))?,
            parse_index("count", field("count"))?,
            names("attributes")?,
            names("excludedAttributes")?,
            max_results,
        ))
    }
}

/// Runs a query over resource types `kinds` and renders the list response.
/// Across several types (a query at the root), an attribute one type does
/// not have (`userName` for groups) has no value in its resources; a filter
/// no type understands is refused.
fn run_query(
    state: &AppState,
    headers: &HeaderMap,
    kinds: &[Kind],
    spec: QuerySpec,
) -> Result<Response, ScimError> {
    let parsed = spec
        .filter
        .as_deref()
        .map(filter::parse_filter)
        .transpose()?;
    let exact = state.quirk(Quirk::CaseSensitiveFilter);
    let mut targets: Vec<(Kind, Option<Expr<AttrRef>>)> = Vec::new();
    if let Some(parsed) = &parsed {
        let strict: Vec<_> = kinds
            .iter()
            .map(|&kind| filter::resolve_filter_as(kind, parsed, false, exact))
            .collect();
        if strict.iter().all(Result::is_err) {
            if let Some(Err(error)) = strict.into_iter().next() {
                return Err(error);
            }
            return Ok(scim_json(
                StatusCode::OK,
                &state.bend(list_response(0, spec.start, Vec::new())),
            ));
        }
        for (&kind, resolved) in kinds.iter().zip(strict) {
            let resolved = match resolved {
                Ok(resolved) => resolved,
                Err(_) => filter::resolve_filter_as(kind, parsed, true, exact)?,
            };
            targets.push((kind, Some(resolved)));
        }
    } else {
        targets.extend(kinds.iter().map(|&kind| (kind, None)));
    }
    let projections = kinds
        .iter()
        .map(|&kind| {
            Projection::parse(kind, spec.attributes.as_deref(), spec.excluded.as_deref())
                .map(|p| (kind, p))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut page = state.store().search(&targets, spec.start, spec.count);
    if state.quirk(Quirk::PagingRestarts)
        && page.items.is_empty()
        && page.total > 0
        && spec.start > page.total
    {
        // Past the end: the first page again, as if startIndex were 1.
        page = state.store().search(&targets, 1, spec.count);
    }
    let base = state.base(headers);
    let resources = page
        .items
        .iter()
        .map(|snapshot| {
            let projection = projections
                .iter()
                .find(|(kind, _)| *kind == snapshot.kind)
                .map(|(_, p)| p.clone())
                .unwrap_or_else(Projection::default_set);
            state.bend(render(snapshot, &projection, &base))
        })
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        &state.bend(list_response(page.total, spec.start, resources)),
    ))
}

fn render(snapshot: &Snapshot, projection: &Projection, base: &str) -> Value {
    resource::render(
        snapshot.kind,
        &snapshot.resource,
        &snapshot.groups,
        projection,
        base,
    )
}

/// A single resource, with its `ETag` (and `Location` when created).
fn resource_response(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
    status: StatusCode,
    snapshot: &Snapshot,
) -> Result<Response, ScimError> {
    let projection = Projection::parse(
        snapshot.kind,
        params.get("attributes"),
        params.get("excludedAttributes"),
    )?;
    let base = state.base(headers);
    let mut response = scim_json(status, &state.bend(render(snapshot, &projection, &base)));
    let response_headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&snapshot.resource.etag()) {
        response_headers.insert(header::ETAG, etag);
    }
    if status == StatusCode::CREATED && !state.quirk(Quirk::NoLocation) {
        let location = resource::location(&base, snapshot.kind, &snapshot.resource.id);
        if let Ok(location) = HeaderValue::from_str(&location) {
            response_headers.insert(header::LOCATION, location);
        }
    }
    Ok(response)
}

/// A bodiless answer (`304 Not Modified`, the quirky `204` to a PATCH)
/// that still names the resource's version.
fn etag_only(status: StatusCode, etag: &str) -> Response {
    let mut response = status.into_response();
    if let Ok(etag) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn list(
    Extension(kind): Extension<Kind>,
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ScimError> {
    let spec = QuerySpec::from_params(&params, state.max_results())?;
    run_query(&state, &headers, &[kind], spec)
}

async fn search(
    Extension(kind): Extension<Kind>,
    State(state): State<AppState>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let spec = QuerySpec::from_body(body, state.max_results())?;
    run_query(&state, &headers, &[kind], spec)
}

async fn root_query(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ScimError> {
    let spec = QuerySpec::from_params(&params, state.max_results())?;
    run_query(&state, &headers, &Kind::ALL, spec)
}

async fn root_search(
    State(state): State<AppState>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let spec = QuerySpec::from_body(body, state.max_results())?;
    run_query(&state, &headers, &Kind::ALL, spec)
}

async fn create(
    Extension(kind): Extension<Kind>,
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let attrs = resource::normalize_body(kind, body)?;
    let snapshot = state.store().create(kind, attrs)?;
    resource_response(&state, &headers, &params, StatusCode::CREATED, &snapshot)
}

async fn read(
    State(state): State<AppState>,
    request: ResourceRequest,
) -> Result<Response, ScimError> {
    let (kind, id) = (request.kind, request.id.as_str());
    let snapshot = state
        .store()
        .get(kind, id)
        .ok_or_else(|| ScimError::not_found(format!("no {} with id {id:?}", kind.name())))?;
    let etag = snapshot.resource.etag();
    if header_str(&request.headers, header::IF_NONE_MATCH)
        .is_some_and(|h| store::etag_matches(h, &etag))
    {
        return Ok(etag_only(StatusCode::NOT_MODIFIED, &etag));
    }
    request.answer(&state, &snapshot)
}

async fn replace(
    State(state): State<AppState>,
    request: ResourceRequest,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let attrs = resource::normalize_body(request.kind, body)?;
    let if_match = header_str(&request.headers, header::IF_MATCH);
    let snapshot = state
        .store()
        .replace(request.kind, &request.id, attrs, if_match)?;
    request.answer(&state, &snapshot)
}

async fn patch(
    State(state): State<AppState>,
    request: ResourceRequest,
    ScimBody(body): ScimBody,
) -> Result<Response, ScimError> {
    let (kind, id) = (request.kind, request.id.as_str());
    let if_match = header_str(&request.headers, header::IF_MATCH);
    let snapshot = if state.quirk(Quirk::ReadChangeWritePatch) {
        let attrs = state.store().read_and_change(kind, id, body, if_match)?;
        tokio::time::sleep(state.shared.options.patch_delay).await;
        state.store().write_back(kind, id, attrs)?
    } else {
        state.store().patch(kind, id, body, if_match)?
    };
    if state.quirk(Quirk::Patch204) {
        return Ok(etag_only(StatusCode::NO_CONTENT, &snapshot.resource.etag()));
    }
    request.answer(&state, &snapshot)
}

async fn delete(
    Extension(kind): Extension<Kind>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ScimError> {
    let if_match = header_str(&headers, header::IF_MATCH);
    state.store().delete(kind, &id, if_match)?;
    Ok(StatusCode::NO_CONTENT)
}
