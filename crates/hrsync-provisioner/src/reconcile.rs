//! Making one app's account of one person match a directory change.
//!
//! Per (person, app) the link table remembers the SCIM id, the last applied
//! version and the user as last sent. A change older than (or as old as)
//! the last applied version is dropped, so once a person is deprovisioned
//! at version v nothing with a lower version can create or reactivate any of
//! their accounts. A change that maps to what was last sent sends nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use hrsync_domain::{DirectoryChange, LifecycleState};
use hrsync_store::Db;
use serde_json::Value;
use sqlx::Row;

use crate::groups::{GroupWriter, Membership, Target};
pub use crate::guard::{guard_tripped, Guard};
use crate::guard::{Deactivation, Gate};
use crate::mapping::Mapping;
use crate::matching::MatchChain;
use crate::scim::{meta_version, read_bool, PatchOp, ScimClient, ScimError, ENTERPRISE_SCHEMA};

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
    /// Group memberships were pushed.
    Groups {
        /// Groups the account joined.
        added: Vec<String>,
        /// Groups the account left.
        removed: Vec<String>,
    },
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
}

impl HoldReason {
    fn as_str(self) -> &'static str {
        match self {
            HoldReason::Guard => "guard",
            HoldReason::Quarantine => "quarantine",
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

/// A stored link. An empty `scim_id` records a version applied while no
/// account existed.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// SCIM id in the app.
    pub scim_id: String,
    /// Last applied version.
    pub applied_version: i64,
    /// The user as last sent.
    pub applied: Value,
    /// Whether the account is active.
    pub active: bool,
    /// Groups pushed with this account.
    pub groups: Vec<String>,
    /// The account's version as the app last gave it (its ETag), if known.
    pub etag: Option<String>,
}

/// The SCIM user `change` asks for in `app`, `active` as the lifecycle and
/// assignment say: the app's mapping, with the enterprise `manager` set to
/// the manager's account in the same app when it has one. Also the
/// top-level attributes left out because their mapping failed.
///
/// # Errors
/// Store failures.
pub async fn desired_user(
    db: &Db,
    app: &App,
    change: &DirectoryChange,
    active: bool,
) -> Result<(Value, Vec<String>), ReconcileError> {
    let manager = match &change.profile.attributes.manager_id {
        Some(manager) => {
            sqlx::query_scalar::<_, String>(
                "SELECT scim_id FROM provisioner_link WHERE app = $1 AND employee_id = $2 \
             AND scim_id <> ''",
            )
            .bind(&app.name)
            .bind(manager.as_str())
            .fetch_optional(db.pool())
            .await?
        }
        None => None,
    };
    let (user, errors) = app
        .mapping
        .user(change, &app.name, active, manager.as_deref());
    let failed = errors.iter().map(|e| e.top_key.clone()).collect();
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
    Ok((user, failed))
}

/// The link of (person, app), if any.
///
/// # Errors
/// Store failures.
pub async fn link(db: &Db, person_id: &str, app: &str) -> Result<Option<Link>, ReconcileError> {
    let row = sqlx::query(
        "SELECT scim_id, applied_version, applied, active, groups, etag FROM provisioner_link \
         WHERE person_id = $1 AND app = $2",
    )
    .bind(person_id)
    .bind(app)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        let applied: String = r.try_get(2)?;
        Ok(Link {
            scim_id: r.try_get(0)?,
            applied_version: r.try_get(1)?,
            applied: serde_json::from_str(&applied).unwrap_or(Value::Null),
            active: r.try_get::<i64, _>(3)? != 0,
            groups: serde_json::from_str(&r.try_get::<String, _>(4)?).unwrap_or_default(),
            etag: r.try_get(5)?,
        })
    })
    .transpose()
}

