//! One person's changes applied one at a time: within this process by a
//! striped mutex; across processes on one PostgreSQL store by the person's
//! lease (`provisioner_lease`), taken after the mutex and given up when
//! done. Whichever process and consumer (main topic or priority lane)
//! receives a person's changes, and whether it is a provisioner, the admin
//! role or a `provision-now` from the command line, the version check and
//! the calls it decides run for one change at a time, so a deprovisioning
//! applied by one process cannot be undone by an older change another
//! process applies.
//!
//! Leases cost a single process little: one task per process ([`Leases`])
//! takes what every task asks for in one statement, gives up in another,
//! and renews all it holds every [`RENEW_EVERY`]. A lease whose process
//! died expires after [`TTL`]; the person's next change then waits at most
//! that long. A SQLite store serves one process and takes no leases.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hrsync_domain::PersonId;
use hrsync_store::{Backend, Db};
use tokio::sync::{mpsc, oneshot, MutexGuard};

use super::Provisioner;
use crate::store::lease;

/// How long a lease lasts unless renewed.
const TTL: Duration = Duration::from_secs(15);
/// How often the held leases are renewed.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often a lease held elsewhere is asked for again.
const WAIT: Duration = Duration::from_millis(20);
/// The wait after the store failed to answer.
const STORE_WAIT: Duration = Duration::from_millis(500);
/// The most takes (or give-ups) in one statement.
const BATCH: usize = 512;

/// Leases waited for because another process held them.
pub const LEASE_WAITS: &str = "hrsync_provisioner_lease_waits_total";
/// Leases found lost to another process while held (this one stalled past
/// their expiry); each person's accounts are repaired.
pub const LEASES_LOST: &str = "hrsync_provisioner_leases_lost_total";

/// A person held: by this process's mutex and, on PostgreSQL, their lease.
/// The lease is given up before the mutex lets the next task in.
pub(crate) struct PersonLock<'a> {
    _lease: Option<Lease>,
    _local: MutexGuard<'a, ()>,
}

/// A lease held until dropped.
struct Lease {
    person: String,
    token: String,
    requests: mpsc::UnboundedSender<Request>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Should the process be ending (the task gone), the lease expires.
        let _ = self.requests.send(Request::GiveUp {
            person: std::mem::take(&mut self.person),
            token: std::mem::take(&mut self.token),
        });
    }
}

/// What a task asks of this process's leases.
enum Request {
    Take {
        person: String,
        token: String,
        /// Taken, not taken (held elsewhere), or the store failed.
        reply: oneshot::Sender<Result<bool, ()>>,
    },
    GiveUp {
        person: String,
        token: String,
    },
    /// Answered once everything asked before it is done.
    Flush(oneshot::Sender<()>),
}

/// This process's leases: its name for them, and the task that takes,
/// renews and gives them up.
#[derive(Debug)]
pub(crate) struct Leases {
    process: String,
    taken: AtomicU64,
    requests: mpsc::UnboundedSender<Request>,
    /// The persons whose leases were found lost, for
    /// [`Provisioner::repair_lost_leases`] (taken by its one caller).
    lost: std::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

impl Leases {
    /// This process's leases on `db`: None on SQLite (one process).
    pub(crate) fn start(db: &Db) -> Option<Leases> {
        match db.backend() {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let process = uuid::Uuid::new_v4().simple().to_string();
                let (requests, received) = mpsc::unbounded_channel();
                let (lost, found_lost) = mpsc::unbounded_channel();
                tokio::spawn(keep(db.clone(), process.clone(), received, lost));
                Some(Leases {
                    process,
                    taken: AtomicU64::new(0),
                    requests,
                    lost: std::sync::Mutex::new(Some(found_lost)),
                })
            }
        }
    }

    /// Waits until the leases given up so far are given up in the store
    /// (before the process ends, so the persons it held need not wait for
    /// their expiry).
    pub(crate) async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.requests.send(Request::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }

    /// The persons whose leases are found lost, as they are; None once
    /// taken.
    pub(super) fn take_lost(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.lost.lock().ok()?.take()
    }

    /// Waits for `person`'s lease and takes it.
    async fn take(&self, person: &str) -> Lease {
        let n = self.taken.fetch_add(1, Ordering::Relaxed);
        let token = format!("{}:{n}", self.process);
        let mut waited = false;
        loop {
            let (reply, answer) = oneshot::channel();
            let asked = self.requests.send(Request::Take {
                person: person.to_owned(),
                token: token.clone(),
                reply,
            });
            let answer = match asked {
                Ok(()) => answer.await.unwrap_or(Err(())),
                Err(_) => Err(()),
            };
            match answer {
                Ok(true) => break,
                Ok(false) => {
                    if !waited {
                        metrics::counter!(LEASE_WAITS).increment(1);
                        waited = true;
                    }
                    tokio::time::sleep(WAIT).await;
                }
                Err(()) => {
                    tracing::warn!(person, "person's lease not taken; trying again");
                    tokio::time::sleep(STORE_WAIT).await;
                }
            }
        }
        Lease {
            person: person.to_owned(),
            token,
            requests: self.requests.clone(),
        }
    }
}

