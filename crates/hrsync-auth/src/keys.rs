//! The issuer's signing keys: found through its discovery document, read
//! from its JWKS, cached, and read again when they grow old or a token
//! names a key id the cache does not hold (the issuer rotated its keys).

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::config::{secure_url, OAuthConfig};

/// The largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// One published signing key.
#[derive(Clone)]
pub(crate) struct Key {
    /// Its `kid`, if published with one.
    pub(crate) kid: Option<String>,
    /// The algorithms it may verify: its `alg` if published, else every
    /// asymmetric algorithm of its type.
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// Why the keys could not be read. Names the URL, never a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct KeysError(pub(crate) String);

/// The keys last read, and when.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    pub(crate) keys: Vec<Key>,
    /// When the keys were last read successfully.
    pub(crate) read_at: Option<Instant>,
    /// When a read was last tried, whatever its outcome.
    pub(crate) tried_at: Option<Instant>,
    /// The JWKS address, once discovered.
    pub(crate) jwks_uri: Option<String>,
}

impl Cache {
    /// Whether the keys are missing or older than `max_age`.
    pub(crate) fn stale(&self, max_age: Duration) -> bool {
        self.read_at.is_none_or(|at| at.elapsed() >= max_age)
    }

    /// Whether a read may be tried now, `every` after the last try.
    pub(crate) fn may_try(&self, every: Duration) -> bool {
        self.tried_at.is_none_or(|at| at.elapsed() >= every)
    }

    /// The keys that may have signed a token with `kid` and `alg`.
    pub(crate) fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Key> {
        self.keys
            .iter()
            .filter(|k| k.algorithms.contains(&alg))
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .cloned()
            .collect()
    }
}

/// Reads the issuer's keys (discovering the JWKS address first if needed).
pub(crate) async fn read(
    http: &reqwest::Client,
    config: &OAuthConfig,
    jwks_uri: Option<String>,
) -> Result<(String, Vec<Key>), KeysError> {
    let uri = match jwks_uri.or_else(|| config.jwks_uri.clone()) {
        Some(uri) => uri,
        None => discover(http, &config.issuer).await?,
    };
    let body = get(http, &uri).await?;
    let keys = parse_jwks(&body).map_err(|e| KeysError(format!("{uri}: {e}")))?;
    if keys.is_empty() {
        return Err(KeysError(format!(
            "{uri} publishes no signing key hrsync can use"
        )));
    }
    Ok((uri, keys))
}

/// What an issuer publishes about itself (OpenID Connect discovery, or
/// RFC 8414 authorization server metadata): the parts hrsync uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssuerMetadata {
    /// The issuer, exactly as tokens name it.
    pub issuer: String,
    /// Its signing keys.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Where a browser is sent to sign in (authorization code flow).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where codes are exchanged for tokens.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Where a browser is sent to sign out at the issuer (RP-initiated
    /// logout), if it offers that.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

/// The `jwks_uri` of the issuer's metadata.
async fn discover(http: &reqwest::Client, issuer: &str) -> Result<String, KeysError> {
    let (url, metadata) = metadata(http, issuer).await?;
    let uri = metadata
        .jwks_uri
        .ok_or_else(|| KeysError(format!("{url} names no jwks_uri")))?;
    secure_url("jwks_uri", &uri).map_err(|e| KeysError(format!("{url}: {e}")))?;
    Ok(uri)
}

/// The issuer's metadata (OpenID Connect discovery, then RFC 8414) and
/// where it was read, after checking it names the same issuer.
pub(crate) async fn metadata(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<(String, IssuerMetadata), KeysError> {
    let base = issuer.trim_end_matches('/');
    let mut tried = Vec::new();
    for well_known in ["openid-configuration", "oauth-authorization-server"] {
        let url = format!("{base}/.well-known/{well_known}");
        let body = match get(http, &url).await {
            Ok(body) => body,
            Err(e) => {
                tried.push(e.0);
                continue;
            }
        };
        let metadata: IssuerMetadata = serde_json::from_slice(&body)
            .map_err(|e| KeysError(format!("{url}: not issuer metadata: {e}")))?;
        if metadata.issuer != issuer {
            return Err(KeysError(format!(
                "{url} names the issuer {:?}, not {issuer:?} (oauth.issuer must match it exactly)",
                metadata.issuer
            )));
        }
        return Ok((url, metadata));
    }
    Err(KeysError(format!(
        "the issuer's metadata cannot be read: {}",
        tried.join("; ")
    )))
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, KeysError> {
    let failed = |e: reqwest::Error| KeysError(format!("{url}: {}", e.without_url()));
    let mut response = http.get(url).send().await.map_err(failed)?;
    if !response.status().is_success() {
        return Err(KeysError(format!("{url} answered {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(KeysError(format!("{url}: answer larger than 1 MiB")));
        }
    }
    Ok(body)
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

/// The signing keys of a JWKS document. Keys of a type or algorithm hrsync
/// does not verify with (encryption keys, symmetric keys) are skipped, so
/// one unusual key does not hide the others.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| format!("not a JWK set: {e}"))?;
    let mut keys = Vec::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let algorithms = match jwk
            .common
            .key_algorithm
            .map(|a| a.to_string().parse::<Algorithm>())
        {
            Some(Ok(alg)) => vec![alg],
            Some(Err(_)) => continue,
            None => family(&jwk.algorithm),
        };
        let algorithms: Vec<Algorithm> = algorithms
            .into_iter()
            .filter(|a| crate::ACCEPTED.contains(a))
            .collect();
        if algorithms.is_empty() {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key,
        });
    }
    Ok(keys)
}

/// The algorithms a key without `alg` may verify, by its type.
fn family(parameters: &AlgorithmParameters) -> Vec<Algorithm> {
    use Algorithm::*;
    match parameters {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => Vec::new(),
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![EdDSA],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_usable_signing_keys_are_kept() {
        // An RSA signing key (from RFC 7517 appendix A.1), an encryption key,
        // a symmetric key and a key of an unknown type: only the first stays.
        let rsa = serde_json::json!({
            "kty": "RSA", "kid": "sig-1", "use": "sig",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB"
        });
        let body = serde_json::json!({ "keys": [
            rsa,
            { "kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB" },
            { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
            { "kty": "weird", "kid": "new-type" }
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(keys[0].kid.as_deref(), Some("sig-1"));
        assert!(keys[0].algorithms.contains(&Algorithm::RS256));
        assert!(!keys[0].algorithms.contains(&Algorithm::HS256));
        assert!(parse_jwks(b"[]").unwrap_err().contains("not a JWK set"));
    }
}
