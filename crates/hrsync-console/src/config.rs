//! The `[console]` section.

use hrsync_config::Secret;
use serde::{Deserialize, Serialize};

/// The admin console, served on the admin API's listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The console's OpenID Connect client id at the issuer (`[oauth]`).
    pub client_id: String,
    /// Its client secret, for a confidential client (sent with HTTP basic
    /// authentication). Unset: a public client, protected by PKCE alone.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Where browsers reach the admin listener, e.g.
    /// `https://hrsync.example.com`. The redirect URI registered at the
    /// issuer is this followed by `/console/callback`. An `https` URL makes
    /// the session cookie `Secure`.
    pub public_url: String,
    /// Scopes asked for at sign-in. Default: `openid profile email` and the
    /// read and admin scopes of `[oauth.scopes]`; the issuer grants each
    /// user what they may have, and the console offers actions only to a
    /// user granted the admin scope.
    #[serde(default)]
    pub scopes: Option<String>,
    /// A session ends when its access token expires, or after this many
    /// seconds, whichever comes first. Default 8 hours.
    #[serde(default = "default_session_max")]
    pub session_max_seconds: u64,
    /// A link to a trace in your tracing UI, `{trace_id}` standing for the
    /// trace id, e.g.
    /// `https://grafana.example.com/explore?left={"queries":[{"query":"{trace_id}"}]}`.
    /// Unset: the console shows trace ids without links.
    #[serde(default)]
    pub trace_url: Option<String>,
}

fn default_session_max() -> u64 {
    8 * 3600
}

/// A `[console]` setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("console.{key}: {problem}")]
pub struct ConsoleConfigError {
    /// The key.
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl ConsoleConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// The first setting that cannot work, named.
    pub fn validate(&self) -> Result<(), ConsoleConfigError> {
        let problem = |key, problem: &str| {
            Err(ConsoleConfigError {
                key,
                problem: problem.to_owned(),
            })
        };
        if self.client_id.trim().is_empty() {
            return problem("client_id", "is empty");
        }
        let url = self.public_url.trim_end_matches('/');
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|l| url == *l || url.starts_with(&format!("{l}:")));
        if !url.starts_with("https://") && !loopback {
            return problem(
                "public_url",
                "must be an https:// URL (plain http only on the loopback address)",
            );
        }
        if url.contains(['?', '#']) {
            return problem("public_url", "must not carry a query or fragment");
        }
        if self.session_max_seconds == 0 {
            return problem("session_max_seconds", "must be at least 1");
        }
        if let Some(template) = &self.trace_url {
            if !template.contains("{trace_id}") {
                return problem("trace_url", "must contain {trace_id}");
            }
        }
        Ok(())
    }

    /// The redirect URI registered at the issuer.
    pub fn redirect_uri(&self) -> String {
        format!("{}/console/callback", self.public_url.trim_end_matches('/'))
    }

    /// Whether the session cookie is marked `Secure`.
    pub(crate) fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(public_url: &str) -> ConsoleConfig {
        ConsoleConfig {
            client_id: "console".to_owned(),
            client_secret: None,
            public_url: public_url.to_owned(),
            scopes: None,
            session_max_seconds: 60,
            trace_url: None,
        }
    }

    #[test]
    fn the_public_url_is_https_or_loopback() {
        for good in [
            "https://hrsync.example.com",
            "https://hrsync.example.com/",
            "http://127.0.0.1:8081",
            "http://localhost:8081",
        ] {
            assert_eq!(config(good).validate(), Ok(()), "{good}");
        }
        for bad in [
            "http://hrsync.example.com",
            "http://127.0.0.1.evil.test",
            "https://h.example.com/?x=1",
        ] {
            assert_eq!(
                config(bad).validate().map_err(|e| e.key),
                Err("public_url"),
                "{bad}"
            );
        }
        assert_eq!(
            config("https://h.example.com/").redirect_uri(),
            "https://h.example.com/console/callback"
        );
        assert!(config("https://h.example.com").secure_cookies());
        assert!(!config("http://127.0.0.1:8081").secure_cookies());
    }

    #[test]
    fn a_trace_url_names_the_trace_id() {
        let mut with_trace = config("https://h.example.com");
        with_trace.trace_url = Some("https://grafana.example.com/trace".to_owned());
        assert_eq!(with_trace.validate().map_err(|e| e.key), Err("trace_url"));
        with_trace.trace_url = Some("https://grafana.example.com/trace/{trace_id}".to_owned());
        assert_eq!(with_trace.validate(), Ok(()));
    }
}
