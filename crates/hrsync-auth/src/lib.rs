//! hrsync as an OAuth 2.0 resource server.
//!
//! The admin API and the push API accept bearer JWT access tokens (RFC
//! 9068) from the operator's own issuer: the signature is checked against
//! the issuer's published keys (found through its discovery document,
//! cached, read again when a token names a key id not held, so a key
//! rotation needs nothing from hrsync), then `iss`, `aud`, `exp` and `nbf`
//! (with a small leeway), then the scope the operation needs. The push API
//! may also accept one static shared token.
//!
//! Refusals are RFC 9457 problem details with a `WWW-Authenticate` header
//! (RFC 6750): `invalid_token` with the reason, or `insufficient_scope`
//! naming the scope that is missing. A token never reaches a log, a trace
//! or an answer.

mod config;
mod keys;
mod problem;
mod verify;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::Algorithm;
use sha2::{Digest, Sha256};

pub use config::{OAuthConfig, OAuthConfigError, RoleClaim, Scopes};
pub use keys::IssuerMetadata;
pub use problem::{Problem, PROBLEM_JSON};
pub use verify::{Identity, Principal, Verifier};

/// The signature algorithms accepted: asymmetric only, so a key published
/// for verifying can never be used to forge (no `HS*`, no `none`).
pub(crate) const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The subject recorded for requests made with the push API's static token.
pub const STATIC_TOKEN_SUBJECT: &str = "static-token";

/// Why a request's credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No `Authorization: Bearer` header.
    #[error("a bearer token is required")]
    Missing,
    /// The token is not acceptable; the reason names the check that failed.
    #[error("{0}")]
    Invalid(String),
    /// The token is valid but does not grant this scope.
    #[error("the token does not grant the scope {scope:?}")]
    InsufficientScope {
        /// The scope the operation needs.
        scope: String,
    },
    /// The issuer's keys cannot be read, so no token can be checked now.
    #[error("the issuer's signing keys cannot be read: {0}")]
    KeysUnavailable(String),
}

impl Rejection {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Rejection::Invalid(reason.into())
    }

    /// The answer: 401, 403 or 503, as problem details with the
    /// `WWW-Authenticate` challenge RFC 6750 asks for.
    pub fn problem(&self) -> Problem {
        let challenge = |value: String| {
            HeaderValue::from_str(&value)
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"hrsync\""))
        };
        match self {
            Rejection::Missing => Problem::new(StatusCode::UNAUTHORIZED, self.to_string())
                .with_header(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"hrsync\""),
                ),
            Rejection::Invalid(reason) => Problem::new(StatusCode::UNAUTHORIZED, reason.clone())
                .with_header(
                    header::WWW_AUTHENTICATE,
                    challenge(format!(
                    "Bearer realm=\"hrsync\", error=\"invalid_token\", error_description=\"{}\"",
                    reason.replace(['"', '\\'], "'")
                )),
                ),
            Rejection::InsufficientScope { scope } => {
                Problem::new(StatusCode::FORBIDDEN, self.to_string())
                    .with("scope", scope.clone())
                    .with_header(
                        header::WWW_AUTHENTICATE,
                        challenge(format!(
                    "Bearer realm=\"hrsync\", error=\"insufficient_scope\", scope=\"{scope}\""
                )),
                    )
            }
            Rejection::KeysUnavailable(_) => {
                Problem::unavailable("the issuer's signing keys cannot be read now")
            }
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.problem().into_response()
    }
}

/// How an API checks who is calling: OAuth access tokens, a static shared
/// token (the push API only), or both.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    verifier: Option<Arc<Verifier>>,
    static_token: Option<String>,
}

impl Authorizer {
    /// Access tokens checked by `verifier`.
    pub fn oauth(verifier: Arc<Verifier>) -> Self {
        Authorizer {
            verifier: Some(verifier),
            static_token: None,
        }
    }

    /// Also (or only) accepts `token`, compared in constant time; a request
    /// bearing it holds every scope.
    #[must_use]
    pub fn with_static_token(mut self, token: String) -> Self {
        self.static_token = Some(token);
        self
    }

    /// Whether any credential can be accepted at all.
    pub fn is_configured(&self) -> bool {
        self.verifier.is_some() || self.static_token.is_some()
    }

    /// Checks the request's bearer token and that it grants `scope`.
    ///
    /// # Errors
    /// The [`Rejection`] to answer with.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        scope: &str,
    ) -> Result<Principal, Rejection> {
        let token = bearer(headers)?;
        if let Some(expected) = &self.static_token {
            if same_secret(token, expected) {
                return Ok(Principal {
                    subject: STATIC_TOKEN_SUBJECT.to_owned(),
                    client_id: None,
                    scopes: std::iter::once(scope.to_owned()).collect(),
                    expires_at: None,
                });
            }
        }
        let Some(verifier) = &self.verifier else {
            return Err(Rejection::invalid("the token is not the configured one"));
        };
        let principal = verifier.verify(token).await?;
        principal.require(scope)?;
        Ok(principal)
    }
}

