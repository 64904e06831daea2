//! The one typed configuration of an hrsync process.

use anyhow::Context;
use hrsync_auth::{Authorizer, OAuthConfig, Verifier};
use hrsync_bus::{KafkaConfig, TopicsConfig};
use hrsync_config::{Inconsistency, Validate};
use hrsync_ingest::config::IngestConfig;
use hrsync_projector::config::ProjectorConfig;
use hrsync_provisioner::config::ProvisionerConfig;
use hrsync_telemetry::TelemetryConfig;
use serde::{Deserialize, Serialize};

/// Everything an hrsync process reads at start-up. Sections map to TOML
/// tables and to `HRSYNC_<SECTION>__<KEY>` environment variables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// Kafka connection and security settings.
    pub(crate) kafka: KafkaConfig,
    /// Topic names and partition counts.
    pub(crate) topics: TopicsConfig,
    /// Logs, traces and the metrics endpoint.
    pub(crate) telemetry: TelemetryConfig,
    /// The ingest role: HR sources, its store, the push API.
    pub(crate) ingest: IngestConfig,
    /// The projector role: profile store, sourcing, pre-hire, group rules.
    pub(crate) projector: ProjectorConfig,
    /// The provisioner role: link store, apps.
    pub(crate) provisioner: ProvisionerConfig,
    /// hrsync as an OAuth 2.0 resource server: the issuer whose access
    /// tokens the admin API and the push API accept.
    pub(crate) oauth: Option<OAuthConfig>,
    /// The admin API's listener; served by `hrsync run` when set.
    pub(crate) admin: Option<hrsync_admin::AdminConfig>,
    /// The admin console, on the admin API's listener; served when set.
    pub(crate) console: Option<hrsync_console::ConsoleConfig>,
    /// The hooks role: lifecycle events delivered to webhook endpoints.
    pub(crate) hooks: Option<hrsync_hooks::HooksConfig>,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), Inconsistency> {
        self.kafka.validate()?;
        self.topics.validate()?;
        self.ingest.validate()?;
        self.projector.validate()?;
        self.provisioner.validate()?;
        if let Some(oauth) = &self.oauth {
            oauth.validate()?;
        }
        if let Some(hooks) = &self.hooks {
            hooks.validate()?;
        }
        if self.admin.is_some() && self.oauth.is_none() {
            return Err(
                "[admin] is set but [oauth] is not: the admin API accepts only access tokens \
                 from a configured issuer"
                    .into(),
            );
        }
        if let Some(console) = &self.console {
            if self.admin.is_none() {
                return Err(
                    "[console] is set but [admin] is not: the console is served on the admin \
                     API's listener"
                        .into(),
                );
            }
            console.validate()?;
        }
        let undeclared = self.undeclared_apps();
        if self.provisioner.app_names().next().is_some() && !undeclared.is_empty() {
            return Err(Box::new(UndeclaredApps {
                named: undeclared,
                declared: self.provisioner.app_names().map(str::to_owned).collect(),
            }));
        }
        Ok(())
    }
}

/// Apps named by the rules or the pre-hire windows that `[[provisioner.apps]]`
/// does not declare.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}, which neither [[provisioner.apps]] nor [[provisioner.manual_apps]] declares (declared: {}): declare it, or correct the name",
    list(named),
    declared.join(", ")
)]
pub(crate) struct UndeclaredApps {
    named: Vec<Reference>,
    declared: Vec<String>,
}

fn list(references: &[Reference]) -> String {
    let named: Vec<String> = references.iter().map(Reference::to_string).collect();
    named.join("; ")
}

/// A name one section of the configuration uses for an app or a source
/// another section declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// The key that holds the name, e.g. `projector.rules.groups[Everyone].apps`.
    pub(crate) key: String,
    /// The name as written.
    pub(crate) name: String,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} names {:?}", self.key, self.name)
    }
}

impl Config {
    /// The scope a token must grant to push events.
    pub(crate) fn events_write_scope(&self) -> String {
        self.oauth
            .as_ref()
            .map(|o| o.scopes.events_write.clone())
            .unwrap_or_default()
    }

    /// Apps the group rules grant, or the pre-hire windows name, that
    /// `[[provisioner.apps]]` does not declare. With apps declared, any is an
    /// error at start (a misspelt app would silently get nothing); a
    /// configuration declaring none (a projector whose provisioner runs with
    /// another configuration) only warns.
    fn undeclared_apps(&self) -> Vec<Reference> {
        let declared = |name: &str| self.provisioner.app_names().any(|a| a == name);
        let granted = self.projector.rules.groups.iter().flat_map(|group| {
            group.apps.iter().map(move |app| Reference {
                key: format!("projector.rules.groups[{}].apps", group.name),
                name: app.clone(),
            })
        });
        let windows = self.projector.prehire_days.keys().map(|app| Reference {
            key: format!("projector.prehire_days.{app}"),
            name: app.clone(),
        });
        granted
            .chain(windows)
            .filter(|r| !declared(&r.name))
            .collect()
    }

