//! How the provisioner authenticates to an app: a static bearer token, or
//! an access token from the OAuth 2.0 client credentials grant (RFC 6749
//! section 4.4), cached until shortly before it expires and fetched again
//! when the app rejects it.

use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::scim::ScimError;

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
#[derive(Clone)]
pub struct ClientCredentials {
    /// The authorization server's token endpoint.
    pub token_url: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Space-separated scopes to ask for, if any.
    pub scope: Option<String>,
    /// Send the client's credentials in the request body
    /// (`client_secret_post`) instead of HTTP Basic (`client_secret_basic`,
    /// the RFC's default).
    pub credentials_in_body: bool,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Gives each request its `Authorization` header.
pub(crate) struct Authenticator {
    kind: Kind,
}

enum Kind {
    Static(HeaderValue),
    OAuth {
        credentials: ClientCredentials,
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

/// Lifetime assumed when the token endpoint does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

impl Authenticator {
    pub(crate) fn new(credentials: Credentials, timeout: Duration) -> Result<Self, String> {
        let kind =
            match credentials {
                Credentials::Bearer(token) => Kind::Static(bearer(&token).ok_or_else(|| {
                    "the bearer token is not a valid HTTP header value".to_owned()
                })?),
                Credentials::ClientCredentials(credentials) => {
                    if !(credentials.token_url.starts_with("https://")
                        || credentials.token_url.starts_with("http://"))
                    {
                        return Err("oauth.token_url must be an http(s) URL".to_owned());
                    }
                    let http = reqwest::Client::builder()
                        .timeout(timeout)
                        .build()
                        .map_err(|e| format!("building the HTTP client: {e}"))?;
                    Kind::OAuth {
                        credentials,
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

/// Asks the token endpoint for an access token.
async fn fetch(http: &reqwest::Client, c: &ClientCredentials) -> Result<Token, ScimError> {
    let failed = |status: u16, detail: String| ScimError::Status {
        method: "POST".to_owned(),
        path: "(OAuth token endpoint)".to_owned(),
        status,
        scim_type: None,
        detail: Some(detail),
        retry_after: None,
    };
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &c.scope {
        form.push(("scope", scope));
    }
    let mut request = http.post(&c.token_url);
    if c.credentials_in_body {
        form.push(("client_id", &c.client_id));
        form.push(("client_secret", &c.client_secret));
    } else {
        // RFC 6749 section 2.3.1: both form-urlencoded, then Basic.
        request = request.basic_auth(urlencode(&c.client_id), Some(urlencode(&c.client_secret)));
    }
    let started = Instant::now();
    let response = request
        .form(&form)
        .send()
        .await
        .map_err(|e| ScimError::Transport {
            method: "POST".to_owned(),
            path: "(OAuth token endpoint)".to_owned(),
            reason: if e.is_timeout() {
                "timed out".to_owned()
            } else {
                "connection failed".to_owned()
            },
            maybe_applied: false,
        })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        // RFC 6749 section 5.2: `error` and `error_description`; never the
        // body as a whole, which might echo credentials.
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let error = body["error"].as_str().unwrap_or("no error code");
        let description = body["error_description"]
            .as_str()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Err(failed(
            status.as_u16(),
            format!("token request refused ({error}{description})"),
        ));
    }
    let token: TokenResponse = serde_json::from_str(&text).map_err(|e| ScimError::Decode {
        method: "POST".to_owned(),
        path: "(OAuth token endpoint)".to_owned(),
        reason: format!("not a token response: {}", json_error_kind(&e)),
    })?;
    if !token.token_type.eq_ignore_ascii_case("bearer") {
        return Err(failed(
            status.as_u16(),
            format!("token type {:?} is not Bearer", token.token_type),
        ));
    }
    let header = bearer(&token.access_token).ok_or_else(|| ScimError::Decode {
        method: "POST".to_owned(),
        path: "(OAuth token endpoint)".to_owned(),
        reason: "the access token is not a valid HTTP header value".to_owned(),
    })?;
    let lifetime = token
        .expires_in
        .map_or(DEFAULT_LIFETIME, Duration::from_secs);
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
