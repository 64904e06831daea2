//! The at-least-once consumer loop.
//!
//! Offsets are stored (`enable.auto.offset.store=false`) only after the
//! handler reports a record finished, or after a poison record has been
//! acknowledged by the dead-letter topic. librdkafka's auto-commit then
//! commits stored offsets periodically; the loop also commits synchronously
//! on graceful shutdown and on partition revoke. So a crash at any point
//! redelivers at most the records whose work was not finished, and never
//! skips one.
//!
//! Stages that keep their state in SQL (the projector) store offsets in their
//! own transactions instead: they consume at those offsets
//! ([`Consumer::at_stored_offsets`], see `stored`), not with [`Consumer::run`].

use std::future::Future;
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::metrics::{
    CONSUMER_LAG, HANDLER_RETRIES, PROCESSING_SECONDS, REBALANCES, RECORDS_CONSUMED,
};
use crate::{DlqPublisher, Error, KafkaConfig, Record, Result};

/// What a [`Handler`] did with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The record's work is durable: store its offset and move on.
    Done,
    /// The record can never be processed (undecodable, violates the model).
    /// It goes to the dead-letter topic with this reason; then the loop moves
    /// on.
    Poison(String),
    /// A transient failure (database or downstream unavailable). The same
    /// record is retried after a backoff; its offset is not stored.
    Retry(String),
}

/// Processes one record at a time, in partition order.
pub trait Handler: Send {
    /// Does the record's work; see [`Outcome`].
    fn handle(&mut self, record: &Record) -> impl Future<Output = Outcome> + Send;
}

/// Consumer group settings of one stage.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Consumer group id; every copy of a stage shares it.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Stage name, for metrics and DLQ provenance.
    pub stage: String,
    /// Where a group with no committed offset starts: `earliest` or `latest`.
    pub auto_offset_reset: String,
    /// How often stored offsets are committed in the background.
    pub commit_interval: Duration,
    /// How long the group waits for a silent member before reassigning its
    /// partitions.
    pub session_timeout: Duration,
    /// Upper bound of the backoff between retries of one record.
    pub max_retry_backoff: Duration,
    /// How long the broker may hold a fetch that finds nothing new
    /// (`fetch.wait.max.ms`; librdkafka's 500 ms when unset). A lane that is
    /// idle most of the time but must react at once (the termination fast
    /// lane) sets it low: brokers that hold a fetch for its full wait even
    /// when records arrive meanwhile (tansu does) otherwise add up to that
    /// wait to every record's latency.
    pub fetch_wait: Option<Duration>,
    /// Held unready while this consumer is stuck (see [`crate::StallSettings`]).
    pub readiness: Option<hrsync_telemetry::Readiness>,
}

impl ConsumerSettings {
    /// Settings for `group_id` over `topics` with hrsync's defaults.
    pub fn new(stage: &str, group_id: &str, topics: &[&str]) -> Self {
        ConsumerSettings {
            group_id: group_id.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            stage: stage.to_owned(),
            auto_offset_reset: "earliest".to_owned(),
            commit_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(10),
            max_retry_backoff: Duration::from_secs(30),
            fetch_wait: None,
            readiness: None,
        }
    }

    /// These settings with `readiness` held unready while the consumer is
    /// stuck.
    #[must_use]
    pub fn with_readiness(mut self, readiness: hrsync_telemetry::Readiness) -> Self {
        self.readiness = Some(readiness);
        self
    }

    /// These settings with `fetch.wait.max.ms` set to `wait`.
    #[must_use]
    pub fn with_fetch_wait(mut self, wait: Duration) -> Self {
        self.fetch_wait = Some(wait);
        self
    }
}

/// Logs assignments, commits finished work before partitions move, and
/// reports consumer lag.
#[derive(Debug)]
pub struct GroupContext {
    stage: String,
    group: String,
    /// Each partition's revocations from this member.
    pub(crate) revoked: std::sync::Arc<Revocations>,
}

impl GroupContext {
    /// The context of stage `stage`'s consumer, reporting lag as `group`.
    pub(crate) fn new(stage: &str, group: &str) -> Self {
        GroupContext {
            stage: stage.to_owned(),
            group: group.to_owned(),
            revoked: std::sync::Arc::default(),
        }
    }
}

