//! App-wide reconciliation (`hrsync provisioner reconcile APP`, or on a
//! schedule per app): every account of one app is read and classified
//! against the desired state of every person the provisioner knows, and
//! fixed through the same path as any directory change.
//!
//! The desired state of a person is the newest directory change the
//! provisioner has seen for them (`provisioner_person`, kept for
//! `provision-now`): an account is wanted while the app is assigned and the
//! person is not deprovisioned, active while they are also active (as
//! [`crate::reconcile`] decides). Each account of the app is then one of:
//!
//! - **in sync**: linked, and its mapped attributes, `active` and group
//!   memberships are as desired;
//! - **drifted**: linked, but some of them differ (strings compared without
//!   regard to case where SCIM says so, and only the attributes the mapping
//!   manages);
//! - **unlinked match**: no link, but it matches an HR person by the app's
//!   match chain (the first of its attributes that matches anyone decides;
//!   without regard to case);
//! - **orphan**: no link, and no HR person matches it;
//! - **unknown**: linked to a person of whom no directory change is stored
//!   (links from before the provisioner kept them): nothing to compare with.
//!
//! and a person whose account is wanted but absent from the app is
//! **missing**.
//!
//! Fixes, in this order: unlinked matches are linked (then the person's
//! desired state is applied to the account); missing accounts are created;
//! drifted accounts are read back and the desired state applied again (the
//! path of `provision-now`: per-person lock, version checks, retries,
//! quarantine, deprovision guard, audit); orphans are deactivated when the
//! app's policy says so (`orphans = "deactivate"`; never deleted), each
//! through the deprovision guard. An orphan deactivation the guard holds
//! stays an orphan: the first reconciliation after `hrsync provisioner
//! release APP` deactivates it. Last, the joins and leaves of group
//! membership drift are requested of the app's group writer
//! ([`crate::groups`]) and flushed.
//!
//! The accounts of an app are read into memory in full
//! ([`ScimClient::list`]: `GET /Users?startIndex=&count=` page by page,
//! stopping at `totalResults` or at a page that brings no account not seen
//! before, so servers that answer the first page again past the end do not
//! loop).
//!
//! - `inputs`: what is read (accounts, links, persons, group members).
//! - `classify`: every account classified, with no I/O.
//! - `fix`: the fixes, through the provisioner's own paths.
//! - `report`: the findings, the report and its summary.
//! - `progress`: how far the runs are, in this process and in the store.
//! - `schedule`: reconciling each app on its schedule.

use std::collections::{BTreeMap, HashMap};

use hrsync_domain::DirectoryChange;
use hrsync_store::Db;
use serde::{Deserialize, Serialize};

use crate::reconcile::{App, ReconcileError};
use crate::run::Provisioner;
#[cfg(doc)]
use crate::scim::ScimClient;

mod classify;
mod fix;
mod inputs;
mod progress;
mod report;
mod schedule;

use classify::classify;
use fix::fix;
use inputs::gather;
pub(crate) use progress::shared as shared_progress;
use progress::Progress;
pub use progress::{Phase, ProgressView, Running};
pub use report::{Action, Class, Finding, FixResult, Report};
pub use schedule::scheduled;

/// Accounts per class found by the last reconciliation of an app (missing:
/// persons without their account).
const ACCOUNTS: &str = "hrsync_provisioner_reconcile_accounts";
/// Fixes made by reconciliations, by action and result.
const FIXES: &str = "hrsync_provisioner_reconcile_fixes_total";
/// When the last reconciliation of an app finished (Unix seconds).
const LAST_RUN: &str = "hrsync_provisioner_reconcile_last_run_timestamp_seconds";

/// What is done with an orphan, an account of the app no HR person matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrphanPolicy {
    /// Report it only.
    #[default]
    Report,
    /// Deactivate it (`active: false`) under the deprovision guard; never
    /// delete it.
    Deactivate,
}

impl OrphanPolicy {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            OrphanPolicy::Report => "report",
            OrphanPolicy::Deactivate => "deactivate",
        }
    }
}

/// What a scheduled reconciliation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconcileMode {
    /// Classify and fix.
    #[default]
    Fix,
    /// Classify only (a dry run): metrics and a log line, nothing changed.
    Report,
}

impl ReconcileMode {
    fn as_str(self) -> &'static str {
        match self {
            ReconcileMode::Fix => "fix",
            ReconcileMode::Report => "report",
        }
    }
}

/// How one reconciliation runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Classify only: nothing is changed in the app or the link store.
    pub dry_run: bool,
    /// What is done with orphans.
    pub orphans: OrphanPolicy,
    /// Fixes of different persons under way at once (each app's request
    /// limits still apply).
    pub fix_concurrency: usize,
}

impl Options {
    /// A run (`dry_run` or fixing) with `orphans` and 8 fixes at once.
    pub fn new(dry_run: bool, orphans: OrphanPolicy) -> Self {
        Options {
            dry_run,
            orphans,
            fix_concurrency: 8,
        }
    }
}

/// Reconciliation failures (a fix that fails is a finding's result, not
/// an error).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// No such app in the configuration.
    #[error("no app named {0:?} in [[provisioner.apps]]")]
    UnknownApp(String),
    /// Another process is reconciling the app.
    #[error(
        "another process is reconciling {0} now (it holds the claim `reconcile:{0}`); \
         try again once it is done"
    )]
    Busy(String),
    /// Reading the app or the store failed; retrying may help when the
    /// cause is retryable.
    #[error("reconciling {app}: {source}")]
    Read {
        /// The app.
        app: String,
        /// What failed.
        #[source]
        source: ReconcileError,
    },
}

