//! How the provisioner authenticates to an app: a static bearer token, or
//! an access token from the OAuth 2.0 client credentials grant (RFC 6749
//! section 4.4), cached until shortly before it expires and fetched again
//! when the app rejects it. The client authenticates to the token endpoint
//! with its secret (`client_secret_basic` or `client_secret_post`) or with a
//! JWT signed by its private key (`private_key_jwt`: RFC 7523 section 2.2,
//! OpenID Connect Core section 9).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::scim::{ClientError, ScimError};

/// An app's credentials.
#[derive(Clone)]
pub enum Credentials {
    /// A static bearer token.
    Bearer(String),
    /// The OAuth 2.0 client credentials grant.
    ClientCredentials(ClientCredentials),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credentials::ClientCredentials(c) => c.fmt(f),
        }
    }
}

/// Settings of the client credentials grant.
#[derive(Clone, Debug)]
pub struct ClientCredentials {
    /// The authorization server's token endpoint.
    pub token_url: String,
    /// Client id.
    pub client_id: String,
    /// Space-separated scopes to ask for, if any.
    pub scope: Option<String>,
    /// How the client proves who it is to the token endpoint.
    pub authentication: ClientAuthentication,
}

/// How a client authenticates to the token endpoint (the
/// `token_endpoint_auth_method` of RFC 7591 section 2).
#[derive(Clone)]
pub enum ClientAuthentication {
    /// `client_secret_basic`: the secret in HTTP Basic (RFC 6749 section
    /// 2.3.1, the RFC's default).
    SecretBasic(String),
    /// `client_secret_post`: the secret in the request body.
    SecretPost(String),
    /// `private_key_jwt`: a short-lived JWT signed with the client's private
    /// key (RFC 7523 section 2.2); the server holds the public key.
    PrivateKeyJwt(AssertionSigner),
}

impl std::fmt::Debug for ClientAuthentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuthentication::SecretBasic(_) => f.write_str("SecretBasic(<redacted>)"),
            ClientAuthentication::SecretPost(_) => f.write_str("SecretPost(<redacted>)"),
            ClientAuthentication::PrivateKeyJwt(signer) => signer.fmt(f),
        }
    }
}

/// How long a client assertion is valid: long enough for the request to
/// reach the token endpoint, short enough that a captured one is soon
/// worthless (each also has a unique `jti` the server may refuse to see
/// twice).
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// Signs `private_key_jwt` client assertions with one private key.
#[derive(Clone)]
pub struct AssertionSigner {
    key: EncodingKey,
    algorithm: Algorithm,
    key_id: Option<String>,
    audience: String,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("AssertionSigner")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// A private key or signing algorithm that cannot be used. The messages
/// describe the key's form, never its content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// No PEM block at all.
    #[error("not a PEM private key (expected a `-----BEGIN PRIVATE KEY-----` block)")]
    NotPem,
    /// A passphrase-protected PKCS#8 key.
    #[error(
        "the private key is encrypted; give it unencrypted (PKCS#8), e.g. \
         `openssl pkcs8 -in KEY -out KEY.pem`, and protect the file instead"
    )]
    Encrypted,
    /// A SEC1 `EC PRIVATE KEY` block, which the signer does not read.
    #[error(
        "an `EC PRIVATE KEY` (SEC1) block; convert it to PKCS#8 with \
         `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pem`"
    )]
    Sec1,
    /// A public key or a certificate where the private key belongs.
    #[error("a `{0}` block: the private key belongs here (the server holds the public one)")]
    NotPrivate(String),
    /// Some other PEM block.
    #[error("a `{0}` PEM block, not an RSA or EC private key")]
    UnknownBlock(String),
    /// A private key block whose content is not an RSA, P-256 or P-384 key.
    #[error("the key cannot be read as an RSA or EC (P-256, P-384) private key")]
    Unreadable,
    /// An algorithm name hrsync does not sign with.
    #[error(
        "algorithm {0:?} is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384"
    )]
    UnknownAlgorithm(String),
    /// An algorithm that does not fit the key.
    #[error("algorithm {algorithm} cannot sign with this {key} key")]
    Mismatch {
        /// The configured algorithm.
        algorithm: String,
        /// The key's type (`RSA`, `EC P-256`, ...).
        key: &'static str,
    },
}

