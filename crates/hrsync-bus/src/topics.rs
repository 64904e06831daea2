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
    /// Partition count of the topics when hrsync creates them; unset uses
    /// `kafka.default_partitions`.
    pub partitions: Option<i32>,
}

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
            partitions: None,
        }
    }
}

impl TopicsConfig {
    /// Every topic with the partition count to create it with.
    pub fn specs(&self, kafka: &KafkaConfig) -> Vec<TopicSpec> {
        let partitions = self.partitions.unwrap_or(kafka.default_partitions);
        self.names()
            .into_iter()
            .map(|name| TopicSpec::new(name, partitions))
            .collect()
    }

    fn names(&self) -> [&str; 8] {
        [
            &self.lifecycle,
            &self.lifecycle_priority,
            &self.directory_changes,
            &self.directory_priority,
            &self.audit,
            &self.ingest_dlq,
            &self.projector_dlq,
            &self.provisioner_dlq,
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
        Ok(())
    }
}

/// A topic hrsync needs, with the partition count to create it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partitions to create it with (ignored if it already exists).
    pub partitions: i32,
}

impl TopicSpec {
    /// A topic with an explicit partition count.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
        }
    }
}

/// Creates every topic in `topics` that does not exist yet. Existing topics
/// are left as they are (a smaller partition count than configured is logged,
/// not changed: repartitioning would reorder keys).
#[tracing::instrument(skip_all, fields(count = topics.len()))]
pub async fn ensure_topics(config: &KafkaConfig, topics: &[TopicSpec]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .client_config("admin")?
        .create()
        .map_err(Error::Client)?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(config.replication_factor),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_distinct() {
        let topics = TopicsConfig::default();
        topics.validate().expect("valid");
        assert_eq!(topics.specs(&KafkaConfig::default()).len(), 8);
    }

    #[test]
    fn invalid_and_duplicate_names_are_named() {
        let topics = TopicsConfig {
            audit: "bad name".into(),
            ..TopicsConfig::default()
        };
        assert!(topics
            .validate()
            .expect_err("bad")
            .to_string()
            .contains("bad name"));
        let topics = TopicsConfig {
            audit: "hr.lifecycle.v1".into(),
            ..TopicsConfig::default()
        };
        assert!(topics
            .validate()
            .expect_err("dup")
            .to_string()
            .contains("two topics"));
    }
}
