use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use serde::{Deserialize, Serialize};

use crate::{Error, KafkaConfig, Result};

/// Names and partition counts of hrsync's topics (`[topics]` in the config).
/// Keys are the employee id on the lifecycle topics and the person id on the
/// directory topics, so every event of one person stays in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// HR lifecycle events (hire, move, terminate, ...): the source of truth.
    pub lifecycle: String,
    /// Fast lane for terminations that take effect now.
    pub lifecycle_priority: String,
    /// Desired state of each changed person.
    pub directory_changes: String,
    /// Fast lane for deprovisioning changes (terminations, suspensions, app
    /// removals).
    pub directory_priority: String,
    /// One record per SCIM operation.
    pub audit: String,
    /// Dead letters of the ingest stage.
    pub ingest_dlq: String,
    /// Dead letters of the projector.
    pub projector_dlq: String,
    /// Dead letters of the provisioner.
    pub provisioner_dlq: String,
    /// Dead letters of the hooks role (directory changes it cannot read).
    pub hooks_dlq: String,
    /// Partition count of the topics when hrsync creates them; unset uses
    /// `kafka.default_partitions`.
    pub partitions: Option<i32>,
    /// `retention.ms` of the directory-change topics (main and priority)
    /// when hrsync creates them; -1 keeps records forever. They carry each
    /// person's full desired state and are consumed within seconds, so they
    /// need only outlive the longest provisioner outage. Default 30 days.
    /// (The lifecycle topics always get -1: they are the source of truth.)
    pub directory_retention_ms: i64,
    /// `retention.ms` of the audit topic when hrsync creates it; -1 keeps
    /// records forever. Set it to your audit policy (the provisioner also
    /// keeps every record in its `provisioner_audit` table). Default 365
    /// days.
    pub audit_retention_ms: i64,
    /// `retention.ms` of the dead-letter topics when hrsync creates
    /// them; -1 keeps records forever. Long enough to notice, fix and
    /// redrive a failure. Default 30 days.
    pub dlq_retention_ms: i64,
    /// Run even when a lifecycle topic lets the broker delete records
    /// (`retention.ms` or `retention.bytes` not -1, or `cleanup.policy`
    /// with `compact`) or its settings cannot be read: log a warning
    /// instead of stopping the projector; and a projector whose store
    /// would resume below the log's first record goes on from there with a
    /// warning instead of stopping. For brokers that do not keep the log; a
    /// rebuild still refuses once records are gone. Default false.
    pub allow_finite_lifecycle_retention: bool,
}

/// 30 days in milliseconds.
const THIRTY_DAYS_MS: i64 = 30 * 24 * 3_600_000;

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            lifecycle: "hr.lifecycle.v1".to_owned(),
            lifecycle_priority: "hr.lifecycle.priority.v1".to_owned(),
            directory_changes: "directory.changes.v1".to_owned(),
            directory_priority: "directory.changes.priority.v1".to_owned(),
            audit: "provisioning.audit.v1".to_owned(),
            ingest_dlq: "hrsync.ingest.dlq".to_owned(),
            projector_dlq: "hrsync.projector.dlq".to_owned(),
            provisioner_dlq: "hrsync.provisioner.dlq".to_owned(),
            hooks_dlq: "hrsync.hooks.dlq".to_owned(),
            partitions: None,
            directory_retention_ms: THIRTY_DAYS_MS,
            audit_retention_ms: 365 * 24 * 3_600_000,
            dlq_retention_ms: THIRTY_DAYS_MS,
            allow_finite_lifecycle_retention: false,
        }
    }
}

