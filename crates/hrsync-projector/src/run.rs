//! The running projector: two consumers (the priority lane and the main
//! lifecycle topic) applying batches, a timer applying due time-driven
//! transitions, and a publisher draining the outbox to Kafka.
//!
//! Offsets live in the store, written with the state they produced; Kafka
//! offsets are not used. Each consumer is assigned every partition of its
//! topic and starts at the stored offsets, so one projector process owns one
//! store (run a single instance per store; a restarted instance resumes
//! exactly where the store says).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hrsync_bus::{DlqPublisher, KafkaConfig, LagContext, OutgoingRecord, Producer, Record};
use hrsync_domain::LifecycleEvent;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::feed::{Feed, Taken};
use crate::gate::{Lane, WriteGate};
use crate::project::{Incoming, OutboxRow, Position, ProjectError, Projector};

/// The W3C trace context header.
const TRACEPARENT: &str = "traceparent";

/// Each outbox row's trace, as record headers.
fn trace_headers(rows: &[OutboxRow]) -> Vec<Vec<(&str, &[u8])>> {
    rows.iter()
        .map(|r| {
            r.traceparent
                .as_deref()
                .map(|t| vec![(TRACEPARENT, t.as_bytes())])
                .unwrap_or_default()
        })
        .collect()
}

/// The records sending `rows` (those flagged for the priority lane only,
/// if `priority_only`) to `topic`, each with its trace.
fn outgoing<'a>(
    rows: &'a [OutboxRow],
    traces: &'a [Vec<(&'a str, &'a [u8])>],
    topic: &'a str,
    priority_only: bool,
) -> Vec<OutgoingRecord<'a>> {
    rows.iter()
        .zip(traces)
        .filter(|(r, _)| r.priority || !priority_only)
        .map(|(r, trace)| OutgoingRecord {
            topic,
            key: r.person_id.as_bytes(),
            payload: &r.payload,
            headers: trace,
        })
        .collect()
}

/// Topics the projector reads and writes.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `hr.lifecycle.v1`.
    pub lifecycle: String,
    /// The ingest's priority lane.
    pub lifecycle_priority: String,
    /// `directory.changes.v1`.
    pub directory_changes: String,
    /// Its priority lane.
    pub directory_priority: String,
    /// Dead letters of this stage.
    pub dlq: String,
    /// Go on from the log start, with a warning, when the broker removed
    /// lifecycle records this store has not applied yet, instead of
    /// stopping (`topics.allow_finite_lifecycle_retention`).
    pub allow_lost_records: bool,
}

impl From<&hrsync_bus::TopicsConfig> for Topics {
    fn from(topics: &hrsync_bus::TopicsConfig) -> Self {
        Topics {
            lifecycle: topics.lifecycle.clone(),
            lifecycle_priority: topics.lifecycle_priority.clone(),
            directory_changes: topics.directory_changes.clone(),
            directory_priority: topics.directory_priority.clone(),
            dlq: topics.projector_dlq.clone(),
            allow_lost_records: topics.allow_finite_lifecycle_retention,
        }
    }
}

