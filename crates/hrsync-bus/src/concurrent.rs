//! Key-ordered concurrent consumption.
//!
//! [`Consumer::run_concurrent`] hands records to a fixed set of lanes by a
//! hash of their key: records with the same key (one person) go to the same
//! lane and are handled one after another, in partition order; records with
//! different keys are handled concurrently. A stage whose work per record is
//! mostly waiting (HTTP calls to apps) gets its throughput from this, without
//! ever reordering one person's changes.
//!
//! Offsets: a record's offset is stored only once it *and every earlier
//! record of its partition* is finished. Work finishes out of order across
//! lanes, so each partition keeps the set of offsets still in flight, and the
//! stored offset is the one just below the oldest of them. A crash therefore
//! redelivers every record that was not finished (and perhaps some later ones
//! that were: at-least-once, as in [`Consumer::run`]), and never skips one.
//!
//! Rebalances: the lanes' queues hold up to [`LANE_QUEUE`] records each, so
//! a member can have thousands read and not started. When their partition
//! is revoked, the partition's next owner reads them again from the group's
//! committed offset; a lane drops each such record instead of handling it
//! too (it would do the new owner's work twice, and keep this member busy
//! with work that is no longer its own while its new partitions wait).
//! Records already being handled finish; their offsets are not stored.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rdkafka::consumer::Consumer as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::consumer::{commit_stored, settle, Revocations};
use crate::metrics::RECORDS_DROPPED_ON_REVOKE;
use crate::{Consumer, ConsumerSettings, DlqPublisher, Handler, Outcome, Record, Result};

/// Processes records; called from several lanes at once, but never for two
/// records with the same key at the same time.
pub trait SharedHandler: Send + Sync + 'static {
    /// Does the record's work; see [`Outcome`].
    fn handle(&self, record: &Record) -> impl Future<Output = Outcome> + Send;
}

/// A [`SharedHandler`] seen as the [`Handler`] of one lane.
struct Lane<'a, H>(&'a H);

impl<H: SharedHandler> Handler for Lane<'_, H> {
    async fn handle(&mut self, record: &Record) -> Outcome {
        self.0.handle(record).await
    }
}

/// Records queued per lane before the poll loop waits (backpressure: the
/// consumer does not read ahead without bound).
const LANE_QUEUE: usize = 32;

/// A record for a lane, with its partition's epoch when it was read.
type Queued = (Record, tracing::Span, u64);

/// A finished record, reported by a lane.
struct Finished {
    topic: String,
    partition: i32,
    offset: i64,
    /// Its partition's epoch when it was read.
    epoch: u64,
    /// False if shutdown interrupted it, or it was dropped as its partition
    /// was revoked: its offset must not be stored.
    done: bool,
}

/// Offsets in flight in one partition, in one epoch of it.
#[derive(Default)]
struct InFlight {
    epoch: u64,
    pending: BTreeSet<i64>,
    /// Highest offset handed to a lane.
    dispatched: i64,
    /// Highest offset stored.
    stored: Option<i64>,
}

impl InFlight {
    /// The offset below which everything is finished, if it moved.
    fn finish(&mut self, offset: i64) -> Option<i64> {
        if !self.pending.remove(&offset) {
            // From before a rewind (see `dispatch`): not ours to store.
            return None;
        }
        let upto = match self.pending.first() {
            Some(oldest) => oldest - 1,
            None => self.dispatched,
        };
        (self.stored.is_none_or(|s| upto > s)).then(|| {
            self.stored = Some(upto);
            upto
        })
    }

    fn dispatch(&mut self, offset: i64) {
        let seen_any = !self.pending.is_empty() || self.stored.is_some();
        if seen_any && offset <= self.dispatched {
            // The partition was revoked and assigned again, and the group
            // resumed below what this member had in flight: start over. The
            // older work still running reports to no one; its records come
            // again and are handled again (at-least-once).
            *self = InFlight::default();
        }
        if self.pending.is_empty() && self.stored.is_none() {
            // The first record: everything below it is someone else's.
            self.stored = Some(offset - 1);
        }
        self.pending.insert(offset);
        self.dispatched = offset;
    }
}

/// The offsets in flight in every partition, storing each one below
/// which everything is finished.
#[derive(Default)]
struct Offsets(HashMap<(String, i32), InFlight>);

impl Offsets {
    /// Records handed to a lane and not finished yet, in partitions not
    /// revoked since.
    fn busy(&self, revoked: &Revocations) -> usize {
        self.0
            .iter()
            .filter(|((topic, partition), p)| p.epoch == revoked.epoch(topic, *partition))
            .map(|(_, p)| p.pending.len())
            .sum()
    }

