//! The consumers: the priority lane and the main topic of directory
//! changes, and the replay of the dead-letter topic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hrsync_bus::{
    Consumer, ConsumerSettings, DlqPublisher, Handler, KafkaConfig, Outcome, Producer, Record,
    SharedHandler,
};
use tokio_util::sync::CancellationToken;

use super::{Provisioner, Topics};
use crate::config::ProvisionerConfig;

/// The priority lane's `fetch.wait.max.ms`: it is idle most of the time and
/// a termination on it must not wait for the broker's long poll.
const PRIORITY_FETCH_WAIT: Duration = Duration::from_millis(10);

/// Decodes directory changes and applies them.
struct ChangeHandler {
    provisioner: Arc<Provisioner>,
}

impl SharedHandler for ChangeHandler {
    async fn handle(&self, record: &Record) -> Outcome {
        let change = match hrsync_schema::decode_directory_change(
            record.payload.as_deref().unwrap_or_default(),
        ) {
            Ok(change) => change,
            Err(error) => return Outcome::Poison(format!("undecodable directory change: {error}")),
        };
        let results = self.provisioner.apply(&change, None).await;
        let mut retry = Vec::new();
        let mut failed = Vec::new();
        for r in &results {
            if let Err(error) = &r.result {
                let retryable = error.is_retryable();
                let line = format!("{} after {} attempt(s): {error}", r.app, r.attempts);
                if retryable {
                    retry.push(line);
                } else {
                    failed.push(line);
                }
            }
        }
        if !retry.is_empty() {
            // Apps that succeeded see the change again as stale: harmless.
            return Outcome::Retry(retry.join("; "));
        }
        if !failed.is_empty() {
            return Outcome::Poison(format!(
                "person {} version {}: {}",
                change.person_id,
                change.version,
                failed.join("; ")
            ));
        }
        Outcome::Done
    }
}

/// Runs both consumers until `shutdown` is cancelled. `readiness`, if
/// given, is held unready while a consumer is stuck.
///
/// # Errors
/// Kafka failures at start-up; a consumer that stayed stuck through every
/// rejoin ([`hrsync_bus::Error::Stalled`]).
pub async fn run(
    provisioner: Arc<Provisioner>,
    kafka: &KafkaConfig,
    config: &ProvisionerConfig,
    topics: &Topics,
    readiness: Option<hrsync_telemetry::Readiness>,
    shutdown: CancellationToken,
) -> Result<(), hrsync_bus::Error> {
    let settings = |group: &str, topic: &str| {
        let settings = ConsumerSettings::new("provisioner", group, &[topic]);
        match &readiness {
            Some(readiness) => settings.with_readiness(readiness.clone()),
            None => settings,
        }
    };
    let dlq = DlqPublisher::new(Producer::new(kafka)?, &topics.dlq, "provisioner");
    // Group memberships requested before a restart (or by another process)
    // are applied from the start, not only once a change wakes the writer.
    provisioner.start_group_writers();
    let priority = Consumer::new(
        kafka,
        settings(&format!("{}-priority", config.group_id), &topics.priority)
            .with_fetch_wait(PRIORITY_FETCH_WAIT),
    )?;
    let main = Consumer::new(kafka, settings(&config.group_id, &topics.changes))?;
    // A consumer that fails (stuck for good) stops the other one and the
    // prober, so the role ends and its process exits non-zero.
    let stop = shutdown.child_token();
    let prober = probe_until(provisioner.clone(), stop.clone());
    let stopping_the_others = |result: Result<(), hrsync_bus::Error>| {
        if result.is_err() {
            stop.cancel();
        }
        result
    };
    // Apps with `reconcile_every_secs` are reconciled on their schedule.
    let sweeps = crate::sweep::scheduled(provisioner.clone(), config, stop.clone());
    // Changes of different persons are applied concurrently, one person's
    // in order (the consumers lane records by key, the person id).
    let lane = |consumer: Consumer, in_flight: usize| {
        let handler = Arc::new(ChangeHandler {
            provisioner: provisioner.clone(),
        });
        let (dlq, stop) = (dlq.clone(), stop.clone());
        async move { stopping_the_others(consumer.run_concurrent(handler, in_flight, dlq, stop).await) }
    };
    // Open manual tasks and their age, as metrics.
    let manual: Vec<String> = provisioner
        .manual_apps()
        .iter()
        .map(|a| a.name.clone())
        .collect();
    let counting = async {
        if !manual.is_empty() {
            let db = provisioner.store().clone();
            crate::manual::count_open_tasks(db, manual, stop.clone()).await;
        }
    };
    // Persons whose lease this process lost while applying their change
    // are read again and their newest change applied.
    let repairs = provisioner.repair_lost_leases(stop.clone());
    let (a, b, (), (), (), ()) = tokio::join!(
        lane(priority, config.priority_in_flight),
        lane(main, config.in_flight),
        prober,
        sweeps,
        counting,
        repairs,
    );
    provisioner.close().await;
    a?;
    b?;
    Ok(())
}