/// Runtime errors.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Kafka failed in a way the loop cannot ride out.
    #[error("kafka: {0}")]
    Kafka(#[from] hrsync_bus::Error),
    /// Kafka client error.
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// The store failed permanently.
    #[error("store: {0}")]
    Store(#[from] ProjectError),
    /// The topic has no partitions (does it exist?).
    #[error("topic {0} not found; run `hrsync topics ensure`")]
    NoTopic(String),
    /// The claim on the store could not be taken or checked.
    #[error("claiming the store: {0}")]
    Claim(#[from] hrsync_store::Error),
    /// The connection that held the claim on the store broke, and another
    /// projector holds it now: this one stops writing.
    #[error("another projector claimed the store after the connection holding this one's claim broke; stopping so that one projector writes at a time")]
    ClaimLost,
    /// The broker removed lifecycle records this store has not applied:
    /// going on would skip them.
    #[error("{}", lost_message(topic, gaps))]
    LostRecords {
        /// The lifecycle topic.
        topic: String,
        /// Each partition with a gap: where the store resumes, and where
        /// the log now starts.
        gaps: Vec<Gap>,
    },
    /// The lifecycle log no longer starts at offset 0: the broker removed
    /// records a replay needs (see [`check_replayable`]).
    #[error("{}", truncated_message(topic, starts))]
    LogTruncated {
        /// The lifecycle topic.
        topic: String,
        /// Each partition that lost records, with its earliest offset.
        starts: Vec<(i32, i64)>,
    },
}

/// A partition where the store would resume below the log's first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The partition.
    pub partition: i32,
    /// The next offset the store would read (0 for a fresh store).
    pub resume: i64,
    /// The first offset the broker still has.
    pub log_start: i64,
}

impl Gap {
    /// The gap, if resuming at `stored` (`None`: from the beginning) would
    /// skip records removed before `log_start`.
    pub fn find(partition: i32, stored: Option<i64>, log_start: i64) -> Option<Gap> {
        let resume = stored.unwrap_or(0);
        (resume < log_start).then_some(Gap {
            partition,
            resume,
            log_start,
        })
    }
}

fn lost_message(topic: &str, gaps: &[Gap]) -> String {
    let partitions = gaps
        .iter()
        .map(|g| {
            format!(
                "partition {}: the store resumes at offset {}, the log starts at {}",
                g.partition, g.resume, g.log_start
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "lifecycle topic {topic} lost records this store has not applied ({partitions}); the \
         broker removed them (retention), and going on would skip them, leaving the persons \
         whose events they were wrong or missing. The projector stops instead. Restore the \
         records, or set topics.allow_finite_lifecycle_retention = true to go on from the log \
         start without them"
    )
}

fn truncated_message(topic: &str, starts: &[(i32, i64)]) -> String {
    let partitions = starts
        .iter()
        .map(|(partition, start)| format!("partition {partition} starts at offset {start}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "refusing to rebuild: lifecycle topic {topic} no longer starts at offset 0 \
         ({partitions}); the broker removed the records before those (retention), so a \
         replay would lose the persons whose events they were. The store was left as it \
         is. Set retention.ms=-1 and retention.bytes=-1 on the topic so no more are \
         removed, and restore the removed records before rebuilding"
    )
}

/// The partitions whose log no longer starts at offset 0, with their
/// earliest offset: records a replay from the beginning would miss.
pub fn truncated(starts: &[(i32, i64)]) -> Vec<(i32, i64)> {
    starts.iter().copied().filter(|(_, s)| *s > 0).collect()
}

/// Checks, before a rebuild empties anything, that the lifecycle log still
/// holds every record from offset 0 in every partition.
///
/// Only the main lifecycle topic decides: every event on the priority lane
/// is a copy of one that is (or will be) on the main topic (ingest publishes
/// both, the projector drops the second arrival), so the replay is complete
/// from the main topic alone. Records removed from the priority lane are
/// logged as a warning.
///
/// # Errors
/// [`RunError::LogTruncated`] naming each partition of the main topic that
/// lost records and its earliest offset; Kafka errors.
pub async fn check_replayable(kafka: &KafkaConfig, topics: &Topics) -> Result<(), RunError> {
    let lost = truncated(&hrsync_bus::log_start_offsets(kafka, &topics.lifecycle).await?);
    if !lost.is_empty() {
        return Err(RunError::LogTruncated {
            topic: topics.lifecycle.clone(),
            starts: lost,
        });
    }
    let lost = truncated(&hrsync_bus::log_start_offsets(kafka, &topics.lifecycle_priority).await?);
    if !lost.is_empty() {
        tracing::warn!(
            topic = %topics.lifecycle_priority,
            partitions = ?lost,
            "the priority lane no longer starts at offset 0; its events are copies of the main topic's, so the rebuild goes on"
        );
    }
    Ok(())
}

/// The role a projector claims its store for (see [`claim_store`]).
const CLAIM_ROLE: &str = "projector";

/// How often a projector waiting for the store tries to claim it, and how
/// often one holding it checks that it still does.
const CLAIM_INTERVAL: Duration = Duration::from_secs(1);

/// Claims the store for this projector, waiting while another projector
/// process holds it (a standby takes over within about a second once the
/// holder ends). `None` if `shutdown` came first.
///
/// One projector process at a time applies and publishes a store's events:
/// a second one started by mistake, or as a standby, waits here.
///
/// # Errors
/// The store cannot be reached.
pub async fn claim_store(
    projector: &Projector,
    shutdown: &CancellationToken,
) -> Result<Option<hrsync_store::Claim>, RunError> {
    let mut waiting = false;
    loop {
        if let Some(claim) = projector.db().try_claim(CLAIM_ROLE).await? {
            if waiting {
                tracing::info!("the store is free: this projector takes over");
            }
            metrics::gauge!("hrsync_projector_store_claimed").set(1.0);
            return Ok(Some(claim));
        }
        if !waiting {
            metrics::gauge!("hrsync_projector_store_claimed").set(0.0);
            tracing::warn!("another projector process holds this store; waiting as a standby");
            waiting = true;
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(CLAIM_INTERVAL) => {}
        }
    }
}

/// Checks every [`CLAIM_INTERVAL`] that `claim` still holds. When the
/// connection holding it broke (a restart of the database, a network blip)
/// the lock is free again, or another projector has taken it: claims it
/// again, or fails with [`RunError::ClaimLost`] if another one has it.
/// Claimed again, `projector` reads the reporting lines from the store
/// afresh: while the claim was gone, another process may have written.
async fn keep_claim(
    projector: Projector,
    mut claim: hrsync_store::Claim,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                // (The claim is let go as this returns.)
                metrics::gauge!("hrsync_projector_store_claimed").set(0.0);
                return Ok(());
            }
            () = tokio::time::sleep(CLAIM_INTERVAL) => {}
        }
        if claim.holds().await {
            continue;
        }
        tracing::warn!("the connection holding the claim on the store broke; claiming it again");
        claim = loop {
            match projector.db().try_claim(CLAIM_ROLE).await {
                Ok(Some(again)) => {
                    tracing::info!("the store is claimed again");
                    projector.forget_lines();
                    break again;
                }
                Ok(None) => {
                    metrics::gauge!("hrsync_projector_store_claimed").set(0.0);
                    tracing::error!("another projector holds the store now; stopping");
                    shutdown.cancel();
                    return Err(RunError::ClaimLost);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot claim the store again yet; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(CLAIM_INTERVAL) => {}
                    }
                }
            }
        };
    }
}