    fn dispatch(&mut self, record: &Record, epoch: u64) {
        let partition = self
            .0
            .entry((record.topic.clone(), record.partition))
            .or_default();
        if partition.epoch != epoch {
            // Revoked and assigned again: what was in flight before
            // reports to no one.
            *partition = InFlight {
                epoch,
                ..InFlight::default()
            };
        }
        partition.dispatch(record.offset);
    }

    /// Notes `f` finished; stores the partition's offset if it moved (and
    /// the partition was not revoked since `f` was read: its offsets are
    /// then its next owner's).
    fn finish(&mut self, consumer: &Consumer, f: Finished) {
        let revoked = &consumer.inner.context().revoked;
        if !f.done || f.epoch != revoked.epoch(&f.topic, f.partition) {
            return;
        }
        // Dispatched in this epoch, so its partition's entry is of it too.
        let Some(partition) = self.0.get_mut(&(f.topic.clone(), f.partition)) else {
            return;
        };
        if let Some(upto) = partition.finish(f.offset) {
            if let Err(error) = consumer.inner.store_offset(&f.topic, f.partition, upto) {
                // Revoked meanwhile: its new owner redoes the work.
                let stage = &consumer.settings.stage;
                tracing::warn!(%stage, topic = %f.topic, partition = f.partition, offset = upto, %error, "offset not stored");
            }
        }
    }
}

/// The lanes: a queue and a task each, reporting finished records.
struct Lanes {
    senders: Vec<mpsc::Sender<Queued>>,
    workers: tokio::task::JoinSet<()>,
    finished: mpsc::UnboundedReceiver<Finished>,
}

impl Lanes {
    /// Starts `lanes` lanes running `handler`.
    fn start<H: SharedHandler>(
        handler: &Arc<H>,
        lanes: usize,
        dlq: &Arc<DlqPublisher>,
        settings: &Arc<ConsumerSettings>,
        revoked: &Arc<Revocations>,
        shutdown: &CancellationToken,
    ) -> Self {
        let (finished_tx, finished) = mpsc::unbounded_channel::<Finished>();
        let mut senders = Vec::with_capacity(lanes);
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..lanes {
            let (tx, rx) = mpsc::channel::<Queued>(LANE_QUEUE);
            senders.push(tx);
            workers.spawn(run_lane(
                rx,
                Shared {
                    handler: handler.clone(),
                    dlq: dlq.clone(),
                    settings: settings.clone(),
                    revoked: revoked.clone(),
                },
                finished_tx.clone(),
                shutdown.clone(),
            ));
        }
        Lanes {
            senders,
            workers,
            finished,
        }
    }
}

/// What every lane shares.
struct Shared<H> {
    handler: Arc<H>,
    dlq: Arc<DlqPublisher>,
    settings: Arc<ConsumerSettings>,
    revoked: Arc<Revocations>,
}

/// One lane: handles its records one after another, reporting each.
async fn run_lane<H: SharedHandler>(
    mut rx: mpsc::Receiver<Queued>,
    shared: Shared<H>,
    finished: mpsc::UnboundedSender<Finished>,
    shutdown: CancellationToken,
) {
    let Shared {
        handler,
        dlq,
        settings,
        revoked,
    } = shared;
    while let Some((record, span, epoch)) = rx.recv().await {
        if shutdown.is_cancelled() {
            // Queued but not started: leave it for redelivery.
            break;
        }
        let done = if epoch == revoked.epoch(&record.topic, record.partition) {
            settle(&mut Lane(&*handler), &record, &dlq, &settings, &shutdown)
                .instrument(span)
                .await
        } else {
            // Its partition was revoked: its next owner handles it.
            metrics::counter!(RECORDS_DROPPED_ON_REVOKE, "stage" => settings.stage.clone())
                .increment(1);
            false
        };
        let _ = finished.send(Finished {
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
            epoch,
            done,
        });
    }
}