    /// Sources the attribute sourcing names that no HR source of this
    /// configuration writes: neither an `[[ingest.sources]]` table nor the
    /// push API's `source_system`. Legitimate for a direct Kafka producer,
    /// so only a warning.
    fn undeclared_sources(&self) -> Vec<Reference> {
        let declared = |name: &str| {
            self.ingest.sources.iter().any(|s| s.name == name)
                || self.ingest.push.source_system == name
        };
        self.projector
            .attribute_sources
            .0
            .iter()
            .flat_map(|(attribute, sources)| {
                sources.iter().map(move |source| Reference {
                    key: format!("projector.attribute_sources.{attribute}"),
                    name: source.clone(),
                })
            })
            .filter(|r| !declared(&r.name))
            .collect()
    }

    /// What start-up should warn about: names that may be right but that
    /// this configuration cannot confirm.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.provisioner.app_names().next().is_none() {
            warnings.extend(self.undeclared_apps().into_iter().map(|r| {
                format!(
                    "{r}, but this configuration declares no [[provisioner.apps]]: \
                     right only if another process provisions it"
                )
            }));
        }
        warnings.extend(self.undeclared_sources().into_iter().map(|r| {
            format!(
                "{r}, which is neither an [[ingest.sources]] name nor ingest.push.source_system: \
                 right only if a direct Kafka producer writes events with source_system = {:?}",
                r.name
            )
        }));
        warnings
    }

    /// The effective configuration as TOML, secrets redacted.
    pub(crate) fn to_redacted_toml(&self) -> anyhow::Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

/// The access-token check `[oauth]` configures (none without it). Its keys
/// are read at once, so a wrong issuer shows at start; an issuer down at
/// start only warns, as tokens are checked again when it is back.
pub(crate) async fn authorizer(config: &Config) -> anyhow::Result<Authorizer> {
    Ok(verifier(config)
        .await?
        .map_or_else(Authorizer::default, Authorizer::oauth))
}