impl KeyError {
    /// Whether the configured algorithm (rather than the key) is at fault.
    pub fn is_algorithm(&self) -> bool {
        matches!(
            self,
            KeyError::UnknownAlgorithm(_) | KeyError::Mismatch { .. }
        )
    }
}

/// The algorithms hrsync signs with, by name.
fn algorithm(name: &str) -> Result<Algorithm, KeyError> {
    let algorithm = match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        other => return Err(KeyError::UnknownAlgorithm(other.to_owned())),
    };
    Ok(algorithm)
}

/// Checks an algorithm name without a key (for start-up checks that do not
/// read secrets).
///
/// # Errors
/// [`KeyError::UnknownAlgorithm`].
pub fn check_algorithm(name: &str) -> Result<(), KeyError> {
    algorithm(name).map(|_| ())
}

/// The claims of a client assertion (RFC 7523 section 3).
#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

impl AssertionSigner {
    /// A signer for the PEM private key `pem` (PKCS#8 RSA or EC, or PKCS#1
    /// RSA), with `algorithm` or else the key's default (RS256 for RSA,
    /// ES256 for P-256, ES384 for P-384). `audience` is the `aud` claim,
    /// usually the token endpoint's URL; `key_id` becomes the header's
    /// `kid`. The key is tried once here, so that a key that cannot sign
    /// fails now rather than at the first token request.
    ///
    /// # Errors
    /// A key that is not a usable private key, or an algorithm that is
    /// unknown or does not fit the key.
    pub fn from_pem(
        pem: &str,
        algorithm_name: Option<&str>,
        key_id: Option<String>,
        audience: String,
    ) -> Result<Self, KeyError> {
        let wanted = algorithm_name.map(algorithm).transpose()?;
        let label = pem_label(pem).ok_or(KeyError::NotPem)?;
        let (key, kind, candidates): (EncodingKey, &'static str, &[Algorithm]) =
            match label.as_str() {
                "RSA PRIVATE KEY" => (
                    EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| KeyError::Unreadable)?,
                    "RSA",
                    &[Algorithm::RS256],
                ),
                "PRIVATE KEY" => {
                    if let Ok(key) = EncodingKey::from_rsa_pem(pem.as_bytes()) {
                        (key, "RSA", &[Algorithm::RS256])
                    } else if let Ok(key) = EncodingKey::from_ec_pem(pem.as_bytes()) {
                        // The curve decides: the first algorithm that signs.
                        (key, "EC", &[Algorithm::ES256, Algorithm::ES384])
                    } else {
                        return Err(KeyError::Unreadable);
                    }
                }
                "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
                "EC PRIVATE KEY" => return Err(KeyError::Sec1),
                "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => {
                    return Err(KeyError::NotPrivate(label))
                }
                _ => return Err(KeyError::UnknownBlock(label)),
            };
        let candidates: Vec<Algorithm> = match wanted {
            Some(wanted) => vec![wanted],
            None => candidates.to_vec(),
        };
        let mut signer = AssertionSigner {
            key,
            algorithm: candidates[0],
            key_id,
            audience,
        };
        for candidate in candidates {
            signer.algorithm = candidate;
            if signer.assertion("probe").is_ok() {
                return Ok(signer);
            }
        }
        match wanted {
            Some(wanted) => Err(KeyError::Mismatch {
                algorithm: format!("{wanted:?}"),
                key: kind,
            }),
            None => Err(KeyError::Unreadable),
        }
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> &'static str {
        match self.algorithm {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            // `from_pem` picks only the ones above.
            _ => "unsupported",
        }
    }

    /// A fresh assertion for `client_id`: issuer and subject the client,
    /// audience the token endpoint, a unique `jti`, valid from now for
    /// [`ASSERTION_LIFETIME`].
    fn assertion(&self, client_id: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Assertion {
            iss: client_id,
            sub: client_id,
            aud: &self.audience,
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            exp: now + ASSERTION_LIFETIME.as_secs(),
        };
        let mut header = Header::new(self.algorithm);
        header.typ = Some("JWT".to_owned());
        header.kid.clone_from(&self.key_id);
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

/// The label of the first PEM block (`PRIVATE KEY` for
/// `-----BEGIN PRIVATE KEY-----`).
fn pem_label(pem: &str) -> Option<String> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &pem[start..];
    let end = rest.find("-----")?;
    Some(rest[..end].trim().to_owned())
}

