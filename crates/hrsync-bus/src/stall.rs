//! Noticing a group consumer that is stuck, and mending it.
//!
//! A consumer can end up in its group with no partitions while records
//! wait, or with partitions it never fetches from: a broker that lost track
//! of a member killed and replaced within the session timeout leaves the new
//! member with nothing assigned and no rebalance to come. librdkafka then
//! waits forever, and so would hrsync. So every group consumer is watched:
//!
//! - An observer (a client of its own in the same group that never joins
//!   it) reads the group's committed offsets and the partitions' high
//!   watermarks every [`StallSettings::check_every`], on a blocking thread.
//! - The consumer's loop compares each reading with its own progress. It is
//!   *stuck* once, for [`StallSettings::after`] in a row, records waited for
//!   it (on its assigned partitions, or anywhere in its topics while it has
//!   none), the group's committed offsets there did not move, and it
//!   neither received nor finished a record and had none in flight. A
//!   handler that is slowly retrying one record is busy, not stuck.
//! - A stuck consumer logs it, sets `hrsync_bus_consumer_stalled{group}`,
//!   holds `/readyz` unready and rejoins its group (leave, subscribe again).
//!   After [`StallSettings::max_rejoins`] rejoins in a row that did not help,
//!   its loop ends with [`Error::Stalled`], so the process exits non-zero and
//!   its supervisor starts it afresh.
//! - A partition of the group that is not the consumer's, with records
//!   waiting and its committed offset still for twice
//!   [`StallSettings::after`], is *orphaned*: its member is gone (a process
//!   killed) and the broker did not hand it to anyone (tansu 0.6 can leave a
//!   group so after a member's session expired). The consumer rejoins its
//!   group so that the partitions are assigned again; this is not counted
//!   as being stuck. Records it had in flight then are read again by the
//!   partition's next member (at least once; handlers are idempotent).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _, DefaultConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::{CONSUMER_REJOINS, CONSUMER_STALLED};
use crate::{Error, KafkaConfig, Result};

/// When a group consumer counts as stuck, and what is done then
/// (`[kafka.stall]` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StallSettings {
    /// Seconds a consumer may make no progress while records wait for it
    /// before it counts as stuck and rejoins its group. Above the session
    /// timeout (10 s), so a member replaced after a crash has its old self
    /// expired first.
    pub after_secs: u64,
    /// Seconds between two readings of the group's offsets.
    pub check_every_secs: u64,
    /// Rejoins in a row that did not get the consumer moving before its
    /// role fails (the process exits non-zero for its supervisor).
    pub max_rejoins: u32,
}

impl Default for StallSettings {
    fn default() -> Self {
        StallSettings {
            after_secs: 15,
            check_every_secs: 2,
            max_rejoins: 3,
        }
    }
}

impl StallSettings {
    /// Checks the settings; names the offending key.
    pub fn validate(&self) -> Result<()> {
        if self.after_secs == 0 || self.check_every_secs == 0 {
            return Err(Error::Config(
                "kafka.stall.after_secs and kafka.stall.check_every_secs must be at least 1"
                    .to_owned(),
            ));
        }
        if self.check_every_secs >= self.after_secs {
            return Err(Error::Config(format!(
                "kafka.stall.check_every_secs ({}) must be below kafka.stall.after_secs ({})",
                self.check_every_secs, self.after_secs
            )));
        }
        Ok(())
    }

    pub(crate) fn after(&self) -> Duration {
        Duration::from_secs(self.after_secs)
    }

    pub(crate) fn check_every(&self) -> Duration {
        Duration::from_secs(self.check_every_secs)
    }
}

/// One partition as the observer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionView {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// The group's committed offset (the next record it will read), or the
    /// log start where it has committed nothing.
    pub(crate) committed: i64,
    /// The offset the next record written will get.
    pub(crate) high: i64,
}

/// A reading of the group's offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupView {
    pub(crate) partitions: Vec<PartitionView>,
}

impl GroupView {
    /// Records waiting and the sum of committed offsets, over `assigned`
    /// (`(topic, partition)` pairs), or over every partition when the
    /// consumer holds none.
    pub(crate) fn over(&self, assigned: &[(String, i32)]) -> (i64, i64) {
        self.partitions
            .iter()
            .filter(|p| {
                assigned.is_empty()
                    || assigned
                        .iter()
                        .any(|(t, n)| *t == p.topic && *n == p.partition)
            })
            .fold((0, 0), |(waiting, committed), p| {
                (
                    waiting + (p.high - p.committed).max(0),
                    committed + p.committed,
                )
            })
    }
}

