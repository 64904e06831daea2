//! Making one app's account of one person match a directory change.
//!
//! Per (person, app) the link table remembers the SCIM id, the last applied
//! version and the user as last sent. A change older than (or as old as)
//! the last applied version is dropped, so once a person is deprovisioned
//! at version v nothing with a lower version can create or reactivate any of
//! their accounts. A change that maps to what was last sent sends nothing.

use hrsync_domain::{DirectoryChange, LifecycleState};
use hrsync_store::Db;
use serde_json::{json, Map, Value};
use sqlx::Row;

use crate::scim::{PatchOp, ScimClient, ScimError, ENTERPRISE_SCHEMA, USER_SCHEMA};

/// What reconciling did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// The change was not newer than the last applied one.
    Stale,
    /// Nothing to send (no account wanted and none exists, or no change).
    Unchanged,
    /// An existing account was found by the match attribute and linked.
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
    /// SCIM attribute matched to find an existing account (`userName`).
    pub match_attribute: String,
    /// The server supports PATCH (else GET + PUT).
    pub patch: bool,
    /// Push the person's groups for this app as SCIM groups.
    pub push_groups: bool,
    /// The deprovision guard, if any.
    pub guard: Option<Guard>,
}

/// Pauses an app's deactivations when more than `max_count` of them, or
/// more than `max_share` of its active accounts, happen within `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guard {
    /// Most deactivations allowed in the window.
    pub max_count: u32,
    /// Largest share of the app's active accounts deactivated in the window.
    pub max_share: f64,
    /// The window.
    pub window_ms: i64,
}

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
    /// Let them through (`release`).
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
}

/// The SCIM user a change asks for in an app (core schema and the
/// enterprise extension), `active` as the lifecycle and assignment say.
pub fn desired_user(change: &DirectoryChange, active: bool) -> Value {
    let a = &change.profile.attributes;
    let user_name = a
        .work_email
        .clone()
        .unwrap_or_else(|| change.employee_id.as_str().to_owned());
    let display = a.display_name.clone().unwrap_or_else(|| {
        format!(
            "{} {}",
            a.preferred_name.as_deref().unwrap_or(&a.given_name),
            a.family_name
        )
    });
    let mut user = json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "userName": user_name,
        "externalId": change.person_id.as_str(),
        "name": {"givenName": a.given_name, "familyName": a.family_name},
        "displayName": display,
        "active": active,
    });
    let object = user.as_object_mut().expect("object");
    if let Some(email) = &a.work_email {
        object.insert(
            "emails".into(),
            json!([{"value": email, "type": "work", "primary": true}]),
        );
    }
    if let Some(title) = &a.title {
        object.insert("title".into(), json!(title));
    }
    if let Some(phone) = &a.phone {
        object.insert(
            "phoneNumbers".into(),
            json!([{"value": phone, "type": "work"}]),
        );
    }
    if let Some(name) = &a.preferred_name {
        object.insert("nickName".into(), json!(name));
    }
    let mut enterprise = Map::new();
    enterprise.insert("employeeNumber".into(), json!(change.employee_id.as_str()));
    if let Some(d) = &a.department {
        enterprise.insert("department".into(), json!(d));
    }
    if let Some(c) = &a.cost_center {
        enterprise.insert("costCenter".into(), json!(c));
    }
    object.insert(ENTERPRISE_SCHEMA.into(), Value::Object(enterprise));
    user
}

/// The link of (person, app), if any.
///
/// # Errors
/// Store failures.
pub async fn link(db: &Db, person_id: &str, app: &str) -> Result<Option<Link>, ReconcileError> {
    let row = sqlx::query(
        "SELECT scim_id, applied_version, applied, active, groups FROM provisioner_link \
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
        })
    })
    .transpose()
}

