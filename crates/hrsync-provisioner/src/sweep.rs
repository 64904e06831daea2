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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hrsync_domain::{
    AuditOperation, AuditOutcome, DirectoryChange, LifecycleState, PersonId, ProvisioningAudit,
    Timestamp,
};
use hrsync_store::Db;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::config::ProvisionerConfig;
use crate::guard::Deactivation;
use crate::reconcile::{App, Operation, ReconcileError};
use crate::run::Provisioner;
#[cfg(doc)]
use crate::scim::ScimClient;
use crate::scim::ScimError;

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

/// The class of an account (or, for `Missing`, of a person).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Linked and as desired.
    InSync,
    /// Linked, but attributes, `active` or group memberships differ.
    Drifted,
    /// Not linked, but it matches an HR person.
    UnlinkedMatch,
    /// A person's wanted account is absent from the app.
    Missing,
    /// Not linked, and no HR person matches it.
    Orphan,
    /// Linked to a person of whom no directory change is stored.
    Unknown,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 6] = [
        Class::InSync,
        Class::Drifted,
        Class::UnlinkedMatch,
        Class::Missing,
        Class::Orphan,
        Class::Unknown,
    ];

    /// The metric label and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::InSync => "in_sync",
            Class::Drifted => "drifted",
            Class::UnlinkedMatch => "unlinked_match",
            Class::Missing => "missing",
            Class::Orphan => "orphan",
            Class::Unknown => "unknown",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Class::InSync => "in sync",
            Class::Drifted => "drifted",
            Class::UnlinkedMatch => "unlinked match",
            Class::Missing => "missing",
            Class::Orphan => "orphan",
            Class::Unknown => "unknown",
        }
    }
}

/// What a finding calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing.
    None,
    /// Link the account to its person, then apply the person's desired
    /// state to it.
    Link,
    /// Create the person's account (apply their desired state).
    Create,
    /// Read the account back and apply the person's desired state again.
    Reapply,
    /// Deactivate the orphan, under the deprovision guard.
    Deactivate,
    /// Request the account's missing joins and extra leaves of the app's
    /// group writer (only its group memberships differ).
    Memberships,
    /// Leave it as it is; the note says why.
    Report,
}

impl Action {
    fn would(self) -> &'static str {
        match self {
            Action::None => "nothing to do",
            Action::Link => "would link",
            Action::Create => "would create",
            Action::Reapply => "would re-apply",
            Action::Deactivate => "would deactivate",
            Action::Memberships => "would fix memberships",
            Action::Report => "reported only",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Action::None => "nothing to do",
            Action::Link => "linked",
            Action::Create => "created",
            Action::Reapply => "re-applied",
            Action::Deactivate => "deactivated",
            Action::Memberships => "memberships fixed",
            Action::Report => "reported only",
        }
    }
}

/// What a fix did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FixResult {
    /// Done; the operations sent.
    Done {
        /// Each operation, for people (`linked …`, `updated title`).
        operations: Vec<String>,
    },
    /// A deactivation was held by the deprovision guard.
    Held {
        /// The operations before the hold.
        operations: Vec<String>,
    },
    /// The app is quarantined: the change was parked until it answers.
    Parked,
    /// Not done, as the state changed meanwhile; the reason says how.
    Skipped {
        /// Why.
        reason: String,
    },
    /// It failed; the next reconciliation tries again.
    Failed {
        /// The error.
        error: String,
    },
}

/// One account of the app (or, for `missing`, one person), as classified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Its class.
    pub class: Class,
    /// The account's SCIM id (none for a missing account).
    pub account_id: Option<String>,
    /// The account's `userName` (for a missing one, the desired one).
    pub user_name: Option<String>,
    /// Whether the account is active in the app.
    pub active: Option<bool>,
    /// The HR person it belongs to, if any.
    pub person_id: Option<String>,
    /// Their HR employee id.
    pub employee_id: Option<String>,
    /// Attributes that differ from the desired state (`title`,
    /// `name.givenName`, `urn:…:User:department`, `active`, `groups`).
    pub differences: Vec<String>,
    /// Pushed groups the account should be in and is not.
    pub groups_to_join: Vec<String>,
    /// Pushed groups the account is in and should not be.
    pub groups_to_leave: Vec<String>,
    /// The person's link named this account, which is gone from the app.
    pub previous_account_id: Option<String>,
    /// What it calls for.
    pub action: Action,
    /// Why an account is left as it is, or what else to know.
    pub note: Option<String>,
    /// What the fix did (none in a dry run, or when nothing was to do).
    pub result: Option<FixResult>,
    /// The account's values on each path of the match chain.
    #[serde(skip)]
    keys: Vec<(usize, String)>,
}

impl Finding {
    fn new(class: Class, action: Action) -> Self {
        Finding {
            class,
            account_id: None,
            user_name: None,
            active: None,
            person_id: None,
            employee_id: None,
            differences: Vec::new(),
            groups_to_join: Vec::new(),
            groups_to_leave: Vec::new(),
            previous_account_id: None,
            action,
            note: None,
            result: None,
            keys: Vec::new(),
        }
    }

    fn of_account(mut self, account: &Value, app: &App) -> Self {
        self.account_id = account["id"].as_str().map(str::to_owned);
        self.user_name = account["userName"].as_str().map(str::to_owned);
        self.active = Some(active_of(account));
        self.keys = account_keys(app, account);
        self
    }

    fn of_person(mut self, person: &Person) -> Self {
        self.person_id = Some(person.change.person_id.as_str().to_owned());
        self.employee_id = Some(person.change.employee_id.as_str().to_owned());
        self
    }

    /// How it ended, for the summary: what was or would be done.
    fn outcome(&self, dry_run: bool) -> &'static str {
        match &self.result {
            _ if dry_run => self.action.would(),
            None => self.action.done(),
            Some(FixResult::Done { .. }) => self.action.done(),
            Some(FixResult::Held { .. }) => "held by the deprovision guard",
            Some(FixResult::Parked) => "parked (app quarantined)",
            Some(FixResult::Skipped { .. }) => "skipped (changed meanwhile)",
            Some(FixResult::Failed { .. }) => "FAILED",
        }
    }
}