/// Decides from readings whether a consumer is stuck (pure; see the module
/// docs).
#[derive(Debug)]
pub(crate) struct Detector {
    after: Duration,
    /// Since when the consumer has been idle with records waiting, and the
    /// committed sum then.
    since: Option<(Instant, i64)>,
}

impl Detector {
    pub(crate) fn new(after: Duration) -> Self {
        Detector { after, since: None }
    }

    /// Takes one reading: `waiting` records and the `committed` sum over the
    /// consumer's partitions, and whether it was `idle` since the last
    /// reading (nothing received, finished or in flight). Returns how long
    /// it has been stuck, once that is at least the limit.
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        waiting: i64,
        committed: i64,
        idle: bool,
    ) -> Option<Duration> {
        if waiting <= 0 || !idle {
            self.since = None;
            return None;
        }
        match self.since {
            Some((_, before)) if before != committed => {
                self.since = Some((now, committed));
                None
            }
            Some((start, _)) => {
                let stuck = now.saturating_duration_since(start);
                (stuck >= self.after).then_some(stuck)
            }
            None => {
                self.since = Some((now, committed));
                None
            }
        }
    }

    /// Starts over (after a rejoin, or a reading that could not be taken).
    pub(crate) fn reset(&mut self) {
        self.since = None;
    }
}

/// Finds orphaned partitions (see the module docs) from readings (pure).
#[derive(Debug)]
pub(crate) struct Orphans {
    after: Duration,
    /// Per partition not the consumer's with records waiting: since when,
    /// and its committed offset then.
    since: std::collections::HashMap<(String, i32), (Instant, i64)>,
}

impl Orphans {
    pub(crate) fn new(after: Duration) -> Self {
        Orphans {
            after,
            since: std::collections::HashMap::new(),
        }
    }

    /// Takes one reading; returns a partition orphaned for at least the
    /// limit, and for how long, if any. Only a consumer holding partitions
    /// looks (one holding none is judged stuck instead).
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        view: &GroupView,
        assigned: &[(String, i32)],
    ) -> Option<((String, i32), Duration)> {
        if assigned.is_empty() {
            self.since.clear();
            return None;
        }
        let mut found = None;
        let mut since = std::collections::HashMap::new();
        for p in &view.partitions {
            let key = (p.topic.clone(), p.partition);
            if p.high <= p.committed || assigned.contains(&key) {
                continue;
            }
            let first = match self.since.get(&key) {
                Some((at, committed)) if *committed == p.committed => *at,
                _ => now,
            };
            let idle = now.saturating_duration_since(first);
            if idle >= self.after && found.is_none() {
                found = Some((key.clone(), idle));
            }
            since.insert(key, (first, p.committed));
        }
        self.since = since;
        found
    }

    /// Starts over (after a rejoin).
    pub(crate) fn reset(&mut self) {
        self.since.clear();
    }
}

/// Reads a group's committed offsets and the high watermarks of its topics'
/// partitions without joining the group.
struct Observer {
    client: BaseConsumer<DefaultConsumerContext>,
    topics: Vec<String>,
}

/// How long one call of the observer may wait for the broker.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(5);

impl Observer {
    fn new(kafka: &KafkaConfig, stage: &str, group: &str, topics: &[String]) -> Result<Self> {
        let mut cfg = kafka.client_config(&format!("{stage}-watch"))?;
        // Same group id, so it may read the group's offsets; it never
        // subscribes, so it never joins the group nor commits anything.
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let client = cfg.create().map_err(Error::Client)?;
        Ok(Observer {
            client,
            topics: topics.to_vec(),
        })
    }

    /// One reading (blocking: run it off the async workers).
    fn view(&self) -> Result<GroupView> {
        let mut list = TopicPartitionList::new();
        for topic in &self.topics {
            for id in crate::topics::partition_ids(self.client.client(), topic, OBSERVE_TIMEOUT)? {
                list.add_partition(topic, id);
            }
        }
        let committed = self.client.committed_offsets(list, OBSERVE_TIMEOUT)?;
        let mut partitions = Vec::new();
        for element in committed.elements() {
            let (low, high) = self.client.fetch_watermarks(
                element.topic(),
                element.partition(),
                OBSERVE_TIMEOUT,
            )?;
            let committed = match element.offset() {
                Offset::Offset(offset) => offset.max(low),
                // Nothing committed: the group starts at the log's start
                // (`auto.offset.reset = earliest`).
                _ => low,
            };
            partitions.push(PartitionView {
                topic: element.topic().to_owned(),
                partition: element.partition(),
                committed,
                high,
            });
        }
        Ok(GroupView { partitions })
    }
}

