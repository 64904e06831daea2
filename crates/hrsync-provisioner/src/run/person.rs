//! One person's changes applied one at a time: within this process by a
//! striped mutex; across processes on one PostgreSQL store by the person's
//! lease (`provisioner_lease`), taken after the mutex, renewed while held
//! and given up when done. Whichever process and consumer (main topic or
//! priority lane) receives a person's changes, the version check and the
//! calls it decides run for one change at a time, so a deprovisioning
//! applied by one process cannot be undone by an older change another
//! process applies.
//!
//! A lease whose process died expires after [`TTL`]; the person's next
//! change then waits at most that long. Leases are taken only with
//! `provisioner.shared_store` (several processes) on PostgreSQL; SQLite
//! stores serve one provisioner process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hrsync_domain::PersonId;
use hrsync_store::{Backend, Db};
use tokio::sync::MutexGuard;
use tokio::task::JoinHandle;

use super::Provisioner;
use crate::store::lease;

/// How long a lease lasts unless renewed.
const TTL: Duration = Duration::from_secs(15);
/// How often a held lease is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often a lease held elsewhere is asked for again.
const WAIT: Duration = Duration::from_millis(20);
/// The wait after the store failed to answer.
const STORE_WAIT: Duration = Duration::from_millis(500);

/// Leases waited for because another process held them.
pub const LEASE_WAITS: &str = "hrsync_provisioner_lease_waits_total";

/// This process's name for its leases, and a count that makes each one
/// its own (a lease given up late never gives up a newer one).
#[derive(Debug)]
pub(crate) struct Holder {
    process: String,
    taken: AtomicU64,
}

impl Default for Holder {
    fn default() -> Self {
        Holder {
            process: uuid::Uuid::new_v4().simple().to_string(),
            taken: AtomicU64::new(0),
        }
    }
}

/// A person held: by this process's mutex and, on PostgreSQL, their lease.
pub(crate) struct PersonLock<'a> {
    _local: MutexGuard<'a, ()>,
    _lease: Option<Lease>,
}

/// A lease held, renewed in the background until dropped.
struct Lease {
    db: Db,
    person: String,
    token: String,
    renewing: JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewing.abort();
        let (db, person, token) = (self.db.clone(), self.person.clone(), self.token.clone());
        // Given up in the background (the token is this lease's own, so a
        // newer lease of the person is not touched); should that fail, it
        // expires.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = lease::give_up(&db, &person, &token).await {
                    tracing::warn!(%error, person, "lease not given up; it expires");
                }
            });
        }
    }
}

impl Provisioner {
    /// Holds `person` until the lock is dropped (see the module).
    pub(crate) async fn lock_person(&self, person: &PersonId) -> PersonLock<'_> {
        let local = self.lock_for(person).lock().await;
        let lease = match self.db.backend() {
            Backend::Postgres if self.shared_store => Some(self.take_lease(person.as_str()).await),
            Backend::Postgres | Backend::Sqlite => None,
        };
        PersonLock {
            _local: local,
            _lease: lease,
        }
    }

    /// Waits for `person`'s lease and takes it.
    async fn take_lease(&self, person: &str) -> Lease {
        let n = self.holder.taken.fetch_add(1, Ordering::Relaxed);
        let token = format!("{}:{n}", self.holder.process);
        let ttl_ms = i64::try_from(TTL.as_millis()).unwrap_or(i64::MAX);
        let mut waited = false;
        loop {
            match lease::take(&self.db, person, &token, ttl_ms).await {
                Ok(true) => break,
                Ok(false) => {
                    if !waited {
                        metrics::counter!(LEASE_WAITS).increment(1);
                        waited = true;
                    }
                    tokio::time::sleep(WAIT).await;
                }
                Err(error) => {
                    tracing::warn!(%error, person, "person's lease not taken; trying again");
                    tokio::time::sleep(STORE_WAIT).await;
                }
            }
        }
        let renewing = tokio::spawn({
            let (db, person, token) = (self.db.clone(), person.to_owned(), token.clone());
            async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    match lease::take(&db, &person, &token, ttl_ms).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::error!(person, "person's lease lost to another process (this one stalled past its expiry)");
                            return;
                        }
                        Err(error) => tracing::warn!(%error, person, "person's lease not renewed"),
                    }
                }
            }
        });
        Lease {
            db: self.db.clone(),
            person: person.to_owned(),
            token,
            renewing,
        }
    }
}
