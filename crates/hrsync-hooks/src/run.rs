//! The running hooks role: two consumers of directory changes (the priority
//! lane and the main topic, in consumer groups of their own) and one of the
//! provisioner's audit (the events of accounts) record the deliveries each
//! record owes; two senders (priority and main) deliver them.
//!
//! A change's deliveries are in the store before its offset is committed,
//! and a delivery leaves `pending` only once its endpoint answered 2xx or
//! its attempts ran out: a process killed at any point sends what it owed
//! after its restart (at least once; the `webhook-id` stays the same, so a
//! receiver can drop a repeat). One process at a time sends (the claim
//! `hooks` on the store); any number may record.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hrsync_bus::{
    Consumer, ConsumerSettings, DlqPublisher, KafkaConfig, Outcome, Producer, Record, SharedHandler,
};
use hrsync_domain::DirectoryChange;
use hrsync_store::Db;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::HooksConfig;
use crate::endpoint::{endpoints, Endpoint, EndpointError, Subject};
use crate::event::{digest, event_of, EventType, Kept, Seen};
use crate::ssf::Transmitter;
use crate::store::{self, Attempted, Due, NewDelivery};

/// The priority lane's `fetch.wait.max.ms`: a termination must not wait for
/// the broker's long poll.
const PRIORITY_FETCH_WAIT: Duration = Duration::from_millis(10);

/// How often a sender looks for deliveries due (it is also woken when one
/// is recorded in this process).
const POLL: Duration = Duration::from_millis(200);

/// How often a process waiting to send tries to claim the store.
const CLAIM_INTERVAL: Duration = Duration::from_secs(1);

/// The claim of the process that sends.
const CLAIM_ROLE: &str = "hooks";

/// Topics the hooks role reads and writes.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `directory.changes.v1`.
    pub changes: String,
    /// Its priority lane.
    pub priority: String,
    /// `provisioning.audit.v1`: the events of accounts.
    pub audit: String,
    /// Dead letters of this role.
    pub dlq: String,
}

impl From<&hrsync_bus::TopicsConfig> for Topics {
    fn from(topics: &hrsync_bus::TopicsConfig) -> Self {
        Topics {
            changes: topics.directory_changes.clone(),
            priority: topics.directory_priority.clone(),
            audit: topics.audit.clone(),
            dlq: topics.hooks_dlq.clone(),
        }
    }
}