/// Shared pieces of the loops.
struct Shared {
    projector: Projector,
    /// Serialises the writers: the main consumer and the timer always; the
    /// priority lane goes ahead of them. Where the database has row locks
    /// (PostgreSQL) the priority lane's first attempt does not take it, so
    /// it never waits behind a large main batch; a batch that read what the
    /// other one wrote meanwhile is caught by the store (serializable
    /// transactions, and the revision check of every written person) and
    /// rolled back, and the priority lane then retries through the gate,
    /// where nothing can conflict with it again.
    gate: WriteGate,
    /// The database has a single writer (SQLite): every write takes the
    /// gate, the priority lane and the outbox publisher's deletes too, so
    /// writers of this process queue here, in priority order, instead of
    /// polling SQLite's lock (`busy_timeout`).
    single_writer: bool,
    outbox_ready: Notify,
    dlq: DlqPublisher,
    group: String,
    batch_max: usize,
    linger: Duration,
    last_activity: std::sync::Mutex<Instant>,
}

impl Shared {
    fn touch(&self) {
        if let Ok(mut last) = self.last_activity.lock() {
            *last = Instant::now();
        }
    }

    /// The publisher's turn to write: at the gate where the database has a
    /// single writer, at once elsewhere.
    async fn publisher_turn(&self, lane: Lane) -> Option<crate::gate::Turn<'_>> {
        if self.single_writer {
            Some(self.gate.enter(lane).await)
        } else {
            None
        }
    }

    fn idle_for(&self) -> Duration {
        self.last_activity
            .lock()
            .map_or(Duration::ZERO, |last| last.elapsed())
    }
}

/// Most events in one main-lane transaction where the database has a
/// single writer (SQLite), whatever `batch_max` says.
const SINGLE_WRITER_BATCH_MAX: usize = 250;

/// How the projector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Consume, apply and publish until shut down.
    Serve,
    /// Replay without publishing, and stop once nothing has arrived for
    /// this long (`hrsync projector rebuild`).
    Replay {
        /// Quiet time that counts as caught up.
        idle: Duration,
    },
}