/// The outcome of reconciling one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The app.
    pub app: String,
    /// Nothing was changed.
    pub dry_run: bool,
    /// The orphan policy applied.
    pub orphans: OrphanPolicy,
    /// When it began (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339).
    pub finished_at: String,
    /// Accounts read from the app.
    pub accounts_read: usize,
    /// Persons whose desired state is known.
    pub persons: usize,
    /// Pushed groups whose members were read (0 without `push_groups`).
    pub groups_read: usize,
    /// Membership requests the group writer had still to apply when the
    /// app was read (they show as drift until applied).
    pub memberships_pending: u64,
    /// Findings per class.
    pub counts: BTreeMap<Class, usize>,
    /// Every account (and missing account), in sync ones included.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Findings with a failed fix.
    pub fn failures(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| matches!(f.result, Some(FixResult::Failed { .. })))
            .count()
    }

    /// Findings whose fix the deprovision guard held.
    pub fn held(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| matches!(f.result, Some(FixResult::Held { .. })))
            .count()
    }

    /// The summary table for people: per class the count and what was (or
    /// would be) done.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "reconciliation of {}{}: {} account(s) read, {} person(s) known, {} group(s) read",
            self.app,
            if self.dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            },
            self.accounts_read,
            self.persons,
            self.groups_read,
        );
        let _ = writeln!(out, "{:<16} {:>7}  action", "class", "count");
        for class in Class::ALL {
            let findings: Vec<&Finding> =
                self.findings.iter().filter(|f| f.class == class).collect();
            let mut outcomes: Vec<(&str, usize)> = Vec::new();
            for finding in &findings {
                let outcome = finding.outcome(self.dry_run);
                match outcomes.iter_mut().find(|(o, _)| *o == outcome) {
                    Some((_, n)) => *n += 1,
                    None => outcomes.push((outcome, 1)),
                }
            }
            let actions = if outcomes.is_empty() {
                "-".to_owned()
            } else {
                outcomes
                    .iter()
                    .map(|(o, n)| format!("{o} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "{:<16} {:>7}  {actions}",
                class.label(),
                findings.len()
            );
        }
        let orphans_reported = self
            .findings
            .iter()
            .any(|f| f.class == Class::Orphan && f.action == Action::Report);
        if orphans_reported {
            let _ = writeln!(
                out,
                "orphans = \"{}\": orphans are reported, not deactivated",
                self.orphans.as_str()
            );
        }
        let membership_drift = self
            .findings
            .iter()
            .filter(|f| !f.groups_to_join.is_empty() || !f.groups_to_leave.is_empty())
            .count();
        if membership_drift > 0 {
            let _ = writeln!(
                out,
                "{membership_drift} account(s) with group membership drift (see groups_to_join \
                 and groups_to_leave in the report)"
            );
        }
        if self.memberships_pending > 0 {
            let _ = writeln!(
                out,
                "{} membership request(s) were still pending with the group writer",
                self.memberships_pending
            );
        }
        let held = self.held();
        if held > 0 {
            let _ = writeln!(
                out,
                "{held} deactivation(s) held by the deprovision guard of {app}: \
                 `hrsync provisioner release {app}` lets the held changes through; held orphans \
                 are deactivated by the first reconciliation after it",
                app = self.app
            );
        }
        let failed = self.failures();
        if failed > 0 {
            let _ = writeln!(
                out,
                "{failed} fix(es) failed (see the report's `result.error`); the next \
                 reconciliation tries them again"
            );
        }
        out
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
    let report = sweep(provisioner, app, options).await;
    claim.release().await;
    report
}

/// Reconciles `app`; the caller holds its claim.
async fn sweep(
    provisioner: &Provisioner,
    app: &App,
    options: &Options,
) -> Result<Report, SweepError> {
    let read = |source: ReconcileError| SweepError::Read {
        app: app.name.clone(),
        source,
    };
    let started = chrono::Utc::now();
    let db = &provisioner.db;
    let inputs = gather(db, app).await.map_err(read)?;
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
        fix(
            provisioner,
            app,
            &mut findings,
            &changes,
            options,
            started.timestamp_millis(),
        )
        .await;
    }
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

/// What the classification works from.
#[derive(Debug, Default)]
struct Inputs {
    /// Every account of the app.
    accounts: Vec<Value>,
    /// The app's links with an account: (person id, SCIM id).
    links: Vec<(String, String)>,
    /// Every person whose desired state is known.
    persons: Vec<Person>,
    /// Members of the pushed groups, when the app pushes groups.
    memberships: Option<Memberships>,
}

/// One person's desired state in the app.
#[derive(Debug, Clone)]
struct Person {
    change: DirectoryChange,
    /// An account is wanted (assigned, not deprovisioned).
    wanted: bool,
    /// It is wanted active.
    active: bool,
    /// The SCIM user wanted.
    desired: Value,
    /// Top-level attributes whose mapping failed (left as they are).
    failed: Vec<String>,
    /// Groups the account should be in (when groups are pushed).
    groups: BTreeSet<String>,
    /// The desired user's key on each path of the match chain.
    keys: Vec<(usize, String)>,
}

impl Person {
    fn new(app: &App, change: DirectoryChange, manager: Option<&str>) -> Self {
        let assigned = change.apps.iter().any(|a| a.app == app.name);
        let active = assigned && change.lifecycle_state == LifecycleState::Active;
        let wanted = assigned && change.lifecycle_state != LifecycleState::Deprovisioned;
        let (desired, errors) = app.mapping.user(&change, &app.name, active, manager);
        let groups = if wanted && app.push_groups {
            crate::reconcile::assigned_groups(app, &change)
        } else {
            BTreeSet::new()
        };
        Person {
            keys: person_keys(app, &desired),
            failed: errors.into_iter().map(|e| e.top_key).collect(),
            change,
            wanted,
            active,
            desired,
            groups,
        }
    }
}

/// The members of an app's pushed groups.
#[derive(Debug, Clone, Default)]
struct Memberships {
    /// Groups read.
    groups: usize,
    /// Requests pending with the group writer.
    pending: u64,
    /// The pushed groups (by name) each account is in.
    of: HashMap<String, BTreeSet<String>>,
}

/// Reads the app's accounts, the links, the persons' desired states and
/// the pushed groups' members.
async fn gather(db: &Db, app: &App) -> Result<Inputs, ReconcileError> {
    let scim = |source: ScimError| ReconcileError::Scim {
        app: app.name.clone(),
        source: Box::new(source),
    };
    let mut accounts = app
        .client
        .list("Users", None, usize::MAX)
        .await
        .map_err(scim)?;
    let rows = sqlx::query(
        "SELECT person_id, scim_id, employee_id FROM provisioner_link \
         WHERE app = $1 AND scim_id <> ''",
    )
    .bind(&app.name)
    .fetch_all(db.pool())
    .await?;
    let mut links = Vec::with_capacity(rows.len());
    let mut managers: HashMap<String, String> = HashMap::new();
    for row in rows {
        let person: String = row.try_get(0)?;
        let scim_id: String = row.try_get(1)?;
        if let Some(employee) = row.try_get::<Option<String>, _>(2)? {
            managers.insert(employee, scim_id.clone());
        }
        links.push((person, scim_id));
    }
    // A linked account the listing did not show (created or changed while
    // the pages were read) is asked for by id before it counts as missing.
    let listed: HashSet<String> = accounts
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_owned))
        .collect();
    for (_, scim_id) in &links {
        if !listed.contains(scim_id) {
            if let Some(account) = app.client.get("Users", scim_id).await.map_err(scim)? {
                accounts.push(account);
            }
        }
    }
    let persons = persons(db, app, &managers).await?;
    let memberships = if app.push_groups {
        Some(memberships(db, app).await?)
    } else {
        None
    };
    Ok(Inputs {
        accounts,
        links,
        persons,
        memberships,
    })
}

