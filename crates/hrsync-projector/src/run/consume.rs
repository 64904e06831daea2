//! The consumers: every partition of a lifecycle topic read at the offsets
//! the store holds, in batches, each applied in one transaction with the
//! offsets it reached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hrsync_bus::{Batch, BatchSettings, Consumer, ConsumerSettings, KafkaConfig, Record};
use hrsync_domain::LifecycleEvent;
use tokio_util::sync::CancellationToken;

use super::{now_ms, Shared, TRACEPARENT};
use crate::error::{DecodeError, Gap, RunError};
use crate::gate::Lane;
use crate::project::{BatchOutcome, Incoming, Position};

/// A batch of records as gathered, each decoded (or why it cannot be).
type Gathered = Batch<Result<LifecycleEvent, DecodeError>>;

/// One consumer: assign every partition at the stored offsets, then apply
/// batches until shutdown.
pub(super) async fn consume(
    shared: Arc<Shared>,
    kafka: &KafkaConfig,
    topic: &str,
    consumer_name: String,
    fast: bool,
    allow_lost: bool,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let consumer = assign(&shared, kafka, topic, &consumer_name, fast, allow_lost).await?;
    // The fast lane does not linger: a termination is applied with whatever
    // arrived with it, not held back waiting for more.
    let settings = BatchSettings {
        max: shared.batch_max,
        linger: if fast { Duration::ZERO } else { shared.linger },
    };
    // The next batch is gathered and decoded while this one is applied.
    let mut batches = consumer.batches(settings, decode, shutdown.clone());
    loop {
        let waiting = Instant::now();
        let batch = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            batch = batches.next() => batch,
        };
        // (None: the gatherer ended, on shutdown.)
        let Some(batch) = batch else { return Ok(()) };
        shared.touch();
        let wait = waiting.elapsed();
        apply_records(&shared, &consumer_name, fast, batch, wait, &shutdown).await?;
        shared.touch();
    }
}

/// A consumer of `topic` assigned every partition at the offset the store
/// holds, or at the log start where the broker removed records the store
/// has not applied (an error unless `allow_lost`, or on the priority lane,
/// whose events are copies of the main topic's).
async fn assign(
    shared: &Shared,
    kafka: &KafkaConfig,
    topic: &str,
    consumer_name: &str,
    fast: bool,
    allow_lost: bool,
) -> Result<Consumer, RunError> {
    // The fast lane must not wait for the broker's long poll.
    let fetch_wait = Duration::from_millis(if fast { 10 } else { 100 });
    let settings =
        ConsumerSettings::new("projector", consumer_name, &[topic]).with_fetch_wait(fetch_wait);
    let consumer = Consumer::at_stored_offsets(kafka, settings)?;
    let log_starts = consumer.log_starts()?;
    if log_starts.is_empty() {
        return Err(RunError::NoTopic(topic.to_owned()));
    }
    let mut starts = Vec::with_capacity(log_starts.len());
    let mut gaps = Vec::new();
    for &(partition, log_start) in &log_starts {
        let stored = shared
            .projector
            .stored_offset(consumer_name, topic, partition)
            .await?;
        // Records the broker removed before this store applied them: an
        // out-of-range offset would otherwise be reset by librdkafka (to
        // the end, by default), skipping them without a word.
        match Gap::find(partition, stored, log_start) {
            Some(gap) => {
                gaps.push(gap);
                starts.push((partition, Some(log_start)));
            }
            None => starts.push((partition, stored)),
        }
    }
    if !gaps.is_empty() {
        let lost = RunError::LostRecords {
            topic: topic.to_owned(),
            gaps,
        };
        if !fast && !allow_lost {
            return Err(lost);
        }
        tracing::warn!("{lost} (going on from the log start)");
    }
    consumer.assign_at(&starts)?;
    tracing::info!(topic, consumer = %consumer_name, partitions = starts.len(), "projector consuming");
    Ok(consumer)
}

/// A record's lifecycle event, checked against the model.
fn decode(record: &Record) -> Result<LifecycleEvent, DecodeError> {
    let event = hrsync_schema::decode_lifecycle(record.payload.as_deref().unwrap_or_default())?;
    event.payload.validate()?;
    Ok(event)
}

