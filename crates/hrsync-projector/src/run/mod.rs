//! The running projector: two consumers (the priority lane and the main
//! lifecycle topic) applying batches, a timer applying due time-driven
//! transitions, and a publisher draining the outbox to Kafka.
//!
//! Offsets live in the store, written with the state they produced; Kafka
//! offsets are not used. Each consumer is assigned every partition of its
//! topic and starts at the stored offsets, so one projector process owns one
//! store (run a single instance per store; a restarted instance resumes
//! exactly where the store says).
//!
//! - `claim`: one projector process per store.
//! - `consume`: the consumers, applying batches.
//! - `publish`: the outbox publisher.

mod claim;
mod consume;
mod publish;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hrsync_bus::{DlqPublisher, KafkaConfig, Producer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::feed::Feed;
use crate::gate::{Lane, WriteGate};
use crate::project::Projector;

pub use crate::error::{Gap, RunError};
pub use claim::claim_store;

/// The W3C trace context header.
const TRACEPARENT: &str = "traceparent";

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
    /// How often due time-driven transitions are applied.
    timer_interval: Duration,
    last_activity: std::sync::Mutex<Instant>,
}

impl Shared {
    /// The pieces of a projector process over `projector`.
    fn new(projector: Projector, producer: &Producer, topics: &Topics) -> Self {
        let config = projector.config().clone();
        let single_writer = projector.db().backend() == hrsync_store::Backend::Sqlite;
        Shared {
            projector,
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
            timer_interval: Duration::from_millis(config.timer_interval_ms),
            last_activity: std::sync::Mutex::new(Instant::now()),
        }
    }

    pub(super) fn touch(&self) {
        if let Ok(mut last) = self.last_activity.lock() {
            *last = Instant::now();
        }
    }

    /// The publisher's turn to write: at the gate where the database has a
    /// single writer, at once elsewhere.
    pub(super) async fn publisher_turn(&self, lane: Lane) -> Option<crate::gate::Turn<'_>> {
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

/// Runs until `shutdown` is cancelled (or, replaying, until caught up),
/// with the store `claim`ed already, or with `None` claiming it first
/// ([`claim_store`], waiting while another projector holds it); stops with
/// [`RunError::ClaimLost`] if another projector takes the store.
///
/// # Errors
/// A failure no retry can fix.
pub async fn run(
    projector: Projector,
    claim: Option<hrsync_store::Claim>,
    kafka: &KafkaConfig,
    topics: &Topics,
    mode: Mode,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let claim = match claim {
        Some(claim) => Some(claim),
        None => claim_store(&projector, &shutdown).await?,
    };
    // None: shut down while waiting for the store.
    let Some(claim) = claim else {
        return Ok(());
    };
    // With the store to itself, the projector may keep the reporting lines
    // in memory.
    let projector = if projector.config().reporting_lines_in_memory {
        projector.with_store_to_itself(&claim)
    } else {
        projector
    };
    let claimed = claim::keep_claim(projector.clone(), claim, shutdown.clone());
    let producer = Producer::new(kafka)?;
    // Serving, the writers offer what they commit to the publisher.
    let feed = Arc::new(Feed::new(publish::FEED_ROWS));
    let projector = match mode {
        Mode::Serve => projector.with_feed(feed.clone()),
        Mode::Replay { .. } => projector,
    };
    let shared = Arc::new(Shared::new(projector.clone(), &producer, topics));
    if let Some(changes) = projector.reevaluate_if_rules_changed(now_ms()).await? {
        tracing::info!(changes, "group rules changed: everyone re-evaluated");
    }
    let consuming = async {
        tokio::try_join!(
            consume::consume(
                shared.clone(),
                kafka,
                &topics.lifecycle_priority,
                format!("{}-priority", shared.group),
                true,
                topics.allow_lost_records,
                shutdown.clone(),
            ),
            consume::consume(
                shared.clone(),
                kafka,
                &topics.lifecycle,
                shared.group.clone(),
                false,
                topics.allow_lost_records,
                shutdown.clone(),
            ),
            timers(shared.clone(), shutdown.clone()),
            claimed,
        )
        .map(|_| ())
    };
    let result = match mode {
        Mode::Serve => {
            let publisher = publish::publish(
                shared.clone(),
                producer,
                topics.clone(),
                feed,
                shutdown.clone(),
            );
            tokio::try_join!(consuming, publisher).map(|_| ())
        }
        Mode::Replay { idle } => {
            tokio::try_join!(consuming, stop_when_idle(&shared, idle, &shutdown)).map(|_| ())
        }
    };
    shutdown.cancel();
    result
}

/// Replaying: cancels `shutdown` once nothing has arrived for `idle`.
async fn stop_when_idle(
    shared: &Shared,
    idle: Duration,
    shutdown: &CancellationToken,
) -> Result<(), RunError> {
    while !shutdown.is_cancelled() {
        if shared.idle_for() >= idle {
            shutdown.cancel();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Applies due time-driven transitions.
async fn timers(shared: Arc<Shared>, shutdown: CancellationToken) -> Result<(), RunError> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(shared.timer_interval) => {}
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