/// The store role claimed while `app` is reconciled.
fn claim_role(app: &str) -> String {
    format!("reconcile:{app}")
}

/// Reconciles `app` once: claims it (one process at a time per app),
/// classifies every account, fixes what `options` allow, records the run
/// and sets the metrics.
///
/// # Errors
/// An unknown app, another process reconciling it, or a failure reading
/// the app or the store.
pub async fn reconcile_app(
    provisioner: &Provisioner,
    app: &str,
    options: &Options,
) -> Result<Report, SweepError> {
    let app = provisioner
        .apps()
        .iter()
        .find(|a| a.name == app)
        .ok_or_else(|| SweepError::UnknownApp(app.to_owned()))?;
    let store = |source: hrsync_store::Error| SweepError::Read {
        app: app.name.clone(),
        source: ReconcileError::Store(source),
    };
    let claim = provisioner
        .db
        .try_claim(&claim_role(&app.name))
        .await
        .map_err(store)?
        .ok_or_else(|| SweepError::Busy(app.name.clone()))?;
    let running = provisioner.reconciling.start(&app.name, options.dry_run);
    let published = progress::publish(&provisioner.db, &app.name, running.progress.clone());
    let report = sweep(provisioner, app, options, &running.progress).await;
    published.end().await;
    drop(running);
    claim.release().await;
    report
}

/// Reconciles `app`; the caller holds its claim.
async fn sweep(
    provisioner: &Provisioner,
    app: &App,
    options: &Options,
    progress: &Progress,
) -> Result<Report, SweepError> {
    let read = |source: ReconcileError| SweepError::Read {
        app: app.name.clone(),
        source,
    };
    let started = chrono::Utc::now();
    let db = &provisioner.db;
    let inputs = gather(db, app).await.map_err(read)?;
    progress.read(inputs.accounts.len());
    progress.enter(Phase::Classifying);
    let mut findings = classify(app, &inputs, options.orphans);
    tracing::info!(
        app = %app.name,
        accounts = inputs.accounts.len(),
        persons = inputs.persons.len(),
        dry_run = options.dry_run,
        "reconciliation: accounts classified"
    );
    if !options.dry_run {
        let changes: HashMap<&str, &DirectoryChange> = inputs
            .persons
            .iter()
            .map(|p| (p.change.person_id.as_str(), &p.change))
            .collect();
        progress.will_fix(findings.iter().filter(|f| f.action.fixes_one()).count());
        progress.enter(Phase::Fixing);
        fix(
            provisioner,
            app,
            &mut findings,
            &changes,
            options,
            started.timestamp_millis(),
            progress,
        )
        .await;
    }
    progress.enter(Phase::Recording);
    let mut counts: BTreeMap<Class, usize> = Class::ALL.iter().map(|c| (*c, 0)).collect();
    for finding in &findings {
        *counts.entry(finding.class).or_default() += 1;
    }
    let finished = chrono::Utc::now();
    for (class, count) in &counts {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        metrics::gauge!(ACCOUNTS, "app" => app.name.clone(), "class" => class.as_str())
            .set(*count as f64);
    }
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(LAST_RUN, "app" => app.name.clone())
        .set(finished.timestamp_millis() as f64 / 1000.0);
    let report = Report {
        app: app.name.clone(),
        dry_run: options.dry_run,
        orphans: options.orphans,
        started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished_at: finished.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        accounts_read: inputs.accounts.len(),
        persons: inputs.persons.len(),
        groups_read: inputs.memberships.as_ref().map_or(0, |m| m.groups),
        memberships_pending: inputs.memberships.as_ref().map_or(0, |m| m.pending),
        counts,
        findings,
    };
    let mode = if options.dry_run {
        ReconcileMode::Report
    } else {
        ReconcileMode::Fix
    };
    record_run(db, &app.name, mode, &report, started.timestamp_millis())
        .await
        .map_err(read)?;
    Ok(report)
}

/// Records the run of `app` in `mode`: the schedule counts from it.
async fn record_run(
    db: &Db,
    app: &str,
    mode: ReconcileMode,
    report: &Report,
    started_ms: i64,
) -> Result<(), ReconcileError> {
    let counts: BTreeMap<&str, usize> = report
        .counts
        .iter()
        .map(|(class, n)| (class.as_str(), *n))
        .collect();
    let counts = serde_json::to_string(&counts).unwrap_or_else(|_| "{}".to_owned());
    let run = crate::store::runs::Run {
        app,
        mode: mode.as_str(),
        started_ms,
        counts: &counts,
        failures: i64::try_from(report.failures()).unwrap_or(i64::MAX),
    };
    crate::store::runs::record(db, run).await?;
    Ok(())
}

/// When `app` was last reconciled in `mode` (ms since the epoch), if ever.
async fn last_run(db: &Db, app: &str, mode: ReconcileMode) -> Result<Option<i64>, ReconcileError> {
    Ok(crate::store::runs::last(db, app, mode.as_str()).await?)
}

#[cfg(test)]
mod tests;
