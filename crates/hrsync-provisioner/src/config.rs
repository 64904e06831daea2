//! The `[provisioner]` section of the hrsync configuration.

use std::collections::BTreeMap;

use hrsync_config::Secret;
use serde::{Deserialize, Serialize};

use crate::auth::{ClientCredentials, Credentials};
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
    /// How often a quarantined app is probed at first (doubling to a
    /// minute while it keeps failing).
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
    /// SCIM attribute that finds an existing account: the match chain of
    /// this one attribute (or `match_attributes`, not both).
    #[serde(default)]
    pub match_attribute: Option<String>,
    /// The match chain: SCIM attribute paths tried in order to find an
    /// existing account, compared ignoring case (`userName`,
    /// `emails[type eq "work"].value`, `externalId`, an extension's
    /// `urn:…:employeeNumber`); see [`crate::matching`]. Unset (and no
    /// `match_attribute`): `["userName"]`.
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
    /// Most SCIM requests per second to this app (unset: no limit). The
    /// fast lane borrows ahead instead of waiting.
    #[serde(default)]
    pub rate_limit: Option<f64>,
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
    /// Client secret.
    pub client_secret: Secret,
    /// Scopes to ask for (space-separated), if any.
    #[serde(default)]
    pub scope: Option<String>,
    /// How the client authenticates to the token endpoint: `basic` (HTTP
    /// Basic, `client_secret_basic`) or `post` (in the form body,
    /// `client_secret_post`).
    #[serde(default = "default_client_auth")]
    pub client_auth: String,
}

