//! Making one app's account of one person match a directory change.
//!
//! Per (person, app) the link table remembers the SCIM id, the last applied
//! version and the user as last sent. A change older than (or as old as)
//! the last applied version is dropped, so once a person is deprovisioned
//! at version v nothing with a lower version can create or reactivate any of
//! their accounts. A change that maps to what was last sent sends nothing.
//!
//! - [`plan`]: the decision, with no I/O: the desired state and the link
//!   (and the account the match chain found) in, the steps out.
//! - `apply`: the steps carried out (SCIM calls, the deprovision guard,
//!   group requests, the link write).
//! - `held`: changes kept for the guard's release or a quarantine's end.

use std::collections::HashMap;
use std::sync::Arc;

use hrsync_domain::DirectoryChange;
use hrsync_store::Db;
use serde_json::Value;

use crate::groups::{GroupWriter, Target};
use crate::guard::Gate;
pub use crate::guard::{guard_tripped, Guard};
use crate::mapping::Mapping;
use crate::matching::MatchChain;
use crate::scim::{read_bool, ScimClient, ScimError, ENTERPRISE_SCHEMA};
pub use crate::store::links::Link;
use crate::store::links::Owner;

mod apply;
mod held;
pub mod plan;

pub use held::{forget_held, forget_parked, held, hold, newest_parked, parked_persons, untrip};

/// What reconciling did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// The change was not newer than the last applied one.
    Stale,
    /// Nothing to send (no account wanted and none exists, or no change).
    Unchanged,
    /// An existing account was found by the match chain and linked (also
    /// after a create that conflicted with it).
    Linked {
        /// Its SCIM id.
        scim_id: String,
    },
    /// An account was created.
    Created {
        /// Its SCIM id.
        scim_id: String,
    },
    /// Changed attributes were sent.
    Updated {
        /// The attributes sent.
        attributes: Vec<String>,
    },
    /// The account was deactivated.
    Deactivated,
    /// The account was reactivated.
    Reactivated,
    /// A deactivation was held by the deprovision guard (kept durably until
    /// `hrsync provisioner release`).
    Held,
    /// The app is quarantined: the change is kept durably and applied when
    /// the app answers again.
    Parked,
    /// A group renamed in the rules was renamed in place in the app (it
    /// keeps its SCIM id and members).
    GroupRenamed {
        /// The name it had.
        from: String,
        /// Its new name.
        to: String,
    },
    /// A manual-task app's account needs people: a task was handed out
    /// ([`crate::manual`]).
    Task {
        /// Its id.
        task_id: i64,
        /// What it asks.
        action: crate::manual::plan::Action,
    },
    /// Group memberships were pushed.
    Groups {
        /// Groups the account joined.
        added: Vec<String>,
        /// Groups the account left.
        removed: Vec<String>,
    },
}

/// One operation as a line for people (`hrsync provision-now` prints it,
/// the admin API answers it).
impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Operation::Stale => "skipped: a newer change was applied already".to_owned(),
            Operation::Unchanged => "in sync, nothing sent".to_owned(),
            Operation::Linked { scim_id } => format!("linked existing account {scim_id}"),
            Operation::Created { scim_id } => format!("created account {scim_id}"),
            Operation::Updated { attributes } => format!("updated {}", attributes.join(", ")),
            Operation::Deactivated => "deactivated".to_owned(),
            Operation::Reactivated => "reactivated".to_owned(),
            Operation::Held => "deactivation held by the deprovision guard".to_owned(),
            Operation::Parked => "app quarantined: change parked until it answers".to_owned(),
            Operation::Task { task_id, action } => {
                format!("task {task_id} handed to people: {}", action.as_str())
            }
            Operation::GroupRenamed { from, to } => format!("group {from:?} renamed to {to:?}"),
            Operation::Groups { added, removed } => {
                let mut parts = Vec::new();
                if !added.is_empty() {
                    parts.push(format!("join {}", added.join(", ")));
                }
                if !removed.is_empty() {
                    parts.push(format!("leave {}", removed.join(", ")));
                }
                format!(
                    "group memberships requested ({}); the app's group writer applies them",
                    parts.join("; ")
                )
            }
        };
        f.write_str(&text)
    }
}