async fn save(
    db: &Db,
    change: &DirectoryChange,
    app: &str,
    link: &Link,
) -> Result<(), ReconcileError> {
    sqlx::query(
        "INSERT INTO provisioner_link (person_id, app, scim_id, applied_version, applied, active, \
         groups, status, last_error, updated_at_ms, employee_id, etag) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'ok', NULL, $8, $9, $10) \
         ON CONFLICT (person_id, app) DO UPDATE SET scim_id = excluded.scim_id, \
         applied_version = excluded.applied_version, applied = excluded.applied, \
         active = excluded.active, groups = excluded.groups, status = 'ok', last_error = NULL, \
         updated_at_ms = excluded.updated_at_ms, employee_id = excluded.employee_id, \
         etag = excluded.etag",
    )
    .bind(change.person_id.as_str())
    .bind(app)
    .bind(&link.scim_id)
    .bind(link.applied_version)
    .bind(link.applied.to_string())
    .bind(i64::from(link.active))
    .bind(serde_json::to_string(&link.groups).unwrap_or_else(|_| "[]".to_owned()))
    .bind(chrono::Utc::now().timestamp_millis())
    .bind(change.employee_id.as_str())
    .bind(link.etag.as_deref())
    .execute(db.pool())
    .await?;
    Ok(())
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
        match apply(db, app, change, guarding, &mut ops).await {
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

/// One attempt of [`reconcile_with`], adding what it does to `ops`.
async fn apply(
    db: &Db,
    app: &App,
    change: &DirectoryChange,
    guarding: Guarding,
    ops: &mut Vec<Operation>,
) -> Result<(), ReconcileError> {
    let person = change.person_id.as_str();
    let version = i64::try_from(change.version).unwrap_or(i64::MAX);
    let scim = |source: ScimError| ReconcileError::Scim {
        app: app.name.clone(),
        source: Box::new(source),
    };
    let existing = link(db, person, &app.name).await?;
    if existing
        .as_ref()
        .is_some_and(|l| l.applied_version >= version)
    {
        ops.push(Operation::Stale);
        return Ok(());
    }
    let assigned = change.apps.iter().any(|a| a.app == app.name);
    let active = assigned && change.lifecycle_state == LifecycleState::Active;
    // Pending (pre-hire window) and suspended persons keep an inactive
    // account; a deprovisioned person or a removed assignment deactivates.
    let wanted = assigned && change.lifecycle_state != LifecycleState::Deprovisioned;
    let (desired, failed) = desired_user(db, app, change, active).await?;

    let mut current = match existing {
        Some(link) if !link.scim_id.is_empty() => link,
        _ if !wanted => {
            // No account and none wanted: remember the version, so an older
            // change arriving later (a create queued behind a termination
            // that took the fast lane) cannot create one.
            let tombstone = Link {
                scim_id: String::new(),
                applied_version: version,
                applied: Value::Null,
                active: false,
                groups: Vec::new(),
                etag: None,
            };
            save(db, change, &app.name, &tombstone).await?;
            ops.push(Operation::Unchanged);
            return Ok(());
        }
        _ => {
            let found = match crate::matching::find_account(&app.client, &app.match_chain, &desired)
                .await
                .map_err(scim)?
            {
                Some(found) => found,
                None => match app.client.create_versioned("Users", &desired).await {
                    Ok((created, etag)) => {
                        let scim_id = created["id"].as_str().unwrap_or_default().to_owned();
                        ops.push(Operation::Created {
                            scim_id: scim_id.clone(),
                        });
                        let mut link = Link {
                            scim_id,
                            applied_version: version,
                            applied: desired.clone(),
                            active,
                            groups: Vec::new(),
                            etag,
                        };
                        push_groups(db, app, change, wanted, &mut link, ops).await?;
                        save(db, change, &app.name, &link).await?;
                        return Ok(());
                    }
                    // Taken meanwhile, a lost earlier answer, or an account
                    // the server's filter missed (it compares case): link
                    // what the chain finds after all, or fail once.
                    Err(conflict @ ScimError::Status { status: 409, .. }) => {
                        crate::matching::resolve_conflict(
                            &app.client,
                            &app.match_chain,
                            &desired,
                            app.match_scan_limit,
                            &conflict,
                        )
                        .await
                        .map_err(scim)?
                    }
                    Err(e) => return Err(scim(e)),
                },
            };
            let scim_id = found["id"].as_str().unwrap_or_default().to_owned();
            ops.push(Operation::Linked {
                scim_id: scim_id.clone(),
            });
            Link {
                active: read_bool(&found["active"]).unwrap_or(true),
                etag: meta_version(&found),
                applied: strip(found),
                scim_id,
                applied_version: 0,
                groups: Vec::new(),
            }
        }
    };

    // Attributes that differ from what the app has, `active` apart.
    let changed: Vec<String> = desired
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, v)| {
                    *k != "active" && *k != "schemas" && current.applied.get(k.as_str()) != Some(v)
                })
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    // Attributes the mapping manages that were sent before and are now
    // left out (a title HR removed): removed from the account.
    let managed = app.mapping.managed();
    let dropped: Vec<String> = current
        .applied
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| {
                    managed.contains(k.as_str())
                        && desired.get(k.as_str()).is_none()
                        && !failed.contains(k)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut changed = changed;
    if (!changed.is_empty() || !dropped.is_empty()) && wanted {
        if app.patch {
            let patch: Vec<PatchOp> = changed
                .iter()
                .map(|k| PatchOp::replace(k.clone(), desired[k.as_str()].clone()))
                .chain(dropped.iter().map(|k| PatchOp::remove(k.clone())))
                .collect();
            let written = app
                .client
                .patch_versioned("Users", &current.scim_id, &patch, app.if_match(&current))
                .await
                .map_err(scim)?;
            current.etag = written.version;
        } else {
            let written = app
                .client
                .replace_versioned("Users", &current.scim_id, &desired, app.if_match(&current))
                .await
                .map_err(scim)?;
            current.etag = written.version;
        }
        changed.extend(dropped);
        ops.push(Operation::Updated {
            attributes: changed,
        });
    }
    // A deactivation admitted by the guard counts in its window from here
    // until it is recorded (or fails and is dropped).
    let mut ticket = None;
    if current.active && !active && guarding == Guarding::Check {
        if let Some(guard) = &app.guard {
            let kind = Deactivation::of(change);
            match crate::guard::admit(db, &app.name, guard, &app.guard_gate, kind).await? {
                Some(admitted) => ticket = Some(admitted),
                None => {
                    hold(db, &app.name, change, HoldReason::Guard).await?;
                    // Nothing else of this change is applied, and its
                    // version is not recorded: it is applied whole on
                    // release.
                    *ops = vec![Operation::Held];
                    return Ok(());
                }
            }
        }
    }
    if current.active != active {
        let written = app
            .client
            .set_active_versioned(&current.scim_id, active, app.patch, app.if_match(&current))
            .await
            .map_err(scim)?;
        current.etag = written.version;
        ops.push(if active {
            Operation::Reactivated
        } else {
            Operation::Deactivated
        });
        // Counted in the guard's window, unless an admin released it: what
        // was approved does not count towards tripping the guard again.
        if !active && guarding == Guarding::Check {
            match ticket.take() {
                Some(ticket) => ticket.record(db, &app.name).await?,
                None => crate::guard::record_deactivation(db, &app.name, false).await?,
            }
        }
    }
    push_groups(db, app, change, wanted, &mut current, ops).await?;
    if ops.is_empty() {
        ops.push(Operation::Unchanged);
    }
    current.applied_version = version;
    if wanted {
        current.applied = desired;
    }
    current.active = active;
    save(db, change, &app.name, &current).await?;
    Ok(())
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
    let (desired, _) = desired_user(db, app, change, true).await?;
    let manager = |user: &Value| {
        user.get(ENTERPRISE_SCHEMA)
            .and_then(|e| e.get("manager"))
            .cloned()
    };
    if manager(&desired).is_none() || manager(&desired) == manager(&current.applied) {
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
            .map_err(|source| ReconcileError::Scim {
                app: app.name.clone(),
                source: Box::new(source),
            })?;
        match found {
            Some(read) => {
                let user = read.resource.unwrap_or_default();
                current.active = read_bool(&user["active"]).unwrap_or(true);
                current.etag = read.version;
                current.applied = strip(user);
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

/// The groups `change` grants its person in `app` (whether or not the app
/// pushes groups), sorted.
pub(crate) fn assigned_groups(app: &App, change: &DirectoryChange) -> BTreeSet<String> {
    change
        .apps
        .iter()
        .filter(|a| a.app == app.name)
        .flat_map(|a| a.groups.iter().cloned())
        .collect()
}

/// Brings the account's group memberships in `app` to the groups the
/// change assigns for it (none once the app is unassigned or the person
/// deprovisioned): the joins and leaves are requested of the app's group
/// writer ([`crate::groups`]), which applies them in batches, so nothing
/// here waits for the app to change a group. A group renamed in the rules
/// is renamed in place now, and its members stay.
async fn push_groups(
    db: &Db,
    app: &App,
    change: &DirectoryChange,
    wanted: bool,
    link: &mut Link,
    ops: &mut Vec<Operation>,
) -> Result<(), ReconcileError> {
    if !app.push_groups || link.scim_id.is_empty() {
        return Ok(());
    }
    let desired: Vec<String> = if wanted {
        assigned_groups(app, change).into_iter().collect()
    } else {
        Vec::new()
    };
    let mut added: Vec<String> = desired
        .iter()
        .filter(|g| !link.groups.contains(g))
        .cloned()
        .collect();
    let mut removed: Vec<String> = link
        .groups
        .iter()
        .filter(|g| !desired.contains(g))
        .cloned()
        .collect();
    // A group renamed since it was pushed is renamed in place and keeps its
    // members: the account neither leaves the old name nor joins the new.
    let target = app.group_target();
    let carried: Vec<(String, String)> = added
        .iter()
        .filter_map(|name| {
            target
                .previous_names(name)
                .iter()
                .find(|old| removed.contains(old))
                .map(|old| (old.clone(), name.clone()))
        })
        .collect();
    for (old, new) in &carried {
        added.retain(|g| g != new);
        removed.retain(|g| g != old);
        let (_, renamed) = app.group_writer.resolve(db, &target, new).await?;
        if let Some(from) = renamed {
            ops.push(Operation::GroupRenamed {
                from,
                to: new.clone(),
            });
        }
    }
    let membership = |group: &str, member: bool| Membership {
        // A leave of a group renamed since is a leave of the renamed group.
        group: target.current_name(group).to_owned(),
        person_id: change.person_id.as_str().to_owned(),
        member_id: link.scim_id.clone(),
        member,
    };
    let requests: Vec<Membership> = added
        .iter()
        .map(|g| membership(g, true))
        .chain(removed.iter().map(|g| membership(g, false)))
        .collect();
    if !requests.is_empty() {
        crate::groups::request(db, &app.name, &requests).await?;
        app.group_writer.wake(db, target);
        ops.push(Operation::Groups { added, removed });
    }
    link.groups = desired;
    Ok(())
}

/// Keeps `change` durably for `app` until it is released or resumed.
///
/// # Errors
/// Store failures.
pub async fn hold(
    db: &Db,
    app: &str,
    change: &DirectoryChange,
    reason: HoldReason,
) -> Result<(), ReconcileError> {
    let payload = hrsync_schema::encode_directory_change(change).map_err(|e| {
        ReconcileError::Store(hrsync_store::Error::Query(sqlx::Error::Encode(Box::new(e))))
    })?;
    sqlx::query(
        "INSERT INTO provisioner_held (app, person_id, version, payload, held_at_ms, reason) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app, person_id, version) DO NOTHING",
    )
    .bind(app)
    .bind(change.person_id.as_str())
    .bind(i64::try_from(change.version).unwrap_or(i64::MAX))
    .bind(payload)
    .bind(chrono::Utc::now().timestamp_millis())
    .bind(reason.as_str())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The changes held for `app` for `reason`, oldest version first per person.
///
/// # Errors
/// Store failures; a held change that no longer decodes is skipped with a
/// log line.
pub async fn held(
    db: &Db,
    app: &str,
    reason: HoldReason,
) -> Result<Vec<DirectoryChange>, ReconcileError> {
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT payload FROM provisioner_held WHERE app = $1 AND reason = $2 \
         ORDER BY person_id, version",
    )
    .bind(app)
    .bind(reason.as_str())
    .fetch_all(db.pool())
    .await?;
    Ok(payloads
        .iter()
        .filter_map(|p| match hrsync_schema::decode_directory_change(p) {
            Ok(change) => Some(change),
            Err(error) => {
                tracing::error!(app, %error, "a held change no longer decodes");
                None
            }
        })
        .collect())
}

/// Untrips `app`'s guard and forgets the window's deactivations; the held
/// changes are removed one by one with [`forget_held`] as they are applied.
///
/// # Errors
/// Store failures.
pub async fn untrip(db: &Db, app: &str) -> Result<(), ReconcileError> {
    sqlx::query("DELETE FROM provisioner_guard WHERE app = $1")
        .bind(app)
        .execute(db.pool())
        .await?;
    metrics::gauge!(crate::guard::GUARD_TRIPPED, "app" => app.to_owned()).set(0.0);
    sqlx::query("DELETE FROM provisioner_deactivation WHERE app = $1")
        .bind(app)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Removes a held change once applied.
///
/// # Errors
/// Store failures.
pub async fn forget_held(
    db: &Db,
    app: &str,
    change: &DirectoryChange,
) -> Result<(), ReconcileError> {
    sqlx::query("DELETE FROM provisioner_held WHERE app = $1 AND person_id = $2 AND version = $3")
        .bind(app)
        .bind(change.person_id.as_str())
        .bind(i64::try_from(change.version).unwrap_or(i64::MAX))
        .execute(db.pool())
        .await?;
    Ok(())
}

/// A server's user without its server-side fields, for comparison.
fn strip(mut user: Value) -> Value {
    if let Some(o) = user.as_object_mut() {
        o.remove("id");
        o.remove("meta");
    }
    user
}
