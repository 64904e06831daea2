//! Checking one bearer access token: its signature against the issuer's
//! keys, then `iss`, `aud`, `exp` and `nbf` (with leeway), then its scopes.

use std::collections::BTreeSet;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::config::OAuthConfig;
use crate::keys::{self, Cache, IssuerMetadata, Key};
use crate::Rejection;

/// The longest token looked at; real access tokens are a few KiB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Who presented an accepted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's subject (`sub`), or `static-token` for the push API's
    /// shared token.
    pub subject: String,
    /// The OAuth client that obtained the token (`client_id`, else `azp`,
    /// else Entra's `appid`), if the token names one.
    pub client_id: Option<String>,
    /// The scopes granted (`scope`, space-separated, or `scp`).
    pub scopes: BTreeSet<String>,
    /// When the token expires (`exp`, seconds since the epoch); none for
    /// the push API's static token.
    pub expires_at: Option<u64>,
}

/// Who signed in, as an ID token says (OpenID Connect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`.
    pub subject: String,
    /// `name`, if the issuer gives it.
    pub name: Option<String>,
    /// `email`, if the issuer gives it.
    pub email: Option<String>,
}

/// The claims of an ID token hrsync reads.
#[derive(Deserialize)]
struct IdClaims {
    sub: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

impl Principal {
    /// Whether the token grants `scope`.
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// `Ok` if the token grants `scope`, else the refusal that names it.
    ///
    /// # Errors
    /// [`Rejection::InsufficientScope`].
    pub fn require(&self, scope: &str) -> Result<(), Rejection> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(Rejection::InsufficientScope {
                scope: scope.to_owned(),
            })
        }
    }
}

/// The claims hrsync reads beyond those `jsonwebtoken` checks.
#[derive(Deserialize)]
struct Claims {
    /// Required (the validation says so); optional here so that its absence
    /// is reported as such rather than as a malformed token.
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Scp>,
    #[serde(default)]
    exp: Option<u64>,
}

/// `scp` as Okta (an array) and Entra (a space-separated string) write it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scp {
    List(Vec<String>),
    Text(String),
}

/// Checks access tokens of one issuer for one audience.
#[derive(Debug)]
pub struct Verifier {
    config: OAuthConfig,
    http: reqwest::Client,
    cache: parking_lot::Mutex<Cache>,
    /// One read of the keys at a time; others wait for its result.
    reading: tokio::sync::Mutex<()>,
}