impl Consumer {
    /// Runs `handler` over every record with up to `lanes` records in
    /// flight, same-key records in order (see the module docs), until
    /// `shutdown` is cancelled. Then every lane finishes the record it is
    /// handling (queued records are left for redelivery), the offsets of
    /// finished work are committed and the consumer leaves the group.
    ///
    /// Poison records go to `dlq` as in [`Consumer::run`].
    ///
    /// # Errors
    /// [`crate::Error::Stalled`] if the consumer stays stuck through every
    /// rejoin (see [`crate::StallSettings`]); the lanes finish first.
    pub async fn run_concurrent<H: SharedHandler>(
        self,
        handler: Arc<H>,
        lanes: usize,
        dlq: DlqPublisher,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let stage = self.settings.stage.clone();
        let settings = Arc::new(self.settings.clone());
        let revoked = self.inner.context().revoked.clone();
        let mut lanes = Lanes::start(
            &handler,
            lanes.max(1),
            &Arc::new(dlq),
            &settings,
            &revoked,
            &shutdown,
        );
        let mut offsets = Offsets::default();
        let stalled = self
            .dispatch(&mut lanes, &mut offsets, &shutdown)
            .await
            .err();
        // Lanes finish what they are handling; queued records are dropped.
        drop(lanes.senders);
        while lanes.workers.join_next().await.is_some() {}
        while let Ok(f) = lanes.finished.try_recv() {
            offsets.finish(&self, f);
        }
        commit_stored(&self.inner, &stage);
        self.inner.unsubscribe();
        if let Some(error) = stalled {
            return Err(error);
        }
        tracing::info!(%stage, "consumer stopped");
        Ok(())
    }

    /// Hands every record to its lane and stores the offsets of finished
    /// work, until `shutdown`, or until the consumer is found stuck.
    async fn dispatch(
        &self,
        lanes: &mut Lanes,
        offsets: &mut Offsets,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        self.watched(async |watch| self.dispatch_watched(lanes, offsets, shutdown, watch).await)
            .await
    }

    /// [`Self::dispatch`] under the stall watch `watch`.
    async fn dispatch_watched(
        &self,
        lanes: &mut Lanes,
        offsets: &mut Offsets,
        shutdown: &CancellationToken,
        watch: &mut crate::stall::Watch,
    ) -> Result<()> {
        // Records received and finished, for the stall watch.
        let mut progress: u64 = 0;
        let revoked = self.inner.context().revoked.clone();
        loop {
            let busy = offsets.busy(&revoked);
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                Some(f) = lanes.finished.recv() => {
                    progress += 1;
                    offsets.finish(self, f);
                    continue;
                }
                next = self.next_record(watch, shutdown, &mut progress, busy) => next?,
            };
            let Some((record, span)) = next else {
                return Ok(());
            };
            let epoch = revoked.epoch(&record.topic, record.partition);
            offsets.dispatch(&record, epoch);
            let lane = lane_of(&record, lanes.senders.len());
            progress += self
                .send(lanes, lane, (record, span, epoch), offsets, shutdown)
                .await;
        }
    }

    /// Puts `item` into lane `lane` once it has room, storing offsets of
    /// finished work meanwhile (the lanes report while this waits).
    /// Returns how many finished records it took in.
    async fn send(
        &self,
        lanes: &mut Lanes,
        lane: usize,
        item: Queued,
        offsets: &mut Offsets,
        shutdown: &CancellationToken,
    ) -> u64 {
        let mut finished = 0;
        let mut item = Some(item);
        while let Some(next) = item.take() {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(f) = lanes.finished.recv() => {
                    finished += 1;
                    offsets.finish(self, f);
                    item = Some(next);
                }
                permit = lanes.senders[lane].reserve() => match permit {
                    Ok(permit) => permit.send(next),
                    Err(_) => break,
                },
            }
        }
        finished
    }
}

/// The lane of a record: by key, so one key's records stay in order; keyless
/// records by offset.
fn lane_of(record: &Record, lanes: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match &record.key {
        Some(key) => key.hash(&mut hasher),
        None => (record.partition, record.offset).hash(&mut hasher),
    }
    usize::try_from(hasher.finish() % lanes as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::InFlight;

    #[test]
    fn stores_only_below_the_oldest_unfinished_offset() {
        let mut p = InFlight::default();
        for o in 10..15 {
            p.dispatch(o);
        }
        assert_eq!(p.finish(12), None, "10 and 11 are still running");
        assert_eq!(p.finish(11), None);
        assert_eq!(p.finish(10), Some(12), "10..=12 are done");
        assert_eq!(p.finish(14), None, "13 is still running");
        assert_eq!(p.finish(13), Some(14));
        assert_eq!(p.finish(13), None, "reported twice");
    }

    #[test]
    fn a_rewind_forgets_work_from_before_it() {
        let mut p = InFlight::default();
        for o in 0..5 {
            p.dispatch(o);
        }
        assert_eq!(p.finish(0), Some(0));
        // Reassigned, resuming at 1 while 1..5 were still running here.
        p.dispatch(1);
        assert_eq!(p.finish(3), None, "from before the rewind");
        assert_eq!(p.finish(1), Some(1));
    }
}