/// Gives each request its `Authorization` header.
pub(crate) struct Authenticator {
    kind: Kind,
}

enum Kind {
    Static(HeaderValue),
    OAuth {
        credentials: Box<ClientCredentials>,
        http: reqwest::Client,
        cached: Mutex<Option<Token>>,
    },
}

#[derive(Clone)]
struct Token {
    header: HeaderValue,
    /// Fetch a new one from here on.
    renew_at: Instant,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Static(_) => f.write_str("Authenticator::Bearer"),
            Kind::OAuth { credentials, .. } => f
                .debug_struct("Authenticator::ClientCredentials")
                .field("credentials", credentials)
                .finish_non_exhaustive(),
        }
    }
}

/// The answer of a token endpoint (RFC 6749 section 5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
}

/// The `client_assertion_type` of a JWT client assertion (RFC 7523
/// section 2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime assumed when the token endpoint does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

impl Authenticator {
    pub(crate) fn new(credentials: Credentials, timeout: Duration) -> Result<Self, ClientError> {
        let kind = match credentials {
            Credentials::Bearer(token) => Kind::Static(bearer(&token).ok_or(ClientError::Token)?),
            Credentials::ClientCredentials(credentials) => {
                if !(credentials.token_url.starts_with("https://")
                    || credentials.token_url.starts_with("http://"))
                {
                    return Err(ClientError::TokenUrl);
                }
                let http = reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(ClientError::Http)?;
                Kind::OAuth {
                    credentials: Box::new(credentials),
                    http,
                    cached: Mutex::new(None),
                }
            }
        };
        Ok(Authenticator { kind })
    }

    /// Whether a 401 may be cured by fetching a new token.
    pub(crate) fn renews(&self) -> bool {
        matches!(self.kind, Kind::OAuth { .. })
    }

    /// The header for the next request: the static token, or the cached
    /// access token while it is fresh (one fetch at a time otherwise).
    pub(crate) async fn header(&self) -> Result<HeaderValue, ScimError> {
        match &self.kind {
            Kind::Static(header) => Ok(header.clone()),
            Kind::OAuth {
                credentials,
                http,
                cached,
            } => {
                let mut cached = cached.lock().await;
                if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.renew_at) {
                    return Ok(token.header.clone());
                }
                let token = fetch(http, credentials).await?;
                let header = token.header.clone();
                *cached = Some(token);
                Ok(header)
            }
        }
    }

    /// Forgets `used` (the app rejected it), unless a newer token replaced
    /// it meanwhile.
    pub(crate) async fn reject(&self, used: &HeaderValue) {
        if let Kind::OAuth { cached, .. } = &self.kind {
            let mut cached = cached.lock().await;
            if cached.as_ref().is_some_and(|t| t.header == used) {
                *cached = None;
            }
        }
    }
}

fn bearer(token: &str) -> Option<HeaderValue> {
    let mut header = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    header.set_sensitive(true);
    Some(header)
}

/// The path named in errors of token requests (the URL may hold secrets
/// in its query).
const TOKEN_ENDPOINT: &str = "(OAuth token endpoint)";

/// Asks the token endpoint for an access token.
async fn fetch(http: &reqwest::Client, c: &ClientCredentials) -> Result<Token, ScimError> {
    let request = token_request(http, c)?;
    let started = Instant::now();
    let response = request.send().await.map_err(|e| ScimError::Transport {
        method: "POST".to_owned(),
        path: TOKEN_ENDPOINT.to_owned(),
        reason: if e.is_timeout() {
            "timed out".to_owned()
        } else {
            "connection failed".to_owned()
        },
        maybe_applied: false,
    })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let (header, lifetime) = read_token(status.as_u16(), status.is_success(), &text)?;
    // Renew a little before the end: a tenth of the lifetime, at most 60 s,
    // counted from when the request was sent.
    let margin = (lifetime / 10).min(Duration::from_secs(60));
    tracing::debug!(
        token_url = %c.token_url,
        expires_in_s = lifetime.as_secs(),
        "fetched an OAuth access token"
    );
    Ok(Token {
        header,
        renew_at: started + lifetime - margin,
    })
}

