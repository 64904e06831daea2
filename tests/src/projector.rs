//! The projector's topics on a test broker.

use hrsync_bus::{KafkaConfig, TopicSpec};
use hrsync_projector::run::Topics;

/// Creates the projector's topics (the default names), each with
/// `partitions` partitions, and names them.
///
/// # Errors
/// The broker refused to create them.
pub async fn projector_topics(kafka: &KafkaConfig, partitions: i32) -> anyhow::Result<Topics> {
    let topics = Topics {
        lifecycle: "hr.lifecycle.v1".into(),
        lifecycle_priority: "hr.lifecycle.priority.v1".into(),
        directory_changes: "directory.changes.v1".into(),
        directory_priority: "directory.changes.priority.v1".into(),
        dlq: "hrsync.projector.dlq".into(),
    };
    let specs: Vec<TopicSpec> = [
        &topics.lifecycle,
        &topics.lifecycle_priority,
        &topics.directory_changes,
        &topics.directory_priority,
        &topics.dlq,
    ]
    .into_iter()
    .map(|t| TopicSpec::new(t.as_str(), partitions))
    .collect();
    hrsync_bus::ensure_topics(kafka, &specs).await?;
    Ok(topics)
}