/// How often each partition was revoked from this member (its *epoch*). A
/// record read in an earlier epoch of its partition than the current one
/// belongs to the partition's next owner, who reads it again from the
/// group's committed offset: work queued for it here is dropped.
#[derive(Debug, Default)]
pub(crate) struct Revocations(std::sync::Mutex<std::collections::HashMap<String, Vec<u64>>>);

impl Revocations {
    fn revoke(&self, partitions: &rdkafka::TopicPartitionList) {
        let Ok(mut epochs) = self.0.lock() else {
            return;
        };
        for element in partitions.elements() {
            let Ok(partition) = usize::try_from(element.partition()) else {
                continue;
            };
            let topic = epochs.entry(element.topic().to_owned()).or_default();
            if topic.len() <= partition {
                topic.resize(partition + 1, 0);
            }
            topic[partition] += 1;
        }
    }

    /// The current epoch of `partition` of `topic` (looked up for every
    /// record: no allocation).
    pub(crate) fn epoch(&self, topic: &str, partition: i32) -> u64 {
        let Ok(epochs) = self.0.lock() else {
            return 0;
        };
        usize::try_from(partition)
            .ok()
            .and_then(|p| epochs.get(topic)?.get(p).copied())
            .unwrap_or(0)
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        report_lag(&self.group, &statistics);
    }
}

/// How often librdkafka reports statistics (and so consumer lag).
pub(crate) const STATISTICS_INTERVAL_MS: &str = "5000";

/// librdkafka's bounds on prefetched records, as hrsync sets them. Its
/// defaults (100,000 records or 64 MiB) let a consumer behind a backlog hold
/// that much of it in memory, more the longer the backlog; 10,000 records or
/// 8 MiB is still half a second of work for the projector at 20,000
/// events a second.
///
/// With bounds this low the wait after hitting them must be short too. Once
/// the queue is over a bound, librdkafka does not look at it again for
/// `fetch.queue.backoff.ms` (1 s by default), and the queue forwarded to a
/// consumer's one queue counts every partition's records at once. A stage
/// working through 20,000 records a second empties 10,000 in half a second
/// and can then sit idle for the rest of that second, waiting for the fetch
/// (measured: one 330–500 ms hole per projector run over a 100,000-event
/// backlog). 50 ms costs a timer check twenty times a second while the
/// queue is full, and no request.
const PREFETCH: [(&str, &str); 3] = [
    ("queued.min.messages", "10000"),
    ("queued.max.messages.kbytes", "8192"),
    ("fetch.queue.backoff.ms", "50"),
];

/// Bounds a consumer's prefetch ([`PREFETCH`]); a property `kafka` sets
/// itself is left as it is.
pub(crate) fn bound_prefetch(cfg: &mut rdkafka::ClientConfig, kafka: &KafkaConfig) {
    for (key, value) in PREFETCH {
        if !kafka.properties.contains_key(key) {
            cfg.set(key, value);
        }
    }
}

