//! `hrsync demo --keep`'s sign-in: a minimal OpenID provider on the
//! loopback address, for the demo only. It knows one client (the console)
//! and one user, `demo-admin`, whom it signs in without asking: the
//! authorization request is answered at once with a code. Codes need the
//! PKCE verifier (S256); tokens are signed EdDSA by a key made at start,
//! published in its JWKS. Nothing here is meant for anything but a demo on
//! one's own machine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore as _;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The console's client id at this issuer.
pub(super) const CLIENT_ID: &str = "hrsync-demo-console";
/// The audience of its access tokens: hrsync's admin API.
pub(super) const AUDIENCE: &str = "https://hrsync.demo/api";
/// The one user.
const SUBJECT: &str = "demo-admin";
/// How long a token lives.
const TOKEN_SECONDS: i64 = 3600;

/// A code waiting to be exchanged.
struct Pending {
    challenge: String,
    nonce: Option<String>,
    redirect_uri: String,
}

struct Issuer {
    url: String,
    redirect_uri: String,
    key: EncodingKey,
    jwk: serde_json::Value,
    codes: Mutex<HashMap<String, Pending>>,
}

/// Serves the issuer on `port` until `shutdown`; answers its URL.
/// `redirect_uri` is the console's callback, the only one accepted.
pub(super) async fn start(
    port: u16,
    redirect_uri: String,
    shutdown: CancellationToken,
) -> anyhow::Result<String> {
    let url = format!("http://127.0.0.1:{port}");
    let (key, jwk) = signing_key()?;
    let issuer = Arc::new(Issuer {
        url: url.clone(),
        redirect_uri,
        key,
        jwk,
        codes: Mutex::new(HashMap::new()),
    });
    let routes = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(issuer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .context("binding the demo's sign-in")?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, routes)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    Ok(url)
}

/// An Ed25519 key made now, and its public half as a JWK.
fn signing_key() -> anyhow::Result<(EncodingKey, serde_json::Value)> {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    // PKCS #8 of an Ed25519 private key (RFC 8410): a fixed prefix, then
    // the 32-byte seed.
    let mut der = pkcs8_prefix();
    der.extend_from_slice(&seed);
    let key = EncodingKey::from_ed_der(&der);
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::EdDSA)
        .context("the demo's signing key")?;
    let mut jwk = serde_json::to_value(jwk)?;
    jwk["kid"] = json!("demo-1");
    jwk["use"] = json!("sig");
    Ok((key, jwk))
}

fn pkcs8_prefix() -> Vec<u8> {
    vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ]
}

async fn discovery(State(issuer): State<Arc<Issuer>>) -> Json<serde_json::Value> {
    let url = &issuer.url;
    Json(json!({
        "issuer": url,
        "jwks_uri": format!("{url}/jwks"),
        "authorization_endpoint": format!("{url}/authorize"),
        "token_endpoint": format!("{url}/token"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
    }))
}

async fn jwks(State(issuer): State<Arc<Issuer>>) -> Json<serde_json::Value> {
    Json(json!({ "keys": [issuer.jwk] }))
}

#[derive(Deserialize)]
struct Authorize {
    client_id: String,
    redirect_uri: String,
    state: String,
    nonce: Option<String>,
    code_challenge: String,
    code_challenge_method: String,
}

/// Signs `demo-admin` in at once: back to the console with a code.
async fn authorize(State(issuer): State<Arc<Issuer>>, Query(ask): Query<Authorize>) -> Response {
    if ask.client_id != CLIENT_ID
        || ask.redirect_uri != issuer.redirect_uri
        || ask.code_challenge_method != "S256"
    {
        return (
            StatusCode::BAD_REQUEST,
            "unknown client, redirect URI or PKCE method",
        )
            .into_response();
    }
    let code = hrsync_console::random_id();
    issuer
        .codes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(
            code.clone(),
            Pending {
                challenge: ask.code_challenge,
                nonce: ask.nonce,
                redirect_uri: ask.redirect_uri.clone(),
            },
        );
    let mut back = match reqwest::Url::parse(&ask.redirect_uri) {
        Ok(url) => url,
        Err(_) => return (StatusCode::BAD_REQUEST, "bad redirect URI").into_response(),
    };
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &ask.state);
    Redirect::to(back.as_str()).into_response()
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: String,
    code: String,
    redirect_uri: String,
    code_verifier: String,
}

/// Exchanges a code, once, for an access token (for hrsync's audience)
/// and an ID token.
async fn token(State(issuer): State<Arc<Issuer>>, Form(ask): Form<TokenRequest>) -> Response {
    let refused = |error: &str| (StatusCode::BAD_REQUEST, Json(json!({ "error": error })));
    let pending = issuer
        .codes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&ask.code);
    let Some(pending) = pending else {
        return refused("invalid_grant").into_response();
    };
    if ask.grant_type != "authorization_code"
        || ask.redirect_uri != pending.redirect_uri
        || hrsync_console::pkce_challenge(&ask.code_verifier) != pending.challenge
    {
        return refused("invalid_grant").into_response();
    }
    let now = chrono::Utc::now().timestamp();
    let access = json!({
        "iss": issuer.url, "aud": AUDIENCE, "sub": SUBJECT, "client_id": CLIENT_ID,
        "scope": "hrsync:read hrsync:admin", "iat": now, "exp": now + TOKEN_SECONDS,
    });
    let id = json!({
        "iss": issuer.url, "aud": CLIENT_ID, "sub": SUBJECT, "nonce": pending.nonce,
        "name": "Demo Admin", "iat": now, "exp": now + TOKEN_SECONDS,
    });
    let sign = |typ: &str, claims: &serde_json::Value| {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("demo-1".to_owned());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &issuer.key)
    };
    match (sign("at+jwt", &access), sign("JWT", &id)) {
        (Ok(access_token), Ok(id_token)) => Json(json!({
            "access_token": access_token, "id_token": id_token,
            "token_type": "Bearer", "expires_in": TOKEN_SECONDS,
        }))
        .into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "signing failed").into_response(),
    }
}