impl TopicsConfig {
    /// Every topic with the partition count and settings to create it
    /// with: the lifecycle topics keep every record (`retention.ms` and
    /// `retention.bytes` -1), the others keep them for their configured
    /// `*_retention_ms`.
    pub fn specs(&self, kafka: &KafkaConfig) -> Vec<TopicSpec> {
        let partitions = self.partitions.unwrap_or(kafka.default_partitions);
        let forever = |name: &str| {
            TopicSpec::new(name, partitions)
                .with_config(RETENTION_MS, "-1")
                .with_config(RETENTION_BYTES, "-1")
        };
        let kept = |name: &str, ms: i64| {
            TopicSpec::new(name, partitions).with_config(RETENTION_MS, ms.to_string())
        };
        vec![
            forever(&self.lifecycle),
            forever(&self.lifecycle_priority),
            kept(&self.directory_changes, self.directory_retention_ms),
            kept(&self.directory_priority, self.directory_retention_ms),
            kept(&self.audit, self.audit_retention_ms),
            kept(&self.ingest_dlq, self.dlq_retention_ms),
            kept(&self.projector_dlq, self.dlq_retention_ms),
            kept(&self.provisioner_dlq, self.dlq_retention_ms),
            kept(&self.hooks_dlq, self.dlq_retention_ms),
        ]
    }

    /// The lifecycle topics: the main one and its priority lane.
    pub fn lifecycle_topics(&self) -> [&str; 2] {
        [&self.lifecycle, &self.lifecycle_priority]
    }

    fn names(&self) -> [&str; 9] {
        [
            &self.lifecycle,
            &self.lifecycle_priority,
            &self.directory_changes,
            &self.directory_priority,
            &self.audit,
            &self.ingest_dlq,
            &self.projector_dlq,
            &self.provisioner_dlq,
            &self.hooks_dlq,
        ]
    }

    /// Checks names are valid Kafka topic names and distinct.
    pub fn validate(&self) -> Result<()> {
        let names = self.names();
        for (i, name) in names.iter().enumerate() {
            let valid = !name.is_empty()
                && name.len() <= 249
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !valid {
                return Err(Error::Config(format!(
                    "topic name {name:?} is not a valid Kafka topic name \
                     (1-249 characters of a-z, A-Z, 0-9, '.', '_', '-')"
                )));
            }
            if names[..i].contains(name) {
                return Err(Error::Config(format!(
                    "topic name {name:?} is configured for two topics"
                )));
            }
        }
        if self.partitions.is_some_and(|p| p < 1) {
            return Err(Error::Config(
                "topics.partitions must be at least 1".to_owned(),
            ));
        }
        for (key, ms) in [
            ("directory_retention_ms", self.directory_retention_ms),
            ("audit_retention_ms", self.audit_retention_ms),
            ("dlq_retention_ms", self.dlq_retention_ms),
        ] {
            if ms != -1 && ms < 1 {
                return Err(Error::Config(format!(
                    "topics.{key} = {ms}: must be -1 (keep records forever) or a positive \
                     number of milliseconds"
                )));
            }
        }
        Ok(())
    }
}

/// The topic setting of how long records are kept, in milliseconds.
pub const RETENTION_MS: &str = "retention.ms";
/// The topic setting of how many bytes a partition keeps.
pub const RETENTION_BYTES: &str = "retention.bytes";

/// A topic hrsync needs, with the partition count and settings to create it
/// with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partitions to create it with (ignored if it already exists).
    pub partitions: i32,
    /// Topic settings to create it with, such as `retention.ms` (ignored if
    /// it already exists).
    pub configs: Vec<(String, String)>,
}