/// Failures of the role.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Kafka.
    #[error(transparent)]
    Kafka(#[from] hrsync_bus::Error),
    /// The store.
    #[error("the hooks' store: {0}")]
    Store(#[from] hrsync_store::Error),
    /// An account's event came before the change it came from.
    #[error("the change this account came from is not read yet")]
    NotSeenYet,
    /// A SET could not be signed.
    #[error("signing a SET: {0}")]
    Sign(String),
    /// The SSF keys' listener.
    #[error("serving the SSF keys on hooks.ssf.listen: {0}")]
    Listen(#[from] std::io::Error),
    /// Another process claimed the store after this one's claim broke.
    #[error("another hooks process claimed the store after the connection holding this one's claim broke; stopping so that one process sends at a time")]
    ClaimLost,
}

/// The hooks: what each change owes, and its delivery.
#[derive(Debug)]
pub struct Hooks {
    db: Db,
    endpoints: Vec<Endpoint>,
    transmitter: Option<Arc<Transmitter>>,
    config: HooksConfig,
    /// Wakes the senders (priority, main) when a delivery is recorded.
    wake: [Notify; 2],
}

impl Hooks {
    /// The hooks of `config` over a migrated store.
    ///
    /// # Errors
    /// An endpoint that cannot be set up.
    pub fn new(db: Db, config: &HooksConfig) -> Result<Self, EndpointError> {
        let (endpoints, transmitter) = endpoints(config)?;
        Ok(Hooks {
            db,
            endpoints,
            transmitter,
            config: config.clone(),
            wake: [Notify::new(), Notify::new()],
        })
    }

    /// The store.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Records the deliveries `change` owes, unless a change of the person
    /// as new or newer was seen. Returns how many were recorded.
    ///
    /// # Errors
    /// The store.
    pub async fn record(
        &self,
        change: &DirectoryChange,
        trace_id: Option<String>,
    ) -> Result<usize, RunError> {
        let person = change.person_id.as_str();
        let version = i64::try_from(change.version).unwrap_or(i64::MAX);
        let previous = store::seen(&self.db, person).await?;
        if previous.as_ref().is_some_and(|p| p.version >= version) {
            return Ok(0);
        }
        let digest = digest(change);
        let event = event_of(previous.as_ref(), change, &digest);
        let kept = Kept::of(change);
        let subject = Subject {
            attributes: &kept.attributes,
            state: kept.state.as_str(),
            previous_state: previous.as_ref().map_or("", |p| p.state.as_str()),
            groups: &kept.groups,
            apps: &kept.apps,
        };
        // The person's accounts, for the deactivation's SSF receivers that
        // name their app and revocation calls (read for nothing else).
        let named = self.endpoints.iter().any(|e| e.app().is_some());
        let accounts = if named && event.is_some_and(EventType::deactivates) {
            store::accounts_of(&self.db, person).await?
        } else {
            Vec::new()
        };
        let mut deliveries = Vec::new();
        for endpoint in &self.endpoints {
            let Some(event) = event.filter(|e| endpoint.wants(*e, &subject)) else {
                continue;
            };
            if !endpoint.owed(&accounts) {
                continue;
            }
            let event_type = endpoint.event_name(event);
            let delivery_id = delivery_id(&endpoint.name, person, version, event_type);
            let body = endpoint
                .body(event, previous.as_ref(), change, &delivery_id, &accounts)
                .map_err(RunError::Sign)?;
            deliveries.push(NewDelivery {
                delivery_id,
                hook: endpoint.name.clone(),
                person_id: person.to_owned(),
                employee_id: change.employee_id.as_str().to_owned(),
                version,
                event_type,
                priority: event.is_priority(),
                body,
                trace_id: trace_id.clone(),
            });
        }
        let seen = Seen {
            version,
            state: change.lifecycle_state,
            digest,
        };
        let kept = serde_json::to_string(&kept).unwrap_or_default();
        if !store::record(&self.db, person, &seen, &kept, &deliveries).await? {
            return Ok(0);
        }
        self.woken(&deliveries);
        Ok(deliveries.len())
    }

    /// Wakes the senders of `deliveries`' lanes.
    pub(crate) fn woken(&self, deliveries: &[NewDelivery]) {
        for d in deliveries {
            self.wake[usize::from(!d.priority)].notify_one();
        }
    }

    /// The endpoints.
    pub(crate) fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Sends one lane's deliveries until `stop`.
    async fn send(self: Arc<Self>, priority: bool, stop: CancellationToken) {
        let lane = if priority { "priority" } else { "main" };
        let mut flying: JoinSet<()> = JoinSet::new();
        // Deliveries in flight.
        let in_flight = Arc::new(std::sync::Mutex::new(InFlight::default()));
        let mut look = true;
        while !stop.is_cancelled() {
            // (The set counts finished tasks until they are joined.)
            while flying.try_join_next().is_some() {}
            if look && flying.len() < self.config.in_flight {
                self.fill(&mut flying, &in_flight, priority, lane).await;
            }
            // The store is read again when a delivery is recorded, when
            // half of the room is free, and at least every POLL.
            let half = self.config.in_flight / 2;
            look = tokio::select! {
                () = stop.cancelled() => false,
                () = self.wake[usize::from(!priority)].notified() => true,
                Some(_) = flying.join_next(), if !flying.is_empty() => flying.len() <= half,
                () = tokio::time::sleep(POLL) => true,
            };
        }
        // What is in flight finishes (or times out); what was not sent stays
        // pending for the next process.
        while flying.join_next().await.is_some() {}
    }

    /// Starts the lane's deliveries due, up to its room.
    async fn fill(
        self: &Arc<Self>,
        flying: &mut JoinSet<()>,
        in_flight: &Arc<std::sync::Mutex<InFlight>>,
        priority: bool,
        lane: &'static str,
    ) {
        let room = self.config.in_flight.saturating_sub(flying.len());
        let held = in_flight.lock().map_or(0, |mut f| f.reading());
        let hooks: Vec<&str> = self.endpoints.iter().map(|e| e.name.as_str()).collect();
        let due = match store::due(&self.db, priority, &hooks, room + held).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, lane, "reading the deliveries due failed");
                return;
            }
        };
        for due in due {
            if flying.len() >= self.config.in_flight {
                break;
            }
            // (The read lists only the configured endpoints' deliveries.)
            let Some(endpoint) = self.endpoints.iter().position(|e| e.name == due.hook) else {
                continue;
            };
            if !in_flight.lock().is_ok_and(|mut f| f.take(&due)) {
                continue;
            }
            let (hooks, in_flight) = (self.clone(), in_flight.clone());
            flying.spawn(async move {
                let attempted = hooks.attempt(&hooks.endpoints[endpoint], &due, lane).await;
                if let Err(error) = store::attempted(&hooks.db, due.seq, &attempted).await {
                    tracing::warn!(%error, hook = %due.hook, delivery = %due.delivery_id, "recording a delivery attempt failed; it is sent again");
                }
                if let Ok(mut f) = in_flight.lock() {
                    f.done(&due);
                }
            });
        }
    }

    /// One attempt at `due`.
    async fn attempt(&self, endpoint: &Endpoint, due: &Due, lane: &'static str) -> Attempted {
        let attempts = due.attempts + 1;
        let (http_status, error, retry_after) = match self.post(endpoint, due).await {
            Ok(status) => {
                let owed = store::now_ms().saturating_sub(due.created_at_ms);
                metrics::counter!("hrsync_hook_deliveries_total", "hook" => endpoint.name.clone(), "lane" => lane, "outcome" => "delivered").increment(1);
                metrics::histogram!("hrsync_hook_delivery_seconds", "hook" => endpoint.name.clone(), "lane" => lane)
                    .record(Duration::from_millis(u64::try_from(owed).unwrap_or(0)).as_secs_f64());
                tracing::debug!(hook = %endpoint.name, delivery = %due.delivery_id, event = %due.event_type, status, "delivered");
                return Attempted::Delivered {
                    http_status: status,
                };
            }
            Err(failure) => failure,
        };
        let dead = attempts >= self.config.max_attempts;
        let outcome = if dead { "dead" } else { "retry" };
        metrics::counter!("hrsync_hook_deliveries_total", "hook" => endpoint.name.clone(), "lane" => lane, "outcome" => outcome).increment(1);
        if dead {
            tracing::error!(hook = %endpoint.name, delivery = %due.delivery_id, person_id = %due.person_id, event = %due.event_type, attempts, %error, "delivery out of attempts: dead until redriven (hrsync hooks redrive)");
            return Attempted::Failed {
                http_status,
                error,
                next_at_ms: None,
            };
        }
        let wait = retry_after
            .map(|r| r.min(Duration::from_millis(self.config.max_backoff_ms)))
            .unwrap_or_else(|| jittered(self.config.backoff(attempts)));
        tracing::warn!(hook = %endpoint.name, delivery = %due.delivery_id, event = %due.event_type, attempts, %error, retry_in_ms = wait.as_millis(), "delivery failed; retrying");
        Attempted::Failed {
            http_status,
            error,
            next_at_ms: Some(
                store::now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
            ),
        }
    }

    /// POSTs `due`, signed. The status on 2xx; otherwise the status if
    /// any, why, and the endpoint's `Retry-After`.
    async fn post(
        &self,
        endpoint: &Endpoint,
        due: &Due,
    ) -> Result<u16, (Option<u16>, String, Option<Duration>)> {
        let response = endpoint
            .request(&due.delivery_id, &due.body)
            .map_err(|reason| (None, reason, None))?
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(hrsync_domain::parse_retry_after);
                Err((
                    Some(status.as_u16()),
                    format!("the endpoint answered {status}"),
                    retry_after,
                ))
            }
            Err(error) if error.is_timeout() => Err((None, "no answer in time".to_owned(), None)),
            // Without the URL: it may carry a token.
            Err(error) => Err((
                None,
                format!("the request failed: {}", error.without_url()),
                None,
            )),
        }
    }
}