/// Dead-letters the poison, and applies the rest with the positions,
/// retrying transient failures. `wait` is how long the consumer loop waited
/// for this batch since the end of the previous one (it was gathered and
/// decoded meanwhile), for the `batch applied` event: a consumer that waits
/// long between busy batches is starved (its prefetch is not keeping up),
/// not slow.
async fn apply_records(
    shared: &Shared,
    consumer_name: &str,
    fast: bool,
    batch: Gathered,
    wait: Duration,
    shutdown: &CancellationToken,
) -> Result<(), RunError> {
    let started = Instant::now();
    let Gathered {
        records,
        decoded,
        gather,
    } = batch;
    let mut events = Vec::with_capacity(records.len());
    for (record, decoded) in records.iter().zip(decoded) {
        match decoded {
            Ok(event) => events.push(incoming(record, event)),
            Err(reason) => {
                if !dead_letter(shared, record, &reason, shutdown).await {
                    return Ok(());
                }
            }
        }
    }
    let positions = positions(consumer_name, &records);
    let Some(outcome) = apply(shared, consumer_name, fast, &events, &positions, shutdown).await?
    else {
        return Ok(());
    };
    metrics::counter!("hrsync_projector_events_applied_total", "consumer" => consumer_name.to_owned())
        .increment(outcome.applied as u64);
    metrics::counter!("hrsync_projector_changes_total").increment(outcome.changes as u64);
    tracing::debug!(
        consumer = consumer_name,
        records = records.len(),
        applied = outcome.applied,
        duplicates = outcome.duplicates,
        changes = outcome.changes,
        ms = started.elapsed().as_millis() as u64,
        wait_us = wait.as_micros() as u64,
        gather_us = gather.as_micros() as u64,
        store_events_us = outcome.phases.store_events_us,
        load_us = outcome.phases.load_us,
        fold_us = outcome.phases.fold_us,
        inputs_us = outcome.phases.inputs_us,
        write_us = outcome.phases.write_us,
        commit_us = outcome.phases.commit_us,
        "batch applied"
    );
    if outcome.changes > 0 {
        shared.outbox_ready.notify_one();
    }
    Ok(())
}

/// A decoded record as the projector applies it, with its trace.
fn incoming(record: &Record, event: LifecycleEvent) -> Incoming<'_> {
    Incoming {
        event,
        payload: record.payload.as_deref().unwrap_or_default(),
        traceparent: record
            .header(TRACEPARENT)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned),
    }
}

/// Parks a poison record on the DLQ, retrying until it is there. False if
/// shutdown came first.
async fn dead_letter(
    shared: &Shared,
    record: &Record,
    reason: &DecodeError,
    shutdown: &CancellationToken,
) -> bool {
    let reason = format!("undecodable or invalid lifecycle event: {reason}");
    tracing::warn!(position = %record.position(), %reason, "poison record to the DLQ");
    let mut backoff = Duration::from_millis(100);
    while let Err(error) = shared.dlq.publish(record, &reason).await {
        tracing::warn!(%error, "DLQ unavailable; retrying");
        if shutdown.is_cancelled() {
            return false;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    true
}

/// The positions `records` reach: per partition, the offset after the
/// last one.
fn positions(consumer_name: &str, records: &[Record]) -> Vec<Position> {
    let mut positions: Vec<Position> = Vec::new();
    for record in records {
        match positions
            .iter_mut()
            .find(|p| p.topic == record.topic && p.partition == record.partition)
        {
            Some(p) => p.next_offset = p.next_offset.max(record.offset + 1),
            None => positions.push(Position {
                consumer: consumer_name.to_owned(),
                topic: record.topic.clone(),
                partition: record.partition,
                next_offset: record.offset + 1,
            }),
        }
    }
    positions
}

/// Applies a batch, retrying transient failures; `None` if shutdown
/// stopped the retries.
async fn apply(
    shared: &Shared,
    consumer_name: &str,
    fast: bool,
    events: &[Incoming<'_>],
    positions: &[Position],
    shutdown: &CancellationToken,
) -> Result<Option<BatchOutcome>, RunError> {
    let lane = if fast { Lane::Priority } else { Lane::Normal };
    let mut gated = !fast || shared.single_writer;
    let mut backoff = Duration::from_millis(50);
    loop {
        let result = {
            let _turn = if gated {
                Some(shared.gate.enter(lane).await)
            } else {
                None
            };
            shared
                .projector
                .apply_batch(events, positions, now_ms())
                .await
        };
        match result {
            Ok(outcome) => return Ok(Some(outcome)),
            // Another batch committed a person this one read: the other
            // batch is done, so waiting would only delay this one. Retry at
            // once, and on the priority lane through the gate, where no
            // other batch runs beside it.
            Err(error) if error.is_conflict() && !shutdown.is_cancelled() => {
                tracing::debug!(consumer = consumer_name, %error, gated, "batch conflicted; retrying");
                metrics::counter!("hrsync_projector_batch_retries_total", "consumer" => consumer_name.to_owned(), "reason" => "conflict")
                    .increment(1);
                gated = true;
            }
            Err(error) if error.is_retryable() && !shutdown.is_cancelled() => {
                tracing::warn!(%error, "batch failed; retrying");
                metrics::counter!("hrsync_projector_batch_retries_total", "consumer" => consumer_name.to_owned(), "reason" => "error")
                    .increment(1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(error) if error.is_retryable() => return Ok(None),
            Err(error) => return Err(error.into()),
        }
    }
}
