//! Reading a whole topic back: every record of every partition.

use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// One record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Key.
    pub key: Vec<u8>,
    /// Value.
    pub payload: Vec<u8>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Every record of `topic` on the broker at `bootstrap`, partition by
/// partition in offset order. Uses no consumer group (nothing committed).
pub fn read_topic(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<TopicRecord>> {
    read_topic_until_quiet(bootstrap, topic, Duration::from_millis(1500))
}

/// Like [`read_topic`], stopping once nothing arrived for `quiet`.
pub fn read_topic_until_quiet(
    bootstrap: &str,
    topic: &str,
    quiet: Duration,
) -> anyhow::Result<Vec<TopicRecord>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .with_context(|| format!("topic {topic} not found"))?
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    // tansu 0.6's high watermarks (ListOffsets) lag behind what it stores
    // (measured: 65 reported, 95 readable), so read from the start of each
    // partition until the topic stays quiet. Every caller reads after its
    // writes were acknowledged, so quiet means complete.
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = Instant::now();
    // A fresh consumer needs a moment (metadata, first fetch) before the
    // first record can arrive: give an empty-looking topic 2.5 s.
    let first_wait = quiet.max(Duration::from_millis(2500));
    while last.elapsed()
        < if records.is_empty() {
            first_wait
        } else {
            quiet
        }
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{topic} kept delivering for 120 s ({} records)",
            records.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
        last = Instant::now();
        records.push(TopicRecord {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().unwrap_or_default().to_vec(),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers: message
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}