/// Deliveries a sender has in flight.
#[derive(Debug, Default)]
struct InFlight {
    seqs: HashSet<i64>,
    /// Finished since the store was last read: a read that began before
    /// their attempt was recorded may still list them as pending.
    finished: HashSet<i64>,
}

impl InFlight {
    /// The store is about to be read: returns how many are in flight.
    fn reading(&mut self) -> usize {
        self.finished.clear();
        self.seqs.len()
    }

    /// Takes `due` unless it is in flight, or finished while the store was
    /// read. (A read lists only the next delivery of each (hook, person),
    /// and one in flight is still pending: their later ones wait.)
    fn take(&mut self, due: &Due) -> bool {
        if self.finished.contains(&due.seq) {
            return false;
        }
        self.seqs.insert(due.seq)
    }

    /// `due`'s attempt is recorded.
    fn done(&mut self, due: &Due) {
        self.seqs.remove(&due.seq);
        self.finished.insert(due.seq);
    }
}

/// `wait` less up to half of it, at random, so that retries spread.
fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(rand::random_range(0.5..=1.0))
}

/// The `webhook-id` of one event for one endpoint: the same however often
/// the change is read.
pub(crate) fn delivery_id(hook: &str, person: &str, version: i64, event: &str) -> String {
    let name = format!("{hook}\u{0}{person}\u{0}{version}\u{0}{event}");
    format!(
        "msg_{}",
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).simple()
    )
}

