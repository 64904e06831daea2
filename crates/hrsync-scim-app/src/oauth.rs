//! An OAuth 2.0 token endpoint for the client credentials grant (RFC 6749
//! section 4.4), so the app can stand in for SCIM services that want access
//! tokens instead of a static one: `POST /oauth/token` with
//! `grant_type=client_credentials`, the client authenticated by HTTP Basic
//! or by `client_id` and `client_secret` in the form. Tokens are random,
//! expire after the configured lifetime, and are accepted by every SCIM
//! endpoint beside the static bearer token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use crate::api::AppState;

/// The one OAuth client the app knows.
#[derive(Clone)]
pub struct OAuthClient {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// How long an issued access token is accepted.
    pub token_lifetime: Duration,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", &self.client_id)
            .field("token_lifetime", &self.token_lifetime)
            .finish_non_exhaustive()
    }
}

/// Issued access tokens and when each expires.
#[derive(Default)]
pub(crate) struct Issued {
    tokens: parking_lot::Mutex<HashMap<String, Instant>>,
    count: std::sync::atomic::AtomicU64,
}

impl Issued {
    /// Whether `token` was issued and has not expired.
    pub(crate) fn accepts(&self, token: &str) -> bool {
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, expires| *expires > now);
        tokens.contains_key(token)
    }

    /// Forgets every issued token (as an authorization server does on a key
    /// rotation or revocation).
    pub(crate) fn revoke_all(&self) {
        self.tokens.lock().clear();
    }

    /// How many tokens were issued so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[derive(Deserialize)]
pub(crate) struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /oauth/token`.
pub(crate) async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(request): Form<TokenRequest>,
) -> Response {
    let Some(client) = state.oauth_client() else {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request",
            "no OAuth client is configured",
        );
    };
    if request.grant_type.as_deref() != Some("client_credentials") {
        return error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials is supported",
        );
    }
    let (id, secret) = match basic(&headers) {
        Some(pair) => pair,
        None => (
            request.client_id.unwrap_or_default(),
            request.client_secret.unwrap_or_default(),
        ),
    };
    if !(constant_eq(&id, &client.client_id) & constant_eq(&secret, &client.client_secret)) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let issued = state.issued();
    issued
        .tokens
        .lock()
        .insert(token.clone(), Instant::now() + client.token_lifetime);
    issued
        .count
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": client.token_lifetime.as_secs(),
        })),
    )
        .into_response()
}

/// Client id and secret from `Authorization: Basic` (each form-urlencoded,
/// RFC 6749 section 2.3.1).
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

fn form_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::form_decode;

    #[test]
    fn decodes_form_encoding() {
        assert_eq!(form_decode("a+b%3Ac%25d").as_deref(), Some("a b:c%d"));
        assert_eq!(form_decode("%zz"), None);
    }
}