/// Reconcile failures.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The app failed; see [`ScimError::is_retryable`].
    #[error("{app}: {source}")]
    Scim {
        /// The app.
        app: String,
        /// What failed.
        #[source]
        source: Box<ScimError>,
    },
    /// The link store failed.
    #[error("link store: {0}")]
    Store(#[from] hrsync_store::Error),
}

impl ReconcileError {
    /// Whether the same change may succeed later: a retryable SCIM answer
    /// ([`ScimError::is_retryable`]) or a transient store failure.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReconcileError::Scim { source, .. } => source.is_retryable(),
            ReconcileError::Store(e) => e.is_retryable(),
        }
    }
}

impl From<sqlx::Error> for ReconcileError {
    fn from(e: sqlx::Error) -> Self {
        ReconcileError::Store(hrsync_store::Error::Query(e))
    }
}

/// One app as the reconciler sees it.
#[derive(Debug, Clone)]
pub struct App {
    /// Name, as in the directory change's app assignments.
    pub name: String,
    /// Its SCIM server.
    pub client: ScimClient,
    /// How an existing account is found ([`crate::matching`]).
    pub match_chain: Arc<MatchChain>,
    /// Most users read when searching, ignoring case, for the account a
    /// create conflicted with.
    pub match_scan_limit: usize,
    /// The server supports PATCH (else GET + PUT).
    pub patch: bool,
    /// The server supports ETags: writes to a user carry `If-Match` with
    /// the version last seen, and a 412 re-reads the user and retries.
    pub etag: bool,
    /// Push the person's groups for this app as SCIM groups.
    pub push_groups: bool,
    /// The deprovision guard, if any.
    pub guard: Option<Guard>,
    /// Where the guard decides one deactivation at a time and counts those
    /// under way (shared by the clones of this app).
    pub guard_gate: Arc<Gate>,
    /// The profile as this app's SCIM User.
    pub mapping: Arc<Mapping>,
    /// Group renames: a group's current name to the names it had before. A
    /// renamed group keeps its SCIM group (renamed in place) and members.
    pub group_renames: Arc<HashMap<String, Vec<String>>>,
    /// Most members joined or left per group PATCH request.
    pub group_batch: usize,
    /// How long the group writer waits for more memberships before it sends
    /// less than a full batch.
    pub group_linger: std::time::Duration,
    /// The app's group writer (shared by the clones of this app).
    pub group_writer: Arc<GroupWriter>,
}

impl App {
    /// An app with the default mapping, `userName` matching, PATCH, no
    /// ETags, group push, no guard and no renames.
    pub fn new(name: &str, client: ScimClient) -> Self {
        App {
            name: name.to_owned(),
            client,
            match_chain: Arc::new(MatchChain::default()),
            match_scan_limit: DEFAULT_MATCH_SCAN_LIMIT,
            patch: true,
            etag: false,
            push_groups: true,
            guard: None,
            guard_gate: Arc::new(Gate::default()),
            mapping: Arc::new(Mapping::default()),
            group_renames: Arc::new(HashMap::new()),
            group_batch: DEFAULT_GROUP_BATCH,
            group_linger: DEFAULT_GROUP_LINGER,
            group_writer: Arc::new(GroupWriter::default()),
        }
    }

    /// The app as its group writer sees it.
    pub fn group_target(&self) -> Target {
        Target {
            app: self.name.clone(),
            client: self.client.clone(),
            patch: self.patch,
            renames: self.group_renames.clone(),
            batch: self.group_batch.max(1),
            linger: self.group_linger,
        }
    }

    /// Applies the group memberships of this app requested so far (see
    /// [`GroupWriter::flush`]).
    ///
    /// # Errors
    /// Store failures, or the app's last failure on a group.
    pub async fn flush_groups(&self, db: &Db) -> Result<bool, ReconcileError> {
        self.group_writer.flush(db, &self.group_target()).await
    }

    /// `source` as this app's failure.
    fn scim_error(&self, source: ScimError) -> ReconcileError {
        ReconcileError::Scim {
            app: self.name.clone(),
            source: Box::new(source),
        }
    }