/// Decodes directory changes and records what they owe.
struct ChangeHandler {
    hooks: Arc<Hooks>,
}

impl SharedHandler for ChangeHandler {
    async fn handle(&self, record: &Record) -> Outcome {
        let change = match hrsync_schema::decode_directory_change(
            record.payload.as_deref().unwrap_or_default(),
        ) {
            Ok(change) => change,
            Err(error) => return Outcome::Poison(format!("undecodable directory change: {error}")),
        };
        let trace_id = record
            .header("traceparent")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(hrsync_telemetry::propagation::trace_id_of)
            .map(str::to_owned);
        match self.hooks.record(&change, trace_id).await {
            Ok(_) => Outcome::Done,
            Err(error) => Outcome::Retry(format!("recording the hooks' deliveries: {error}")),
        }
    }
}

/// Runs both consumers, and both senders while this process holds the
/// claim, until `shutdown`.
///
/// # Errors
/// Kafka failures at start-up, a consumer stuck for good, the store, a
/// claim lost to another process.
pub async fn run(
    hooks: Arc<Hooks>,
    kafka: &KafkaConfig,
    topics: &Topics,
    readiness: Option<hrsync_telemetry::Readiness>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let config = &hooks.config;
    let settings = |group: &str, topic: &str| {
        let mut settings = ConsumerSettings::new("hooks", group, &[topic]);
        settings.auto_offset_reset.clone_from(&config.start_at);
        match &readiness {
            Some(readiness) => settings.with_readiness(readiness.clone()),
            None => settings,
        }
    };
    let dlq = DlqPublisher::new(Producer::new(kafka)?, &topics.dlq, "hooks");
    let priority = Consumer::new(
        kafka,
        settings(&format!("{}-priority", config.group_id), &topics.priority)
            .with_fetch_wait(PRIORITY_FETCH_WAIT),
    )?;
    let main = Consumer::new(kafka, settings(&config.group_id, &topics.changes))?;
    let audit = Consumer::new(
        kafka,
        settings(&format!("{}-audit", config.group_id), &topics.audit),
    )?;
    let stop = shutdown.child_token();
    let lane = |consumer: Consumer, in_flight: usize| {
        let handler = Arc::new(ChangeHandler {
            hooks: hooks.clone(),
        });
        consume(consumer, handler, in_flight, dlq.clone(), stop.clone())
    };
    let accounts = consume(
        audit,
        Arc::new(crate::account::AuditHandler {
            hooks: hooks.clone(),
        }),
        8,
        dlq.clone(),
        stop.clone(),
    );
    let keys = async {
        match (&hooks.transmitter, &config.ssf) {
            (Some(transmitter), Some(ssf)) => {
                let served = crate::ssf::serve(ssf.listen, transmitter.clone(), stop.clone()).await;
                if served.is_err() {
                    stop.cancel();
                }
                served.map_err(RunError::from)
            }
            _ => Ok(()),
        }
    };
    let (a, b, e, c, (), d) = tokio::join!(
        lane(priority, 8),
        lane(main, 16),
        accounts,
        send_while_claimed(hooks.clone(), stop.clone()),
        gauges(hooks.clone(), stop.clone()),
        keys,
    );
    a?;
    b?;
    e?;
    d?;
    c
}