/// The leases' task: answers takes and give-ups in batches, and renews
/// the leases held; ends with the process's [`Leases`].
async fn keep(
    db: Db,
    process: String,
    mut requests: mpsc::UnboundedReceiver<Request>,
    lost: mpsc::UnboundedSender<String>,
) {
    let ttl_ms = i64::try_from(TTL.as_millis()).unwrap_or(i64::MAX);
    let mut held = Held {
        tokens: HashMap::new(),
        lost,
    };
    let mut renew = tokio::time::interval(RENEW_EVERY);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renewed_at = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = renew.tick() => {
                renew_held(&db, &mut held, ttl_ms, &mut renewed_at).await;
            }
            request = requests.recv() => {
                let Some(first) = request else { return };
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match requests.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                answer(&db, &process, batch, &mut held, ttl_ms).await;
            }
        }
    }
}

/// The leases this process holds (person → token), and where the ones
/// found lost are reported.
struct Held {
    tokens: HashMap<String, String>,
    lost: mpsc::UnboundedSender<String>,
}

impl Held {
    /// `persons`' leases were lost to another process while this one held
    /// them (found when renewing them `late` after the last renewal, or
    /// when giving them up): logged, counted, and the persons sent to be
    /// repaired.
    fn lost(&mut self, persons: Vec<String>, late: Option<Duration>) {
        if persons.is_empty() {
            return;
        }
        tracing::error!(
            lost = persons.len(),
            renewal_late_ms = late.map(|l| l.as_millis() as u64),
            "persons' leases lost to another process (this one stalled past their expiry); \
             their accounts are read again and their newest changes applied"
        );
        metrics::counter!(LEASES_LOST).increment(persons.len() as u64);
        for person in persons {
            self.tokens.remove(&person);
            let _ = self.lost.send(person);
        }
    }
}

/// Gives up, then takes, what `batch` asks.
async fn answer(db: &Db, process: &str, batch: Vec<Request>, held: &mut Held, ttl_ms: i64) {
    let (mut given_up, mut wanted, mut flushes) = (Vec::new(), Vec::new(), Vec::new());
    // The persons given up whose lease this process believed it held (not
    // an older token of a person its newer one took over).
    let mut believed = Vec::new();
    for request in batch {
        match request {
            Request::Flush(done) => flushes.push(done),
            Request::GiveUp { person, token } => {
                if held.tokens.get(&person) == Some(&token) {
                    held.tokens.remove(&person);
                    believed.push(person.clone());
                }
                given_up.push((person, token));
            }
            Request::Take {
                person,
                token,
                reply,
            } => wanted.push((person, token, reply)),
        }
    }
    if !given_up.is_empty() {
        let (persons, tokens): (Vec<String>, Vec<String>) = given_up.into_iter().unzip();
        match lease::give_up_all(db, &persons, &tokens).await {
            Ok(done) => {
                let lost = believed.into_iter().filter(|p| !done.contains(p)).collect();
                held.lost(lost, None);
            }
            Err(error) => {
                tracing::warn!(%error, leases = persons.len(), "leases not given up; they expire");
            }
        }
    }
    for done in flushes {
        let _ = done.send(());
    }
    if wanted.is_empty() {
        return;
    }
    let persons: Vec<String> = wanted.iter().map(|(p, _, _)| p.clone()).collect();
    let tokens: Vec<String> = wanted.iter().map(|(_, t, _)| t.clone()).collect();
    let taken = lease::take_all(db, process, &persons, &tokens, ttl_ms).await;
    if let Err(error) = &taken {
        tracing::warn!(%error, leases = persons.len(), "leases not taken");
    }
    for (person, token, reply) in wanted {
        let answer = match &taken {
            Ok(taken) if taken.contains(&person) => {
                held.tokens.insert(person, token);
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(_) => Err(()),
        };
        let _ = reply.send(answer);
    }
}

/// Renews every lease held; the ones lost (this process stalled past their
/// expiry and another one took them over) are reported.
async fn renew_held(db: &Db, held: &mut Held, ttl_ms: i64, renewed_at: &mut Instant) {
    if held.tokens.is_empty() {
        *renewed_at = Instant::now();
        return;
    }
    let (persons, tokens): (Vec<String>, Vec<String>) = held
        .tokens
        .iter()
        .map(|(p, t)| (p.clone(), t.clone()))
        .unzip();
    match lease::renew_all(db, &persons, &tokens, ttl_ms).await {
        Ok(renewed) => {
            let lost = persons
                .into_iter()
                .filter(|p| !renewed.contains(p))
                .collect();
            held.lost(lost, Some(renewed_at.elapsed()));
            *renewed_at = Instant::now();
        }
        Err(error) => tracing::warn!(%error, leases = persons.len(), "leases not renewed"),
    }
}

impl Provisioner {
    /// Holds `person` until the lock is dropped (see the module).
    pub(crate) async fn lock_person(&self, person: &PersonId) -> PersonLock<'_> {
        let local = self.lock_for(person).lock().await;
        let lease = match &self.leases {
            Some(leases) => Some(leases.take(person.as_str()).await),
            None => None,
        };
        PersonLock {
            _lease: lease,
            _local: local,
        }
    }
}