/// Claims the store ([`claim_store`], waiting while another projector
/// holds it), then runs until `shutdown` is cancelled (or, replaying, until
/// caught up).
///
/// # Errors
/// A failure no retry can fix.
pub async fn run(
    projector: Projector,
    kafka: &KafkaConfig,
    topics: &Topics,
    mode: Mode,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let Some(claim) = claim_store(&projector, &shutdown).await? else {
        return Ok(());
    };
    run_claimed(claim, projector, kafka, topics, mode, shutdown).await
}

/// [`run`] with the store claimed already (see [`claim_store`]); stops with
/// [`RunError::ClaimLost`] if another projector takes the store.
///
/// # Errors
/// A failure no retry can fix.
pub async fn run_claimed(
    claim: hrsync_store::Claim,
    projector: Projector,
    kafka: &KafkaConfig,
    topics: &Topics,
    mode: Mode,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    // With the store to itself, the projector may keep the reporting lines
    // in memory.
    let projector = if projector.config().reporting_lines_in_memory {
        projector.with_store_to_itself(&claim)
    } else {
        projector
    };
    let claimed = keep_claim(projector.clone(), claim, shutdown.clone());
    let config = projector.config().clone();
    let producer = Producer::new(kafka)?;
    // Serving, the writers offer what they commit to the publisher.
    let feed = Arc::new(Feed::new(FEED_ROWS));
    let projector = match mode {
        Mode::Serve => projector.with_feed(feed.clone()),
        Mode::Replay { .. } => projector,
    };
    let single_writer = projector.db().backend() == hrsync_store::Backend::Sqlite;
    let shared = Arc::new(Shared {
        projector: projector.clone(),
        gate: WriteGate::default(),
        single_writer,
        outbox_ready: Notify::new(),
        dlq: DlqPublisher::new(producer.clone(), &topics.dlq, "projector"),
        group: config.group_id.clone(),
        // With a single writer, an immediate termination waits for the
        // main lane's transaction in progress: keep those short.
        batch_max: if single_writer {
            config.batch_max.min(SINGLE_WRITER_BATCH_MAX)
        } else {
            config.batch_max
        },
        linger: Duration::from_millis(config.batch_linger_ms),
        last_activity: std::sync::Mutex::new(Instant::now()),
    });
    if let Some(changes) = projector.reevaluate_if_rules_changed(now_ms()).await? {
        tracing::info!(changes, "group rules changed: everyone re-evaluated");
    }
    let priority = consume(
        shared.clone(),
        kafka,
        &topics.lifecycle_priority,
        format!("{}-priority", shared.group),
        true,
        topics.allow_lost_records,
        shutdown.clone(),
    );
    let main = consume(
        shared.clone(),
        kafka,
        &topics.lifecycle,
        shared.group.clone(),
        false,
        topics.allow_lost_records,
        shutdown.clone(),
    );
    let timer = timers(
        shared.clone(),
        Duration::from_millis(config.timer_interval_ms),
        shutdown.clone(),
    );
    let result = match mode {
        Mode::Serve => {
            let publisher = publish(
                shared.clone(),
                producer,
                topics.clone(),
                feed,
                shutdown.clone(),
            );
            tokio::try_join!(priority, main, publisher, timer, claimed).map(|_| ())
        }
        Mode::Replay { idle } => {
            let watch = {
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                async move {
                    while !shutdown.is_cancelled() {
                        if shared.idle_for() >= idle {
                            shutdown.cancel();
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok::<(), RunError>(())
                }
            };
            tokio::try_join!(priority, main, timer, watch, claimed).map(|_| ())
        }
    };
    shutdown.cancel();
    result
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One consumer: assign every partition at the stored offsets, then apply
/// batches until shutdown.
async fn consume(
    shared: Arc<Shared>,
    kafka: &KafkaConfig,
    topic: &str,
    consumer_name: String,
    fast: bool,
    allow_lost: bool,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let mut cfg = kafka.client_config(&format!("projector-{consumer_name}"))?;
    cfg.set("group.id", &consumer_name)
        // The fast lane must not wait for the broker's long poll.
        .set("fetch.wait.max.ms", if fast { "10" } else { "100" })
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    cfg.set(
        "statistics.interval.ms",
        hrsync_bus::consumer::STATISTICS_INTERVAL_MS,
    );
    hrsync_bus::consumer::bound_prefetch(&mut cfg, kafka);
    let consumer: StreamConsumer<LagContext> =
        cfg.create_with_context(LagContext::new(&consumer_name))?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(RunError::NoTopic(topic.to_owned()));
    }
    let mut assignment = TopicPartitionList::new();
    let mut gaps = Vec::new();
    for partition in &partitions {
        let stored = shared
            .projector
            .stored_offset(&consumer_name, topic, *partition)
            .await?;
        // Records the broker removed before this store applied them: an
        // out-of-range offset would otherwise be reset by librdkafka
        // (to the end, by default), skipping them without a word.
        let (log_start, _) =
            consumer.fetch_watermarks(topic, *partition, Duration::from_secs(30))?;
        let offset = match Gap::find(*partition, stored, log_start) {
            Some(gap) => {
                gaps.push(gap);
                Offset::Offset(log_start)
            }
            None => stored.map_or(Offset::Beginning, Offset::Offset),
        };
        assignment.add_partition_offset(topic, *partition, offset)?;
    }
    if !gaps.is_empty() {
        let lost = RunError::LostRecords {
            topic: topic.to_owned(),
            gaps,
        };
        // The priority lane holds copies of main-topic events: a gap
        // there loses nothing.
        if !fast && !allow_lost {
            return Err(lost);
        }
        tracing::warn!("{lost} (going on from the log start)");
    }
    consumer.assign(&assignment)?;
    tracing::info!(topic, consumer = %consumer_name, partitions = partitions.len(), "projector consuming");

    // The fast lane does not linger: a termination is applied with whatever
    // arrived with it, not held back waiting for more.
    let linger = if fast { Duration::ZERO } else { shared.linger };
    // The next batch is gathered and decoded while this one is applied:
    // on its own task, one batch ahead at most.
    let (batches, mut ready) = tokio::sync::mpsc::channel(1);
    let mut gatherer = AbortOnDrop(tokio::spawn(gather(
        consumer,
        topic.to_owned(),
        shared.batch_max,
        linger,
        batches,
        shutdown.clone(),
    )));
    loop {
        let waiting = Instant::now();
        let batch = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            batch = ready.recv() => batch,
        };
        let Some(batch) = batch else {
            // The gatherer ended: on shutdown, or it panicked (which
            // carries on here, as it would have in this loop).
            return match (&mut gatherer.0).await {
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                _ => Ok(()),
            };
        };
        shared.touch();
        let wait = waiting.elapsed();
        apply_records(&shared, &consumer_name, fast, batch, wait, &shutdown).await?;
        shared.touch();
    }
}

/// Aborts the task when dropped: the gatherer ends with its consumer loop.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A batch of records as gathered, each decoded (or why it cannot be).
struct Gathered {
    records: Vec<Record>,
    decoded: Vec<Result<LifecycleEvent, String>>,
    /// From the first record to the last one taken into the batch.
    gather: Duration,
}

/// Takes batches from `consumer` and decodes them, for the consumer loop
/// to apply in order: waits for a batch's first record, then takes what
/// arrives within `linger`, up to `batch_max` (with no linger: what is
/// already fetched; a zero timeout still polls once).
async fn gather(
    consumer: StreamConsumer<LagContext>,
    topic: String,
    batch_max: usize,
    linger: Duration,
    batches: tokio::sync::mpsc::Sender<Gathered>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            message = consumer.recv() => message,
        };
        let gathering = Instant::now();
        let mut records = Vec::with_capacity(batch_max);
        match first {
            Ok(message) => records.push(Record::from_message(&message)),
            Err(error) => {
                tracing::warn!(topic, %error, "kafka consumer error");
                continue;
            }
        }
        let deadline = tokio::time::Instant::now() + linger;
        while records.len() < batch_max {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(message)) => records.push(Record::from_message(&message)),
                Ok(Err(error)) => tracing::warn!(topic, %error, "kafka consumer error"),
                Err(_) => break,
            }
        }
        let gather = gathering.elapsed();
        let decoded = records.iter().map(decode).collect();
        let batch = Gathered {
            records,
            decoded,
            gather,
        };
        if batches.send(batch).await.is_err() {
            return;
        }
    }
}

