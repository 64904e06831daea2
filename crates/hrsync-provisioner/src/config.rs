//! The `[provisioner]` section of the hrsync configuration.

use std::collections::BTreeMap;

use hrsync_config::Secret;
use serde::{Deserialize, Serialize};

use crate::auth::{AssertionSigner, ClientAuthentication, ClientCredentials, Credentials};
use crate::limit::Limits;
use crate::matching::MatchChain;
use crate::sweep::{OrphanPolicy, ReconcileMode};

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
    /// How often a quarantined app is probed, and parked persons' changes
    /// tried again, at first (doubling to a minute while nothing gets
    /// through).
    pub quarantine_probe_ms: u64,
    /// Changes of different persons applied at once from the main topic
    /// (one person's changes are always applied in order). Each change
    /// mostly waits (for its app, the store, the audit writer), so this is
    /// well above the apps' `concurrency`, which bounds what each app sees.
    pub in_flight: usize,
    /// The same for the priority lane.
    pub priority_in_flight: usize,
    /// The apps, `[[provisioner.apps]]`.
    pub apps: Vec<AppConfig>,
    /// Apps without a SCIM endpoint, `[[provisioner.manual_apps]]`: their
    /// accounts are made by people, from tasks ([`crate::manual`]).
    pub manual_apps: Vec<ManualAppConfig>,
}

