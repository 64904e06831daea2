//! How far the running reconciliations are, for the admin API (and so the
//! console) to show while one runs: kept in memory by the process running
//! it, and written to the store about every second so every other process
//! shows it too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hrsync_store::Db;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::runs;

/// How often a running reconciliation writes its progress to the store.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Progress not written for this long is of a process that died mid-run:
/// not shown.
const FRESH_MS: i64 = 10_000;

/// What a running reconciliation is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading the app's accounts, the links and the persons.
    Reading,
    /// Classifying every account.
    Classifying,
    /// Applying the fixes.
    Fixing,
    /// Requesting and flushing group membership fixes.
    Memberships,
    /// Recording the run.
    Recording,
}

const PHASES: [Phase; 5] = [
    Phase::Reading,
    Phase::Classifying,
    Phase::Fixing,
    Phase::Memberships,
    Phase::Recording,
];

/// The counters of one running reconciliation, updated as it goes.
#[derive(Debug)]
pub(super) struct Progress {
    started_at: String,
    dry_run: bool,
    phase: AtomicU8,
    accounts_read: AtomicUsize,
    to_fix: AtomicUsize,
    fixed: AtomicUsize,
    failed: AtomicUsize,
}

impl Progress {
    pub(super) fn enter(&self, phase: Phase) {
        let index = PHASES.iter().position(|p| *p == phase).unwrap_or(0);
        self.phase
            .store(u8::try_from(index).unwrap_or(0), Ordering::Relaxed);
    }

    pub(super) fn read(&self, accounts: usize) {
        self.accounts_read.store(accounts, Ordering::Relaxed);
    }

    pub(super) fn will_fix(&self, fixes: usize) {
        self.to_fix.store(fixes, Ordering::Relaxed);
    }

    /// One fix done (`ok`) or failed.
    pub(super) fn fixed(&self, ok: bool) {
        let counter = if ok { &self.fixed } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn view(&self, app: &str) -> ProgressView {
        let phase = PHASES[usize::from(self.phase.load(Ordering::Relaxed)) % PHASES.len()];
        ProgressView {
            app: app.to_owned(),
            dry_run: self.dry_run,
            started_at: self.started_at.clone(),
            phase,
            accounts_read: self.accounts_read.load(Ordering::Relaxed),
            to_fix: self.to_fix.load(Ordering::Relaxed),
            fixed: self.fixed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// A running reconciliation as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressView {
    /// The app.
    pub app: String,
    /// Classifying only.
    pub dry_run: bool,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// What it is doing.
    pub phase: Phase,
    /// Accounts read from the app (known once reading is done).
    pub accounts_read: usize,
    /// Fixes to apply (known once classified; 0 in a dry run).
    pub to_fix: usize,
    /// Fixes applied so far.
    pub fixed: usize,
    /// Fixes failed so far.
    pub failed: usize,
}

/// The reconciliations running in this process, by app.
#[derive(Debug, Default)]
pub struct Running {
    apps: Mutex<HashMap<String, Arc<Progress>>>,
}

impl Running {
    /// The reconciliation of `app` running in this process, if any.
    pub fn of(&self, app: &str) -> Option<ProgressView> {
        let apps = self.apps.lock().ok()?;
        apps.get(app).map(|p| p.view(app))
    }

    /// Registers a run of `app`; it is listed until the guard is dropped
    /// (also when the run is cancelled).
    pub(super) fn start(&self, app: &str, dry_run: bool) -> Registered<'_> {
        let progress = Arc::new(Progress {
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            dry_run,
            phase: AtomicU8::new(0),
            accounts_read: AtomicUsize::new(0),
            to_fix: AtomicUsize::new(0),
            fixed: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        });
        if let Ok(mut apps) = self.apps.lock() {
            apps.insert(app.to_owned(), progress.clone());
        }
        Registered {
            running: self,
            app: app.to_owned(),
            progress,
        }
    }
}

/// A registered run; unlisted when dropped.
pub(super) struct Registered<'a> {
    running: &'a Running,
    app: String,
    pub(super) progress: Arc<Progress>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut apps) = self.running.apps.lock() {
            apps.remove(&self.app);
        }
    }
}

/// The progress of `app`'s reconciliation written by whichever process
/// runs it, if one does.
///
/// # Errors
/// Query failures.
pub(crate) async fn shared(db: &Db, app: &str) -> sqlx::Result<Option<ProgressView>> {
    let Some(json) = runs::progress(db, app, FRESH_MS).await? else {
        return Ok(None);
    };
    match serde_json::from_str(&json) {
        Ok(view) => Ok(Some(view)),
        Err(error) => {
            // Written by another version of hrsync: not shown.
            tracing::warn!(app, %error, "reconciliation progress in the store not understood");
            Ok(None)
        }
    }
}

/// Writes a run's progress to the store while it runs; deleted once
/// [`Published::end`] is called or it is dropped.
pub(super) struct Published {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// Starts writing `progress` of `app`'s run to the store, now and then
/// every [`PUBLISH_EVERY`].
pub(super) fn publish(db: &Db, app: &str, progress: Arc<Progress>) -> Published {
    let stop = CancellationToken::new();
    let (db, app, stopped) = (db.clone(), app.to_owned(), stop.clone());
    let task = tokio::spawn(async move {
        loop {
            // Strings and numbers only: serializing cannot fail.
            let json = serde_json::to_string(&progress.view(&app)).unwrap_or_default();
            if let Err(error) = runs::publish_progress(&db, &app, &json).await {
                tracing::debug!(app, %error, "reconciliation progress not written");
            }
            tokio::select! {
                () = stopped.cancelled() => break,
                () = tokio::time::sleep(PUBLISH_EVERY) => {}
            }
        }
        if let Err(error) = runs::end_progress(&db, &app).await {
            tracing::warn!(app, %error, "reconciliation progress not deleted; it goes stale");
        }
    });
    Published {
        stop,
        task: Some(task),
    }
}

impl Published {
    /// Stops writing and deletes the run's progress.
    pub(super) async fn end(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        // A run cancelled part way: its task deletes the progress.
        self.stop.cancel();
    }
}