/// Sets `hrsync_bus_consumer_lag{group, topic}` from librdkafka's statistics:
/// per topic, the records between what this consumer has read and the end
/// of each partition it consumes.
fn report_lag(group: &str, statistics: &Statistics) {
    for (topic, t) in &statistics.topics {
        let lag: i64 = t
            .partitions
            .values()
            .filter(|p| p.partition >= 0)
            .map(|p| {
                if p.app_offset >= 0 && p.hi_offset >= 0 {
                    (p.hi_offset - p.app_offset).max(0)
                } else {
                    p.consumer_lag.max(0)
                }
            })
            .sum();
        #[allow(clippy::cast_precision_loss)] // lags far below 2^52
        metrics::gauge!(CONSUMER_LAG, "group" => group.to_owned(), "topic" => topic.clone())
            .set(lag as f64);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        metrics::counter!(REBALANCES, "stage" => self.stage.clone()).increment(1);
        if let Rebalance::Revoke(partitions) = rebalance {
            // Every stored offset belongs to finished work: `run` handles
            // records on the task that polls (this callback runs inside that
            // poll), and `run_concurrent` stores an offset only once every
            // earlier record of its partition is finished. Commit them now so
            // the member that takes these partitions over does not redo it.
            tracing::info!(stage = %self.stage, partitions = %listed(partitions), "partitions revoked");
            commit_stored(consumer, &self.stage);
            self.revoked.revoke(partitions);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(stage = %self.stage, partitions = %listed(partitions), "partitions assigned");
            }
            Rebalance::Error(error) => {
                tracing::warn!(stage = %self.stage, %error, "rebalance failed");
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

/// The partitions as `topic[0,2] other[1]`, for the rebalance logs (which
/// member holds what is the first question when work is unevenly shared).
fn listed(partitions: &rdkafka::TopicPartitionList) -> String {
    let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    for element in partitions.elements() {
        by_topic
            .entry(element.topic().to_owned())
            .or_default()
            .push(element.partition());
    }
    let listed: Vec<String> = by_topic
        .into_iter()
        .map(|(topic, mut numbers)| {
            numbers.sort_unstable();
            let numbers: Vec<String> = numbers.iter().map(i32::to_string).collect();
            format!("{topic}[{}]", numbers.join(","))
        })
        .collect();
    if listed.is_empty() {
        "none".to_owned()
    } else {
        listed.join(" ")
    }
}

/// Commits stored offsets synchronously. "No offset" (nothing new since the
/// last commit) is not an error.
pub(crate) fn commit_stored<C: rdkafka::consumer::Consumer<GroupContext>>(
    consumer: &C,
    stage: &str,
) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(stage, %error, "committing stored offsets failed"),
    }
}

/// A subscribed member of a consumer group.
pub struct Consumer {
    pub(crate) inner: StreamConsumer<GroupContext>,
    pub(crate) settings: ConsumerSettings,
    pub(crate) kafka: KafkaConfig,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Creates the consumer and subscribes to the settings' topics.
    pub fn new(config: &KafkaConfig, settings: ConsumerSettings) -> Result<Self> {
        let mut cfg = config.client_config(&format!("{}-consumer", settings.stage))?;
        cfg.set("group.id", &settings.group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.commit.interval.ms",
                settings.commit_interval.as_millis().to_string(),
            )
            .set(
                "session.timeout.ms",
                settings.session_timeout.as_millis().to_string(),
            )
            .set("auto.offset.reset", &settings.auto_offset_reset)
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        bound_prefetch(&mut cfg, config);
        if let Some(wait) = settings.fetch_wait {
            cfg.set("fetch.wait.max.ms", wait.as_millis().to_string());
        }
        let inner: StreamConsumer<GroupContext> = cfg
            .create_with_context(GroupContext::new(&settings.stage, &settings.group_id))
            .map_err(Error::Client)?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        inner.subscribe(&topics)?;
        Ok(Consumer {
            inner,
            settings,
            kafka: config.clone(),
        })
    }

    /// Runs `body` under a stall watch of this consumer, then stops the
    /// watch (its reading task and Kafka client with it), whatever `body`
    /// returned.
    pub(crate) async fn watched<T>(
        &self,
        body: impl AsyncFnOnce(&mut crate::stall::Watch) -> Result<T>,
    ) -> Result<T> {
        let mut watch = self.watch()?;
        let outcome = body(&mut watch).await;
        watch.stop().await;
        outcome
    }

    /// Starts watching this consumer for stalls.
    fn watch(&self) -> Result<crate::stall::Watch> {
        crate::stall::Watch::start(
            &self.kafka,
            &self.settings.stage,
            &self.settings.group_id,
            &self.settings.topics,
            &self.kafka.stall,
            self.settings.readiness.clone(),
        )
    }

    /// Judges a reading of the group's offsets; rejoins the group if the
    /// consumer is stuck.
    pub(crate) fn judge(
        &self,
        watch: &mut crate::stall::Watch,
        view: Result<crate::stall::GroupView>,
        progress: u64,
        in_flight: usize,
    ) -> Result<()> {
        let assigned = crate::stall::assigned(&self.inner);
        if watch.judge(view, progress, in_flight, &assigned)? == crate::stall::Verdict::Rejoin {
            // Commit the offsets stored so far, leave the group and join
            // it again as a new member. (A consumer stuck has nothing in
            // flight; one rejoining for an orphaned partition may: those
            // records are read again by their partition's next member.)
            commit_stored(&self.inner, &self.settings.stage);
            self.inner.unsubscribe();
            let topics: Vec<&str> = self.settings.topics.iter().map(String::as_str).collect();
            self.inner.subscribe(&topics)?;
        }
        Ok(())
    }

    /// Runs `handler` over every record until `shutdown` is cancelled, then
    /// commits the offsets of finished records and leaves the group. Returns
    /// the handler so callers can inspect its state.
    ///
    /// A record the handler calls poison goes to `dlq`; its offset is stored
    /// only once the DLQ has acknowledged it, so nothing is lost if the DLQ is
    /// down (the loop retries it).
    ///
    /// # Errors
    /// [`Error::Stalled`] if the consumer stays stuck through every rejoin
    /// (see [`crate::StallSettings`]).
    pub async fn run<H: Handler>(
        self,
        mut handler: H,
        dlq: &DlqPublisher,
        shutdown: CancellationToken,
    ) -> Result<H> {
        let stage = self.settings.stage.clone();
        let outcome = self
            .watched(async |watch| self.consume(&mut handler, dlq, &shutdown, watch).await)
            .await;
        commit_stored(&self.inner, &stage);
        self.inner.unsubscribe();
        outcome?;
        tracing::info!(%stage, "consumer stopped");
        Ok(handler)
    }

    /// [`Consumer::run`]'s loop: each record to `handler`, inline, until
    /// `shutdown` or until the consumer is found stuck.
    async fn consume<H: Handler>(
        &self,
        handler: &mut H,
        dlq: &DlqPublisher,
        shutdown: &CancellationToken,
        watch: &mut crate::stall::Watch,
    ) -> Result<()> {
        let stage = &self.settings.stage;
        // Records received and finished; the handler runs inline, so nothing
        // is in flight while the loop waits.
        let mut progress: u64 = 0;
        while let Some((record, span)) = self.next_record(watch, shutdown, &mut progress, 0).await?
        {
            let finished = self
                .process(handler, &record, dlq, shutdown)
                .instrument(span)
                .await;
            if !finished {
                // Shutdown arrived while the record was still failing: leave
                // its offset unstored so it is redelivered.
                return Ok(());
            }
            if let Err(error) =
                self.inner
                    .store_offset(&record.topic, record.partition, record.offset)
            {
                // The partition was revoked meanwhile; its new owner will
                // process the record again (at-least-once).
                tracing::warn!(%stage, position = %record.position(), %error, "offset not stored");
            }
        }
        Ok(())
    }

    /// The next record received, counted in `progress` (with every error
    /// received), and its span; `None` on shutdown. Meanwhile the stall
    /// watch's readings are judged, with `in_flight` records being handled.
    ///
    /// Cancel-safe: a loop may wait for this beside its own work.
    pub(crate) async fn next_record(
        &self,
        watch: &mut crate::stall::Watch,
        shutdown: &CancellationToken,
        progress: &mut u64,
        in_flight: usize,
    ) -> Result<Option<(Record, tracing::Span)>> {
        loop {
            let message = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(None),
                Some(view) = watch.next() => {
                    self.judge(watch, view, *progress, in_flight)?;
                    continue;
                }
                message = self.inner.recv() => message,
            };
            *progress += 1;
            if let Some(received) = received(&self.settings.stage, message) {
                return Ok(Some(received));
            }
        }
    }

    /// Handles one record to completion. Returns false if shutdown interrupted
    /// it before it was finished.
    async fn process<H: Handler>(
        &self,
        handler: &mut H,
        record: &Record,
        dlq: &DlqPublisher,
        shutdown: &CancellationToken,
    ) -> bool {
        settle(handler, record, dlq, &self.settings, shutdown).await
    }
}