impl Verifier {
    /// A verifier for `config`; keys are read at the first token.
    ///
    /// # Errors
    /// A setting that cannot work, or the HTTP client cannot be built.
    pub fn new(config: OAuthConfig) -> Result<Self, crate::OAuthConfigError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| crate::OAuthConfigError {
                key: "oauth",
                problem: format!("HTTP client: {e}"),
            })?;
        Ok(Verifier {
            config,
            http,
            cache: parking_lot::Mutex::new(Cache::default()),
            reading: tokio::sync::Mutex::new(()),
        })
    }

    /// Reads the issuer's keys now (at start, so a wrong issuer shows in
    /// the log before the first request).
    ///
    /// # Errors
    /// Why the keys cannot be read, naming the URL.
    pub async fn warm(&self) -> Result<usize, String> {
        self.read_keys().await.map_err(|e| e.0)?;
        Ok(self.cache.lock().keys.len())
    }

    /// Checks `token` and returns who presented it.
    ///
    /// # Errors
    /// [`Rejection::Invalid`] naming why, or [`Rejection::KeysUnavailable`]
    /// when the issuer's keys cannot be read.
    pub async fn verify(&self, token: &str) -> Result<Principal, Rejection> {
        let raw = self
            .decode::<serde_json::Value>(
                token,
                &self.config.audience,
                &["exp", "iss", "aud", "sub"],
            )
            .await?;
        let claims = Claims::deserialize(&raw)
            .map_err(|e| Rejection::invalid(format!("the token's claims are malformed: {e}")))?;
        let mut principal = principal(claims)?;
        if let Some(roles) = &self.config.roles {
            principal
                .scopes
                .extend(roles.scopes_of(&raw, &self.config.scopes));
        }
        Ok(principal)
    }

    /// Checks an ID token the issuer's token endpoint answered to the
    /// OpenID client `client_id` (its signature, `iss`, `aud`, `exp`), and
    /// that it carries the `nonce` the sign-in started with.
    ///
    /// # Errors
    /// [`Rejection::Invalid`] naming why, or [`Rejection::KeysUnavailable`].
    pub async fn verify_id_token(
        &self,
        token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<Identity, Rejection> {
        let claims = self
            .decode::<IdClaims>(token, client_id, &["exp", "iss", "aud", "sub"])
            .await?;
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(Rejection::invalid(
                "the ID token does not carry the sign-in's nonce",
            ));
        }
        Ok(Identity {
            subject: claims.sub,
            name: claims.name,
            email: claims.email,
        })
    }

    /// What the issuer publishes about itself (read anew each time).
    ///
    /// # Errors
    /// Why it cannot be read, naming the URL.
    pub async fn metadata(&self) -> Result<IssuerMetadata, String> {
        keys::metadata(&self.http, &self.config.issuer)
            .await
            .map(|(_, metadata)| metadata)
            .map_err(|e| e.0)
    }

    /// The claims of `token` once its signature, issuer, `audience`, times
    /// and `required` claims check out.
    async fn decode<C: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
        required: &[&str],
    ) -> Result<C, Rejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::invalid("the token is longer than 16 KiB"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Rejection::invalid("the token is not a JWT"))?;
        if !crate::ACCEPTED.contains(&header.alg) {
            return Err(Rejection::invalid(format!(
                "the token is signed with {:?}, which hrsync does not accept",
                header.alg
            )));
        }
        let candidates = self.keys_for(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(required);
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        let mut refusal = Rejection::invalid("the signature does not verify");
        for key in &candidates {
            match jsonwebtoken::decode::<C>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => {
                    refusal = Rejection::invalid(reason(e.kind()));
                    break;
                }
            }
        }
        Err(refusal)
    }

    /// The cached keys that may have signed a token, reading the keys again
    /// if they are old, or if the token names a key id not held (at most
    /// every `unknown_key_refetch_seconds`).
    async fn keys_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Vec<Key>, Rejection> {
        let max_age = Duration::from_secs(self.config.key_max_age_seconds);
        let refetch = Duration::from_secs(self.config.unknown_key_refetch_seconds);
        let (stale, empty, found, may_try) = {
            let cache = self.cache.lock();
            let found = cache.candidates(kid, alg);
            (
                cache.stale(max_age),
                cache.keys.is_empty(),
                found,
                cache.may_try(refetch),
            )
        };
        if !found.is_empty() && !stale {
            return Ok(found);
        }
        if empty || (stale && may_try) || (found.is_empty() && may_try) {
            if let Err(e) = self.read_keys().await {
                if empty {
                    return Err(Rejection::KeysUnavailable(e.0));
                }
                // Old keys keep working while the issuer is unreachable.
                tracing::warn!(error = %e, "the issuer's keys cannot be read again; using the cached ones");
            }
        }
        let found = self.cache.lock().candidates(kid, alg);
        if found.is_empty() {
            return Err(Rejection::invalid(match kid {
                Some(kid) => {
                    format!("the token is signed by key {kid:?}, which the issuer does not publish")
                }
                None => "no key the issuer publishes fits the token".to_owned(),
            }));
        }
        Ok(found)
    }

    /// Reads the keys into the cache, once even if many requests ask.
    async fn read_keys(&self) -> Result<(), keys::KeysError> {
        let tried_before = self.cache.lock().tried_at;
        let _reading = self.reading.lock().await;
        if self.cache.lock().tried_at != tried_before {
            // Another request read them while this one waited.
            return Ok(());
        }
        let jwks_uri = self.cache.lock().jwks_uri.clone();
        let result = keys::read(&self.http, &self.config, jwks_uri).await;
        let mut cache = self.cache.lock();
        cache.tried_at = Some(std::time::Instant::now());
        let (uri, keys) = result?;
        tracing::info!(jwks_uri = %uri, keys = keys.len(), "read the issuer's signing keys");
        cache.jwks_uri = Some(uri);
        cache.keys = keys;
        cache.read_at = cache.tried_at;
        Ok(())
    }
}

fn principal(claims: Claims) -> Result<Principal, Rejection> {
    let subject = claims
        .sub
        .ok_or_else(|| Rejection::invalid("the token has no sub claim"))?;
    let mut scopes: BTreeSet<String> = claims
        .scope
        .iter()
        .flat_map(|s| s.split_whitespace().map(str::to_owned))
        .collect();
    match claims.scp {
        Some(Scp::List(list)) => scopes.extend(list),
        Some(Scp::Text(text)) => scopes.extend(text.split_whitespace().map(str::to_owned)),
        None => {}
    }
    Ok(Principal {
        subject,
        client_id: claims.client_id.or(claims.azp).or(claims.appid),
        scopes,
        expires_at: claims.exp,
    })
}

/// Why a signed token is refused, for the `WWW-Authenticate` header.
fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
        ErrorKind::InvalidAudience => "the token is meant for another audience".to_owned(),
        ErrorKind::InvalidIssuer => "the token comes from another issuer".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the token's {claim} claim is malformed"),
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not fit its key".to_owned(),
        ErrorKind::Json(_) => "the token's claims are malformed".to_owned(),
        _ => "the token cannot be read".to_owned(),
    }
}