/// One app whose accounts people make by hand: each create, change,
/// disable or reactivate its accounts need becomes a task, listed and
/// closed through the admin API and the console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualAppConfig {
    /// Name, as the group rules assign it.
    pub name: String,
    /// What people need to know to do the tasks (where the app's admin
    /// page is, who owns it), shown with each task.
    #[serde(default)]
    pub instructions: Option<String>,
    /// The account's fields as CEL expressions, as `[provisioner.apps]`
    /// `attributes` (the same default mapping, the same keys); a task
    /// shows them flattened (`name.givenName`, `emails[work]`,
    /// `enterprise.department`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Default for ProvisionerConfig {
    fn default() -> Self {
        ProvisionerConfig {
            database_url: Secret::inline("sqlite://hrsync-provisioner.db"),
            max_connections: 8,
            group_id: "hrsync-provisioner".to_owned(),
            max_attempts: 5,
            max_backoff_ms: 30_000,
            quarantine_probe_ms: 5_000,
            in_flight: 128,
            priority_in_flight: 8,
            apps: Vec::new(),
            manual_apps: Vec::new(),
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
    /// Static bearer token (or `oauth`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// OAuth 2.0 client credentials (or `token`).
    #[serde(default)]
    pub oauth: Option<OAuthConfig>,
    /// The match chain: SCIM attribute paths tried in order to find an
    /// existing account, compared ignoring case (`userName`,
    /// `emails[type eq "work"].value`, `externalId`, an extension's
    /// `urn:…:employeeNumber`); see [`crate::matching`]. Unset:
    /// `["userName"]`.
    #[serde(default)]
    pub match_attributes: Option<Vec<String>>,
    /// Most users read when searching, ignoring case, for the account a
    /// create conflicted with (409) that no filter found; 0: no search.
    #[serde(default = "default_match_scan_limit")]
    pub match_scan_limit: usize,
    /// Per-request timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Force PATCH (true) or PUT (false); by default read from the app's
    /// `/ServiceProviderConfig`.
    #[serde(default)]
    pub use_patch: Option<bool>,
    /// Send `If-Match` with the account's version on writes to users (true)
    /// or never (false); by default when the app's
    /// `/ServiceProviderConfig` says ETags are supported.
    #[serde(default)]
    pub use_etag: Option<bool>,
    /// Push the person's groups for this app as SCIM groups.
    #[serde(default = "yes")]
    pub push_groups: bool,
    /// Most members joined or left per group PATCH request.
    #[serde(default = "default_group_batch")]
    pub group_batch: usize,
    /// How long the group writer waits for more memberships before it sends
    /// less than a full batch.
    #[serde(default = "default_group_linger_ms")]
    pub group_linger_ms: u64,
    /// Most SCIM requests in flight to this app (the fast lane has as many
    /// again of its own).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Most SCIM requests per second to this app; `0` lifts the limit. When
    /// unset, [`DEFAULT_RATE_LIMIT`] (25), the most the IPSIE SCIM profile
    /// lets a client send an app: set `0` for a local app that should take
    /// what it can (a test, a benchmark, a demo). The fast lane borrows ahead
    /// instead of waiting.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: f64,
    /// SCIM attributes as CEL expressions over the profile, overriding or
    /// extending the default mapping: `"title" = 'person.title'`,
    /// `"name.givenName" = ...`, extension attributes by their full path
    /// (`"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter"`).
    /// An expression that yields `null` leaves the attribute out.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Deprovision guard: hold the app's deactivations once more than this
    /// many happen within `guard_window_secs` (unset: no count limit).
    #[serde(default)]
    pub guard_max_deactivations: Option<u32>,
    /// ... or more than this share of its accounts active at the window's
    /// start (unset: no share limit).
    #[serde(default)]
    pub guard_max_share: Option<f64>,
    /// The share limit is taken of at least this many accounts, so that a
    /// small app's first leavers do not trip it (unset: 50, or
    /// `1 / guard_max_share` if larger, so that the first deactivation in a
    /// window always passes it).
    #[serde(default)]
    pub guard_min_accounts: Option<u32>,
    /// Immediate terminations (deprovisionings on the fast lane) that are
    /// still applied within one window once the guard is tripped or would
    /// trip; beyond them they are held like every other deactivation.
    #[serde(default = "default_guard_immediate_allowance")]
    pub guard_immediate_allowance: u32,
    /// The guard's window.
    #[serde(default = "default_guard_window_secs")]
    pub guard_window_secs: u64,
    /// Reconcile the whole app (`hrsync provisioner reconcile`) every this
    /// many seconds, counted from its last reconciliation (unset: never on
    /// a schedule).
    #[serde(default)]
    pub reconcile_every_secs: Option<u64>,
    /// What the scheduled reconciliation does: `fix` (default) or `report`
    /// (classify only, as `--dry-run`).
    #[serde(default)]
    pub reconcile_mode: ReconcileMode,
    /// What reconciliation does with an orphan (an account no HR person
    /// matches): `report` (default) or `deactivate` (under the deprovision
    /// guard; never deleted).
    #[serde(default)]
    pub orphans: OrphanPolicy,
}

/// The OAuth 2.0 client credentials grant of one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// Token endpoint of the authorization server.
    pub token_url: String,
    /// Client id.
    pub client_id: String,
    /// Client secret (`client_auth = "basic"` or `"post"`).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Scopes to ask for (space-separated), if any.
    #[serde(default)]
    pub scope: Option<String>,
    /// How the client authenticates to the token endpoint: `basic` (HTTP
    /// Basic, `client_secret_basic`), `post` (in the form body,
    /// `client_secret_post`) or `private_key_jwt` (a JWT signed with
    /// `private_key`, RFC 7523).
    #[serde(default = "default_client_auth")]
    pub client_auth: String,
    /// `private_key_jwt`: the client's private key, PEM (PKCS#8 RSA or EC
    /// P-256/P-384, or PKCS#1 RSA), usually `{ file = "..." }`. Read when
    /// the provisioner starts.
    #[serde(default)]
    pub private_key: Option<Secret>,
    /// `private_key_jwt`: the key's id, sent as the assertion's `kid`.
    #[serde(default)]
    pub key_id: Option<String>,
    /// `private_key_jwt`: RS256, RS384, RS512, PS256, PS384, PS512, ES256
    /// or ES384 (default: RS256 for an RSA key, ES256 or ES384 by the EC
    /// key's curve).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// `private_key_jwt`: the assertion's audience (default: `token_url`).
    #[serde(default)]
    pub audience: Option<String>,
}

impl OAuthConfig {
    /// How the client authenticates, its secret or key read (`at` names a
    /// key in errors).
    fn authentication(
        &self,
        at: &dyn Fn(&str) -> String,
    ) -> Result<ClientAuthentication, ConfigError> {
        let secret = || match &self.client_secret {
            Some(secret) => secret
                .expose()
                .map_err(|e| invalid(at("oauth.client_secret"), format!(": {e}"))),
            None => Err(invalid(
                at("oauth.client_secret"),
                format!(
                    " is not set (client_auth = {:?} needs it)",
                    self.client_auth
                ),
            )),
        };
        match self.client_auth.as_str() {
            "basic" => Ok(ClientAuthentication::SecretBasic(secret()?)),
            "post" => Ok(ClientAuthentication::SecretPost(secret()?)),
            "private_key_jwt" => {
                let pem = match &self.private_key {
                    Some(key) => key
                        .expose()
                        .map_err(|e| invalid(at("oauth.private_key"), format!(": {e}")))?,
                    None => {
                        return Err(invalid(
                            at("oauth.private_key"),
                            " is not set (client_auth = \"private_key_jwt\" needs it)",
                        ))
                    }
                };
                let signer = AssertionSigner::from_pem(
                    &pem,
                    self.algorithm.as_deref(),
                    self.key_id.clone(),
                    self.audience
                        .clone()
                        .unwrap_or_else(|| self.token_url.clone()),
                )
                .map_err(|e| {
                    let key = if e.is_algorithm() {
                        "oauth.algorithm"
                    } else {
                        "oauth.private_key"
                    };
                    invalid(at(key), format!(": {e}"))
                })?;
                Ok(ClientAuthentication::PrivateKeyJwt(signer))
            }
            _ => Err(invalid(at("oauth.client_auth"), CLIENT_AUTH_VALUES)),
        }
    }

