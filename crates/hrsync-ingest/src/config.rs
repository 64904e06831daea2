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
            publish_batch: 2000,
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
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            body_limit_bytes: 1024 * 1024,
            source_system: "push".to_owned(),
        }
    }
}

impl IngestConfig {
    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// Checks every setting; the message names the key.
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.publish_batch == 0 {
            return Err("ingest.publish_batch must be at least 1".to_owned());
        }
        if self.push.body_limit_bytes < 1024 {
            return Err("ingest.push.body_limit_bytes must be at least 1024".to_owned());
        }
        for (i, source) in self.sources.iter().enumerate() {
            source.validate()?;
            if self.sources[..i].iter().any(|s| s.name == source.name) {
                return Err(format!(
                    "ingest.sources: source {:?} is defined twice",
                    source.name
                ));
            }
        }
        Ok(())
    }
}
