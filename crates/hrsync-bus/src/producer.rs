use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::Instrument;

use crate::metrics::{PRODUCE_FAILURES, RECORDS_PRODUCED};
use crate::{Error, KafkaConfig, Result};

/// The librdkafka record of `record`, with its headers and the trace
/// context.
fn future_record<'a>(
    record: &OutgoingRecord<'a>,
    trace_headers: &'a [(String, String)],
) -> FutureRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + trace_headers.len());
    for (key, value) in record.headers {
        headers = headers.insert(Header {
            key,
            value: Some(*value),
        });
    }
    for (key, value) in trace_headers {
        // A trace the caller carries over explicitly (the projector's outbox
        // keeps the causing event's) wins over the current span's.
        if record.headers.iter().any(|(k, _)| k == key) {
            continue;
        }
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    FutureRecord::to(record.topic)
        .key(record.key)
        .payload(record.payload)
        .headers(headers)
}

/// Records one acknowledgement of a batch.
fn settle<E>(
    topic: &str,
    index: usize,
    outcome: std::result::Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>,
    deliveries: &mut [Option<Delivery>],
    first_error: &mut Option<Error>,
) {
    match outcome {
        Ok(Ok(delivery)) => {
            metrics::counter!(RECORDS_PRODUCED, "topic" => topic.to_owned()).increment(1);
            deliveries[index] = Some(Delivery {
                partition: delivery.partition,
                offset: delivery.offset,
            });
        }
        Ok(Err((source, _))) => {
            metrics::counter!(PRODUCE_FAILURES, "topic" => topic.to_owned()).increment(1);
            first_error.get_or_insert(Error::Delivery {
                topic: topic.to_owned(),
                source,
            });
        }
        Err(_) => {
            metrics::counter!(PRODUCE_FAILURES, "topic" => topic.to_owned()).increment(1);
            first_error.get_or_insert(Error::Delivery {
                topic: topic.to_owned(),
                source: rdkafka::error::KafkaError::Canceled,
            });
        }
    }
}

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
            let future_record = future_record(&record, &trace_headers);
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

    /// Publishes `records` in order and waits until the broker has
    /// acknowledged every one; returns their positions in the same order.
    ///
    /// Records are handed to librdkafka one after another without waiting
    /// for each acknowledgement, so a batch costs about one round trip rather
    /// than one per record. Because the producer is idempotent, records of
    /// one partition are stored in exactly this order, even across retries.
    /// If any record fails, the error is returned after every other
    /// record has settled; the caller must treat the whole batch as
    /// unpublished (resending is safe for consumers that dedupe by event
    /// id).
    pub async fn send_batch(&self, records: &[OutgoingRecord<'_>]) -> Result<Vec<Delivery>> {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        use rdkafka::producer::DeliveryFuture;

        let span = tracing::debug_span!("kafka.produce_batch", records = records.len());
        let trace_headers = hrsync_telemetry::propagation::inject(&tracing::Span::current());
        async {
            let mut pending: std::collections::VecDeque<(usize, DeliveryFuture)> =
                std::collections::VecDeque::with_capacity(records.len());
            let mut deliveries = vec![None; records.len()];
            let mut first_error = None;
            for (index, record) in records.iter().enumerate() {
                loop {
                    match self
                        .inner
                        .send_result(future_record(record, &trace_headers))
                    {
                        Ok(future) => {
                            pending.push_back((index, future));
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                            // The local queue is full: wait for the oldest
                            // record to settle, then try again.
                            match pending.pop_front() {
                                Some((i, future)) => {
                                    settle(
                                        records[i].topic,
                                        i,
                                        future.await,
                                        &mut deliveries,
                                        &mut first_error,
                                    );
                                }
                                None => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        }
                        Err((error, _)) => {
                            first_error.get_or_insert(Error::Delivery {
                                topic: record.topic.to_owned(),
                                source: error,
                            });
                            break;
                        }
                    }
                }
                if first_error.is_some() {
                    break;
                }
            }
            for (i, future) in pending {
                settle(
                    records[i].topic,
                    i,
                    future.await,
                    &mut deliveries,
                    &mut first_error,
                );
            }
            if let Some(error) = first_error {
                return Err(error);
            }
            Ok(deliveries.into_iter().flatten().collect())
        }
        .instrument(span)
        .await
    }

    /// Waits until every queued record is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        use rdkafka::producer::Producer as _;
        self.inner.flush(timeout).map_err(Error::Kafka)
    }

    /// Connects now and learns the partitions of `topics`, instead of on
    /// the first send: a process that must send its first record fast (the
    /// projector's fast lane) does this at start.
    ///
    /// # Errors
    /// The broker did not answer within `timeout` (a later send retries).
    pub async fn prepare(&self, topics: &[&str], timeout: Duration) -> Result<()> {
        use rdkafka::producer::Producer as _;
        let producer = self.inner.clone();
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            for topic in &topics {
                producer
                    .client()
                    .fetch_metadata(Some(topic), timeout)
                    .map_err(Error::Kafka)?;
            }
            Ok(())
        })
        .await
        .unwrap_or(Err(Error::Kafka(rdkafka::error::KafkaError::Canceled)))
    }
}