/// Runs `consumer` with `handler` until `stop`; a consumer that fails (stuck
/// for good) stops the rest of the role.
async fn consume<H: SharedHandler>(
    consumer: Consumer,
    handler: Arc<H>,
    in_flight: usize,
    dlq: DlqPublisher,
    stop: CancellationToken,
) -> Result<(), RunError> {
    let result = consumer
        .run_concurrent(handler, in_flight, dlq, stop.clone())
        .await;
    if result.is_err() {
        stop.cancel();
    }
    result.map_err(RunError::from)
}

/// Waits for the claim, then sends both lanes while it holds.
async fn send_while_claimed(hooks: Arc<Hooks>, stop: CancellationToken) -> Result<(), RunError> {
    let mut waiting = false;
    let mut claim = loop {
        if let Some(claim) = hooks.db.try_claim(CLAIM_ROLE).await? {
            if waiting {
                tracing::info!("the hooks' store is free: this process sends now");
            }
            break claim;
        }
        if !waiting {
            tracing::warn!("another hooks process sends from this store; this one records only, and waits to send");
            waiting = true;
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(CLAIM_INTERVAL) => {}
        }
    };
    let sending = stop.child_token();
    let senders = tokio::spawn({
        let (hooks, sending) = (hooks.clone(), sending.clone());
        async move {
            tokio::join!(
                hooks.clone().send(true, sending.clone()),
                hooks.send(false, sending),
            );
        }
    });
    let result = loop {
        tokio::select! {
            () = stop.cancelled() => break Ok(()),
            () = tokio::time::sleep(CLAIM_INTERVAL) => {}
        }
        if claim.holds().await {
            continue;
        }
        match hooks.db.try_claim(CLAIM_ROLE).await {
            Ok(Some(again)) => claim = again,
            Ok(None) => {
                tracing::error!("another hooks process claimed the store; stopping");
                stop.cancel();
                break Err(RunError::ClaimLost);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot claim the hooks' store again yet; retrying")
            }
        }
    };
    sending.cancel();
    let _ = senders.await;
    claim.release().await;
    result
}

/// Sets `hrsync_hook_deliveries_owed{hook,status}` (pending, dead) every
/// few seconds.
async fn gauges(hooks: Arc<Hooks>, stop: CancellationToken) {
    let mut known: HashSet<(String, String)> = HashSet::new();
    while !stop.is_cancelled() {
        if let Ok(counts) = store::counts(&hooks.db).await {
            let now: HashSet<(String, String)> = counts
                .iter()
                .map(|(h, s, _)| (h.clone(), s.clone()))
                .collect();
            for (hook, status) in known.difference(&now) {
                metrics::gauge!("hrsync_hook_deliveries_owed", "hook" => hook.clone(), "status" => status.clone()).set(0.0);
            }
            for (hook, status, n) in counts {
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!("hrsync_hook_deliveries_owed", "hook" => hook, "status" => status)
                    .set(n as f64);
            }
            known = now;
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_id_is_the_same_for_the_same_event_and_endpoint() {
        let id = delivery_id("tickets", "p-1", 3, "person.left");
        assert!(id.starts_with("msg_"), "{id}");
        assert_eq!(id, delivery_id("tickets", "p-1", 3, "person.left"));
        assert_ne!(id, delivery_id("laptops", "p-1", 3, "person.left"));
        assert_ne!(id, delivery_id("tickets", "p-1", 4, "person.left"));
    }

    #[test]
    fn a_delivery_flies_once_and_not_again_after_a_read_that_began_before_it_finished() {
        let due = |seq, person: &str| Due {
            seq,
            delivery_id: format!("msg_{seq}"),
            hook: "tickets".to_owned(),
            person_id: person.to_owned(),
            event_type: "person.moved".to_owned(),
            body: "{}".to_owned(),
            attempts: 0,
            created_at_ms: 0,
        };
        let mut flying = InFlight::default();
        assert!(flying.take(&due(1, "p-1")));
        assert!(!flying.take(&due(1, "p-1")), "the same delivery");
        assert!(flying.take(&due(3, "p-2")));
        flying.done(&due(1, "p-1"));
        assert!(
            !flying.take(&due(1, "p-1")),
            "finished while the store was read, which may still list it"
        );
        assert!(flying.take(&due(2, "p-1")));
        flying.done(&due(2, "p-1"));
        assert_eq!(flying.reading(), 1, "the store is read: seq 3 flies");
        assert!(
            flying.take(&due(2, "p-1")),
            "a read begun after it finished"
        );
    }
}