    /// The decision's view of this app's settings.
    fn rules<'a>(&'a self, managed: &'a std::collections::BTreeSet<String>) -> plan::Rules<'a> {
        plan::Rules {
            managed,
            push_groups: self.push_groups,
            renames: &self.group_renames,
        }
    }

    /// The version to send as `If-Match` when writing `link`'s user.
    fn if_match<'a>(&self, link: &'a Link) -> Option<&'a str> {
        link.etag.as_deref().filter(|_| self.etag)
    }
}

/// Members per group PATCH request unless configured.
pub const DEFAULT_GROUP_BATCH: usize = 100;
/// The group writer's wait for a fuller batch unless configured.
pub const DEFAULT_GROUP_LINGER: std::time::Duration = std::time::Duration::from_millis(200);

/// Most users read by default when searching for a conflicting account.
pub const DEFAULT_MATCH_SCAN_LIMIT: usize = 10_000;

/// Times a write refused with 412 (the user changed since it was read) is
/// re-read and tried again.
const PRECONDITION_RETRIES: u32 = 3;

/// Why a change is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    /// The deprovision guard tripped.
    Guard,
    /// The app is quarantined.
    Quarantine,
    /// The change ran out of attempts while the app answered other
    /// changes: it waits for the next probe to try it again (or for a
    /// later change of the person to replace it).
    Retry,
}

impl HoldReason {
    fn as_str(self) -> &'static str {
        match self {
            HoldReason::Guard => "guard",
            HoldReason::Quarantine => "quarantine",
            HoldReason::Retry => "retry",
        }
    }
}

/// Whether the deprovision guard applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarding {
    /// Count deactivations; hold them when the guard trips.
    Check,
    /// Let them through without counting them (`release`: an admin
    /// approved them).
    Bypass,
}

/// What `change` asks of its person's account in `app` ([`plan::Desired`]),
/// the user as the app's mapping makes it, with the enterprise `manager`
/// set to the manager's account in the same app when it has one. An
/// attribute whose mapping failed is logged, counted and left out.
///
/// # Errors
/// Store failures.
pub async fn desired(
    db: &Db,
    app: &App,
    change: &DirectoryChange,
) -> Result<plan::Desired, ReconcileError> {
    let desired = plan::Desired::of(change, &app.name);
    let active = desired.active;
    with_user(db, app, change, desired, active).await
}

/// `desired` with the user filled in, `active` as given.
async fn with_user(
    db: &Db,
    app: &App,
    change: &DirectoryChange,
    mut desired: plan::Desired,
    active: bool,
) -> Result<plan::Desired, ReconcileError> {
    let manager = match &change.profile.attributes.manager_id {
        Some(manager) => {
            crate::store::links::account_of_employee(db, &app.name, manager.as_str()).await?
        }
        None => None,
    };
    let (user, errors) = app
        .mapping
        .user(change, &app.name, active, manager.as_deref());
    desired.user = user;
    desired.failed = errors.iter().map(|e| e.top_key.clone()).collect();
    for error in errors {
        metrics::counter!("hrsync_provisioner_mapping_errors_total", "app" => app.name.clone())
            .increment(1);
        tracing::warn!(
            app = %app.name,
            person = %change.person_id,
            attribute = %error.attribute,
            reason = %error.reason,
            "attribute mapping failed for this person; the attribute is left as it is"
        );
    }
    Ok(desired)
}

/// The link of (person, app), if any.
///
/// # Errors
/// Store failures.
pub async fn link(db: &Db, person_id: &str, app: &str) -> Result<Option<Link>, ReconcileError> {
    Ok(crate::store::links::get(db, person_id, app).await?)
}

/// Stores `link` as the link of `change`'s person in `app`.
async fn save(
    db: &Db,
    change: &DirectoryChange,
    app: &str,
    link: &Link,
) -> Result<(), ReconcileError> {
    let owner = Owner {
        person_id: change.person_id.as_str(),
        employee_id: change.employee_id.as_str(),
        app,
    };
    Ok(crate::store::links::save(db, owner, link).await?)
}

