//! An OAuth 2.0 token endpoint for the client credentials grant (RFC 6749
//! section 4.4), so the app can stand in for SCIM services that want access
//! tokens instead of a static one: `POST /oauth/token` with
//! `grant_type=client_credentials`. The client authenticates with its
//! secret (HTTP Basic or `client_id` and `client_secret` in the form) or,
//! registered with a public key, with a signed JWT (`private_key_jwt`, RFC
//! 7523 section 2.2): signature, `iss` and `sub` (the client id), `aud`
//! (this token endpoint's URL, or the app's base URL), `exp` (at most
//! [`MAX_ASSERTION_LIFETIME`] ahead) and a `jti` never seen before are all
//! checked. Tokens are random, expire after the configured lifetime, and are
//! accepted by every SCIM endpoint beside the static bearer token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;

use crate::api::AppState;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523
/// section 2.2).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest a client assertion may be valid from now (a longer `exp`
/// is refused): its `jti` is remembered that long to refuse a replay.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// Clock skew allowed when checking an assertion's `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

/// The one OAuth client the app knows.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    /// Client id.
    pub client_id: String,
    /// How the client authenticates to the token endpoint.
    pub credential: ClientCredential,
    /// How long an issued access token is accepted.
    pub token_lifetime: Duration,
}

/// What a client proves itself with.
#[derive(Clone)]
pub enum ClientCredential {
    /// A shared secret (`client_secret_basic` or `client_secret_post`).
    Secret(String),
    /// The public key that verifies its signed assertions
    /// (`private_key_jwt`).
    PublicKey(ClientPublicKey),
}

impl std::fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCredential::Secret(_) => f.write_str("Secret(<redacted>)"),
            ClientCredential::PublicKey(key) => key.fmt(f),
        }
    }
}

/// A client's registered public key, RSA or EC.
#[derive(Clone)]
pub struct ClientPublicKey {
    key: DecodingKey,
    family: AlgorithmFamily,
}

impl std::fmt::Debug for ClientPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPublicKey")
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

/// Why a client's public key file cannot be used: give a PEM public key
/// (`openssl pkey -pubout`) of an RSA or EC P-256/P-384 key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a PEM public key (perhaps the private key).
    #[error("not a PEM public key (`-----BEGIN PUBLIC KEY-----`)")]
    NotPublic,
    /// A PEM public key of another kind.
    #[error("not a PEM RSA or EC public key")]
    Unsupported,
}

/// Why the token endpoint refuses a client's authentication: the
/// `error_description` of its `invalid_client` answer, for the client's
/// developer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ClientAuthError {
    #[error("this client authenticates with its secret, not an assertion")]
    AssertionNotExpected,
    #[error("unknown client or wrong secret")]
    WrongSecret,
    #[error("this client authenticates with private_key_jwt only")]
    SecretNotExpected,
    #[error("this client authenticates with private_key_jwt: send client_assertion_type={JWT_BEARER} and client_assertion")]
    NoAssertionType,
    #[error("client_assertion is missing")]
    NoAssertion,
    #[error("unknown client")]
    UnknownClient,
    #[error("the client assertion is not a signed JWT")]
    NotAJwt,
    #[error("the client assertion's alg {0:?} does not fit the client's registered key")]
    AlgorithmNotRegistered(jsonwebtoken::Algorithm),
    #[error("the client assertion's signature does not verify with the client's registered key")]
    BadSignature,
    #[error("the client assertion has expired")]
    Expired,
    #[error("the client assertion is not valid yet (nbf)")]
    NotYetValid,
    #[error("the client assertion's iss is not the client id")]
    WrongIssuer,
    #[error("the client assertion's sub is not the client id")]
    WrongSubject,
    #[error("the client assertion's aud is not this token endpoint ({expected})")]
    WrongAudience { expected: String },
    #[error("the client assertion has no {0} claim")]
    MissingClaim(String),
    #[error("the client assertion's {0} claim is malformed")]
    MalformedClaim(String),
    #[error("the client assertion's alg does not fit the client's registered key")]
    AlgorithmMismatch,
    #[error("the client assertion is not a valid signed JWT")]
    InvalidJwt,
    #[error("the client assertion is valid too long: exp at most {} s from now", MAX_ASSERTION_LIFETIME.as_secs())]
    TooLong,
    #[error("the client assertion has no jti")]
    NoJti,
    #[error("the client assertion's jti was used before (a replay)")]
    Replay,
}

impl ClientPublicKey {
    /// The public key in `pem`: an RSA (`PUBLIC KEY` or `RSA PUBLIC KEY`)
    /// or EC P-256/P-384 (`PUBLIC KEY`) key.
    ///
    /// # Errors
    /// [`KeyError`] for a PEM that holds no RSA or EC public key.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        // The library reads a private RSA key as if public: refuse it here.
        if !(pem.contains("-----BEGIN PUBLIC KEY-----")
            || pem.contains("-----BEGIN RSA PUBLIC KEY-----"))
        {
            return Err(KeyError::NotPublic);
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
            return Ok(ClientPublicKey {
                key,
                family: AlgorithmFamily::Rsa,
            });
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
            return Ok(ClientPublicKey {
                key,
                family: AlgorithmFamily::Ec,
            });
        }
        Err(KeyError::Unsupported)
    }
}