/// The `Authorization: Bearer` value.
fn bearer(headers: &HeaderMap) -> Result<&str, Rejection> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Rejection::Missing);
    };
    let value = value
        .to_str()
        .map_err(|_| Rejection::invalid("the Authorization header is not text"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Rejection::invalid(
            "the Authorization header is not a bearer token",
        ));
    }
    Ok(token.trim())
}

/// Whether `presented` is the secret `expected` (never an empty one), in
/// constant time (over digests, so lengths leak nothing either).
pub fn same_secret(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    let differ = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    differ == 0 && !expected.is_empty()
}

/// A principal this process verified itself, handed to an API as a request
/// extension in place of a bearer token: the console's session, whose
/// access token was checked at sign-in (the session ends when the token
/// does). Only code in the process sets extensions; a request from the
/// network never carries one.
#[derive(Debug, Clone)]
pub struct Verified(pub Principal);

/// A route layer's state: who may pass, with which scope.
#[derive(Debug, Clone)]
pub struct RequireScope {
    authorizer: Authorizer,
    scope: String,
}

impl RequireScope {
    /// Requests must bear a token `authorizer` accepts, granting `scope`.
    pub fn new(authorizer: Authorizer, scope: impl Into<String>) -> Self {
        RequireScope {
            authorizer,
            scope: scope.into(),
        }
    }
}

/// Middleware (`axum::middleware::from_fn_with_state`) that refuses a
/// request without an accepted token (or a [`Verified`] principal) granting
/// the scope, and hands the [`Principal`] to the handler as a request
/// extension.
pub async fn require_scope(
    State(rule): State<RequireScope>,
    mut request: Request,
    next: Next,
) -> Response {
    let checked = match request.extensions_mut().remove::<Verified>() {
        Some(Verified(principal)) => verified(principal, &rule.scope),
        None => {
            rule.authorizer
                .authorize(request.headers(), &rule.scope)
                .await
        }
    };
    match checked {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(rejection) => {
            tracing::info!(reason = %rejection, path = %request.uri().path(), "request refused");
            rejection.into_response()
        }
    }
}

/// A [`Verified`] principal, if it has not expired and grants `scope`.
fn verified(principal: Principal, scope: &str) -> Result<Principal, Rejection> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if principal.expires_at.is_some_and(|exp| exp <= now) {
        return Err(Rejection::invalid("the session's access token has expired"));
    }
    principal.require(scope)?;
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_the_challenge_rfc_6750_asks_for() {
        let missing = Rejection::Missing.into_response();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"hrsync\""
        );
        let scope = Rejection::InsufficientScope {
            scope: "hrsync:admin".to_owned(),
        }
        .into_response();
        assert_eq!(scope.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            scope.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"hrsync\", error=\"insufficient_scope\", scope=\"hrsync:admin\""
        );
        let invalid = Rejection::invalid("the token has \"expired\"").into_response();
        assert_eq!(
            invalid.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"hrsync\", error=\"invalid_token\", error_description=\"the token has 'expired'\""
        );
    }

    #[test]
    fn a_verified_principal_passes_with_its_scopes_until_it_expires() {
        let principal = |expires_at| Principal {
            subject: "ada".to_owned(),
            client_id: Some("console".to_owned()),
            scopes: std::iter::once("hrsync:read".to_owned()).collect(),
            expires_at,
        };
        assert!(verified(principal(None), "hrsync:read").is_ok());
        assert!(verified(principal(Some(u64::MAX)), "hrsync:read").is_ok());
        assert_eq!(
            verified(principal(None), "hrsync:admin"),
            Err(Rejection::InsufficientScope {
                scope: "hrsync:admin".to_owned()
            })
        );
        assert!(matches!(
            verified(principal(Some(1)), "hrsync:read"),
            Err(Rejection::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn a_static_token_is_compared_whole() {
        let authorizer = Authorizer::default().with_static_token("s3cret".to_owned());
        let mut headers = HeaderMap::new();
        assert_eq!(
            authorizer.authorize(&headers, "x").await,
            Err(Rejection::Missing)
        );
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "Bearer "] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(wrong));
            assert!(
                matches!(
                    authorizer.authorize(&headers, "x").await,
                    Err(Rejection::Invalid(_))
                ),
                "{wrong}"
            );
        }
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer s3cret"),
        );
        let principal = authorizer.authorize(&headers, "x").await.unwrap();
        assert_eq!(principal.subject, STATIC_TOKEN_SUBJECT);
    }
}
