//! The one typed configuration of an hrsync process.

use hrsync_bus::{KafkaConfig, TopicsConfig};
use hrsync_config::Validate;
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
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        self.kafka.validate().map_err(|e| e.to_string())?;
        self.topics.validate().map_err(|e| e.to_string())?;
        self.ingest.validate().map_err(|e| e.to_string())?;
        self.projector.validate()?;
        self.provisioner.validate()?;
        Ok(())
    }
}

impl Config {
    /// The effective configuration as TOML, secrets redacted.
    pub(crate) fn to_redacted_toml(&self) -> anyhow::Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