/// Issued access tokens and when each expires; the `jti` of the client
/// assertions seen, until they expire.
#[derive(Default)]
pub(crate) struct Issued {
    tokens: parking_lot::Mutex<HashMap<String, Instant>>,
    count: std::sync::atomic::AtomicU64,
    /// `jti` to the assertion's `exp` (seconds since the epoch).
    assertions: parking_lot::Mutex<HashMap<String, u64>>,
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

    /// Records an assertion's `jti`; false if it was seen before (and has
    /// not expired since, after which its `exp` refuses it anyway).
    fn first_use(&self, jti: &str, exp: u64, now: u64) -> bool {
        let mut seen = self.assertions.lock();
        seen.retain(|_, expires| *expires + LEEWAY_SECS >= now);
        seen.insert(jti.to_owned(), exp).is_none()
    }
}

#[derive(Deserialize)]
pub(crate) struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

/// The claims of a client assertion the checks above leave to read.
#[derive(Deserialize)]
struct AssertionClaims {
    jti: Option<String>,
    /// Required by the validation; optional here so that its absence is
    /// reported as such rather than as an unreadable token.
    exp: Option<u64>,
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
    let authenticated = match &client.credential {
        ClientCredential::Secret(expected) => {
            if request.client_assertion.is_some() {
                Err(ClientAuthError::AssertionNotExpected)
            } else {
                let (id, secret) = match basic(&headers) {
                    Some(pair) => pair,
                    None => (
                        request.client_id.unwrap_or_default(),
                        request.client_secret.unwrap_or_default(),
                    ),
                };
                if constant_eq(&id, &client.client_id) & constant_eq(&secret, expected) {
                    Ok(())
                } else {
                    Err(ClientAuthError::WrongSecret)
                }
            }
        }
        ClientCredential::PublicKey(key) => {
            let token_url = format!("{}/oauth/token", state.base(&headers));
            let audiences = [token_url.as_str(), state.base(&headers).as_str()].map(str::to_owned);
            check_assertion(&state, client, key, &request, &headers, &audiences)
        }
    };
    if let Err(refused) = authenticated {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            &refused.to_string(),
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

/// Checks a `private_key_jwt` client assertion (RFC 7523 section 3); the
/// reason it is refused.
fn check_assertion(
    state: &AppState,
    client: &OAuthClient,
    key: &ClientPublicKey,
    request: &TokenRequest,
    headers: &HeaderMap,
    audiences: &[String],
) -> Result<(), ClientAuthError> {
    if headers.contains_key(header::AUTHORIZATION) || request.client_secret.is_some() {
        // RFC 6749 section 2.3: one authentication method per request.
        return Err(ClientAuthError::SecretNotExpected);
    }
    if request.client_assertion_type.as_deref() != Some(JWT_BEARER) {
        return Err(ClientAuthError::NoAssertionType);
    }
    let Some(assertion) = request.client_assertion.as_deref() else {
        return Err(ClientAuthError::NoAssertion);
    };
    if request
        .client_id
        .as_deref()
        .is_some_and(|id| id != client.client_id)
    {
        return Err(ClientAuthError::UnknownClient);
    }
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| ClientAuthError::NotAJwt)?;
    let algorithms = key.family.algorithms();
    if !algorithms.contains(&header.alg) {
        return Err(ClientAuthError::AlgorithmNotRegistered(header.alg));
    }
    let mut validation = Validation::new(header.alg);
    validation.algorithms = algorithms.to_vec();
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.set_issuer(&[&client.client_id]);
    validation.sub = Some(client.client_id.clone());
    validation.set_audience(audiences);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key.key, &validation)
        .map_err(|e| refusal(e.kind(), audiences))?
        .claims;
    let Some(exp) = claims.exp else {
        return Err(ClientAuthError::MissingClaim("exp".to_owned()));
    };
    let now = jsonwebtoken::get_current_timestamp();
    if exp > now + MAX_ASSERTION_LIFETIME.as_secs() + LEEWAY_SECS {
        return Err(ClientAuthError::TooLong);
    }
    let Some(jti) = claims.jti.filter(|j| !j.is_empty()) else {
        return Err(ClientAuthError::NoJti);
    };
    if !state
        .issued()
        .first_use(&format!("{}\n{jti}", client.client_id), exp, now)
    {
        return Err(ClientAuthError::Replay);
    }
    Ok(())
}

/// Why an assertion failed the library's checks, for the client.
fn refusal(kind: &ErrorKind, audiences: &[String]) -> ClientAuthError {
    match kind {
        ErrorKind::InvalidSignature => ClientAuthError::BadSignature,
        ErrorKind::ExpiredSignature => ClientAuthError::Expired,
        ErrorKind::ImmatureSignature => ClientAuthError::NotYetValid,
        ErrorKind::InvalidIssuer => ClientAuthError::WrongIssuer,
        ErrorKind::InvalidSubject => ClientAuthError::WrongSubject,
        ErrorKind::InvalidAudience => ClientAuthError::WrongAudience {
            expected: audiences.first().cloned().unwrap_or_default(),
        },
        ErrorKind::MissingRequiredClaim(claim) => ClientAuthError::MissingClaim(claim.clone()),
        ErrorKind::InvalidClaimFormat(claim) => ClientAuthError::MalformedClaim(claim.clone()),
        ErrorKind::InvalidAlgorithm => ClientAuthError::AlgorithmMismatch,
        _ => ClientAuthError::InvalidJwt,
    }
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
