//! The `[oauth]` section: which issuer's access tokens hrsync accepts, for
//! which audience, and the scope each kind of operation needs.

use serde::{Deserialize, Serialize};

/// hrsync as an OAuth 2.0 resource server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The issuer (`iss`) of accepted access tokens, exactly as its
    /// discovery document names it, e.g. `https://login.example.com/`.
    pub issuer: String,
    /// The audience (`aud`) an accepted token must name: hrsync's resource
    /// identifier at that issuer, e.g. `https://hrsync.example.com/api`.
    pub audience: String,
    /// Where the issuer publishes its signing keys. Default: the `jwks_uri`
    /// of the issuer's discovery document (`/.well-known/openid-configuration`,
    /// else `/.well-known/oauth-authorization-server`).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Cached keys are read again once they are this old, in seconds.
    #[serde(default = "default_key_max_age")]
    pub key_max_age_seconds: u64,
    /// A token signed by a key not in the cache reads the keys again, but
    /// at most this often, in seconds (so forged key ids cannot make hrsync
    /// hammer the issuer).
    #[serde(default = "default_refetch")]
    pub unknown_key_refetch_seconds: u64,
    /// The scope each kind of operation needs.
    #[serde(default)]
    pub scopes: Scopes,
    /// Grants hrsync's scopes from a claim of the token as well (the
    /// groups or roles the issuer puts in it), for issuers that cannot
    /// grant custom scopes per user.
    #[serde(default)]
    pub roles: Option<RoleClaim>,
}

/// hrsync's scopes granted by the values of one claim of the access token:
/// a token whose claim holds one of `admin` has the read and admin scopes,
/// one of `read` the read scope, one of `events_write` the push API's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleClaim {
    /// The claim: a string or an array of strings, e.g. `groups` (Okta),
    /// `roles` (Entra app roles) or `realm_access.roles` (Keycloak; dots
    /// walk into objects).
    pub claim: String,
    /// Values that grant reading through the admin API.
    #[serde(default)]
    pub read: Vec<String>,
    /// Values that grant the admin API's actions (and reading).
    #[serde(default)]
    pub admin: Vec<String>,
    /// Values that grant writing lifecycle events to the push API.
    #[serde(default)]
    pub events_write: Vec<String>,
}

impl RoleClaim {
    /// The scopes (named as `scopes` says) that `claims` grant.
    pub fn scopes_of(&self, claims: &serde_json::Value, scopes: &Scopes) -> Vec<String> {
        let mut at = Some(claims);
        for part in self.claim.split('.') {
            at = at.and_then(|v| v.get(part));
        }
        let values: Vec<&str> = match at {
            Some(serde_json::Value::String(s)) => s.split_whitespace().collect(),
            Some(serde_json::Value::Array(list)) => {
                list.iter().filter_map(serde_json::Value::as_str).collect()
            }
            _ => Vec::new(),
        };
        let holds = |wanted: &[String]| values.iter().any(|v| wanted.iter().any(|w| w == v));
        let mut granted = Vec::new();
        if holds(&self.admin) {
            granted.extend([scopes.admin.clone(), scopes.read.clone()]);
        } else if holds(&self.read) {
            granted.push(scopes.read.clone());
        }
        if holds(&self.events_write) {
            granted.push(scopes.events_write.clone());
        }
        granted
    }
}

/// Scope names, as the issuer grants them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scopes {
    /// Reading anything through the admin API.
    pub read: String,
    /// The admin API's actions (guard release, redrive, provision-now…).
    pub admin: String,
    /// Writing lifecycle events to the push API.
    pub events_write: String,
}

impl Default for Scopes {
    fn default() -> Self {
        Scopes {
            read: "hrsync:read".to_owned(),
            admin: "hrsync:admin".to_owned(),
            events_write: "hrsync:events.write".to_owned(),
        }
    }
}

fn default_leeway() -> u64 {
    30
}

fn default_key_max_age() -> u64 {
    3600
}

fn default_refetch() -> u64 {
    2
}