/// The watch over one group consumer: readings arrive from a task of its
/// own; the consumer's loop feeds each to [`Watch::judge`] with its
/// progress.
pub(crate) struct Watch {
    group: String,
    stage: String,
    settings: StallSettings,
    detector: Detector,
    orphans: Orphans,
    views: mpsc::Receiver<Result<GroupView>>,
    readiness: Option<hrsync_telemetry::Readiness>,
    /// The consumer's progress count at the last reading.
    seen: u64,
    /// Rejoins since the consumer last moved.
    rejoins: u32,
    stalled: bool,
    /// Stops the reading task when the watch is dropped.
    stop: tokio_util::sync::DropGuard,
    /// The reading task, which holds a Kafka client of its own.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("group", &self.group)
            .field("rejoins", &self.rejoins)
            .finish_non_exhaustive()
    }
}

/// What the consumer's loop must do after a reading.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Carry on.
    Fine,
    /// Leave the group and subscribe again.
    Rejoin,
}

impl Watch {
    /// Starts observing `group` over `topics`.
    pub(crate) fn start(
        kafka: &KafkaConfig,
        stage: &str,
        group: &str,
        topics: &[String],
        settings: &StallSettings,
        readiness: Option<hrsync_telemetry::Readiness>,
    ) -> Result<Self> {
        settings.validate()?;
        let observer = std::sync::Arc::new(Observer::new(kafka, stage, group, topics)?);
        let (tx, views) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let every = settings.check_every();
        let cancelled = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancelled.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let observer = observer.clone();
                let view = tokio::task::spawn_blocking(move || observer.view())
                    .await
                    .unwrap_or_else(|e| Err(Error::Config(format!("observer panicked: {e}"))));
                // A reading the loop has not taken yet is replaced by no
                // newer one: it takes the next one when it is ready.
                if tx.try_send(view).is_err() && tx.is_closed() {
                    break;
                }
            }
        });
        Ok(Watch {
            group: group.to_owned(),
            stage: stage.to_owned(),
            settings: settings.clone(),
            detector: Detector::new(settings.after()),
            orphans: Orphans::new(settings.after() * 2),
            views,
            readiness,
            seen: 0,
            rejoins: 0,
            stalled: false,
            stop: stop.drop_guard(),
            task: Some(task),
        })
    }

    /// Stops the reading task and waits until it has ended, its Kafka
    /// client closed with it: a role that returns leaves no client behind.
    pub(crate) async fn stop(mut self) {
        self.stop.disarm().cancel();
        if let Some(task) = self.task.take() {
            // A reading in progress is finished first (a blocking call).
            if let Err(error) = task.await {
                tracing::warn!(stage = %self.stage, group = %self.group, %error, "stall watch task failed");
            }
        }
    }

    /// The next reading (for the consumer loop's `select!`).
    pub(crate) async fn next(&mut self) -> Option<Result<GroupView>> {
        self.views.recv().await
    }

    /// Judges one reading. `progress` counts the records the consumer has
    /// received and finished so far; `in_flight` the ones being handled;
    /// `assigned` its partitions.
    ///
    /// # Errors
    /// [`Error::Stalled`] once rejoining did not help
    /// [`StallSettings::max_rejoins`] times in a row.
    pub(crate) fn judge(
        &mut self,
        view: Result<GroupView>,
        progress: u64,
        in_flight: usize,
        assigned: &[(String, i32)],
    ) -> Result<Verdict> {
        let idle = progress == self.seen && in_flight == 0;
        if progress != self.seen {
            self.seen = progress;
            self.moving();
        }
        let view = match view {
            Ok(view) => view,
            Err(error) => {
                // The broker is away: nothing to judge, librdkafka
                // reconnects by itself.
                tracing::debug!(group = %self.group, %error, "group offsets not read");
                self.detector.reset();
                return Ok(Verdict::Fine);
            }
        };
        let (waiting, committed) = view.over(assigned);
        let Some(stuck) = self
            .detector
            .observe(Instant::now(), waiting, committed, idle)
        else {
            if !idle || waiting == 0 {
                self.moving();
            }
            return Ok(self.orphaned(&view, assigned));
        };
        self.detector.reset();
        let reason = format!(
            "no progress for {} s with {waiting} record(s) waiting and {} partition(s) assigned",
            stuck.as_secs(),
            assigned.len()
        );
        if !self.stalled {
            self.stalled = true;
            metrics::gauge!(CONSUMER_STALLED, "group" => self.group.clone()).set(1.0);
        }
        if let Some(readiness) = &self.readiness {
            readiness.hold(&self.readiness_key(), reason.clone());
        }
        if self.rejoins >= self.settings.max_rejoins {
            tracing::error!(stage = %self.stage, group = %self.group, rejoins = self.rejoins, %reason, "consumer stuck; rejoining did not help, giving up");
            return Err(Error::Stalled {
                group: self.group.clone(),
                reason,
                rejoins: self.rejoins,
            });
        }
        self.rejoins += 1;
        metrics::counter!(CONSUMER_REJOINS, "group" => self.group.clone()).increment(1);
        tracing::warn!(stage = %self.stage, group = %self.group, rejoin = self.rejoins, %reason, "consumer stuck; rejoining its group");
        Ok(Verdict::Rejoin)
    }

    /// Rejoin if a partition of the group looks orphaned (see the module
    /// docs), so the group assigns its partitions again.
    fn orphaned(&mut self, view: &GroupView, assigned: &[(String, i32)]) -> Verdict {
        let Some(((topic, partition), idle)) = self.orphans.observe(Instant::now(), view, assigned)
        else {
            return Verdict::Fine;
        };
        self.orphans.reset();
        self.detector.reset();
        metrics::counter!(CONSUMER_REJOINS, "group" => self.group.clone()).increment(1);
        tracing::warn!(stage = %self.stage, group = %self.group, %topic, partition, idle_secs = idle.as_secs(), "a partition of the group has records waiting and no progress, and is not this consumer's (its member may be gone); rejoining so the group assigns it again");
        Verdict::Rejoin
    }

    /// The consumer moved (or had nothing to do): not stuck.
    fn moving(&mut self) {
        self.rejoins = 0;
        if self.stalled {
            self.stalled = false;
            metrics::gauge!(CONSUMER_STALLED, "group" => self.group.clone()).set(0.0);
            tracing::info!(stage = %self.stage, group = %self.group, "consumer moving again");
        }
        if let Some(readiness) = &self.readiness {
            readiness.clear(&self.readiness_key());
        }
    }

    fn readiness_key(&self) -> String {
        format!("consumer group {}", self.group)
    }
}