fn default_client_auth() -> String {
    "basic".to_owned()
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
    /// at its default.
    pub fn new(name: &str, base_url: &str, token: Secret) -> Self {
        AppConfig {
            name: name.to_owned(),
            base_url: base_url.to_owned(),
            token: Some(token),
            oauth: None,
            match_attribute: None,
            match_attributes: None,
            match_scan_limit: default_match_scan_limit(),
            timeout_ms: default_timeout_ms(),
            use_patch: None,
            use_etag: None,
            push_groups: true,
            group_batch: default_group_batch(),
            group_linger_ms: default_group_linger_ms(),
            concurrency: default_concurrency(),
            rate_limit: None,
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

    /// The app's credentials, secrets read.
    ///
    /// # Errors
    /// A secret that cannot be read, or neither or both of `token` and
    /// `oauth`.
    pub fn credentials(&self) -> Result<Credentials, String> {
        let at = |key: &str| format!("provisioner.apps[{}].{key}", self.name);
        match (&self.token, &self.oauth) {
            (Some(token), None) => token
                .expose()
                .map(Credentials::Bearer)
                .map_err(|e| format!("{}: {e}", at("token"))),
            (None, Some(oauth)) => Ok(Credentials::ClientCredentials(ClientCredentials {
                token_url: oauth.token_url.clone(),
                client_id: oauth.client_id.clone(),
                client_secret: oauth
                    .client_secret
                    .expose()
                    .map_err(|e| format!("{}: {e}", at("oauth.client_secret")))?,
                scope: oauth.scope.clone(),
                credentials_in_body: oauth.client_auth == "post",
            })),
            (None, None) => Err(format!("{}: set either `token` or `oauth`", at("token"))),
            (Some(_), Some(_)) => Err(format!("{}: set `token` or `oauth`, not both", at("token"))),
        }
    }

    /// The app's match chain: `match_attributes`, or `match_attribute`
    /// alone, or `userName`.
    ///
    /// # Errors
    /// Both keys set, or a path that is not one, naming the key.
    pub fn match_chain(&self) -> Result<MatchChain, String> {
        let at = |key: &str| format!("provisioner.apps[{}].{key}", self.name);
        match (&self.match_attribute, &self.match_attributes) {
            (Some(_), Some(_)) => Err(format!(
                "{}: set `match_attributes` or `match_attribute`, not both",
                at("match_attributes")
            )),
            (Some(one), None) => MatchChain::parse(std::slice::from_ref(one))
                .map_err(|(_, why)| format!("{}: {why}", at("match_attribute"))),
            (None, Some(chain)) => MatchChain::parse(chain)
                .map_err(|(i, why)| format!("{}: {why}", at(&format!("match_attributes[{i}]")))),
            (None, None) => Ok(MatchChain::default()),
        }
    }

    /// The app's request limits.
    pub fn limits(&self) -> Limits {
        Limits {
            concurrency: Some(self.concurrency),
            rate_per_second: self.rate_limit,
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
    pub fn validate(&self) -> Result<(), String> {
        if self.in_flight == 0 || self.priority_in_flight == 0 {
            return Err(
                "provisioner.in_flight and provisioner.priority_in_flight must be at least 1"
                    .to_owned(),
            );
        }
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
            if !(1..=1000).contains(&app.group_batch) {
                return Err(format!(
                    "{} must be between 1 and 1000 (members per group PATCH request)",
                    at("group_batch")
                ));
            }
            if let Some(share) = app.guard_max_share {
                if !(share > 0.0 && share <= 1.0) {
                    return Err(format!(
                        "{} must be above 0 and at most 1 (a share of the app's accounts)",
                        at("guard_max_share")
                    ));
                }
                let min = app.guard_min_accounts();
                if min == 0 {
                    return Err(format!("{} must be at least 1", at("guard_min_accounts")));
                }
                // Below one account per window, the share limit would trip on
                // the first deactivation of any app smaller than 1 / share.
                if share * f64::from(min) < 1.0 {
                    return Err(format!(
                        "{} = {min} is too small for guard_max_share = {share}: the guard would \
                         hold the first deactivation of an app with fewer than {} accounts; set it \
                         to at least {} (or leave it unset)",
                        at("guard_min_accounts"),
                        (1.0 / share).ceil(),
                        (1.0 / share).ceil(),
                    ));
                }
            }
            if app.guard_window_secs == 0 {
                return Err(format!("{} must be at least 1", at("guard_window_secs")));
            }
            if app.reconcile_every_secs == Some(0) {
                return Err(format!(
                    "{} must be at least 1 (or unset: no scheduled reconciliation)",
                    at("reconcile_every_secs")
                ));
            }
            if app.timeout_ms == 0 {
                return Err(format!("{} must be positive", at("timeout_ms")));
            }
            if app.concurrency == 0 {
                return Err(format!("{} must be at least 1", at("concurrency")));
            }
            if app.rate_limit.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                return Err(format!(
                    "{} must be a positive number of requests per second",
                    at("rate_limit")
                ));
            }
            match (&app.token, &app.oauth) {
                (None, None) => {
                    return Err(format!("{}: set either `token` or `oauth`", at("token")))
                }
                (Some(_), Some(_)) => {
                    return Err(format!("{}: set `token` or `oauth`, not both", at("token")))
                }
                (None, Some(oauth)) => {
                    if !(oauth.token_url.starts_with("https://")
                        || oauth.token_url.starts_with("http://"))
                    {
                        return Err(format!("{} must be an http(s) URL", at("oauth.token_url")));
                    }
                    if !matches!(oauth.client_auth.as_str(), "basic" | "post") {
                        return Err(format!(
                            "{} must be \"basic\" or \"post\"",
                            at("oauth.client_auth")
                        ));
                    }
                }
                (Some(_), None) => {}
            }
            app.match_chain()?;
            crate::mapping::Mapping::compile(&app.attributes)
                .map_err(|e| format!("provisioner.apps[{}].attributes.{e}", app.name))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_app(app: AppConfig) -> ProvisionerConfig {
        ProvisionerConfig {
            apps: vec![app],
            ..ProvisionerConfig::default()
        }
    }

    fn app() -> AppConfig {
        AppConfig::new(
            "zendesk",
            "https://zendesk.example/scim/v2",
            Secret::inline("t0ken"),
        )
    }

    #[test]
    fn the_share_floor_defaults_to_50_or_one_deactivation() {
        let guarded = |share| AppConfig {
            guard_max_share: Some(share),
            ..app()
        };
        assert_eq!(guarded(0.05).guard_min_accounts(), 50);
        assert_eq!(guarded(0.01).guard_min_accounts(), 100);
        let guard = guarded(0.05).guard().expect("a guard");
        assert_eq!(guard.min_accounts, 50);
        assert_eq!(guard.immediate_allowance, 3);
        assert_eq!(guard.max_count, u32::MAX);
        // The defaults pass validation at any share.
        for share in [1.0, 0.5, 0.05, 0.013, 0.001] {
            with_app(guarded(share)).validate().expect("valid");
        }
        let explicit = AppConfig {
            guard_min_accounts: Some(20),
            ..guarded(0.05)
        };
        assert_eq!(explicit.guard().expect("a guard").min_accounts, 20);
        with_app(explicit).validate().expect("valid");
    }

    #[test]
    fn a_share_floor_below_one_deactivation_is_refused_naming_the_key() {
        let config = with_app(AppConfig {
            guard_max_share: Some(0.05),
            guard_min_accounts: Some(10),
            ..app()
        });
        let error = config.validate().expect_err("refused");
        assert!(
            error.starts_with("provisioner.apps[zendesk].guard_min_accounts = 10 is too small"),
            "{error}"
        );
        assert!(error.contains("at least 20"), "{error}");
        let zero = with_app(AppConfig {
            guard_max_share: Some(0.05),
            guard_min_accounts: Some(0),
            ..app()
        });
        assert_eq!(
            zero.validate().expect_err("refused"),
            "provisioner.apps[zendesk].guard_min_accounts must be at least 1"
        );
    }

    #[test]
    fn a_share_of_nothing_and_an_empty_window_are_refused() {
        for share in [0.0, -0.1, 1.5, f64::NAN] {
            let error = with_app(AppConfig {
                guard_max_share: Some(share),
                ..app()
            })
            .validate()
            .expect_err("refused");
            assert!(
                error.starts_with("provisioner.apps[zendesk].guard_max_share must be above 0"),
                "{share}: {error}"
            );
        }
        let error = with_app(AppConfig {
            guard_max_deactivations: Some(5),
            guard_window_secs: 0,
            ..app()
        })
        .validate()
        .expect_err("refused");
        assert_eq!(
            error,
            "provisioner.apps[zendesk].guard_window_secs must be at least 1"
        );
    }

    #[test]
    fn the_match_chain_defaults_to_user_name_and_takes_the_old_key() {
        assert_eq!(app().match_chain().expect("chain").to_string(), "userName");
        let old = AppConfig {
            match_attribute: Some("externalId".into()),
            ..app()
        };
        assert_eq!(old.match_chain().expect("chain").to_string(), "externalId");
        let parsed: AppConfig = serde_json::from_value(serde_json::json!({
            "name": "zendesk",
            "base_url": "https://zendesk.example/scim/v2",
            "token": "t0ken",
            "match_attributes": ["userName", "emails[type eq \"work\"].value", "externalId"],
            "match_scan_limit": 500,
        }))
        .expect("parses");
        assert_eq!(
            parsed.match_chain().expect("chain").to_string(),
            r#"userName, emails[type eq "work"].value, externalId"#
        );
        assert_eq!(parsed.match_scan_limit, 500);
        with_app(parsed).validate().expect("valid");
    }

    #[test]
    fn a_bad_match_chain_is_refused_naming_the_key() {
        let both = with_app(AppConfig {
            match_attribute: Some("userName".into()),
            match_attributes: Some(vec!["externalId".into()]),
            ..app()
        });
        assert_eq!(
            both.validate().expect_err("refused"),
            "provisioner.apps[zendesk].match_attributes: set `match_attributes` or \
             `match_attribute`, not both"
        );
        let bad = with_app(AppConfig {
            match_attributes: Some(vec!["userName".into(), "emails[type eq work]".into()]),
            ..app()
        });
        let error = bad.validate().expect_err("refused");
        assert!(
            error.starts_with("provisioner.apps[zendesk].match_attributes[1]: "),
            "{error}"
        );
        assert!(error.contains("quoted string"), "{error}");
        let empty = with_app(AppConfig {
            match_attributes: Some(Vec::new()),
            ..app()
        });
        assert!(empty
            .validate()
            .expect_err("refused")
            .starts_with("provisioner.apps[zendesk].match_attributes[0]: "));
        let id = with_app(AppConfig {
            match_attribute: Some("id".into()),
            ..app()
        });
        assert!(id
            .validate()
            .expect_err("refused")
            .starts_with("provisioner.apps[zendesk].match_attribute: "));
    }
}