    /// The checks that need no secret: the settings fit `client_auth`.
    fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if !(self.token_url.starts_with("https://") || self.token_url.starts_with("http://")) {
            return Err(invalid(at("oauth.token_url"), " must be an http(s) URL"));
        }
        let jwt_only = [
            ("private_key", self.private_key.is_some()),
            ("key_id", self.key_id.is_some()),
            ("algorithm", self.algorithm.is_some()),
            ("audience", self.audience.is_some()),
        ];
        match self.client_auth.as_str() {
            "basic" | "post" => {
                if self.client_secret.is_none() {
                    return Err(invalid(
                        at("oauth.client_secret"),
                        format!(
                            " is not set (client_auth = {:?} needs it)",
                            self.client_auth
                        ),
                    ));
                }
                if let Some((key, _)) = jwt_only.iter().find(|(_, set)| *set) {
                    return Err(invalid(
                        at(&format!("oauth.{key}")),
                        " is only for client_auth = \"private_key_jwt\"",
                    ));
                }
            }
            "private_key_jwt" => {
                if self.private_key.is_none() {
                    return Err(invalid(
                        at("oauth.private_key"),
                        " is not set (client_auth = \"private_key_jwt\" needs it)",
                    ));
                }
                if self.client_secret.is_some() {
                    return Err(invalid(
                        at("oauth.client_secret"),
                        " is not used with client_auth = \"private_key_jwt\"; remove it",
                    ));
                }
                if let Some(algorithm) = &self.algorithm {
                    crate::auth::check_algorithm(algorithm)
                        .map_err(|e| invalid(at("oauth.algorithm"), format!(": {e}")))?;
                }
                if let Some(audience) = &self.audience {
                    if audience.trim().is_empty() {
                        return Err(invalid(at("oauth.audience"), " is empty"));
                    }
                }
            }
            _ => return Err(invalid(at("oauth.client_auth"), CLIENT_AUTH_VALUES)),
        }
        Ok(())
    }
}

/// The problem of an unknown `client_auth`.
const CLIENT_AUTH_VALUES: &str = " must be \"basic\", \"post\" or \"private_key_jwt\"";

/// A `[provisioner]` setting that cannot be used. The message names the
/// key, never a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}{problem}")]
pub struct ConfigError {
    /// The key at fault, as written in the file
    /// (`provisioner.apps[zendesk].token`).
    pub key: String,
    /// What is wrong with it: the rest of the message after the key.
    pub problem: String,
}

/// The error of `key` with `problem` (the message's rest after the key).
fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

fn default_client_auth() -> String {
    "basic".to_owned()
}

/// Requests per second an app gets when its `rate_limit` is unset: the IPSIE
/// SCIM profile's most a client may send (25 per second per app).
pub const DEFAULT_RATE_LIMIT: f64 = 25.0;

fn default_rate_limit() -> f64 {
    DEFAULT_RATE_LIMIT
}

fn default_concurrency() -> usize {
    16
}

fn default_guard_window_secs() -> u64 {
    3600
}

fn default_guard_immediate_allowance() -> u32 {
    3
}

/// `guard_min_accounts` when unset.
const DEFAULT_GUARD_MIN_ACCOUNTS: u32 = 50;

fn yes() -> bool {
    true
}

fn default_match_scan_limit() -> usize {
    crate::reconcile::DEFAULT_MATCH_SCAN_LIMIT
}

fn default_group_batch() -> usize {
    crate::reconcile::DEFAULT_GROUP_BATCH
}