async fn save(db: &Db, person_id: &str, app: &str, link: &Link) -> Result<(), ReconcileError> {
    sqlx::query(
        "INSERT INTO provisioner_link (person_id, app, scim_id, applied_version, applied, active, \
         groups, status, last_error, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 'ok', NULL, $8) \
         ON CONFLICT (person_id, app) DO UPDATE SET scim_id = excluded.scim_id, \
         applied_version = excluded.applied_version, applied = excluded.applied, \
         active = excluded.active, groups = excluded.groups, status = 'ok', last_error = NULL, \
         updated_at_ms = excluded.updated_at_ms",
    )
    .bind(person_id)
    .bind(app)
    .bind(&link.scim_id)
    .bind(link.applied_version)
    .bind(link.applied.to_string())
    .bind(i64::from(link.active))
    .bind(serde_json::to_string(&link.groups).unwrap_or_else(|_| "[]".to_owned()))
    .bind(chrono::Utc::now().timestamp_millis())
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
        return Ok(vec![Operation::Stale]);
    }
    let assigned = change.apps.iter().any(|a| a.app == app.name);
    let active = assigned && change.lifecycle_state == LifecycleState::Active;
    // Pending (pre-hire window) and suspended persons keep an inactive
    // account; a deprovisioned person or a removed assignment deactivates.
    let wanted = assigned && change.lifecycle_state != LifecycleState::Deprovisioned;
    let desired = desired_user(change, active);
    let mut ops = Vec::new();

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
            };
            save(db, person, &app.name, &tombstone).await?;
            return Ok(vec![Operation::Unchanged]);
        }
        _ => {
            let key = desired[&app.match_attribute]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            match app
                .client
                .find_user(&app.match_attribute, &key)
                .await
                .map_err(scim)?
            {
                Some(found) => {
                    let scim_id = found["id"].as_str().unwrap_or_default().to_owned();
                    ops.push(Operation::Linked {
                        scim_id: scim_id.clone(),
                    });
                    Link {
                        active: found["active"].as_bool().unwrap_or(true),
                        applied: strip(found),
                        scim_id,
                        applied_version: 0,
                        groups: Vec::new(),
                    }
                }
                None => {
                    let created = match app.client.create("Users", &desired).await {
                        Ok(created) => created,
                        // Taken meanwhile (or a lost earlier response): link.
                        Err(ScimError::Status { status: 409, .. }) => app
                            .client
                            .find_user(&app.match_attribute, &key)
                            .await
                            .map_err(scim)?
                            .ok_or_else(|| {
                                scim(ScimError::Status {
                                    method: "POST".into(),
                                    path: "/Users".into(),
                                    status: 409,
                                    scim_type: Some("uniqueness".into()),
                                    detail: Some("conflict, but no account matches".into()),
                                    retry_after: None,
                                })
                            })?,
                        Err(e) => return Err(scim(e)),
                    };
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
                    };
                    push_groups(db, app, change, wanted, &mut link, &mut ops).await?;
                    save(db, person, &app.name, &link).await?;
                    return Ok(ops);
                }
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
    if !changed.is_empty() && wanted {
        if app.patch {
            let patch: Vec<PatchOp> = changed
                .iter()
                .map(|k| PatchOp::replace(k.clone(), desired[k.as_str()].clone()))
                .collect();
            app.client
                .patch("Users", &current.scim_id, &patch)
                .await
                .map_err(scim)?;
        } else {
            app.client
                .replace("Users", &current.scim_id, &desired)
                .await
                .map_err(scim)?;
        }
        ops.push(Operation::Updated {
            attributes: changed,
        });
    }
    if current.active && !active && guarding == Guarding::Check {
        if let Some(guard) = &app.guard {
            if guard_trips(db, &app.name, guard).await? {
                hold(db, &app.name, change, HoldReason::Guard).await?;
                // Nothing else of this change is applied, and its version
                // is not recorded: it is applied whole on release.
                return Ok(vec![Operation::Held]);
            }
        }
    }
    if current.active != active {
        app.client
            .set_active(&current.scim_id, active, app.patch)
            .await
            .map_err(scim)?;
        ops.push(if active {
            Operation::Reactivated
        } else {
            Operation::Deactivated
        });
        if !active {
            sqlx::query("INSERT INTO provisioner_deactivation (app, at_ms) VALUES ($1, $2)")
                .bind(&app.name)
                .bind(chrono::Utc::now().timestamp_millis())
                .execute(db.pool())
                .await?;
        }
    }
    push_groups(db, app, change, wanted, &mut current, &mut ops).await?;
    if ops.is_empty() {
        ops.push(Operation::Unchanged);
    }
    current.applied_version = version;
    if wanted {
        current.applied = desired;
    }
    current.active = active;
    save(db, person, &app.name, &current).await?;
    Ok(ops)
}

