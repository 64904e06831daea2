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

/// A server's user without its server-side fields, for comparison.
fn strip(mut user: Value) -> Value {
    if let Some(o) = user.as_object_mut() {
        o.remove("id");
        o.remove("meta");
    }
    user
}