/// Tries what is parked, where due, every 200 ms until `stop`.
async fn probe_until(provisioner: Arc<Provisioner>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        provisioner.probe_parked().await;
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// The store claim held while the dead-letter topic is replayed: one
/// redrive at a time across every process sharing the store (two would
/// share its consumer group and each replay a part).
pub const REDRIVE_CLAIM: &str = "dlq-redrive";

/// Why a redrive did not run.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// Another process (or request) is replaying the dead letters.
    #[error(
        "another redrive of the provisioner's dead letters is running (it holds the \
         claim `{REDRIVE_CLAIM}`); list the DLQ to follow it, or try again once it is done"
    )]
    Busy,
    /// The store could not be reached to claim the redrive.
    #[error("claiming the redrive in the provisioner store: {0}")]
    Store(#[from] hrsync_store::Error),
    /// Kafka failed at start-up.
    #[error(transparent)]
    Bus(#[from] hrsync_bus::Error),
}

/// Replays the dead-letter topic: every parked change is applied again;
/// one that fails again goes back to the DLQ (once per run). Stops when
/// nothing has arrived for `idle`. Returns how many records were replayed.
/// Holds the store's [`REDRIVE_CLAIM`] while it runs.
///
/// # Errors
/// Another redrive running, the store unreachable, Kafka failures at
/// start-up.
pub async fn redrive(
    provisioner: Arc<Provisioner>,
    kafka: &KafkaConfig,
    config: &ProvisionerConfig,
    topics: &Topics,
    idle: Duration,
) -> Result<usize, RedriveError> {
    let claim = provisioner
        .db
        .try_claim(REDRIVE_CLAIM)
        .await?
        .ok_or(RedriveError::Busy)?;
    let replayed = replay(provisioner, kafka, config, topics, idle).await;
    claim.release().await;
    Ok(replayed?)
}

/// [`redrive`] under its claim.
async fn replay(
    provisioner: Arc<Provisioner>,
    kafka: &KafkaConfig,
    config: &ProvisionerConfig,
    topics: &Topics,
    idle: Duration,
) -> Result<usize, hrsync_bus::Error> {
    let dlq = DlqPublisher::new(Producer::new(kafka)?, &topics.dlq, "provisioner-redrive");
    let consumer = Consumer::new(
        kafka,
        ConsumerSettings::new(
            "provisioner-redrive",
            &format!("{}-redrive", config.group_id),
            &[&topics.dlq],
        ),
    )?;
    let shutdown = CancellationToken::new();
    let last = Arc::new(std::sync::Mutex::new(Instant::now()));
    let handler = RedriveHandler {
        inner: ChangeHandler { provisioner },
        seen: std::collections::HashSet::new(),
        last: last.clone(),
        replayed: 0,
    };
    let watch = {
        let shutdown = shutdown.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if last.lock().map_or(true, |l| l.elapsed() >= idle) {
                    shutdown.cancel();
                    break;
                }
            }
        }
    };
    let (handler, ()) = tokio::join!(consumer.run(handler, &dlq, shutdown.clone()), watch);
    Ok(handler?.replayed)
}

/// [`ChangeHandler`] over the DLQ, skipping a change it already replayed in
/// this run (it was sent back to the DLQ).
struct RedriveHandler {
    inner: ChangeHandler,
    seen: std::collections::HashSet<Vec<u8>>,
    last: Arc<std::sync::Mutex<Instant>>,
    replayed: usize,
}

impl Handler for RedriveHandler {
    async fn handle(&mut self, record: &Record) -> Outcome {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
        let payload = record.payload.clone().unwrap_or_default();
        if !self.seen.insert(payload) {
            return Outcome::Done;
        }
        self.replayed += 1;
        let outcome = SharedHandler::handle(&self.inner, record).await;
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
        match outcome {
            // Still failing after the retries: back to the DLQ.
            Outcome::Retry(reason) => Outcome::Poison(reason),
            other => other,
        }
    }
}