/// Brings the account's group memberships in `app` to the groups the
/// change assigns for it (none once the app is unassigned or the person
/// deprovisioned): groups are linked by name or created, members added and
/// removed with PATCH (`members[value eq "…"]` paths).
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
    let scim = |source: ScimError| ReconcileError::Scim {
        app: app.name.clone(),
        source: Box::new(source),
    };
    let mut desired: Vec<String> = if wanted {
        change
            .apps
            .iter()
            .filter(|a| a.app == app.name)
            .flat_map(|a| a.groups.iter().cloned())
            .collect()
    } else {
        Vec::new()
    };
    desired.sort();
    desired.dedup();
    let added: Vec<String> = desired
        .iter()
        .filter(|g| !link.groups.contains(g))
        .cloned()
        .collect();
    let removed: Vec<String> = link
        .groups
        .iter()
        .filter(|g| !desired.contains(g))
        .cloned()
        .collect();
    for name in &added {
        let group = group_id(db, app, name).await?;
        let op = PatchOp::add("members", json!([{"value": link.scim_id}]));
        app.client
            .patch("Groups", &group, &[op])
            .await
            .map_err(scim)?;
    }
    for name in &removed {
        let group = group_id(db, app, name).await?;
        let path = format!(
            "members[value eq {}]",
            crate::scim::filter_value(&link.scim_id)
        );
        match app
            .client
            .patch("Groups", &group, &[PatchOp::remove(path)])
            .await
        {
            // The group is gone from the app: nothing to leave.
            Ok(_) | Err(ScimError::Status { status: 404, .. }) => {}
            Err(e) => return Err(scim(e)),
        }
    }
    if !added.is_empty() || !removed.is_empty() {
        ops.push(Operation::Groups { added, removed });
    }
    link.groups = desired;
    Ok(())
}

/// The SCIM id of group `name` in `app`: remembered, found by
/// `displayName`, or created.
async fn group_id(db: &Db, app: &App, name: &str) -> Result<String, ReconcileError> {
    let scim = |source: ScimError| ReconcileError::Scim {
        app: app.name.clone(),
        source: Box::new(source),
    };
    let known: Option<String> =
        sqlx::query_scalar("SELECT scim_id FROM provisioner_group WHERE app = $1 AND name = $2")
            .bind(&app.name)
            .bind(name)
            .fetch_optional(db.pool())
            .await?;
    if let Some(id) = known {
        return Ok(id);
    }
    let found = app
        .client
        .find("Groups", "displayName", name)
        .await
        .map_err(scim)?;
    let id = match found.first().and_then(|g| g["id"].as_str()) {
        Some(id) => id.to_owned(),
        None => {
            let body = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": name,
                "members": [],
            });
            let created = app.client.create("Groups", &body).await.map_err(scim)?;
            created["id"].as_str().unwrap_or_default().to_owned()
        }
    };
    sqlx::query(
        "INSERT INTO provisioner_group (app, name, scim_id, updated_at_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (app, name) DO UPDATE SET scim_id = excluded.scim_id, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(&app.name)
    .bind(name)
    .bind(&id)
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(db.pool())
    .await?;
    Ok(id)
}

/// Whether one more deactivation in `app` would exceed its guard (or the
/// guard has tripped already); trips it if so.
async fn guard_trips(db: &Db, app: &str, guard: &Guard) -> Result<bool, ReconcileError> {
    let tripped: Option<i64> =
        sqlx::query_scalar("SELECT tripped_at_ms FROM provisioner_guard WHERE app = $1")
            .bind(app)
            .fetch_optional(db.pool())
            .await?;
    if tripped.is_some() {
        return Ok(true);
    }
    let now = chrono::Utc::now().timestamp_millis();
    let recent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM provisioner_deactivation WHERE app = $1 AND at_ms > $2",
    )
    .bind(app)
    .bind(now - guard.window_ms)
    .fetch_one(db.pool())
    .await?;
    let active: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM provisioner_link WHERE app = $1 AND active = 1")
            .bind(app)
            .fetch_one(db.pool())
            .await?;
    let next = recent + 1;
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let share = next as f64 / (active + recent).max(1) as f64;
    if next <= i64::from(guard.max_count) && share <= guard.max_share {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO provisioner_guard (app, tripped_at_ms) VALUES ($1, $2) ON CONFLICT (app) DO NOTHING",
    )
    .bind(app)
    .bind(now)
    .execute(db.pool())
    .await?;
    metrics::counter!("hrsync_provisioner_guard_trips_total", "app" => app.to_owned()).increment(1);
    tracing::warn!(
        app,
        deactivations_in_window = recent,
        active_accounts = active,
        "deprovision guard tripped: deactivations are held until `hrsync provisioner release {app}`"
    );
    Ok(true)
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