/// The checker of `[oauth]`'s access tokens, its keys read once now (so a
/// wrong issuer shows in the log at start); none without `[oauth]`.
pub(crate) async fn verifier(config: &Config) -> anyhow::Result<Option<std::sync::Arc<Verifier>>> {
    let Some(oauth) = &config.oauth else {
        return Ok(None);
    };
    let verifier = Verifier::new(oauth.clone()).context("[oauth]")?;
    match verifier.warm().await {
        Ok(keys) => {
            tracing::info!(issuer = %oauth.issuer, keys, "accepting the issuer's access tokens")
        }
        Err(error) => {
            tracing::warn!(issuer = %oauth.issuer, %error, "the issuer's keys cannot be read yet; tokens are refused (503) until they can")
        }
    }
    Ok(Some(std::sync::Arc::new(verifier)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn example() -> &'static Path {
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/config/hrsync.example.toml"
        ))
    }

    fn no_env() -> figment::providers::Env {
        figment::providers::Env::prefixed("HRSYNC_BINARY_TEST_NEVER_SET_")
    }

    #[test]
    fn example_config_loads_and_differs_from_defaults() {
        let config: Config =
            hrsync_config::load_from(Some(example()), no_env()).expect("example loads");
        assert_ne!(config, Config::default(), "the example sets real values");
        assert_eq!(config.topics.lifecycle, "hr.lifecycle.v1");
    }

    #[test]
    fn the_examples_oauth_section_works_once_uncommented() {
        let text = std::fs::read_to_string(example()).expect("example");
        let start = text.find("# [oauth]").expect("an [oauth] example");
        let section: String = text[start..]
            .lines()
            .take_while(|line| line.starts_with("# "))
            .map(|line| format!("{}\n", &line[2..]))
            .collect();
        let config = load_text(&section).expect("the uncommented section loads");
        let oauth = config.oauth.expect("[oauth] set");
        assert_eq!(oauth.audience, "https://hrsync.example.com/api");
        assert_eq!(oauth.scopes.events_write, "hrsync:events.write");
        let roles = oauth.roles.expect("[oauth.roles] set");
        assert_eq!(
            (roles.claim.as_str(), roles.admin.as_slice()),
            ("groups", ["hrsync-admins".to_owned()].as_slice())
        );
        let insecure = section.replace("https://login", "http://login");
        let error = load_text(&insecure).expect_err("keys over http are refused");
        assert!(error.contains("oauth.issuer"), "{error}");
    }

    #[test]
    fn the_examples_hooks_section_works_once_uncommented() {
        let text = std::fs::read_to_string(example()).expect("example");
        let start = text.find("# [hooks]").expect("a [hooks] example");
        let section: String = text[start..]
            .lines()
            .take_while(|line| line.starts_with("# "))
            .map(|line| format!("{}\n", &line[2..]))
            .collect();
        // (Secrets inline, not read from the environment or files.)
        let key = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519"])
            .output()
            .expect("openssl makes an Ed25519 key");
        let key = String::from_utf8(key.stdout).expect("PEM");
        let section = section
            .replace(
                "{ env = \"IT_TICKETS_SECRET\" }",
                "\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
            )
            .replace("{ env = \"SSF_RECEIVER_TOKEN\" }", "\"receiver-token\"")
            .replace("{ env = \"SLACK_ADMIN_TOKEN\" }", "\"admin-token\"")
            .replace(
                "{ file = \"/run/secrets/hrsync-ssf-key.pem\" }",
                &format!("'''{key}'''"),
            );
        let config = load_text(&section).expect("the uncommented section loads");
        let hooks = config.hooks.expect("[hooks] set");
        let (endpoints, transmitter) = hrsync_hooks::endpoint::endpoints(&hooks).expect("set up");
        assert_eq!(
            endpoints.len(),
            3,
            "the hook, the revocation call and the SSF receiver"
        );
        let jwks = transmitter.expect("an SSF transmitter").jwks().to_string();
        assert!(
            jwks.contains("\"kid\":\"hrsync-ssf-1\"") && jwks.contains("Ed25519"),
            "{jwks}"
        );
        // Every key of [hooks] is shown.
        let mut shown = BTreeSet::new();
        key_paths(
            "hooks",
            &serde_json::to_value(&hooks).expect("json"),
            &mut shown,
        );
        let listed = example_paths(&section);
        let missing: Vec<&String> = shown
            .iter()
            .filter(|p| !listed.contains(&p.replace("[]", "")))
            .collect();
        assert!(
            missing.is_empty(),
            "keys the example does not show: {missing:?}"
        );
        let bad = section.replace("start_at = \"earliest\"", "start_at = \"now\"");
        let error = load_text(&bad).expect_err("an unknown start is refused");
        assert!(error.contains("hooks.start_at"), "{error}");
    }

    #[test]
    fn a_guard_share_floor_too_small_stops_start_up_naming_the_key() {
        let mut file = tempfile::NamedTempFile::new().expect("tmp");
        std::io::Write::write_all(
            &mut file,
            b"[[provisioner.apps]]\nname = \"zendesk\"\nbase_url = \"https://z.example/scim/v2\"\n\
              token = \"t\"\nguard_max_share = 0.05\nguard_min_accounts = 5\n",
        )
        .expect("write");
        let error = hrsync_config::load_from::<Config>(Some(file.path()), no_env())
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("provisioner.apps[zendesk].guard_min_accounts = 5 is too small"),
            "{error}"
        );
    }

    #[test]
    fn redacted_toml_hides_secrets() {
        let mut file = tempfile::NamedTempFile::new().expect("tmp");
        std::io::Write::write_all(
            &mut file,
            b"[kafka]\nsasl_username = \"u\"\nsasl_password = \"pa55-change-me\"\n",
        )
        .expect("write");
        let config: Config = hrsync_config::load_from(Some(file.path()), no_env()).expect("loads");
        let text = config.to_redacted_toml().expect("serializes");
        assert!(!text.contains("pa55-change-me"), "{text}");
        assert!(text.contains("sasl_password = \"<redacted>\""), "{text}");
    }

    fn load_text(text: &str) -> Result<Config, String> {
        let mut file = tempfile::NamedTempFile::new().expect("tmp");
        std::io::Write::write_all(&mut file, text.as_bytes()).expect("write");
        hrsync_config::load_from::<Config>(Some(file.path()), no_env()).map_err(|e| e.to_string())
    }

    const SLACK: &str = "[[provisioner.apps]]\nname = \"slack\"\n\
                         base_url = \"https://s.example/scim/v2\"\ntoken = \"t\"\n";

    #[test]
    fn the_example_names_only_what_it_declares() {
        let config: Config =
            hrsync_config::load_from(Some(example()), no_env()).expect("example loads");
        assert_eq!(config.warnings(), Vec::<String>::new());
    }

    #[test]
    fn a_rule_granting_an_undeclared_app_stops_start_up_naming_the_key() {
        let error = load_text(&format!(
            "[[projector.rules.groups]]\nname = \"Everyone\"\nrule = 'true'\n\
             apps = [\"slack\", \"slak\"]\n{SLACK}"
        ))
        .expect_err("refused");
        assert!(
            error.contains(r#"projector.rules.groups[Everyone].apps names "slak""#),
            "{error}"
        );
        assert!(error.contains("declared: slack"), "{error}");
    }

    #[test]
    fn a_prehire_window_for_an_undeclared_app_stops_start_up_naming_the_key() {
        let error = load_text(&format!("[projector.prehire_days]\nzendesk = 3\n{SLACK}"))
            .expect_err("refused");
        assert!(
            error.contains(r#"projector.prehire_days.zendesk names "zendesk""#),
            "{error}"
        );
    }

    #[test]
    fn without_declared_apps_an_app_named_by_a_rule_is_only_a_warning() {
        let config = load_text(
            "[[projector.rules.groups]]\nname = \"Everyone\"\nrule = 'true'\napps = [\"slack\"]\n",
        )
        .expect("a projector alone may grant apps another process provisions");
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains(r#"projector.rules.groups[Everyone].apps names "slack""#),
            "{warnings:?}"
        );
    }

    #[test]
    fn an_attribute_source_no_hr_source_declares_is_a_warning() {
        let config = load_text(
            "[[ingest.sources]]\nname = \"workday\"\n\
             [projector.attribute_sources]\nphone = [\"directory\", \"workday\", \"push\"]\n",
        )
        .expect("a direct producer may write source_system = directory");
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains(r#"projector.attribute_sources.phone names "directory""#),
            "{warnings:?}"
        );
    }

    /// Every key path of `value`, arrays of tables as `name[]`, down to the
    /// leaves (maps the example fills, such as columns, included).
    fn key_paths(prefix: &str, value: &serde_json::Value, out: &mut BTreeSet<String>) {
        match value {
            // A secret shows where it is read from ({ env = … }, { file = … }).
            serde_json::Value::Object(map)
                if !map.is_empty() && map.keys().all(|k| k == "env" || k == "file") => {}
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    out.insert(path.clone());
                    key_paths(&path, value, out);
                }
            }
            serde_json::Value::Array(items) if items.iter().all(|i| i.is_object()) => {
                for item in items {
                    key_paths(&format!("{prefix}[]"), item, out);
                }
            }
            _ => {}
        }
    }

    /// The key paths the example file names, set or commented out
    /// (`# key = value` under a `[table]` or `# [table]` header).
    fn example_paths(text: &str) -> BTreeSet<String> {
        let mut table = String::new();
        let mut out = BTreeSet::new();
        for line in text.lines() {
            let line = line.trim_start();
            let line = line.strip_prefix('#').map_or(line, str::trim_start);
            let header = line
                .strip_prefix("[[")
                .and_then(|l| l.split_once("]]"))
                .or_else(|| line.strip_prefix('[').and_then(|l| l.split_once(']')));
            if let Some((header, _)) = header {
                table = header.trim().to_owned();
                // `[a.b.c]` shows `a` and `a.b` too.
                let mut prefix = String::new();
                for part in table.split('.') {
                    if !prefix.is_empty() {
                        prefix.push('.');
                    }
                    prefix.push_str(part);
                    out.insert(prefix.clone());
                }
            } else if let Some(quoted) = line.strip_prefix('"') {
                if let Some((key, rest)) = quoted.split_once('"') {
                    if rest.trim_start().starts_with('=') {
                        out.insert(format!("{table}.{key}"));
                    }
                }
            } else if let Some((key, _)) = line.split_once(" = ") {
                let key = key.trim();
                if !key.is_empty() && !key.contains(' ') {
                    out.insert(format!("{table}.{key}"));
                }
            }
        }
        out
    }

    /// A key the code accepts but the example does not show is found here;
    /// arrays of tables are matched by name (`ingest.sources[].format` is
    /// shown under `[[ingest.sources]]`).
    #[test]
    fn the_example_shows_every_key() {
        let config: Config =
            hrsync_config::load_from(Some(example()), no_env()).expect("example loads");
        let mut code = BTreeSet::new();
        key_paths("", &serde_json::to_value(&config).expect("json"), &mut code);
        let text = std::fs::read_to_string(example()).expect("example");
        let shown = example_paths(&text);
        // The example's headers name nested arrays of tables without `[]`
        // (`[provisioner.apps.attributes]` under `[[provisioner.apps]]`).
        let normalize = |path: &str| path.replace("[]", "");
        let shown: BTreeSet<String> = shown.iter().map(|p| normalize(p)).collect();
        let missing: Vec<&String> = code
            .iter()
            .filter(|path| !shown.contains(&normalize(path)))
            .collect();
        assert!(
            missing.is_empty(),
            "keys the example does not show: {missing:?}"
        );
    }
}