/// Every person's desired state in `app`, the enterprise `manager` as the
/// manager's linked account (`managers`: employee id to SCIM id).
async fn persons(
    db: &Db,
    app: &App,
    managers: &HashMap<String, String>,
) -> Result<Vec<Person>, ReconcileError> {
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM provisioner_person")
        .fetch_all(db.pool())
        .await?;
    Ok(decode_persons(app, &payloads, managers))
}

fn decode_persons(
    app: &App,
    payloads: &[Vec<u8>],
    managers: &HashMap<String, String>,
) -> Vec<Person> {
    let mut failed_mappings = 0usize;
    let persons = payloads
        .iter()
        .filter_map(|p| match hrsync_schema::decode_directory_change(p) {
            Ok(change) => Some(change),
            Err(error) => {
                tracing::error!(app = %app.name, %error, "a stored directory change no longer decodes; its person is left out of the reconciliation");
                None
            }
        })
        .map(|change| {
            let manager = change
                .profile
                .attributes
                .manager_id
                .as_ref()
                .and_then(|m| managers.get(m.as_str()))
                .map(String::as_str);
            let person = Person::new(app, change, manager);
            failed_mappings += usize::from(!person.failed.is_empty());
            person
        })
        .collect();
    if failed_mappings > 0 {
        tracing::warn!(app = %app.name, persons = failed_mappings, "attribute mappings failed for some persons; those attributes are not compared");
    }
    persons
}

/// Reads the members of every group pushed to `app`. A group gone from
/// the app has no members.
async fn memberships(db: &Db, app: &App) -> Result<Memberships, ReconcileError> {
    let groups: Vec<(String, String)> =
        sqlx::query_as("SELECT name, scim_id FROM provisioner_group WHERE app = $1")
            .bind(&app.name)
            .fetch_all(db.pool())
            .await?;
    let mut memberships = Memberships {
        groups: groups.len(),
        pending: crate::groups::pending(db, &app.name).await?,
        of: HashMap::new(),
    };
    for (name, id) in groups {
        let group = app
            .client
            .get("Groups", &id)
            .await
            .map_err(|source| ReconcileError::Scim {
                app: app.name.clone(),
                source: Box::new(source),
            })?;
        let members = group
            .as_ref()
            .and_then(|g| g.get("members"))
            .and_then(Value::as_array);
        for member in members.into_iter().flatten() {
            if let Some(account) = member.get("value").and_then(Value::as_str) {
                memberships
                    .of
                    .entry(account.to_owned())
                    .or_default()
                    .insert(name.clone());
            }
        }
    }
    Ok(memberships)
}

/// A person's keys: on each path of the app's match chain, the value of
/// the desired user there, without regard to case. With
/// [`account_keys`], the one place that decides what matches.
fn person_keys(app: &App, desired: &Value) -> Vec<(usize, String)> {
    app.match_chain
        .paths()
        .iter()
        .enumerate()
        .filter_map(|(i, path)| path.key(desired).map(|key| (i, key.to_lowercase())))
        .collect()
}

/// An account's values on each path of the app's match chain, without
/// regard to case.
fn account_keys(app: &App, account: &Value) -> Vec<(usize, String)> {
    app.match_chain
        .paths()
        .iter()
        .enumerate()
        .flat_map(|(i, path)| {
            path.values(account)
                .into_iter()
                .map(move |value| (i, value.to_lowercase()))
        })
        .collect()
}

/// An account's `active` flag: a boolean, or the string `"true"`/`"false"`
/// in any case; absent means active (RFC 7643's default).
fn active_of(account: &Value) -> bool {
    match account.get("active") {
        Some(Value::Bool(active)) => *active,
        Some(Value::String(s)) => !s.trim().eq_ignore_ascii_case("false"),
        _ => true,
    }
}