impl TopicSpec {
    /// A topic with an explicit partition count and the broker's default
    /// settings.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            configs: Vec::new(),
        }
    }

    /// The same topic, created with `key` = `value` as a topic setting.
    #[must_use]
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// Creates every topic in `topics` that does not exist yet, with its
/// settings. Existing topics are left as they are (a smaller partition count
/// than configured is logged, not changed: repartitioning would reorder
/// keys; their settings are checked by [`crate::check_lifecycle_retention`]
/// where it matters).
#[tracing::instrument(skip_all, fields(count = topics.len()))]
pub async fn ensure_topics(config: &KafkaConfig, topics: &[TopicSpec]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .client_config("admin")?
        .create()
        .map_err(Error::Client)?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            t.configs.iter().fold(
                NewTopic::new(
                    &t.name,
                    t.partitions,
                    TopicReplication::Fixed(config.replication_factor),
                ),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new_topics, &options).await?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, "created topic"),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(%topic, "topic exists");
            }
            Err((topic, code)) => return Err(Error::CreateTopic { topic, code }),
        }
    }
    warn_on_fewer_partitions(&admin, topics);
    Ok(())
}

fn warn_on_fewer_partitions(admin: &AdminClient<DefaultClientContext>, topics: &[TopicSpec]) {
    let Ok(metadata) = admin.inner().fetch_metadata(None, Duration::from_secs(10)) else {
        return;
    };
    for spec in topics {
        if let Some(topic) = metadata.topics().iter().find(|t| t.name() == spec.name) {
            let actual = i32::try_from(topic.partitions().len()).unwrap_or(i32::MAX);
            if actual < spec.partitions {
                tracing::warn!(
                    topic = %spec.name,
                    actual,
                    configured = spec.partitions,
                    "topic has fewer partitions than configured; left unchanged"
                );
            }
        }
    }
}

/// The partition ids of `topic` as the broker reports them; none when it
/// does not know the topic. Blocking: call it off the async workers.
pub(crate) fn partition_ids<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<Vec<i32>> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_distinct() {
        let topics = TopicsConfig::default();
        topics.validate().expect("valid");
        assert_eq!(topics.specs(&KafkaConfig::default()).len(), 9);
    }

    #[test]
    fn lifecycle_topics_keep_every_record_and_the_others_their_configured_time() {
        let topics = TopicsConfig {
            audit_retention_ms: -1,
            dlq_retention_ms: 3_600_000,
            ..TopicsConfig::default()
        };
        let specs = topics.specs(&KafkaConfig::default());
        let configs = |name: &str| {
            specs
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.configs.clone())
                .unwrap_or_default()
        };
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        for lifecycle in ["hr.lifecycle.v1", "hr.lifecycle.priority.v1"] {
            assert_eq!(
                configs(lifecycle),
                [pair("retention.ms", "-1"), pair("retention.bytes", "-1")]
            );
        }
        for directory in ["directory.changes.v1", "directory.changes.priority.v1"] {
            assert_eq!(configs(directory), [pair("retention.ms", "2592000000")]);
        }
        assert_eq!(
            configs("provisioning.audit.v1"),
            [pair("retention.ms", "-1")]
        );
        assert_eq!(
            configs("hrsync.projector.dlq"),
            [pair("retention.ms", "3600000")]
        );
    }

    #[test]
    fn retention_must_be_forever_or_positive() {
        for bad in [0, -2] {
            let topics = TopicsConfig {
                dlq_retention_ms: bad,
                ..TopicsConfig::default()
            };
            let error = topics.validate().expect_err("refused").to_string();
            assert!(
                error.contains(&format!("topics.dlq_retention_ms = {bad}")),
                "{error}"
            );
        }
    }

    #[test]
    fn unknown_topic_keys_are_rejected() {
        let error =
            toml::from_str::<TopicsConfig>("lifecycle_retention_ms = 5").expect_err("unknown key");
        assert!(
            error.to_string().contains("lifecycle_retention_ms"),
            "{error}"
        );
    }

    #[test]
    fn invalid_and_duplicate_names_are_named() {
        for (audit, says) in [("bad name", "bad name"), ("hr.lifecycle.v1", "two topics")] {
            let topics = TopicsConfig {
                audit: audit.into(),
                ..TopicsConfig::default()
            };
            let error = topics.validate().expect_err(audit).to_string();
            assert!(error.contains(says), "{error}");
        }
    }
}