/// A setting of `[oauth]` that cannot work; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct OAuthConfigError {
    /// The offending key, e.g. `oauth.issuer`.
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl OAuthConfig {
    /// A configuration with the defaults for everything but the issuer and
    /// the audience.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        OAuthConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_uri: None,
            leeway_seconds: default_leeway(),
            key_max_age_seconds: default_key_max_age(),
            unknown_key_refetch_seconds: default_refetch(),
            scopes: Scopes::default(),
            roles: None,
        }
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// The first setting that cannot work, with its key.
    pub fn validate(&self) -> Result<(), OAuthConfigError> {
        secure_url("oauth.issuer", &self.issuer)?;
        if let Some(uri) = &self.jwks_uri {
            secure_url("oauth.jwks_uri", uri)?;
        }
        if self.audience.trim().is_empty() {
            return Err(OAuthConfigError {
                key: "oauth.audience",
                problem: "is empty; set hrsync's resource identifier at the issuer".to_owned(),
            });
        }
        if self.leeway_seconds > 300 {
            return Err(OAuthConfigError {
                key: "oauth.leeway_seconds",
                problem: format!(
                    "{} s would accept tokens long expired; at most 300",
                    self.leeway_seconds
                ),
            });
        }
        for (key, scope) in [
            ("oauth.scopes.read", &self.scopes.read),
            ("oauth.scopes.admin", &self.scopes.admin),
            ("oauth.scopes.events_write", &self.scopes.events_write),
        ] {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                return Err(OAuthConfigError {
                    key,
                    problem: format!("{scope:?} is not one scope name"),
                });
            }
        }
        if let Some(roles) = &self.roles {
            if roles.claim.trim().is_empty() || roles.claim.split('.').any(str::is_empty) {
                return Err(OAuthConfigError {
                    key: "oauth.roles.claim",
                    problem: format!("{:?} is not a claim name", roles.claim),
                });
            }
            if roles.read.is_empty() && roles.admin.is_empty() && roles.events_write.is_empty() {
                return Err(OAuthConfigError {
                    key: "oauth.roles",
                    problem:
                        "grants nothing; list the claim's values under read, admin or events_write"
                            .to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// `https://…`, or `http://` to this machine only (a test or a sidecar):
/// keys fetched in clear text from elsewhere could be swapped on the way.
pub(crate) fn secure_url(key: &'static str, url: &str) -> Result<(), OAuthConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| OAuthConfigError {
        key,
        problem: format!("{url:?} is not a URL: {e}"),
    })?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        scheme => Err(OAuthConfigError {
            key,
            problem: format!(
                "{url:?} uses {scheme}; only https (or http to this machine) can carry signing keys safely"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_travel_only_over_https_or_to_this_machine() {
        let mut config = OAuthConfig::new("https://login.example.com/", "https://hrsync/api");
        assert_eq!(config.validate(), Ok(()));
        config.issuer = "http://127.0.0.1:4000".to_owned();
        assert_eq!(config.validate(), Ok(()));
        config.issuer = "http://login.example.com/".to_owned();
        let error = config.validate().unwrap_err();
        assert_eq!(error.key, "oauth.issuer");
        assert!(error.problem.contains("only https"), "{error}");
        config.issuer = "https://login.example.com/".to_owned();
        config.jwks_uri = Some("ftp://keys".to_owned());
        assert_eq!(config.validate().unwrap_err().key, "oauth.jwks_uri");
    }

    #[test]
    fn a_scope_is_one_name_and_leeway_is_small() {
        let mut config = OAuthConfig::new("https://login.example.com/", "https://hrsync/api");
        config.scopes.admin = "hrsync:admin hrsync:read".to_owned();
        assert_eq!(config.validate().unwrap_err().key, "oauth.scopes.admin");
        config.scopes = Scopes::default();
        config.leeway_seconds = 3600;
        assert_eq!(config.validate().unwrap_err().key, "oauth.leeway_seconds");
        config.leeway_seconds = 30;
        config.audience = " ".to_owned();
        assert_eq!(config.validate().unwrap_err().key, "oauth.audience");
    }
}