/// The token request of `c`: the client credentials grant, the client
/// authenticated as configured.
fn token_request(
    http: &reqwest::Client,
    c: &ClientCredentials,
) -> Result<reqwest::RequestBuilder, ScimError> {
    let mut form = vec![("grant_type", "client_credentials".to_owned())];
    if let Some(scope) = &c.scope {
        form.push(("scope", scope.clone()));
    }
    let mut request = http.post(&c.token_url);
    match &c.authentication {
        ClientAuthentication::SecretBasic(secret) => {
            // RFC 6749 section 2.3.1: both form-urlencoded, then Basic.
            request = request.basic_auth(urlencode(&c.client_id), Some(urlencode(secret)));
        }
        ClientAuthentication::SecretPost(secret) => {
            form.push(("client_id", c.client_id.clone()));
            form.push(("client_secret", secret.clone()));
        }
        ClientAuthentication::PrivateKeyJwt(signer) => {
            // RFC 7521 section 4.2; `client_id` is optional there, and
            // some servers want it.
            // The key signed a probe at start-up, so this is not expected
            // to fail; if it does, nothing was sent.
            let assertion = signer
                .assertion(&c.client_id)
                .map_err(|e| ScimError::Transport {
                    method: "POST".to_owned(),
                    path: TOKEN_ENDPOINT.to_owned(),
                    reason: format!(
                        "signing the client assertion failed ({:?}); nothing sent",
                        e.kind()
                    ),
                    maybe_applied: false,
                })?;
            form.push(("client_id", c.client_id.clone()));
            form.push(("client_assertion_type", JWT_BEARER.to_owned()));
            form.push(("client_assertion", assertion));
        }
    }
    Ok(request.form(&form))
}

/// Reads a token endpoint's answer (`status`, `text`): the access token as
/// a header, and its lifetime.
fn read_token(
    status: u16,
    success: bool,
    text: &str,
) -> Result<(HeaderValue, Duration), ScimError> {
    let failed = |detail: String| ScimError::Status {
        method: "POST".to_owned(),
        path: TOKEN_ENDPOINT.to_owned(),
        status,
        scim_type: None,
        detail: Some(detail),
        retry_after: None,
    };
    if !success {
        // RFC 6749 section 5.2: `error` and `error_description`; never the
        // body as a whole, which might echo credentials.
        let body: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let error = body["error"].as_str().unwrap_or("no error code");
        let description = body["error_description"]
            .as_str()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Err(failed(format!(
            "token request refused ({error}{description})"
        )));
    }
    let token: TokenResponse = serde_json::from_str(text).map_err(|e| ScimError::Decode {
        method: "POST".to_owned(),
        path: TOKEN_ENDPOINT.to_owned(),
        reason: format!("not a token response: {}", json_error_kind(&e)),
    })?;
    if !token.token_type.eq_ignore_ascii_case("bearer") {
        return Err(failed(format!(
            "token type {:?} is not Bearer",
            token.token_type
        )));
    }
    let header = bearer(&token.access_token).ok_or_else(|| ScimError::Decode {
        method: "POST".to_owned(),
        path: TOKEN_ENDPOINT.to_owned(),
        reason: "the access token is not a valid HTTP header value".to_owned(),
    })?;
    let lifetime = token
        .expires_in
        .map_or(DEFAULT_LIFETIME, Duration::from_secs);
    Ok((header, lifetime))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// The kind of a JSON error, without the text around it (a token response
/// holds a secret).
fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "missing or mistyped fields",
        serde_json::error::Category::Eof => "truncated",
    }
}

#[cfg(test)]
mod tests {
    use super::urlencode;

    #[test]
    fn form_encodes_like_rfc6749_asks() {
        assert_eq!(urlencode("abc-XYZ_0.9*"), "abc-XYZ_0.9*");
        assert_eq!(urlencode("a b:c%d"), "a+b%3Ac%25d");
    }
}
