//! The admin console: a browser app over the admin API, on the admin API's
//! listener under `/console/`.
//!
//! - Its files (`assets/`) are embedded in the binary and served at
//!   `/console/assets/<file>`; every other page path answers the app's
//!   `index.html`, which routes in the browser.
//! - Sign-in is OpenID Connect's authorization code flow with PKCE at the
//!   `[oauth]` issuer ([`signin`]). Sign-ins under way and sessions live in
//!   the store ([`session`]), shared by every admin process on it; the
//!   browser holds an `HttpOnly` cookie.
//! - The app reads and acts only through the admin API, proxied at
//!   `/console/api/v1/...` as the session's principal (its access token
//!   verified at sign-in): the API checks its scopes as for any client.
//!   Every request but GET and HEAD must carry the session's CSRF token in
//!   `X-CSRF-Token`.

mod assets;
mod config;
mod page;
mod session;
mod signin;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use hrsync_auth::{IssuerMetadata, OAuthConfig, Problem, Verified, Verifier};
use hrsync_store::Db;
use serde_json::json;
use tower::ServiceExt as _;

pub use config::{ConsoleConfig, ConsoleConfigError};
pub use session::{pkce_challenge, random_id};

use session::{Session, Sessions, SESSION_COOKIE};

/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the console needs.
#[derive(Debug)]
pub struct Console {
    config: ConsoleConfig,
    oauth: OAuthConfig,
    verifier: Arc<Verifier>,
    /// The admin API, called in-process for the app.
    api: Router,
    http: reqwest::Client,
    sessions: Sessions,
    /// The issuer's metadata, once read.
    metadata: tokio::sync::Mutex<Option<IssuerMetadata>>,
}

impl Console {
    /// A console signing in at `oauth`'s issuer (whose tokens `verifier`
    /// checks), keeping its sessions in `db` (migrated), and calling `api`,
    /// the admin API's router.
    ///
    /// # Errors
    /// A setting that cannot work, or the HTTP client cannot be built.
    pub fn new(
        config: ConsoleConfig,
        oauth: OAuthConfig,
        verifier: Arc<Verifier>,
        db: Db,
        api: Router,
    ) -> Result<Self, ConsoleConfigError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConsoleConfigError {
                key: "client_id",
                problem: format!("HTTP client: {e}"),
            })?;
        Ok(Console {
            config,
            oauth,
            verifier,
            api,
            http,
            sessions: Sessions::new(db),
            metadata: tokio::sync::Mutex::new(None),
        })
    }

    /// The issuer's metadata, read at the first sign-in (and again after a
    /// failed read).
    async fn metadata(&self) -> Result<IssuerMetadata, String> {
        let mut cached = self.metadata.lock().await;
        if let Some(metadata) = &*cached {
            return Ok(metadata.clone());
        }
        let metadata = self.verifier.metadata().await?;
        *cached = Some(metadata.clone());
        Ok(metadata)
    }

    /// The scopes asked for at sign-in.
    fn scopes(&self) -> String {
        self.config.scopes.clone().unwrap_or_else(|| {
            format!(
                "openid profile email {} {}",
                self.oauth.scopes.read, self.oauth.scopes.admin
            )
        })
    }

    fn cookie(&self, name: &str, value: &str, max_age: u64) -> HeaderValue {
        signin::set_cookie(name, value, max_age, self.config.secure_cookies())
    }

    /// The live session the request's cookie names, with the cookie value;
    /// else the answer to give (signed out, or the store failed).
    async fn session(&self, headers: &HeaderMap) -> Result<(String, Session), Response> {
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| session::cookie(c, SESSION_COOKIE))
            .ok_or_else(signed_out)?;
        match self.sessions.find(id, chrono::Utc::now().timestamp()).await {
            Ok(Some(found)) => Ok((id.to_owned(), found)),
            Ok(None) => Err(signed_out()),
            Err(error) => Err(store_failed(&error)),
        }
    }
}

/// The session store could not be used: logged, and answered 503.
pub(crate) fn store_failed(error: &sqlx::Error) -> Response {
    tracing::warn!(%error, "the console's session store failed");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the console's sessions cannot be read now; try again shortly",
    )
    .into_response()
}

/// The console's routes, to merge beside the admin API's.
pub fn router(console: Console) -> Router {
    let console = Arc::new(console);
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/assets/{file}", get(assets::serve))
        .route("/console/login", get(signin::login))
        .route("/console/callback", get(signin::callback))
        .route("/console/session", get(current_session))
        .route("/console/logout", post(logout))
        .route("/console/api/{*path}", any(proxy))
        .route("/console/", get(assets::index))
        .route("/console/{*page}", get(assets::index))
        .with_state(console)
}

fn signed_out() -> Response {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "not signed in, or the session has ended",
    )
    .into_response()
}

/// `GET /console/session`: who is signed in, what they may do, and the
/// CSRF token the app sends with each action.
async fn current_session(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let (_, session) = match console.session(&headers).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let principal = &session.principal;
    let mut response = Json(json!({
        "subject": principal.subject,
        "name": session.identity.name,
        "email": session.identity.email,
        "scopes": principal.scopes,
        "can_act": principal.has(&console.oauth.scopes.admin),
        "csrf_token": session.csrf_token,
        "expires_at": chrono::DateTime::from_timestamp(session.expires_at, 0).map(|t| t.to_rfc3339()),
        "trace_url": console.config.trace_url,
    }))
    .into_response();
    page::no_store(&mut response);
    response
}

/// Whether an unsafe request carries the session's CSRF token.
fn csrf_ok(method: &Method, headers: &HeaderMap, session: &Session) -> bool {
    if matches!(*method, Method::GET | Method::HEAD) {
        return true;
    }
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|sent| hrsync_auth::same_secret(sent, &session.csrf_token))
}

fn csrf_refused() -> Response {
    Problem::new(
        StatusCode::FORBIDDEN,
        "the request does not carry this session's X-CSRF-Token",
    )
    .into_response()
}

/// `POST /console/logout`: ends the session.
async fn logout(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let (id, session) = match console.session(&headers).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    if !csrf_ok(&Method::POST, &headers, &session) {
        return csrf_refused();
    }
    if let Err(error) = console.sessions.close(&id).await {
        return store_failed(&error);
    }
    tracing::info!(subject = %session.principal.subject, "console sign-out");
    let mut response = Json(json!({ "redirect": "/console/signed-out" })).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, console.cookie(SESSION_COOKIE, "", 0));
    response
}

/// `/console/api/v1/...`: the admin API as the session's principal.
async fn proxy(State(console): State<Arc<Console>>, request: Request) -> Response {
    let (_, session) = match console.session(request.headers()).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    if !csrf_ok(request.method(), request.headers(), &session) {
        return csrf_refused();
    }
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("", |p| p.as_str())
        .trim_start_matches("/console");
    let Ok(uri) = path_and_query.parse::<Uri>() else {
        return Problem::bad_request("the request's path cannot be read").into_response();
    };
    parts.uri = uri;
    // Fresh extensions: this router's path parameters must not reach the
    // API's extractors, which would see them beside their own.
    parts.extensions = axum::http::Extensions::new();
    parts.extensions.insert(Verified(session.principal));
    parts.headers.remove(header::COOKIE);
    parts.headers.remove(CSRF_HEADER);
    parts.headers.remove(header::AUTHORIZATION);
    let forwarded = Request::from_parts(parts, Body::new(body));
    match console.api.clone().oneshot(forwarded).await {
        Ok(mut response) => {
            page::no_store(&mut response);
            response
        }
        Err(never) => match never {},
    }
}
