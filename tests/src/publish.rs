//! Putting records on a topic the way their producer of record would.

use hrsync_bus::{OutgoingRecord, Producer};
use hrsync_domain::{DirectoryChange, LifecycleEvent};

/// Publishes `events` to `topic`, Avro single-object encoded and keyed by
/// employee id, in order, in acknowledged batches of 5,000.
pub async fn publish_lifecycle<'a>(
    producer: &Producer,
    topic: &str,
    events: impl IntoIterator<Item = &'a LifecycleEvent>,
) -> anyhow::Result<()> {
    let events: Vec<&LifecycleEvent> = events.into_iter().collect();
    for chunk in events.chunks(5000) {
        let encoded: Vec<(&str, Vec<u8>)> = chunk
            .iter()
            .map(|e| Ok((e.employee_id.as_str(), hrsync_schema::encode_lifecycle(e)?)))
            .collect::<anyhow::Result<_>>()?;
        let records: Vec<OutgoingRecord<'_>> = encoded
            .iter()
            .map(|(key, payload)| OutgoingRecord {
                topic,
                key: key.as_bytes(),
                payload,
                headers: &[],
            })
            .collect();
        producer.send_batch(&records).await?;
    }
    Ok(())
}

/// Publishes `changes` to `topic` as the projector does: Avro single-object
/// encoded, keyed by person id, in order, in acknowledged batches of 5,000.
pub async fn publish_directory_changes<'a>(
    producer: &Producer,
    topic: &str,
    changes: impl IntoIterator<Item = &'a DirectoryChange>,
) -> anyhow::Result<()> {
    let changes: Vec<&DirectoryChange> = changes.into_iter().collect();
    for chunk in changes.chunks(5000) {
        let encoded: Vec<(&str, Vec<u8>)> = chunk
            .iter()
            .map(|c| {
                Ok((
                    c.person_id.as_str(),
                    hrsync_schema::encode_directory_change(c)?,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        let records: Vec<OutgoingRecord<'_>> = encoded
            .iter()
            .map(|(key, payload)| OutgoingRecord {
                topic,
                key: key.as_bytes(),
                payload,
                headers: &[],
            })
            .collect();
        producer.send_batch(&records).await?;
    }
    Ok(())
}

/// Publishes one lifecycle event to `topic` (Avro single-object encoded,
/// keyed by employee id) with the record timestamp `timestamp_ms`, as a
/// producer whose clock said so would: brokers remove records by this
/// timestamp once it is older than the topic's `retention.ms`.
pub async fn publish_lifecycle_at(
    kafka: &hrsync_bus::KafkaConfig,
    topic: &str,
    event: &LifecycleEvent,
    timestamp_ms: i64,
) -> anyhow::Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = kafka.client_config("test-producer")?.create()?;
    let payload = hrsync_schema::encode_lifecycle(event)?;
    producer
        .send(
            FutureRecord::to(topic)
                .key(event.employee_id.as_str())
                .payload(&payload)
                .timestamp(timestamp_ms),
            std::time::Duration::from_secs(30),
        )
        .await
        .map_err(|(error, _)| anyhow::anyhow!("publishing to {topic}: {error}"))?;
    Ok(())
}