/// A record's lifecycle event, checked against the model.
fn decode(record: &Record) -> Result<LifecycleEvent, String> {
    let event = hrsync_schema::decode_lifecycle(record.payload.as_deref().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    event.payload.validate().map_err(|e| e.to_string())?;
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
    let mut positions: Vec<Position> = Vec::new();
    for (record, decoded) in records.iter().zip(decoded) {
        match decoded {
            Ok(event) => events.push(Incoming {
                event,
                payload: record.payload.as_deref().unwrap_or_default(),
                traceparent: record
                    .header(TRACEPARENT)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(str::to_owned),
            }),
            Err(reason) => {
                let reason = format!("undecodable or invalid lifecycle event: {reason}");
                tracing::warn!(position = %record.position(), %reason, "poison record to the DLQ");
                let mut backoff = Duration::from_millis(100);
                while let Err(error) = shared.dlq.publish(record, &reason).await {
                    tracing::warn!(%error, "DLQ unavailable; retrying");
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
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
                .apply_batch(&events, &positions, now_ms())
                .await
        };
        match result {
            Ok(outcome) => {
                metrics::counter!("hrsync_projector_events_applied_total", "consumer" => consumer_name.to_owned())
                    .increment(outcome.applied as u64);
                metrics::counter!("hrsync_projector_changes_total")
                    .increment(outcome.changes as u64);
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
                return Ok(());
            }
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
            Err(error) if error.is_retryable() => return Ok(()),
            Err(error) => return Err(error.into()),
        }
    }
}

/// Applies due time-driven transitions.
async fn timers(
    shared: Arc<Shared>,
    interval: Duration,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
        let result = {
            let _turn = shared.gate.enter(Lane::Normal).await;
            shared.projector.run_due(now_ms()).await
        };
        match result {
            Ok(0) => {}
            Ok(changes) => {
                tracing::info!(changes, "time-driven transitions applied");
                shared.outbox_ready.notify_one();
            }
            Err(error) if error.is_retryable() => tracing::warn!(%error, "timer pass failed"),
            Err(error) => return Err(error.into()),
        }
    }
}

/// Changes published per cycle (whole outbox rows: a little more when a
/// pack ends past it). Large enough that the publisher keeps up on SQLite,
/// where each cycle's delete waits for its turn at the gate behind a main
/// batch.
const PUBLISH_ROWS: usize = 5000;

/// Committed changes the feed holds for the publisher at most (under 1 KB
/// each); more, and the publisher reads the table instead.
const FEED_ROWS: usize = 20_000;

/// How often the publisher reads the table although the feed is whole: a
/// safety net for a row committed but never offered (it should not happen;
/// if it does, it is sent this late, not lost).
const TABLE_CHECK: Duration = Duration::from_secs(10);

/// Drains the outbox: rows are deleted once the broker acknowledged them (a
/// crash in between republishes them; consumers drop versions they have
/// seen).
///
/// Rows come from the table at start, whenever the feed broke (it
/// overflowed, or a transaction failed) and every [`TABLE_CHECK`]: priority
/// copies first (wherever they are in the outbox), then the rest in order,
/// until a read finds less than a cycle's worth. From then on they come
/// from the feed, as the writers commit them, without reading them back.
async fn publish(
    shared: Arc<Shared>,
    producer: Producer,
    topics: Topics,
    feed: Arc<Feed>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    // Connect and learn the topics now, not on the first change: a
    // termination in the first second after start should not wait for it.
    if let Err(error) = producer
        .prepare(
            &[&topics.directory_priority, &topics.directory_changes],
            Duration::from_secs(10),
        )
        .await
    {
        tracing::warn!(%error, "preparing the producer failed; the first send will retry");
    }
    let mut from_table = true;
    let mut table_read = Instant::now();
    loop {
        from_table |= table_read.elapsed() >= TABLE_CHECK;
        let rows = if from_table {
            table_read = Instant::now();
            // Whatever the feed holds now is in the table, and is read there.
            feed.reset();
            metrics::counter!("hrsync_projector_outbox_table_reads_total").increment(1);
            publish_priority_from_table(&shared, &producer, &topics, &feed).await?;
            match shared.projector.outbox(PUBLISH_ROWS as i64).await {
                Ok(rows) => {
                    feed.read_from_table(rows.iter().map(|r| r.seq));
                    // Everything committed before this read is in it; what
                    // commits after it comes through the feed.
                    from_table = rows.len() >= PUBLISH_ROWS;
                    rows
                }
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, "reading the outbox failed");
                    Vec::new()
                }
                Err(error) => return Err(error.into()),
            }
        } else {
            match feed.take(PUBLISH_ROWS) {
                Taken::Rows(rows) => rows,
                Taken::Broken => {
                    from_table = true;
                    continue;
                }
            }
        };
        if rows.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = shared.outbox_ready.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        let traces = trace_headers(&rows);
        // Priority copies first: a termination does not wait behind the
        // creates sent with it.
        let priority = outgoing(&rows, &traces, &topics.directory_priority, true);
        let main = outgoing(&rows, &traces, &topics.directory_changes, false);
        let sent = async {
            if !priority.is_empty() {
                producer.send_batch(&priority).await?;
            }
            producer.send_batch(&main).await
        }
        .await;
        match sent {
            Ok(_) => {
                let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
                let _turn = shared.publisher_turn(Lane::Normal).await;
                match shared.projector.delete_outbox(&seqs).await {
                    Ok(()) => {}
                    // The rows stay and are sent again with the next read
                    // of the table; consumers drop versions they have seen.
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(%error, "deleting published outbox rows failed");
                    }
                    Err(error) => return Err(error.into()),
                }
                metrics::counter!("hrsync_projector_changes_published_total")
                    .increment(rows.len() as u64);
            }
            Err(error) => {
                // The rows stay in the table; read them there.
                tracing::warn!(%error, "publishing directory changes failed; retrying");
                from_table = true;
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Sends the priority copies waiting in the outbox table, however many
/// other rows are ahead of them, and records them as sent (their rows wait
/// for the main topic).
async fn publish_priority_from_table(
    shared: &Shared,
    producer: &Producer,
    topics: &Topics,
    feed: &Feed,
) -> Result<(), RunError> {
    let urgent = match shared.projector.outbox_priority(1000).await {
        Ok(urgent) => urgent,
        Err(error) if error.is_retryable() => {
            tracing::warn!(%error, "reading the outbox failed");
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    if urgent.is_empty() {
        return Ok(());
    }
    feed.read_from_table(urgent.iter().map(|r| r.seq));
    // Each change is published in the trace of its cause.
    let traces = trace_headers(&urgent);
    // (Every row read here is flagged for the priority lane.)
    let records = outgoing(&urgent, &traces, &topics.directory_priority, true);
    if let Err(error) = producer.send_batch(&records).await {
        tracing::warn!(%error, "publishing priority directory changes failed; retrying");
        return Ok(());
    }
    let seqs: Vec<i64> = urgent.iter().map(|r| r.seq).collect();
    let _turn = shared.publisher_turn(Lane::Priority).await;
    match shared.projector.priority_sent(&seqs).await {
        Ok(()) => Ok(()),
        // Sent again with the next read; consumers drop versions they have
        // seen.
        Err(error) if error.is_retryable() => {
            tracing::warn!(%error, "recording sent priority copies failed");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partitions_past_offset_zero_are_truncated_and_each_is_named() {
        assert_eq!(truncated(&[(0, 0), (1, 0)]), []);
        let lost = truncated(&[(0, 0), (1, 57), (2, 3)]);
        assert_eq!(lost, [(1, 57), (2, 3)]);
        let text = RunError::LogTruncated {
            topic: "hr.lifecycle.v1".into(),
            starts: lost,
        }
        .to_string();
        assert!(
            text.contains(
                "hr.lifecycle.v1 no longer starts at offset 0 (partition 1 starts at offset 57, \
                 partition 2 starts at offset 3)"
            ),
            "{text}"
        );
        assert!(text.contains("The store was left as it is"), "{text}");
    }

    #[test]
    fn a_gap_is_where_the_store_resumes_below_the_log_start() {
        assert_eq!(Gap::find(0, None, 0), None);
        assert_eq!(Gap::find(0, Some(7), 7), None);
        assert_eq!(Gap::find(0, Some(9), 7), None);
        let fresh = Gap::find(1, None, 3).expect("a fresh store misses 0..3");
        let behind = Gap::find(2, Some(4), 10).expect("resuming at 4 misses 4..10");
        assert_eq!((fresh.resume, behind.resume), (0, 4));
        let text = RunError::LostRecords {
            topic: "hr.lifecycle.v1".into(),
            gaps: vec![fresh, behind],
        }
        .to_string();
        assert!(
            text.contains(
                "(partition 1: the store resumes at offset 0, the log starts at 3; partition 2: \
                 the store resumes at offset 4, the log starts at 10)"
            ),
            "{text}"
        );
    }
}
