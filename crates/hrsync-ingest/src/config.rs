//! The `[ingest]` section of the hrsync configuration.

use std::net::SocketAddr;

use hrsync_config::Secret;
use serde::{Deserialize, Serialize};

use crate::source::SourceConfig;

/// Settings of the ingest role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Where baselines and the outbox live: `sqlite://PATH` or
    /// `postgres://...` (a secret: URLs may hold passwords).
    pub database_url: Secret,
    /// Database connection pool size.
    pub max_connections: u32,
    /// Events published per batch; each batch is confirmed in the store once
    /// the broker has acknowledged all of it.
    pub publish_batch: usize,
    /// The HR sources, `[[ingest.sources]]`.
    pub sources: Vec<SourceConfig>,
    /// The push API.
    pub push: PushConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            database_url: Secret::inline("sqlite://hrsync-ingest.db"),
            max_connections: 4,
            publish_batch: 10_000,
            sources: Vec::new(),
            push: PushConfig::default(),
        }
    }
}

/// Settings of the push API (`hrsync ingest serve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// Bearer token clients must present. Required to serve.
    pub token: Option<Secret>,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// `source_system` of pushed events that do not name one.
    pub source_system: String,
    /// Events accepted per client (the token's subject) per minute, shared
    /// by every push API process on the ingest store; more are answered 429
    /// with `Retry-After`. Terminations in effect now are never refused.
    /// None: no limit.
    pub rate_per_minute: Option<u32>,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            body_limit_bytes: 1024 * 1024,
            source_system: "push".to_owned(),
            rate_per_minute: None,
        }
    }
}

impl IngestConfig {
    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.publish_batch == 0 {
            return Err(ConfigError::TooSmall {
                key: "ingest.publish_batch",
                min: 1,
            });
        }
        if self.push.body_limit_bytes < 1024 {
            return Err(ConfigError::TooSmall {
                key: "ingest.push.body_limit_bytes",
                min: 1024,
            });
        }
        if self.push.rate_per_minute == Some(0) {
            return Err(ConfigError::TooSmall {
                key: "ingest.push.rate_per_minute",
                min: 1,
            });
        }
        for (i, source) in self.sources.iter().enumerate() {
            source.validate()?;
            if self.sources[..i].iter().any(|s| s.name == source.name) {
                return Err(ConfigError::DuplicateSource {
                    name: source.name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// A setting of the `[ingest]` section that cannot work; the message names
/// the key to fix in the configuration file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A number below its minimum.
    #[error("{key} must be at least {min}")]
    TooSmall {
        /// The key, e.g. `ingest.publish_batch`.
        key: &'static str,
        /// The smallest accepted value.
        min: usize,
    },
    /// Two sources with one name.
    #[error("ingest.sources: source {name:?} is defined twice")]
    DuplicateSource {
        /// The name given twice.
        name: String,
    },
    /// A source without a name.
    #[error("ingest.sources[].name is empty")]
    EmptySourceName,
    /// A share outside 0..=1.
    #[error("{key} must be between 0 and 1")]
    NotAShare {
        /// The key.
        key: String,
    },
    /// A list that must not be empty.
    #[error("{key} is empty")]
    Empty {
        /// The key.
        key: String,
    },
    /// An employment type mapped to something other than the three types.
    #[error("{key} = {value:?}: expected employee, contractor or intern")]
    UnknownEmploymentType {
        /// The key, ending with HR's worker type.
        key: String,
        /// The value given.
        value: String,
    },
    /// One column read as two fields.
    #[error("{key}: column {column:?} is mapped to both {first} and {second}")]
    ColumnMappedTwice {
        /// The `columns` key of the source.
        key: String,
        /// The column name.
        column: String,
        /// The field listed first.
        first: &'static str,
        /// The other field.
        second: &'static str,
    },
}