fn default_group_linger_ms() -> u64 {
    u64::try_from(crate::reconcile::DEFAULT_GROUP_LINGER.as_millis()).unwrap_or(200)
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl AppConfig {
    /// An app at `base_url` with a bearer `token` and every other setting
    /// at its default, as a `[[provisioner.apps]]` entry with only these
    /// three keys would have it (so at most [`DEFAULT_RATE_LIMIT`] requests
    /// per second: set `rate_limit: 0.0` for a local app that should take
    /// what it can).
    pub fn new(name: &str, base_url: &str, token: Secret) -> Self {
        AppConfig {
            name: name.to_owned(),
            base_url: base_url.to_owned(),
            token: Some(token),
            oauth: None,
            match_attributes: None,
            match_scan_limit: default_match_scan_limit(),
            timeout_ms: default_timeout_ms(),
            use_patch: None,
            use_etag: None,
            push_groups: true,
            group_batch: default_group_batch(),
            group_linger_ms: default_group_linger_ms(),
            concurrency: default_concurrency(),
            rate_limit: DEFAULT_RATE_LIMIT,
            attributes: BTreeMap::new(),
            guard_max_deactivations: None,
            guard_max_share: None,
            guard_min_accounts: None,
            guard_immediate_allowance: default_guard_immediate_allowance(),
            guard_window_secs: default_guard_window_secs(),
            reconcile_every_secs: None,
            reconcile_mode: ReconcileMode::default(),
            orphans: OrphanPolicy::default(),
        }
    }

    /// The app's credentials, secrets read and a `private_key_jwt` key
    /// parsed and tried: the provisioner calls this as it starts, so a key
    /// that is missing, unreadable or unusable stops it there. (`validate`
    /// reads no secret: every role loads the same configuration, and only
    /// the provisioner has the apps' secrets.)
    ///
    /// # Errors
    /// A secret or key that cannot be read or used, or neither or both of
    /// `token` and `oauth`; the message names the key, never its value.
    pub fn credentials(&self) -> Result<Credentials, ConfigError> {
        let at = |key: &str| format!("provisioner.apps[{}].{key}", self.name);
        match (&self.token, &self.oauth) {
            (Some(token), None) => token
                .expose()
                .map(Credentials::Bearer)
                .map_err(|e| invalid(at("token"), format!(": {e}"))),
            (None, Some(oauth)) => Ok(Credentials::ClientCredentials(ClientCredentials {
                token_url: oauth.token_url.clone(),
                client_id: oauth.client_id.clone(),
                scope: oauth.scope.clone(),
                authentication: oauth.authentication(&at)?,
            })),
            (None, None) => Err(invalid(at("token"), ": set either `token` or `oauth`")),
            (Some(_), Some(_)) => Err(invalid(at("token"), ": set `token` or `oauth`, not both")),
        }
    }

    /// The app's match chain: `match_attributes`, or `userName`.
    ///
    /// # Errors
    /// A path that is not one, naming the key.
    pub fn match_chain(&self) -> Result<MatchChain, ConfigError> {
        let Some(chain) = &self.match_attributes else {
            return Ok(MatchChain::default());
        };
        MatchChain::parse(chain).map_err(|e| {
            invalid(
                format!(
                    "provisioner.apps[{}].match_attributes[{}]",
                    self.name,
                    e.index()
                ),
                format!(": {e}"),
            )
        })
    }

    /// The app's request limits (`rate_limit = 0`: no rate limit).
    pub fn limits(&self) -> Limits {
        Limits {
            concurrency: Some(self.concurrency),
            rate_per_second: (self.rate_limit > 0.0).then_some(self.rate_limit),
        }
    }

    /// `guard_min_accounts`, or its default: 50, or the fewest accounts of
    /// which one deactivation is within `guard_max_share` if more.
    pub fn guard_min_accounts(&self) -> u32 {
        self.guard_min_accounts.unwrap_or_else(|| {
            let fewest = self
                .guard_max_share
                .filter(|s| *s > 0.0)
                .map_or(0.0, |s| (1.0 / s).ceil());
            // Saturating: a share so small that it needs more than
            // u32::MAX accounts is rejected by `validate`.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let fewest = fewest.min(f64::from(u32::MAX)) as u32;
            DEFAULT_GUARD_MIN_ACCOUNTS.max(fewest)
        })
    }

    /// Checks the app's settings; the error names the key.
    fn validate(&self) -> Result<(), ConfigError> {
        let at = |key: &str| format!("provisioner.apps[{}].{key}", self.name);
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            return Err(invalid(at("base_url"), " must be an http(s) URL"));
        }
        if !(1..=1000).contains(&self.group_batch) {
            return Err(invalid(
                at("group_batch"),
                " must be between 1 and 1000 (members per group PATCH request)",
            ));
        }
        self.validate_guard(&at)?;
        if self.guard_window_secs == 0 {
            return Err(invalid(at("guard_window_secs"), " must be at least 1"));
        }
        if self.reconcile_every_secs == Some(0) {
            return Err(invalid(
                at("reconcile_every_secs"),
                " must be at least 1 (or unset: no scheduled reconciliation)",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(invalid(at("timeout_ms"), " must be positive"));
        }
        if self.concurrency == 0 {
            return Err(invalid(at("concurrency"), " must be at least 1"));
        }
        if !(self.rate_limit >= 0.0 && self.rate_limit.is_finite()) {
            return Err(invalid(
                at("rate_limit"),
                " must be a number of requests per second, or 0 for no limit",
            ));
        }
        match (&self.token, &self.oauth) {
            (None, None) => return Err(invalid(at("token"), ": set either `token` or `oauth`")),
            (Some(_), Some(_)) => {
                return Err(invalid(at("token"), ": set `token` or `oauth`, not both"))
            }
            (None, Some(oauth)) => oauth.validate(&at)?,
            (Some(_), None) => {}
        }
        self.match_chain()?;
        crate::mapping::Mapping::compile(&self.attributes).map_err(|e| {
            invalid(
                format!("provisioner.apps[{}].attributes.{:?}", self.name, e.key),
                format!(": {}", e.reason),
            )
        })?;
        Ok(())
    }

    /// Checks the deprovision guard's share and its floor.
    fn validate_guard(&self, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if let Some(share) = self.guard_max_share {
            if !(share > 0.0 && share <= 1.0) {
                return Err(invalid(
                    at("guard_max_share"),
                    " must be above 0 and at most 1 (a share of the app's accounts)",
                ));
            }
            let min = self.guard_min_accounts();
            if min == 0 {
                return Err(invalid(at("guard_min_accounts"), " must be at least 1"));
            }
            // Below one account per window, the share limit would trip on
            // the first deactivation of any app smaller than 1 / share.
            if share * f64::from(min) < 1.0 {
                return Err(invalid(
                    at("guard_min_accounts"),
                    format!(
                        " = {min} is too small for guard_max_share = {share}: the guard would \
                     hold the first deactivation of an app with fewer than {} accounts; set it \
                     to at least {} (or leave it unset)",
                        (1.0 / share).ceil(),
                        (1.0 / share).ceil(),
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The app's deprovision guard, if configured.
    pub fn guard(&self) -> Option<crate::guard::Guard> {
        if self.guard_max_deactivations.is_none() && self.guard_max_share.is_none() {
            return None;
        }
        Some(crate::guard::Guard {
            max_count: self.guard_max_deactivations.unwrap_or(u32::MAX),
            max_share: self.guard_max_share.unwrap_or(1.0),
            min_accounts: self.guard_min_accounts(),
            immediate_allowance: self.guard_immediate_allowance,
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
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.in_flight == 0 || self.priority_in_flight == 0 {
            return Err(invalid(
                "provisioner.in_flight and provisioner.priority_in_flight",
                " must be at least 1",
            ));
        }
        if self.max_attempts == 0 {
            return Err(invalid("provisioner.max_attempts", " must be at least 1"));
        }
        for (i, app) in self.apps.iter().enumerate() {
            if app.name.trim().is_empty() {
                return Err(invalid("provisioner.apps[].name", " is empty"));
            }
            if self.apps[..i].iter().any(|a| a.name == app.name) {
                return Err(invalid(
                    "provisioner.apps",
                    format!(": app {:?} is defined twice", app.name),
                ));
            }
            app.validate()?;
        }
        for (i, app) in self.manual_apps.iter().enumerate() {
            if app.name.trim().is_empty() {
                return Err(invalid("provisioner.manual_apps[].name", " is empty"));
            }
            let twice = self.apps.iter().any(|a| a.name == app.name)
                || self.manual_apps[..i].iter().any(|a| a.name == app.name);
            if twice {
                return Err(invalid(
                    "provisioner.manual_apps",
                    format!(": app {:?} is defined twice", app.name),
                ));
            }
            crate::mapping::Mapping::compile(&app.attributes).map_err(|e| {
                invalid(
                    format!(
                        "provisioner.manual_apps[{}].attributes.{:?}",
                        app.name, e.key
                    ),
                    format!(": {}", e.reason),
                )
            })?;
        }
        Ok(())
    }

    /// The names of every app, SCIM and manual.
    pub fn app_names(&self) -> impl Iterator<Item = &str> {
        self.apps
            .iter()
            .map(|a| a.name.as_str())
            .chain(self.manual_apps.iter().map(|a| a.name.as_str()))
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