/// The partitions `consumer` holds, as `(topic, partition)` pairs.
pub(crate) fn assigned<C: rdkafka::consumer::Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
) -> Vec<(String, i32)> {
    consumer
        .assignment()
        .map(|list| {
            list.elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(parts: &[(&str, i32, i64, i64)]) -> GroupView {
        GroupView {
            partitions: parts
                .iter()
                .map(|(t, p, c, h)| PartitionView {
                    topic: (*t).to_owned(),
                    partition: *p,
                    committed: *c,
                    high: *h,
                })
                .collect(),
        }
    }

    #[test]
    fn waiting_counts_the_assigned_partitions_or_all_when_none() {
        let v = view(&[("a", 0, 5, 10), ("a", 1, 7, 7), ("b", 0, 0, 3)]);
        assert_eq!(v.over(&[]), (8, 12));
        assert_eq!(v.over(&[("a".into(), 1)]), (0, 7));
        assert_eq!(v.over(&[("a".into(), 0), ("b".into(), 0)]), (8, 5));
    }

    #[test]
    fn a_partition_not_ours_with_records_waiting_and_no_commits_is_orphaned_after_the_limit() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let ours = [("a".to_owned(), 0)];
        let mut o = Orphans::new(Duration::from_secs(30));
        // a/1 is someone else's: it moves, then stops with records waiting.
        assert_eq!(
            o.observe(at(0), &view(&[("a", 0, 5, 9), ("a", 1, 3, 9)]), &ours),
            None
        );
        assert_eq!(
            o.observe(at(20), &view(&[("a", 0, 9, 9), ("a", 1, 6, 9)]), &ours),
            None
        );
        assert_eq!(
            o.observe(at(45), &view(&[("a", 0, 9, 9), ("a", 1, 6, 9)]), &ours),
            None
        );
        assert_eq!(
            o.observe(at(51), &view(&[("a", 0, 9, 9), ("a", 1, 6, 9)]), &ours),
            Some((("a".to_owned(), 1), Duration::from_secs(31)))
        );
        // Our own partition never counts, nor one with nothing waiting, nor
        // any while we hold none (the stuck detector judges that).
        let mut o = Orphans::new(Duration::from_secs(30));
        let idle = view(&[("a", 0, 5, 9), ("a", 1, 9, 9)]);
        assert_eq!(o.observe(at(0), &idle, &ours), None);
        assert_eq!(o.observe(at(60), &idle, &ours), None);
        assert_eq!(o.observe(at(0), &idle, &[]), None);
        assert_eq!(o.observe(at(60), &idle, &[]), None);
    }

    #[test]
    fn stuck_only_after_the_limit_idle_with_records_waiting_and_no_commit() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut d = Detector::new(Duration::from_secs(15));
        assert_eq!(d.observe(at(0), 10, 100, true), None);
        assert_eq!(d.observe(at(10), 10, 100, true), None);
        assert_eq!(
            d.observe(at(16), 10, 100, true),
            Some(Duration::from_secs(16))
        );

        // Progress, a commit, or nothing waiting starts the clock over.
        let mut d = Detector::new(Duration::from_secs(15));
        d.observe(at(0), 10, 100, true);
        assert_eq!(d.observe(at(10), 10, 100, false), None);
        assert_eq!(d.observe(at(20), 10, 100, true), None);
        assert_eq!(
            d.observe(at(30), 10, 101, true),
            None,
            "the group committed"
        );
        assert_eq!(d.observe(at(44), 10, 101, true), None);
        assert_eq!(d.observe(at(46), 0, 101, true), None, "nothing waits");
        assert_eq!(d.observe(at(70), 5, 101, true), None);
        assert!(d.observe(at(85), 5, 101, true).is_some());
    }

    #[test]
    fn settings_are_checked() {
        StallSettings::default().validate().expect("defaults");
        let bad = StallSettings {
            after_secs: 2,
            check_every_secs: 2,
            max_rejoins: 1,
        };
        let error = bad.validate().expect_err("check_every >= after");
        assert!(error.to_string().contains("check_every_secs"), "{error}");
    }

    fn judged(watch: &mut Watch, v: &GroupView, progress: u64, in_flight: usize) -> Verdict {
        watch
            .judge(Ok(v.clone()), progress, in_flight, &[])
            .expect("not given up")
    }

    #[tokio::test]
    async fn a_stuck_consumer_rejoins_then_gives_up_and_holds_readiness_meanwhile() {
        let readiness = hrsync_telemetry::Readiness::default();
        readiness.set(true);
        // No broker behind it: the observer's readings are never taken here;
        // the test feeds readings itself.
        let settings = StallSettings {
            after_secs: 1,
            check_every_secs: 1,
            max_rejoins: 2,
        };
        let mut watch = Watch {
            group: "g".into(),
            stage: "test".into(),
            settings: settings.clone(),
            detector: Detector::new(Duration::ZERO),
            orphans: Orphans::new(Duration::from_secs(3600)),
            views: mpsc::channel(1).1,
            readiness: Some(readiness.clone()),
            seen: 0,
            rejoins: 0,
            stalled: false,
            stop: CancellationToken::new().drop_guard(),
            task: None,
        };
        let waiting = view(&[("t", 0, 0, 5)]);
        // The first reading starts the clock; the next one (limit zero) is
        // stuck.
        assert_eq!(judged(&mut watch, &waiting, 0, 0), Verdict::Fine);
        assert_eq!(judged(&mut watch, &waiting, 0, 0), Verdict::Rejoin);
        assert!(!readiness.get(), "unready while stuck");
        // Moving again clears it and the rejoin count.
        assert_eq!(judged(&mut watch, &waiting, 3, 0), Verdict::Fine);
        assert!(readiness.get());
        // Busy (a record in flight) is not stuck.
        for _ in 0..4 {
            assert_eq!(judged(&mut watch, &waiting, 3, 1), Verdict::Fine);
        }
        // Stuck through two rejoins: the third time it gives up.
        let mut verdicts = Vec::new();
        let error = loop {
            match watch.judge(Ok(waiting.clone()), 3, 0, &[]) {
                Ok(v) => verdicts.push(v),
                Err(e) => break e,
            }
            assert!(verdicts.len() < 20, "never gave up: {verdicts:?}");
        };
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Rejoin).count(),
            2
        );
        assert!(
            matches!(error, Error::Stalled { rejoins: 2, .. }),
            "{error}"
        );
        assert!(!readiness.get());
    }
}
