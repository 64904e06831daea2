//! The `[projector]` section of the hrsync configuration.

use std::collections::BTreeMap;

use hrsync_config::Secret;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::rules::RulesConfig;
use crate::state::AttributeSources;

/// Settings of the projector role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    /// Profile store: `sqlite://PATH` or `postgres://...` (a secret: URLs
    /// may hold passwords).
    pub database_url: Secret,
    /// Database connection pool size.
    pub max_connections: u32,
    /// Consumer group of the main lifecycle topic; the priority lane uses
    /// `<group_id>-priority`.
    pub group_id: String,
    /// Most events applied in one transaction. On SQLite the main lane
    /// applies at most 250 at a time: there an immediate termination waits
    /// for the main lane's transaction in progress.
    pub batch_max: usize,
    /// How long a main-lane batch waits for more events before it is
    /// applied. The priority lane does not wait: a termination is applied
    /// with whatever arrived with it.
    pub batch_linger_ms: u64,
    /// Per attribute, the sources allowed to set it, highest precedence
    /// first, e.g. `phone = ["directory", "workday"]`.
    pub attribute_sources: AttributeSources,
    /// Per app, how many days before the start date a pending person's
    /// account may be created.
    pub prehire_days: BTreeMap<String, u32>,
    /// How far up the manager chain rules can see.
    pub manager_chain_depth: usize,
    /// How often due time-driven transitions are looked for, at most.
    pub timer_interval_ms: u64,
    /// Groups, their rules and their apps.
    pub rules: RulesConfig,
    /// How many persons are kept in memory between batches, as last
    /// committed, so that a batch does not read its own persons back from
    /// the store (about 1.2 KiB each; 0 turns the cache off).
    pub person_cache: usize,
    /// Whether the projector holding the store's claim keeps the reporting
    /// lines (managers, reports, report counts) in memory instead of
    /// reading them from the store in every batch: about 300 bytes per
    /// stored person.
    pub reporting_lines_in_memory: bool,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            database_url: Secret::inline("sqlite://hrsync-projector.db"),
            max_connections: 8,
            group_id: "hrsync-projector".to_owned(),
            batch_max: 1000,
            batch_linger_ms: 20,
            attribute_sources: AttributeSources::default(),
            prehire_days: BTreeMap::new(),
            manager_chain_depth: 10,
            timer_interval_ms: 1000,
            rules: RulesConfig::default(),
            person_cache: 50_000,
            reporting_lines_in_memory: true,
        }
    }
}

impl ProjectorConfig {
    /// Checks every setting; the error names the key.
    ///
    /// # Errors
    /// The offending key, and what is wrong with it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.batch_max == 0 {
            return Err(ConfigError::BatchMax);
        }
        if self.group_id.trim().is_empty() {
            return Err(ConfigError::GroupId);
        }
        for (attribute, sources) in &self.attribute_sources.0 {
            hrsync_domain::Attribute::parse(attribute).map_err(|e| ConfigError::Attribute {
                attribute: attribute.clone(),
                reason: e.to_string(),
            })?;
            if sources.is_empty() {
                return Err(ConfigError::NoSources(attribute.clone()));
            }
        }
        crate::rules::RuleSet::compile(&self.rules)?;
        Ok(())
    }

    /// How long before the start each app's pre-hire window opens, in ms.
    pub fn prehire_offsets_ms(&self) -> Vec<i64> {
        let mut offsets: Vec<i64> = self
            .prehire_days
            .values()
            .map(|d| i64::from(*d) * 86_400_000)
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        offsets
    }
}