/// Makes `app`'s account of the change's person match the change.
///
/// # Errors
/// SCIM or store failures; nothing is recorded for a failed call, so the
/// same change can be retried.
pub async fn reconcile(
    db: &Db,
    app: &App,
    change: &DirectoryChange,
) -> Result<Vec<Operation>, ReconcileError> {
    reconcile_with(db, app, change, Guarding::Check).await
}

/// [`reconcile`] with the deprovision guard checked or bypassed.
///
/// # Errors
/// See [`reconcile`].
pub async fn reconcile_with(
    db: &Db,
    app: &App,
    change: &DirectoryChange,
    guarding: Guarding,
) -> Result<Vec<Operation>, ReconcileError> {
    let mut ops = Vec::new();
    let mut refused = 0;
    loop {
        match apply::apply(db, app, change, guarding, &mut ops).await {
            Ok(()) => return Ok(ops),
            // The user changed in the app since hrsync last read or wrote
            // it (its `If-Match` was refused): read it again and apply the
            // change to what it is now. What was done before stays in `ops`.
            Err(ReconcileError::Scim { source, .. })
                if source.status() == Some(412) && refused < PRECONDITION_RETRIES =>
            {
                refused += 1;
                tracing::info!(app = %app.name, person = %change.person_id, "the account changed in the app meanwhile; read again");
                reread(db, app, change).await?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Gives the account of `change`'s person in `app` the manager reference
/// that `change` asks for, if it lacks it: a report provisioned before its
/// manager had an account in the app was sent without one. Only when the
/// account is at `change`'s version (a newer change queued for the person
/// gets the reference when it is applied). Returns what was done.
///
/// # Errors
/// SCIM or store failures.
pub async fn refresh_manager(
    db: &Db,
    app: &App,
    change: &DirectoryChange,
) -> Result<Vec<Operation>, ReconcileError> {
    let version = i64::try_from(change.version).unwrap_or(i64::MAX);
    let Some(mut current) = link(db, change.person_id.as_str(), &app.name).await? else {
        return Ok(Vec::new());
    };
    if current.scim_id.is_empty() || current.applied_version != version || !current.active {
        return Ok(Vec::new());
    }
    // Wanted active, as the account is at this version.
    let desired = with_user(db, app, change, plan::Desired::of(change, &app.name), true).await?;
    let manager = |user: &Value| {
        user.get(ENTERPRISE_SCHEMA)
            .and_then(|e| e.get("manager"))
            .cloned()
    };
    if manager(&desired.user).is_none() || manager(&desired.user) == manager(&current.applied) {
        return Ok(Vec::new());
    }
    // Applied again from one version below: the reconcile sends what
    // differs (the enterprise extension) and records the version again.
    current.applied_version = version - 1;
    save(db, change, &app.name, &current).await?;
    reconcile(db, app, change).await
}

/// Re-reads `app`'s account of the change's person from the app, so that
/// reconciling `change` next sends whatever differs from it (someone changed
/// the account in the app) even though `change` was applied before. An
/// account that is gone from the app is matched or created again.
///
/// # Errors
/// SCIM or store failures.
pub async fn reread(db: &Db, app: &App, change: &DirectoryChange) -> Result<(), ReconcileError> {
    let Some(mut current) = link(db, change.person_id.as_str(), &app.name).await? else {
        return Ok(());
    };
    if !current.scim_id.is_empty() {
        let found = app
            .client
            .get_versioned("Users", &current.scim_id)
            .await
            .map_err(|source| app.scim_error(source))?;
        match found {
            Some(read) => {
                let user = read.resource.unwrap_or_default();
                current.active = read_bool(&user["active"]).unwrap_or(true);
                current.etag = read.version;
                current.applied = plan::strip(user);
            }
            None => {
                current.scim_id = String::new();
                current.applied = Value::Null;
                current.active = false;
                current.groups.clear();
                current.etag = None;
            }
        }
    }
    let version = i64::try_from(change.version).unwrap_or(i64::MAX);
    current.applied_version = current.applied_version.min(version - 1);
    save(db, change, &app.name, &current).await
}