/// Classifies every account of `inputs` and every person without one.
fn classify(app: &App, inputs: &Inputs, orphans: OrphanPolicy) -> Vec<Finding> {
    let managed = app.mapping.managed();
    let persons: HashMap<&str, &Person> = inputs
        .persons
        .iter()
        .map(|p| (p.change.person_id.as_str(), p))
        .collect();
    let linked_account: HashMap<&str, &str> = inputs
        .links
        .iter()
        .map(|(person, id)| (id.as_str(), person.as_str()))
        .collect();
    let link_of: HashMap<&str, &str> = inputs
        .links
        .iter()
        .map(|(person, id)| (person.as_str(), id.as_str()))
        .collect();
    let present: HashSet<&str> = inputs
        .accounts
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    let mut by_key: HashMap<(usize, &str), Vec<&Person>> = HashMap::new();
    for person in &inputs.persons {
        for (path, key) in &person.keys {
            by_key
                .entry((*path, key.as_str()))
                .or_default()
                .push(person);
        }
    }
    // The persons an account matches: by the first path of the chain by
    // which it matches anyone, as linking would find it.
    let matching = |account: &Value| -> (Vec<&Person>, String) {
        let keys = account_keys(app, account);
        for (i, path) in app.match_chain.paths().iter().enumerate() {
            let mut persons: Vec<&Person> = keys
                .iter()
                .filter(|(p, _)| *p == i)
                .filter_map(|(_, key)| by_key.get(&(i, key.as_str())))
                .flatten()
                .copied()
                .collect();
            persons.sort_by_key(|p| p.change.person_id.as_str());
            persons.dedup_by_key(|p| p.change.person_id.as_str());
            if !persons.is_empty() {
                return (persons, path.to_string());
            }
        }
        (Vec::new(), String::new())
    };
    let groups_of = |account: &Value, person: &Person| -> (Vec<String>, Vec<String>) {
        let Some(memberships) = &inputs.memberships else {
            return (Vec::new(), Vec::new());
        };
        let empty = BTreeSet::new();
        let actual = account["id"]
            .as_str()
            .and_then(|id| memberships.of.get(id))
            .unwrap_or(&empty);
        (
            person.groups.difference(actual).cloned().collect(),
            actual.difference(&person.groups).cloned().collect(),
        )
    };
    let compare = |account: &Value, person: &Person, finding: &mut Finding| {
        if person.wanted {
            finding.differences = differences(&person.desired, account, &managed, &person.failed);
        }
        if active_of(account) != person.active {
            finding.differences.push("active".to_owned());
        }
        finding.differences.sort();
        let (join, leave) = groups_of(account, person);
        finding.groups_to_join = join;
        finding.groups_to_leave = leave;
    };

    let mut findings = Vec::new();
    // The persons an unlinked account is reported or linked for (not
    // missing: creating theirs would link that account).
    let mut accounted: HashSet<&str> = HashSet::new();
    // Unlinked accounts matching exactly one person, by person.
    let mut candidates: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for account in &inputs.accounts {
        let id = account["id"].as_str().unwrap_or_default();
        if let Some(person_id) = linked_account.get(id) {
            let Some(person) = persons.get(person_id) else {
                let mut finding =
                    Finding::new(Class::Unknown, Action::None).of_account(account, app);
                finding.person_id = Some((*person_id).to_owned());
                finding.note = Some(
                    "linked, but no directory change of this person is stored: nothing to \
                     compare with until their next change"
                        .to_owned(),
                );
                findings.push(finding);
                continue;
            };
            let mut finding = Finding::new(Class::InSync, Action::None)
                .of_account(account, app)
                .of_person(person);
            compare(account, person, &mut finding);
            if !finding.differences.is_empty() {
                finding.class = Class::Drifted;
                finding.action = Action::Reapply;
            }
            if !finding.groups_to_join.is_empty() || !finding.groups_to_leave.is_empty() {
                finding.class = Class::Drifted;
                finding.differences.push("groups".to_owned());
                if finding.action == Action::None {
                    finding.action = Action::Memberships;
                }
            }
            findings.push(finding);
            continue;
        }
        let (matching, path) = matching(account);
        match matching.as_slice() {
            [] => {
                let active = active_of(account);
                let action = match (active, orphans) {
                    (false, _) => Action::None,
                    (true, OrphanPolicy::Deactivate) => Action::Deactivate,
                    (true, OrphanPolicy::Report) => Action::Report,
                };
                let mut finding = Finding::new(Class::Orphan, action).of_account(account, app);
                if action == Action::Report {
                    finding.note = Some(format!(
                        "no HR person matches it; left active under orphans = \"{}\"",
                        orphans.as_str()
                    ));
                }
                findings.push(finding);
            }
            [person] => candidates
                .entry(person.change.person_id.as_str())
                .or_default()
                .push(account),
            several => {
                accounted.extend(several.iter().map(|p| p.change.person_id.as_str()));
                let mut finding =
                    Finding::new(Class::UnlinkedMatch, Action::Report).of_account(account, app);
                finding.note = Some(format!(
                    "{} HR persons match it by {path} ({}): not linked; resolve the duplicate in HR",
                    several.len(),
                    several
                        .iter()
                        .map(|p| p.change.employee_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                findings.push(finding);
            }
        }
    }
    for (person_id, accounts) in candidates {
        let Some(person) = persons.get(person_id) else {
            continue;
        };
        accounted.insert(person_id);
        let linked = link_of.get(person_id).copied();
        let linked_present = linked.filter(|id| present.contains(id));
        for account in &accounts {
            let mut finding = Finding::new(Class::UnlinkedMatch, Action::Link)
                .of_account(account, app)
                .of_person(person);
            compare(account, person, &mut finding);
            if let Some(linked) = linked_present {
                finding.action = Action::Report;
                finding.note = Some(format!(
                    "a duplicate: the person is linked to account {linked}; not linked"
                ));
            } else if accounts.len() > 1 {
                finding.action = Action::Report;
                finding.note = Some(format!(
                    "{} accounts match this person (by {}): none linked; resolve the duplicates \
                     in the app",
                    accounts.len(),
                    app.match_chain
                ));
            } else if !person.wanted && active_of(account) && orphans == OrphanPolicy::Report {
                finding.action = Action::Report;
                finding.note = Some(format!(
                    "no account is wanted for this person ({}), so linking would deactivate \
                     it: left as it is under orphans = \"report\"",
                    person.change.lifecycle_state
                ));
            } else {
                finding.previous_account_id = linked.map(str::to_owned);
            }
            findings.push(finding);
        }
    }
    for person in &inputs.persons {
        let person_id = person.change.person_id.as_str();
        let has_account = link_of
            .get(person_id)
            .is_some_and(|id| present.contains(id));
        if !person.wanted || has_account || accounted.contains(person_id) {
            continue;
        }
        let mut finding = Finding::new(Class::Missing, Action::Create).of_person(person);
        finding.user_name = person.desired["userName"].as_str().map(str::to_owned);
        finding.previous_account_id = link_of.get(person_id).map(|id| (*id).to_owned());
        finding.groups_to_join = person.groups.iter().cloned().collect();
        findings.push(finding);
    }
    findings
}

/// The attributes in which `account` differs from `desired`: every
/// attribute of `desired` (but `schemas` and `active`) must be in the
/// account, and every attribute the mapping manages (`managed`) that
/// `desired` leaves out, unless its mapping `failed`, must be absent from
/// it. Complex values are compared by the sub-attributes `desired` has (a
/// server may add its own, such as `name.formatted`), multi-valued ones as
/// sets of such values; strings without regard to case, but for `id`s,
/// `externalId` and references (`manager.value`), which SCIM compares
/// exactly.
fn differences(
    desired: &Value,
    account: &Value,
    managed: &BTreeSet<String>,
    failed: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    let Some(desired) = desired.as_object() else {
        return out;
    };
    for (key, value) in desired {
        match (key.as_str(), value, account.get(key)) {
            ("schemas" | "active", _, _) => {}
            // An extension's attributes are named `URN:attribute`, as in
            // the mapping.
            (urn, Value::Object(fields), Some(Value::Object(actual)))
                if urn.starts_with("urn:") =>
            {
                for (name, value) in fields {
                    diff(&format!("{urn}:{name}"), value, actual.get(name), &mut out);
                }
            }
            _ => diff(key, value, account.get(key), &mut out),
        }
    }
    for key in managed {
        let present = account.get(key).is_some_and(|v| !is_empty(v));
        if !desired.contains_key(key) && !failed.contains(key) && present {
            out.push(key.clone());
        }
    }
    out.sort();
    out
}

fn diff(path: &str, desired: &Value, actual: Option<&Value>, out: &mut Vec<String>) {
    match (desired, actual) {
        (Value::Object(fields), Some(Value::Object(actual))) => {
            for (key, value) in fields {
                diff(&format!("{path}.{key}"), value, actual.get(key), out);
            }
        }
        _ if !covers(path, desired, actual) => out.push(path.to_owned()),
        _ => {}
    }
}

/// Whether `actual` holds `desired` (see [`differences`]).
fn covers(path: &str, desired: &Value, actual: Option<&Value>) -> bool {
    match (desired, actual) {
        (d, None | Some(Value::Null)) => is_empty(d),
        (Value::Object(fields), Some(Value::Object(_))) => fields
            .iter()
            .all(|(k, v)| covers(&format!("{path}.{k}"), v, actual.and_then(|a| a.get(k)))),
        (Value::Array(wanted), Some(Value::Array(have))) => {
            wanted.len() == have.len()
                && wanted
                    .iter()
                    .all(|w| have.iter().any(|h| covers(path, w, Some(h))))
        }
        (Value::String(d), Some(Value::String(a))) => {
            if case_exact(path) {
                d == a
            } else {
                d.to_lowercase() == a.to_lowercase()
            }
        }
        (Value::Bool(d), Some(Value::String(a))) => a.eq_ignore_ascii_case(&d.to_string()),
        (Value::Number(d), Some(Value::Number(a))) => d.as_f64() == a.as_f64(),
        (d, Some(a)) => d == a,
    }
}

/// Attributes SCIM compares exactly (`caseExact`): ids, `externalId`, and
/// references to other resources.
fn case_exact(path: &str) -> bool {
    let leaf = path.rsplit(['.', ':']).next().unwrap_or(path);
    leaf == "externalId" || leaf == "id" || path.ends_with("manager.value") || leaf == "$ref"
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
        _ => false,
    }
}

/// Applies the fixes the findings call for, kind by kind (links, creates,
/// re-applies, deactivations), up to `fix_concurrency` at once.
async fn fix(
    provisioner: &Provisioner,
    app: &App,
    findings: &mut [Finding],
    changes: &HashMap<&str, &DirectoryChange>,
    options: &Options,
    started_ms: i64,
) {
    // Orphans whose person reached the provisioner while the app was read
    // are not orphans: left for the next reconciliation.
    let arrived = arrived_since(&provisioner.db, app, started_ms).await;
    for action in [
        Action::Link,
        Action::Create,
        Action::Reapply,
        Action::Deactivate,
    ] {
        let work: Vec<(usize, Finding)> = findings
            .iter()
            .enumerate()
            .filter(|(_, f)| f.action == action)
            .map(|(i, f)| (i, f.clone()))
            .collect();
        let arrived = &arrived;
        let results: Vec<(usize, FixResult)> = futures::stream::iter(work)
            .map(|(i, finding)| async move {
                let result = match action {
                    Action::Link => link(provisioner, app, &finding, changes).await,
                    Action::Create | Action::Reapply => {
                        provision(provisioner, app, finding.person_id.as_deref()).await
                    }
                    Action::Deactivate => match arrived {
                        Err(error) => FixResult::Skipped {
                            reason: format!(
                                "persons that arrived meanwhile could not be read: {error}"
                            ),
                        },
                        Ok(keys) if is_claimed(&finding, keys) => FixResult::Skipped {
                            reason: "an HR person matching it reached the provisioner \
                                     meanwhile"
                                .to_owned(),
                        },
                        Ok(_) => deactivate_orphan(provisioner, app, &finding).await,
                    },
                    Action::None | Action::Memberships | Action::Report => return (i, None),
                };
                let outcome = match &result {
                    FixResult::Done { .. } => "done",
                    FixResult::Held { .. } => "held",
                    FixResult::Parked => "parked",
                    FixResult::Skipped { .. } => "skipped",
                    FixResult::Failed { .. } => "failed",
                };
                count_fix(app, action, outcome);
                (i, Some(result))
            })
            .buffer_unordered(options.fix_concurrency.max(1))
            .filter_map(|(i, result)| async move { result.map(|r| (i, r)) })
            .collect()
            .await;
        for (i, result) in results {
            findings[i].result = Some(result);
        }
    }
    fix_memberships(provisioner, app, findings, changes).await;
}

/// Requests the membership drift of every linked account whose other fixes
/// (if any) were done of the app's group writer, each under its person's
/// lock and only while the person's newest change is the one classified
/// against; then flushes the writer (or, when another process writes this
/// app's groups, leaves them to it).
async fn fix_memberships(
    provisioner: &Provisioner,
    app: &App,
    findings: &mut [Finding],
    changes: &HashMap<&str, &DirectoryChange>,
) {
    let db = &provisioner.db;
    let mut requested = Vec::new();
    for (i, finding) in findings.iter_mut().enumerate() {
        let eligible = matches!(
            (&finding.result, finding.action),
            (None, Action::Memberships)
                | (Some(FixResult::Done { .. }), Action::Reapply | Action::Link)
        );
        let (Some(person_id), Some(account_id)) = (&finding.person_id, &finding.account_id) else {
            continue;
        };
        let drift = !finding.groups_to_join.is_empty() || !finding.groups_to_leave.is_empty();
        let Some(change) = changes
            .get(person_id.as_str())
            .filter(|_| eligible && drift)
        else {
            continue;
        };
        let memberships: Vec<crate::groups::Membership> = finding
            .groups_to_join
            .iter()
            .map(|g| (g, true))
            .chain(finding.groups_to_leave.iter().map(|g| (g, false)))
            .map(|(group, member)| crate::groups::Membership {
                group: group.clone(),
                person_id: person_id.clone(),
                member_id: account_id.clone(),
                member,
            })
            .collect();
        let outcome = {
            let _person = provisioner.lock_for(&change.person_id).lock().await;
            match newest_version(db, person_id).await {
                Ok(Some(version)) if u64::try_from(version).ok() == Some(change.version) => {
                    crate::groups::request(db, &app.name, &memberships)
                        .await
                        .map(|()| true)
                }
                Ok(_) => Ok(false),
                Err(error) => Err(error),
            }
        };
        match outcome {
            Ok(true) => requested.push(i),
            Ok(false) if finding.action == Action::Memberships => {
                finding.result = Some(FixResult::Skipped {
                    reason: "a newer change of the person arrived; it brings the memberships"
                        .to_owned(),
                });
            }
            Ok(false) => {}
            Err(error) => {
                finding.result = Some(FixResult::Failed {
                    error: format!("group memberships: {error}"),
                });
            }
        }
    }
    if requested.is_empty() {
        return;
    }
    let flushed = app.flush_groups(db).await;
    let refused = match &flushed {
        Ok(true) => crate::groups::refused(db, &app.name)
            .await
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    for i in requested {
        let finding = &mut findings[i];
        let groups = format!(
            "join [{}], leave [{}]",
            finding.groups_to_join.join(", "),
            finding.groups_to_leave.join(", ")
        );
        let refusals: Vec<String> = refused
            .iter()
            .filter(|(group, member, _)| {
                finding.account_id.as_ref() == Some(member)
                    && (finding.groups_to_join.contains(group)
                        || finding.groups_to_leave.contains(group))
            })
            .map(|(group, _, error)| format!("{group}: {error}"))
            .collect();
        let operation = match &flushed {
            Err(error) => {
                finding.result = Some(FixResult::Failed {
                    error: format!("group memberships ({groups}): {error}"),
                });
                count_fix(app, Action::Memberships, "failed");
                continue;
            }
            Ok(_) if !refusals.is_empty() => {
                finding.result = Some(FixResult::Failed {
                    error: format!("the app refused: {}", refusals.join("; ")),
                });
                count_fix(app, Action::Memberships, "failed");
                continue;
            }
            Ok(true) => format!("groups: {groups}"),
            Ok(false) => format!(
                "groups requested: {groups} (applied by the process that writes this app's groups)"
            ),
        };
        count_fix(app, Action::Memberships, "done");
        match &mut finding.result {
            Some(FixResult::Done { operations }) => operations.push(operation),
            _ => {
                finding.result = Some(FixResult::Done {
                    operations: vec![operation],
                });
            }
        }
    }
}

fn count_fix(app: &App, action: Action, outcome: &'static str) {
    metrics::counter!(FIXES, "app" => app.name.clone(), "action" => action.done(), "outcome" => outcome)
        .increment(1);
}

/// The version of the newest change stored for `person_id`.
async fn newest_version(db: &Db, person_id: &str) -> Result<Option<i64>, ReconcileError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM provisioner_person WHERE person_id = $1")
            .bind(person_id)
            .fetch_optional(db.pool())
            .await?,
    )
}

/// The match keys of the persons whose newest change reached the
/// provisioner since `started_ms`.
async fn arrived_since(
    db: &Db,
    app: &App,
    started_ms: i64,
) -> Result<HashSet<(usize, String)>, ReconcileError> {
    let payloads: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT payload FROM provisioner_person WHERE seen_at_ms >= $1")
            .bind(started_ms)
            .fetch_all(db.pool())
            .await?;
    Ok(decode_persons(app, &payloads, &HashMap::new())
        .into_iter()
        .flat_map(|p| p.keys)
        .collect())
}

fn is_claimed(finding: &Finding, keys: &HashSet<(usize, String)>) -> bool {
    finding.keys.iter().any(|k| keys.contains(k))
}

/// Links the finding's account to its person, unless the person got
/// another account meanwhile, then applies their desired state to it.
async fn link(
    provisioner: &Provisioner,
    app: &App,
    finding: &Finding,
    changes: &HashMap<&str, &DirectoryChange>,
) -> FixResult {
    let (Some(person_id), Some(account_id)) = (&finding.person_id, &finding.account_id) else {
        return FixResult::Skipped {
            reason: "no person or account to link".to_owned(),
        };
    };
    let Some(change) = changes.get(person_id.as_str()) else {
        return FixResult::Skipped {
            reason: "the person's change is gone".to_owned(),
        };
    };
    let linked = {
        let _person = provisioner.lock_for(&change.person_id).lock().await;
        write_link(
            &provisioner.db,
            &app.name,
            change,
            account_id,
            finding.active.unwrap_or(true),
            finding.previous_account_id.as_deref().unwrap_or_default(),
        )
        .await
    };
    match linked {
        Err(error) => {
            return FixResult::Failed {
                error: error.to_string(),
            }
        }
        Ok(false) => {
            return FixResult::Skipped {
                reason: "the person was linked to an account meanwhile".to_owned(),
            }
        }
        Ok(true) => {}
    }
    let op = Operation::Linked {
        scim_id: account_id.clone(),
    };
    provisioner
        .audit_ops(app, change, std::slice::from_ref(&op), Duration::ZERO, 1)
        .await;
    match provision(provisioner, app, Some(person_id)).await {
        FixResult::Done { mut operations } => {
            operations.insert(0, describe(&op));
            FixResult::Done { operations }
        }
        FixResult::Held { mut operations } => {
            operations.insert(0, describe(&op));
            FixResult::Held { operations }
        }
        other => other,
    }
}

/// Links (person, app) to account `scim_id` if its link has no account,
/// or still names `previous` (an account gone from the app). The version
/// applied stays, so the person's newest change is applied next. Returns
/// whether it linked.
async fn write_link(
    db: &Db,
    app: &str,
    change: &DirectoryChange,
    scim_id: &str,
    active: bool,
    previous: &str,
) -> Result<bool, ReconcileError> {
    let done = sqlx::query(
        "INSERT INTO provisioner_link (person_id, app, scim_id, applied_version, applied, active, \
         groups, status, last_error, updated_at_ms, employee_id) \
         VALUES ($1, $2, $3, 0, 'null', $4, '[]', 'ok', NULL, $5, $6) \
         ON CONFLICT (person_id, app) DO UPDATE SET scim_id = excluded.scim_id, \
         applied = excluded.applied, active = excluded.active, groups = excluded.groups, \
         status = 'ok', last_error = NULL, updated_at_ms = excluded.updated_at_ms, \
         employee_id = excluded.employee_id \
         WHERE provisioner_link.scim_id = '' OR provisioner_link.scim_id = $7",
    )
    .bind(change.person_id.as_str())
    .bind(app)
    .bind(scim_id)
    .bind(i64::from(active))
    .bind(chrono::Utc::now().timestamp_millis())
    .bind(change.employee_id.as_str())
    .bind(previous)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Applies the person's newest desired state to the app now, each account
/// read back first (`provision-now`).
async fn provision(provisioner: &Provisioner, app: &App, person_id: Option<&str>) -> FixResult {
    let Some(person_id) = person_id else {
        return FixResult::Skipped {
            reason: "no person".to_owned(),
        };
    };
    let results = match provisioner.provision_now(person_id, Some(&app.name)).await {
        Ok((_, results)) => results,
        Err(error) => return FixResult::Failed { error },
    };
    let Some(result) = results.into_iter().next() else {
        return FixResult::Failed {
            error: "the app did not run".to_owned(),
        };
    };
    match result.result {
        Err(error) => FixResult::Failed {
            error: error.to_string(),
        },
        Ok(ops) if ops.contains(&Operation::Parked) => FixResult::Parked,
        Ok(ops) => {
            let held = ops.contains(&Operation::Held);
            let operations = ops.iter().map(describe).collect();
            if held {
                FixResult::Held { operations }
            } else {
                FixResult::Done { operations }
            }
        }
    }
}

/// Deactivates an orphan (never deletes it) if the deprovision guard lets
/// it, counting it in the guard's window; audited either way. A held one
/// stays an orphan for the next reconciliation.
async fn deactivate_orphan(provisioner: &Provisioner, app: &App, finding: &Finding) -> FixResult {
    let Some(id) = finding.account_id.as_deref() else {
        return FixResult::Skipped {
            reason: "no account".to_owned(),
        };
    };
    let db = &provisioner.db;
    let failed = |error: ReconcileError| FixResult::Failed {
        error: error.to_string(),
    };
    let linked: Result<i64, sqlx::Error> =
        sqlx::query_scalar("SELECT COUNT(*) FROM provisioner_link WHERE app = $1 AND scim_id = $2")
            .bind(&app.name)
            .bind(id)
            .fetch_one(db.pool())
            .await;
    match linked {
        Err(error) => return failed(error.into()),
        Ok(n) if n > 0 => {
            return FixResult::Skipped {
                reason: "linked to a person meanwhile".to_owned(),
            }
        }
        Ok(_) => {}
    }
    let ticket = match &app.guard {
        Some(guard) => {
            match crate::guard::admit(
                db,
                &app.name,
                guard,
                &app.guard_gate,
                Deactivation::Ordinary,
            )
            .await
            {
                Err(error) => return failed(error),
                Ok(None) => {
                    audit_orphan(
                        provisioner,
                        app,
                        id,
                        AuditOperation::GuardHold,
                        AuditOutcome::Held,
                        None,
                        Duration::ZERO,
                    )
                    .await;
                    return FixResult::Held {
                        operations: Vec::new(),
                    };
                }
                Ok(Some(ticket)) => Some(ticket),
            }
        }
        None => None,
    };
    let started = Instant::now();
    let sent = app.client.set_active(id, false, app.patch).await;
    let latency = started.elapsed();
    if let Err(error) = sent {
        let outcome = if error.is_retryable() {
            AuditOutcome::Retry
        } else {
            AuditOutcome::Failed
        };
        audit_orphan(
            provisioner,
            app,
            id,
            AuditOperation::Deactivate,
            outcome,
            Some(&error),
            latency,
        )
        .await;
        return FixResult::Failed {
            error: format!("{}: {error}", app.name),
        };
    }
    let recorded = match ticket {
        Some(ticket) => ticket.record(db, &app.name).await,
        None => crate::guard::record_deactivation(db, &app.name, false).await,
    };
    audit_orphan(
        provisioner,
        app,
        id,
        AuditOperation::Deactivate,
        AuditOutcome::Success,
        None,
        latency,
    )
    .await;
    if let Err(error) = recorded {
        tracing::warn!(app = %app.name, %error, "an orphan's deactivation is not counted in the guard's window");
    }
    FixResult::Done {
        operations: vec![describe(&Operation::Deactivated)],
    }
}

/// Audits an operation on orphan `scim_id`: it has no person, so the
/// record's person is `orphan:<SCIM id>` and its version 0.
async fn audit_orphan(
    provisioner: &Provisioner,
    app: &App,
    scim_id: &str,
    operation: AuditOperation,
    outcome: AuditOutcome,
    error: Option<&ScimError>,
    latency: Duration,
) {
    metrics::counter!("hrsync_provisioner_operations_total", "app" => app.name.clone(), "operation" => operation.as_str(), "outcome" => outcome.as_str()).increment(1);
    let (Ok(person_id), Ok(at)) = (
        PersonId::new(format!("orphan:{scim_id}")),
        Timestamp::from_millis(chrono::Utc::now().timestamp_millis()),
    ) else {
        tracing::warn!(app = %app.name, "an orphan's audit record could not be made");
        return;
    };
    let span = tracing::Span::current();
    let record = ProvisioningAudit {
        audit_id: uuid::Uuid::new_v4().to_string(),
        person_id,
        app: app.name.clone(),
        operation,
        outcome,
        http_status: error.and_then(ScimError::status),
        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        attempt: 1,
        version: 0,
        scim_id: Some(scim_id.to_owned()),
        error: error.map(|e| format!("{}: {e}", app.name)),
        trace_id: hrsync_telemetry::propagation::trace_id(&span),
        at,
    };
    provisioner
        .audit
        .record(vec![(record, hrsync_telemetry::propagation::inject(&span))])
        .await;
}

/// One operation for the report.
fn describe(op: &Operation) -> String {
    match op {
        Operation::Stale => "stale: a newer change was applied".to_owned(),
        Operation::Unchanged => "unchanged".to_owned(),
        Operation::Linked { scim_id } => format!("linked {scim_id}"),
        Operation::Created { scim_id } => format!("created {scim_id}"),
        Operation::Updated { attributes } => format!("updated {}", attributes.join(", ")),
        Operation::Deactivated => "deactivated".to_owned(),
        Operation::Reactivated => "reactivated".to_owned(),
        Operation::Held => "deactivation held by the deprovision guard".to_owned(),
        Operation::Parked => "parked: app quarantined".to_owned(),
        Operation::GroupRenamed { from, to } => format!("group {from:?} renamed to {to:?}"),
        Operation::Groups { added, removed } => {
            format!(
                "groups: joined [{}], left [{}]",
                added.join(", "),
                removed.join(", ")
            )
        }
    }
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
    sqlx::query(
        "INSERT INTO provisioner_reconcile_run (app, mode, started_at_ms, finished_at_ms, counts, \
         failures) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app, mode) DO UPDATE SET \
         started_at_ms = excluded.started_at_ms, finished_at_ms = excluded.finished_at_ms, \
         counts = excluded.counts, failures = excluded.failures",
    )
    .bind(app)
    .bind(mode.as_str())
    .bind(started_ms)
    .bind(chrono::Utc::now().timestamp_millis())
    .bind(serde_json::to_string(&counts).unwrap_or_else(|_| "{}".to_owned()))
    .bind(i64::try_from(report.failures()).unwrap_or(i64::MAX))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// When `app` was last reconciled in `mode` (ms since the epoch), if ever.
async fn last_run(db: &Db, app: &str, mode: ReconcileMode) -> Result<Option<i64>, ReconcileError> {
    Ok(sqlx::query_scalar(
        "SELECT finished_at_ms FROM provisioner_reconcile_run WHERE app = $1 AND mode = $2",
    )
    .bind(app)
    .bind(mode.as_str())
    .fetch_optional(db.pool())
    .await?)
}

/// How often the schedule looks whether a run is due (a run made by
/// another process, or by hand, moves the next one).
const SCHEDULE_CHECK: Duration = Duration::from_secs(30);

/// Reconciles every app with `reconcile_every_secs` on its schedule until
/// `stop`: each app once per interval, counted from its last run in the
/// same mode by any process (or by hand), one process at a time. An app
/// never reconciled in that mode is first reconciled one interval after
/// the start. A run in progress is abandoned on `stop` (each fix is a
/// change of its own; the next run finds what is left).
pub async fn scheduled(
    provisioner: Arc<Provisioner>,
    config: &ProvisionerConfig,
    stop: CancellationToken,
) {
    let apps = config.apps.iter().filter_map(|app| {
        let every = Duration::from_secs(app.reconcile_every_secs?);
        let options = Options::new(app.reconcile_mode == ReconcileMode::Report, app.orphans);
        Some(schedule(
            provisioner.clone(),
            app.name.clone(),
            every,
            app.reconcile_mode,
            options,
            stop.clone(),
        ))
    });
    futures::future::join_all(apps).await;
}

async fn schedule(
    provisioner: Arc<Provisioner>,
    app: String,
    every: Duration,
    mode: ReconcileMode,
    options: Options,
    stop: CancellationToken,
) {
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    let first_due = chrono::Utc::now()
        .timestamp_millis()
        .saturating_add(every_ms);
    let due = |last: Option<i64>| last.map_or(first_due, |l| l.saturating_add(every_ms));
    tracing::info!(app = %app, every_secs = every.as_secs(), mode = mode.as_str(), "reconciliation scheduled");
    loop {
        let wait = match last_run(&provisioner.db, &app, mode).await {
            Ok(last) => due(last) - chrono::Utc::now().timestamp_millis(),
            Err(error) => {
                tracing::warn!(app = %app, %error, "reconciliation schedule not read; trying again");
                i64::try_from(SCHEDULE_CHECK.as_millis()).unwrap_or(i64::MAX)
            }
        };
        if wait > 0 {
            let wait = Duration::from_millis(u64::try_from(wait).unwrap_or(0)).min(SCHEDULE_CHECK);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let run = async {
            let claim = match provisioner.db.try_claim(&claim_role(&app)).await {
                Ok(Some(claim)) => claim,
                // Another process is reconciling it.
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(app = %app, %error, "reconciliation not claimed");
                    return;
                }
            };
            // Due still? Another process may have run it meanwhile.
            let still_due = last_run(&provisioner.db, &app, mode)
                .await
                .is_ok_and(|last| due(last) <= chrono::Utc::now().timestamp_millis());
            if still_due {
                if let Some(app) = provisioner.apps().iter().find(|a| a.name == app) {
                    match sweep(&provisioner, app, &options).await {
                        Ok(report) => tracing::info!(
                            app = %app.name,
                            dry_run = report.dry_run,
                            counts = ?report.counts.iter().map(|(c, n)| (c.as_str(), n)).collect::<Vec<_>>(),
                            failures = report.failures(),
                            held = report.held(),
                            "scheduled reconciliation done"
                        ),
                        Err(error) => {
                            tracing::warn!(app = %app.name, %error, "scheduled reconciliation failed")
                        }
                    }
                }
            }
            claim.release().await;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = run => {}
        }
        // A failed run is not recorded: wait before trying it again.
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SCHEDULE_CHECK.min(every)) => {}
        }
    }
}

#[cfg(test)]
#[path = "sweep_tests.rs"]
mod tests;