/// The record the consumer received, counted and with its span open
/// ([`consumed`]); `None` for an error, which is logged: broker and
/// transport errors are reported here but the client reconnects by itself,
/// so the loop keeps polling.
fn received(
    stage: &str,
    message: KafkaResult<BorrowedMessage<'_>>,
) -> Option<(Record, tracing::Span)> {
    match message {
        Ok(message) => {
            let record = Record::from_message(&message);
            let span = consumed(stage, &record);
            Some((record, span))
        }
        Err(error) => {
            tracing::warn!(%stage, %error, "kafka consumer error");
            None
        }
    }
}

/// Counts a consumed record and opens its span, continuing the trace its
/// producer wrote into the headers.
fn consumed(stage: &str, record: &Record) -> tracing::Span {
    metrics::counter!(RECORDS_CONSUMED, "topic" => record.topic.clone()).increment(1);
    let span = tracing::info_span!(
        "kafka.consume",
        stage = %stage,
        topic = %record.topic,
        partition = record.partition,
        offset = record.offset,
    );
    hrsync_telemetry::propagation::continue_from(
        &span,
        record
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice())),
    );
    span
}

/// Runs `handler` over `record` until it is done or parked on the DLQ,
/// retrying transient failures with a growing backoff. Returns false if
/// shutdown interrupted it before it was finished.
pub(crate) async fn settle<H: Handler>(
    handler: &mut H,
    record: &Record,
    dlq: &DlqPublisher,
    settings: &ConsumerSettings,
    shutdown: &CancellationToken,
) -> bool {
    let stage = &settings.stage;
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let outcome = handler.handle(record).await;
        metrics::histogram!(PROCESSING_SECONDS, "stage" => stage.clone())
            .record(started.elapsed().as_secs_f64());
        let reason = match outcome {
            Outcome::Done => return true,
            Outcome::Poison(reason) => match dlq.publish(record, &reason).await {
                Ok(_) => return true,
                Err(error) => format!("dead-letter publish failed: {error}"),
            },
            Outcome::Retry(reason) => reason,
        };
        metrics::counter!(HANDLER_RETRIES, "stage" => stage.clone()).increment(1);
        tracing::warn!(%stage, position = %record.position(), %reason, retry_in = ?backoff, "record will be retried");
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(settings.max_retry_backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_revocation_starts_a_partitions_next_epoch() {
        let revoked = Revocations::default();
        let mut partitions = rdkafka::TopicPartitionList::new();
        partitions.add_partition("a.v1", 2);
        partitions.add_partition("b.v1", 0);
        revoked.revoke(&partitions);
        revoked.revoke(&partitions);
        assert_eq!(revoked.epoch("a.v1", 2), 2);
        assert_eq!(revoked.epoch("b.v1", 0), 2);
        assert_eq!(revoked.epoch("a.v1", 0), 0, "never revoked");
        assert_eq!(revoked.epoch("a.v1", 7), 0);
        assert_eq!(revoked.epoch("c.v1", 0), 0);
    }

    #[test]
    fn partitions_are_listed_by_topic_in_order() {
        let mut partitions = rdkafka::TopicPartitionList::new();
        assert_eq!(listed(&partitions), "none");
        partitions.add_partition("b.v1", 3);
        partitions.add_partition("a.v1", 2);
        partitions.add_partition("b.v1", 0);
        assert_eq!(listed(&partitions), "a.v1[2] b.v1[0,3]");
    }

    #[test]
    fn prefetch_is_bounded_unless_configured() {
        let mut cfg = rdkafka::ClientConfig::new();
        bound_prefetch(&mut cfg, &KafkaConfig::default());
        assert_eq!(cfg.get("queued.min.messages"), Some("10000"));
        assert_eq!(cfg.get("queued.max.messages.kbytes"), Some("8192"));
        assert_eq!(cfg.get("fetch.queue.backoff.ms"), Some("50"));

        let mut kafka = KafkaConfig::default();
        kafka
            .properties
            .insert("queued.max.messages.kbytes".into(), "65536".into());
        let mut cfg = kafka.client_config("test").unwrap();
        bound_prefetch(&mut cfg, &kafka);
        assert_eq!(cfg.get("queued.max.messages.kbytes"), Some("65536"));
        assert_eq!(cfg.get("queued.min.messages"), Some("10000"));
    }
}
