use std::collections::BTreeMap;
use std::path::PathBuf;

use hrsync_config::Secret;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// librdkafka properties hrsync sets itself; overriding them through
/// [`KafkaConfig::properties`] would break delivery or offset guarantees.
const MANAGED: &[&str] = &[
    "bootstrap.servers",
    "client.id",
    "enable.idempotence",
    "acks",
    "enable.auto.offset.store",
    "enable.auto.commit",
    "group.id",
    "sasl.password",
    "ssl.key.password",
];

/// Connection settings for the Kafka cluster (`[kafka]` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` bootstrap servers.
    pub brokers: String,
    /// Client id prefix reported to the brokers.
    pub client_id: String,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: Option<String>,
    /// SASL mechanism: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, ...
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    pub sasl_username: Option<String>,
    /// SASL password (inline, `{ env = "VAR" }` or `{ file = "PATH" }`).
    pub sasl_password: Option<Secret>,
    /// CA bundle to verify the brokers' certificates.
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    pub ssl_certificate_location: Option<PathBuf>,
    /// Client private key for mutual TLS.
    pub ssl_key_location: Option<PathBuf>,
    /// Password of the client private key.
    pub ssl_key_password: Option<Secret>,
    /// How long the producer keeps retrying one record before failing it.
    pub delivery_timeout_ms: u32,
    /// Default partition count for topics created at start-up.
    pub default_partitions: i32,
    /// Replication factor for topics created at start-up.
    pub replication_factor: i32,
    /// When a group consumer counts as stuck and is rejoined
    /// (`[kafka.stall]`).
    pub stall: crate::StallSettings,
    /// Further librdkafka properties passed through as they are (for example
    /// `ssl.endpoint.identification.algorithm`). Properties hrsync manages
    /// itself are rejected.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            client_id: "hrsync".to_owned(),
            security_protocol: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            delivery_timeout_ms: 30_000,
            default_partitions: 6,
            replication_factor: 1,
            stall: crate::StallSettings::default(),
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Settings for a broker at `brokers` with everything else default.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            ..KafkaConfig::default()
        }
    }

    /// Checks the settings without connecting; names the offending key.
    pub fn validate(&self) -> Result<()> {
        if self.brokers.trim().is_empty() {
            return Err(Error::Config("kafka.brokers is empty".to_owned()));
        }
        if self.default_partitions < 1 {
            return Err(Error::Config(
                "kafka.default_partitions must be at least 1".to_owned(),
            ));
        }
        if self.replication_factor < 1 {
            return Err(Error::Config(
                "kafka.replication_factor must be at least 1".to_owned(),
            ));
        }
        if let Some(key) = self
            .properties
            .keys()
            .find(|k| MANAGED.contains(&k.as_str()))
        {
            return Err(Error::Config(format!(
                "kafka.properties.{key} is managed by hrsync and cannot be overridden"
            )));
        }
        self.stall.validate()?;
        if self.sasl_password.is_some() && self.sasl_username.is_none() {
            return Err(Error::Config(
                "kafka.sasl_password is set but kafka.sasl_username is not".to_owned(),
            ));
        }
        Ok(())
    }

    /// The librdkafka client settings common to producers, consumers and admin
    /// clients. Reads secrets from their sources.
    pub fn client_config(&self, role: &str) -> Result<ClientConfig> {
        self.validate()?;
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers)
            .set("client.id", format!("{}-{role}", self.client_id));
        let optional = [
            ("security.protocol", self.security_protocol.as_deref()),
            ("sasl.mechanism", self.sasl_mechanism.as_deref()),
            ("sasl.username", self.sasl_username.as_deref()),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                cfg.set(key, value);
            }
        }
        let paths = [
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
        ];
        for (key, value) in paths {
            if let Some(path) = value {
                cfg.set(key, path.display().to_string());
            }
        }
        if let Some(secret) = &self.sasl_password {
            cfg.set("sasl.password", secret.expose()?);
        }
        if let Some(secret) = &self.ssl_key_password {
            cfg.set("ssl.key.password", secret.expose()?);
        }
        for (key, value) in &self.properties {
            cfg.set(key, value);
        }
        // librdkafka logs through the `log` crate facade only when asked;
        // keep its own noise at warnings.
        cfg.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_properties_are_rejected_by_name() {
        let mut cfg = KafkaConfig::default();
        cfg.properties
            .insert("enable.auto.commit".into(), "true".into());
        let err = cfg.validate().expect_err("must reject");
        assert!(err.to_string().contains("enable.auto.commit"), "{err}");
    }

    #[test]
    fn security_settings_pass_through_without_printing_secrets() {
        let cfg = KafkaConfig {
            security_protocol: Some("sasl_ssl".into()),
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some("hrsync".into()),
            sasl_password: Some(Secret::inline("pa55word")),
            properties: BTreeMap::from([(
                "ssl.endpoint.identification.algorithm".to_owned(),
                "none".to_owned(),
            )]),
            ..KafkaConfig::default()
        };
        let client = cfg.client_config("test").expect("builds");
        assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(client.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(client.get("sasl.password"), Some("pa55word"));
        assert_eq!(
            client.get("ssl.endpoint.identification.algorithm"),
            Some("none")
        );
        assert!(!format!("{cfg:?}").contains("pa55word"));
    }

    #[test]
    fn password_without_user_is_rejected() {
        let cfg = KafkaConfig {
            sasl_password: Some(Secret::inline("x")),
            ..KafkaConfig::default()
        };
        assert!(cfg.validate().is_err());
    }
}
