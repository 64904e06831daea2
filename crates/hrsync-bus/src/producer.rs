use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::Instrument;

use crate::metrics::{PRODUCE_FAILURES, RECORDS_PRODUCED};
use crate::{Error, KafkaConfig, Result};

/// A record to publish.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRecord<'a> {
    /// Destination topic.
    pub topic: &'a str,
    /// Partitioning key: all records of one key land in one partition, in
    /// order.
    pub key: &'a [u8],
    /// Encoded value.
    pub payload: &'a [u8],
    /// Extra headers; the W3C trace context is added by the producer.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Where the broker stored an acknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Partition written.
    pub partition: i32,
    /// Offset assigned.
    pub offset: i64,
}

/// Idempotent producer: `enable.idempotence=true` and `acks=all`, so a retried
/// send never duplicates or reorders records within a partition, and a send
/// completes only when every in-sync replica has the record.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    /// Creates the producer. Does not contact the broker yet.
    pub fn new(config: &KafkaConfig) -> Result<Self> {
        let mut cfg = config.client_config("producer")?;
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "delivery.timeout.ms",
                config.delivery_timeout_ms.to_string(),
            )
            .set("linger.ms", "5")
            .set("compression.type", "lz4");
        let inner = cfg.create().map_err(Error::Client)?;
        Ok(Producer { inner })
    }

    /// Publishes one record and waits for the broker's acknowledgement. The
    /// current span's trace context travels in the `traceparent` header.
    pub async fn send(&self, record: OutgoingRecord<'_>) -> Result<Delivery> {
        let span = tracing::debug_span!("kafka.produce", topic = record.topic);
        let trace_headers = hrsync_telemetry::propagation::inject(&tracing::Span::current());
        async {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 2);
            for (key, value) in record.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(*value),
                });
            }
            for (key, value) in &trace_headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
            let future_record = FutureRecord::to(record.topic)
                .key(record.key)
                .payload(record.payload)
                .headers(headers);
            // The queue timeout only applies when librdkafka's local queue is
            // full; delivery itself is bounded by `delivery.timeout.ms`.
            match self
                .inner
                .send(future_record, Duration::from_secs(30))
                .await
            {
                Ok(delivery) => {
                    metrics::counter!(RECORDS_PRODUCED, "topic" => record.topic.to_owned())
                        .increment(1);
                    Ok(Delivery {
                        partition: delivery.partition,
                        offset: delivery.offset,
                    })
                }
                Err((source, _)) => {
                    metrics::counter!(PRODUCE_FAILURES, "topic" => record.topic.to_owned())
                        .increment(1);
                    Err(Error::Delivery {
                        topic: record.topic.to_owned(),
                        source,
                    })
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Waits until every queued record is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        use rdkafka::producer::Producer as _;
        self.inner.flush(timeout).map_err(Error::Kafka)
    }
}
