use crate::{Delivery, OutgoingRecord, Producer, Record, Result};

/// Prefix of the provenance headers a DLQ record carries.
pub const DLQ_HEADER_PREFIX: &str = "hrsync.dlq.";

/// Publishes records that a stage cannot process to its dead-letter topic,
/// keeping the original key, value and headers byte for byte, and adding
/// where the record came from and why it failed:
/// `hrsync.dlq.topic`, `.partition`, `.offset`, `.timestamp`, `.stage`,
/// `.error`, `.failed_at` (RFC 3339).
#[derive(Debug, Clone)]
pub struct DlqPublisher {
    producer: Producer,
    topic: String,
    stage: String,
}

impl DlqPublisher {
    /// A publisher writing to `topic` on behalf of `stage` (ingest, projector,
    /// provisioner).
    pub fn new(producer: Producer, topic: impl Into<String>, stage: impl Into<String>) -> Self {
        DlqPublisher {
            producer,
            topic: topic.into(),
            stage: stage.into(),
        }
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Parks `record` with the reason it failed; returns once the broker has
    /// acknowledged it.
    pub async fn publish(&self, record: &Record, error: &str) -> Result<Delivery> {
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let timestamp = record
            .timestamp_ms
            .map(|t| t.to_string())
            .unwrap_or_default();
        let failed_at = chrono::Utc::now().to_rfc3339();
        let provenance = [
            ("hrsync.dlq.topic", record.topic.as_bytes()),
            ("hrsync.dlq.partition", partition.as_bytes()),
            ("hrsync.dlq.offset", offset.as_bytes()),
            ("hrsync.dlq.timestamp", timestamp.as_bytes()),
            ("hrsync.dlq.stage", self.stage.as_bytes()),
            ("hrsync.dlq.error", error.as_bytes()),
            ("hrsync.dlq.failed_at", failed_at.as_bytes()),
        ];
        // The original headers come first and unchanged, except a trace
        // context, which the producer writes afresh from the current span
        // (the consumer's span continues the original trace).
        let headers: Vec<(&str, &[u8])> = record
            .headers
            .iter()
            .filter(|(k, _)| {
                k != hrsync_telemetry::propagation::TRACEPARENT
                    && k != hrsync_telemetry::propagation::TRACESTATE
            })
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .chain(provenance)
            .collect();
        let delivery = self
            .producer
            .send(OutgoingRecord {
                topic: &self.topic,
                key: record.key.as_deref().unwrap_or_default(),
                payload: record.payload.as_deref().unwrap_or_default(),
                headers: &headers,
            })
            .await?;
        metrics::counter!(
            crate::metrics::DLQ_RECORDS,
            "topic" => record.topic.clone(),
            "stage" => self.stage.clone()
        )
        .increment(1);
        tracing::warn!(
            from = %record.position(),
            dlq = %self.topic,
            error,
            "record parked on the dead-letter topic"
        );
        Ok(delivery)
    }
}
