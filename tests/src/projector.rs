//! The projector's topics on a test broker.

use hrsync_bus::{KafkaConfig, TopicsConfig};
use hrsync_projector::run::Topics;

/// Creates hrsync's topics (the default names), each with `partitions`
/// partitions, and names the projector's.
///
/// # Errors
/// The broker refused to create them.
pub async fn projector_topics(kafka: &KafkaConfig, partitions: i32) -> anyhow::Result<Topics> {
    let topics = TopicsConfig {
        partitions: Some(partitions),
        ..TopicsConfig::default()
    };
    hrsync_bus::ensure_topics(kafka, &topics.specs(kafka)).await?;
    Ok(Topics::from(&topics))
}
