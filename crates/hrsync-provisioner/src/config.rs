//! The `[provisioner]` section of the hrsync configuration.

use hrsync_config::Secret;
use serde::{Deserialize, Serialize};

/// Settings of the provisioner role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisionerConfig {
    /// Link store: `sqlite://PATH` or `postgres://...` (a secret: URLs may
    /// hold passwords).
    pub database_url: Secret,
    /// Database connection pool size.
    pub max_connections: u32,
    /// Consumer group of `directory.changes.v1`; the priority lane uses
    /// `<group_id>-priority`.
    pub group_id: String,
    /// Attempts of a retryable SCIM failure before the change is retried
    /// later by the consumer loop.
    pub max_attempts: u32,
    /// Longest wait between attempts (a longer `Retry-After` is honoured).
    pub max_backoff_ms: u64,
    /// How often a quarantined app is probed at first (doubling to a
    /// minute while it keeps failing).
    pub quarantine_probe_ms: u64,
    /// The apps, `[[provisioner.apps]]`.
    pub apps: Vec<AppConfig>,
}

impl Default for ProvisionerConfig {
    fn default() -> Self {
        ProvisionerConfig {
            database_url: Secret::inline("sqlite://hrsync-provisioner.db"),
            max_connections: 4,
            group_id: "hrsync-provisioner".to_owned(),
            max_attempts: 5,
            max_backoff_ms: 30_000,
            quarantine_probe_ms: 5_000,
            apps: Vec::new(),
        }
    }
}

/// One app reached over SCIM 2.0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Name, as the group rules assign it.
    pub name: String,
    /// SCIM base URL, e.g. `https://app.example.com/scim/v2`.
    pub base_url: String,
    /// Bearer token.
    pub token: Secret,
    /// SCIM attribute that finds an existing account.
    #[serde(default = "default_match_attribute")]
    pub match_attribute: String,
    /// Per-request timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Force PATCH (true) or PUT (false); by default read from the app's
    /// `/ServiceProviderConfig`.
    #[serde(default)]
    pub use_patch: Option<bool>,
    /// Push the person's groups for this app as SCIM groups.
    #[serde(default = "yes")]
    pub push_groups: bool,
    /// Deprovision guard: hold the app's deactivations once more than this
    /// many happen within `guard_window_secs` (unset: no count limit).
    #[serde(default)]
    pub guard_max_deactivations: Option<u32>,
    /// ... or more than this share of its active accounts (unset: none).
    #[serde(default)]
    pub guard_max_share: Option<f64>,
    /// The guard's window.
    #[serde(default = "default_guard_window_secs")]
    pub guard_window_secs: u64,
}

fn default_guard_window_secs() -> u64 {
    3600
}

fn yes() -> bool {
    true
}

fn default_match_attribute() -> String {
    "userName".to_owned()
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl AppConfig {
    /// The app's deprovision guard, if configured.
    pub fn guard(&self) -> Option<crate::reconcile::Guard> {
        if self.guard_max_deactivations.is_none() && self.guard_max_share.is_none() {
            return None;
        }
        Some(crate::reconcile::Guard {
            max_count: self.guard_max_deactivations.unwrap_or(u32::MAX),
            max_share: self.guard_max_share.unwrap_or(1.0),
            window_ms: i64::try_from(self.guard_window_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        })
    }
}

impl ProvisionerConfig {
    /// Checks every setting; the message names the key.
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("provisioner.max_attempts must be at least 1".to_owned());
        }
        for (i, app) in self.apps.iter().enumerate() {
            let at = |key: &str| format!("provisioner.apps[{}].{key}", app.name);
            if app.name.trim().is_empty() {
                return Err("provisioner.apps[].name is empty".to_owned());
            }
            if self.apps[..i].iter().any(|a| a.name == app.name) {
                return Err(format!(
                    "provisioner.apps: app {:?} is defined twice",
                    app.name
                ));
            }
            if !(app.base_url.starts_with("https://") || app.base_url.starts_with("http://")) {
                return Err(format!("{} must be an http(s) URL", at("base_url")));
            }
            if app
                .guard_max_share
                .is_some_and(|s| !(0.0..=1.0).contains(&s))
            {
                return Err(format!("{} must be between 0 and 1", at("guard_max_share")));
            }
            if app.timeout_ms == 0 {
                return Err(format!("{} must be positive", at("timeout_ms")));
            }
        }
        Ok(())
    }
}
