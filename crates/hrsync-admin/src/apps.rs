//! Apps: their health (`GET /api/v1/apps`, `GET /api/v1/apps/{app}`) and
//! the deprovision guard's release (`POST /api/v1/apps/{app}/guard/release`,
//! an admin action).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use hrsync_auth::{Principal, Problem};
use hrsync_provisioner::run::AppResult;
use hrsync_provisioner::store::accounts;
use hrsync_provisioner::sweep::{self, Options, OrphanPolicy, SweepError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{last_errors, AuditItem};
use crate::{actions, paging, unavailable, AdminApi};

/// How far back an app's error count looks.
const ERROR_WINDOW_MS: i64 = 3_600_000;

/// One app's health.
#[derive(Debug, Serialize)]
pub(crate) struct AppHealth {
    name: String,
    /// Its deprovision guard tripped: deactivations are held until an
    /// admin releases them.
    guard_tripped: bool,
    guard_tripped_at: Option<String>,
    /// Deactivations the guard holds.
    held_by_guard: i64,
    /// The app stopped answering: its changes are parked (and probed for
    /// its return) rather than tried.
    quarantined: bool,
    /// Changes parked while the app was quarantined (not answering).
    parked: i64,
    /// Changes parked for a retry: a person's change ran out of attempts
    /// while the app answered others, so it waits for the next probe (a
    /// later change of the person, applied, replaces it).
    waiting_retry: i64,
    /// The persons those changes are for.
    persons_waiting_retry: i64,
    /// Directory changes the provisioner has not read yet, on the main and
    /// the priority topic (shared by every app: the provisioner reads one
    /// stream of changes); null when Kafka does not answer in time.
    changes_waiting: Option<i64>,
    active_accounts: i64,
    /// Accounts whose last change failed.
    failed_accounts: i64,
    /// Operations in the last hour, and how many of them failed.
    operations_last_hour: i64,
    errors_last_hour: i64,
    /// The latest failed operations.
    last_errors: Vec<AuditItem>,
    /// The last reconciliation of each mode (`fix`, `report`).
    reconcile_runs: Vec<RunView>,
}

/// An app's last reconciliation in one mode.
#[derive(Debug, Serialize)]
struct RunView {
    mode: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    /// Accounts per class (in sync, drifted, unlinked match, missing,
    /// orphan, ...).
    counts: serde_json::Value,
    failures: i64,
}

/// How long the broker gets to say how far behind the provisioner is.
const LAG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Directory changes the provisioner's consumer group has not read yet,
/// both topics together; none when Kafka does not answer in time.
async fn changes_waiting(api: &AdminApi) -> Option<i64> {
    let dead = &api.dead_letters;
    let mut waiting = 0;
    // Each topic is read by its own consumer group (see the provisioner's
    // lanes): the main one, and `<group_id>-priority`.
    let group = &dead.provisioner.group_id;
    for (topic, group) in [
        (&dead.topics.directory_changes, group.clone()),
        (&dead.topics.directory_priority, format!("{group}-priority")),
    ] {
        let request = hrsync_bus::PeekRequest {
            topic: topic.clone(),
            done_by: Some(group),
            only_pending: true,
            after: None,
            limit: 0,
        };
        match tokio::time::timeout(LAG_TIMEOUT, dead.peeker.peek(request)).await {
            Ok(Ok(page)) => waiting += page.pending,
            Ok(Err(error)) => {
                tracing::warn!(%error, topic, "the provisioner's lag cannot be read");
                return None;
            }
            Err(_) => return None,
        }
    }
    Some(waiting)
}

async fn health(
    api: &AdminApi,
    app: &str,
    errors: i64,
    changes_waiting: Option<i64>,
) -> Result<AppHealth, Problem> {
    let since = chrono::Utc::now().timestamp_millis() - ERROR_WINDOW_MS;
    let state = accounts::app_state(api.provisioner.store(), app, since)
        .await
        .map_err(unavailable)?;
    Ok(AppHealth {
        name: app.to_owned(),
        guard_tripped: state.guard_tripped_at_ms.is_some(),
        guard_tripped_at: state.guard_tripped_at_ms.and_then(paging::rfc3339),
        held_by_guard: state.held_by_guard,
        quarantined: state.parked > 0,
        parked: state.parked,
        waiting_retry: state.waiting,
        persons_waiting_retry: state.persons_waiting,
        changes_waiting,
        active_accounts: state.active_accounts,
        failed_accounts: state.failed_accounts,
        operations_last_hour: state.operations,
        errors_last_hour: state.errors,
        last_errors: last_errors(api, app, None, errors).await?,
        reconcile_runs: accounts::reconcile_runs(api.provisioner.store(), app)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|run| RunView {
                started_at: paging::rfc3339(run.started_at_ms),
                finished_at: paging::rfc3339(run.finished_at_ms),
                counts: serde_json::from_str(&run.counts).unwrap_or(serde_json::Value::Null),
                mode: run.mode,
                failures: run.failures,
            })
            .collect(),
    })
}

/// Whether `app` is a SCIM app; a manual-task app's 404 says it is one
/// (`manual_app: true`), so a client can show its tasks instead.
fn known(api: &AdminApi, app: &str) -> Result<(), Problem> {
    if api.provisioner.apps().iter().any(|a| a.name == app) {
        Ok(())
    } else if api.provisioner.manual_apps().iter().any(|a| a.name == app) {
        Err(Problem::not_found(format!(
            "{app:?} is a manual-task app ([[provisioner.manual_apps]]): people change its \
             accounts by hand, through its tasks (GET /api/v1/tasks?app={app})"
        ))
        .with("manual_app", true))
    } else {
        Err(Problem::not_found(format!(
            "no app named {app:?} in [[provisioner.apps]]"
        )))
    }
}

/// `GET /api/v1/apps`.
pub(crate) async fn list(
    State(api): State<Arc<AdminApi>>,
) -> Result<Json<Vec<AppHealth>>, Problem> {
    let waiting = changes_waiting(&api).await;
    let mut out = Vec::new();
    for app in api.provisioner.apps() {
        out.push(health(&api, &app.name, 3, waiting).await?);
    }
    Ok(Json(out))
}

/// `GET /api/v1/apps/{app}`.
pub(crate) async fn one(
    State(api): State<Arc<AdminApi>>,
    Path(app): Path<String>,
) -> Result<Json<AppHealth>, Problem> {
    known(&api, &app)?;
    let waiting = changes_waiting(&api).await;
    Ok(Json(health(&api, &app, 20, waiting).await?))
}

/// What one app did with one change.
#[derive(Debug, Serialize)]
pub(crate) struct Applied {
    person_id: String,
    version: u64,
    app: String,
    ok: bool,
    operations: Vec<String>,
    error: Option<String>,
    attempts: u32,
}

impl Applied {
    pub(crate) fn new(person_id: &str, version: u64, result: &AppResult) -> Self {
        let (operations, error) = match &result.result {
            Ok(ops) => (ops.iter().map(ToString::to_string).collect(), None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        Applied {
            person_id: person_id.to_owned(),
            version,
            app: result.app.clone(),
            ok: error.is_none(),
            operations,
            error,
            attempts: result.attempts,
        }
    }
}

/// The answer to a release.
#[derive(Debug, Serialize)]
pub(crate) struct Released {
    action_id: String,
    /// Each held change and what applying it did; a change that failed
    /// stays held.
    released: Vec<Applied>,
}

/// `POST /api/v1/apps/{app}/guard/release`: untrips the guard and applies
/// what it held. 409 when the guard is not tripped and holds nothing.
pub(crate) async fn release(
    State(api): State<Arc<AdminApi>>,
    Extension(principal): Extension<Principal>,
    Path(app): Path<String>,
) -> Result<Json<Released>, Problem> {
    known(&api, &app)?;
    let since = chrono::Utc::now().timestamp_millis();
    let state = accounts::app_state(api.provisioner.store(), &app, since)
        .await
        .map_err(unavailable)?;
    if state.guard_tripped_at_ms.is_none() && state.held_by_guard == 0 {
        return Err(Problem::conflict(format!(
            "the deprovision guard of {app} is not tripped and holds nothing"
        )));
    }
    let outcome = api.provisioner.release(&app).await;
    let (ok, detail, released) = match &outcome {
        Ok(done) => {
            let released: Vec<Applied> = done
                .iter()
                .map(|(change, result)| {
                    Applied::new(change.person_id.as_str(), change.version, result)
                })
                .collect();
            let failed = released.iter().filter(|r| !r.ok).count();
            (
                true,
                json!({ "released": released.len(), "still_held": failed }),
                released,
            )
        }
        Err(e) => (false, json!({ "error": e.to_string() }), Vec::new()),
    };
    let action_id = actions::record(&api, &principal, "guard.release", &app, ok, detail).await;
    match outcome {
        Ok(_) => Ok(Json(Released {
            action_id,
            released,
        })),
        Err(e) => Err(unavailable(e)),
    }
}

/// The body of a reconciliation request (optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReconcileRequest {
    /// Classify only, change nothing (the default).
    #[serde(default = "yes")]
    dry_run: bool,
    /// What to do with orphans in this run (default `report`).
    #[serde(default)]
    orphans: OrphanPolicy,
}

fn yes() -> bool {
    true
}

/// `POST /api/v1/apps/{app}/reconcile`: classifies every account of the
/// app against the desired state and, unless a dry run, fixes them;
/// answers the report. 409 while another process reconciles the app.
pub(crate) async fn reconcile(
    State(api): State<Arc<AdminApi>>,
    Extension(principal): Extension<Principal>,
    Path(app): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, Problem> {
    known(&api, &app)?;
    let request: ReconcileRequest =
        serde_json::from_slice(if body.is_empty() { b"{}" } else { &body }).map_err(|e| {
            Problem::unprocessable("$", format!("not a reconciliation request: {e}"))
        })?;
    let options = Options::new(request.dry_run, request.orphans);
    // Run to the end, and recorded, even if the caller goes away meanwhile
    // (a closed browser tab); its progress is at `.../reconcile/progress`.
    let run = tokio::spawn(async move {
        let outcome = sweep::reconcile_app(&api.provisioner, &app, &options).await;
        if !request.dry_run {
            let detail = match &outcome {
                Ok(report) => json!({ "orphans": request.orphans, "failures": report.failures() }),
                Err(e) => json!({ "orphans": request.orphans, "error": e.to_string() }),
            };
            let ok = outcome.as_ref().is_ok_and(|r| r.failures() == 0);
            actions::record(&api, &principal, "reconcile", &app, ok, detail).await;
        }
        outcome
    });
    match run.await.map_err(unavailable)? {
        Ok(report) => serde_json::to_value(&report).map(Json).map_err(unavailable),
        Err(e @ SweepError::Busy(_)) => Err(Problem::conflict(e.to_string())),
        Err(e) => Err(unavailable(e)),
    }
}

/// `GET /api/v1/apps/{app}/reconcile/progress`: the running reconciliation
/// of the app, in any process (asked for of any admin process or on a
/// provisioner's schedule), with its phase and counts; `running: false`
/// when there is none.
pub(crate) async fn reconcile_progress(
    State(api): State<Arc<AdminApi>>,
    Path(app): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    known(&api, &app)?;
    let progress = api
        .provisioner
        .reconcile_progress(&app)
        .await
        .map_err(unavailable)?;
    Ok(Json(match progress {
        Some(progress) => {
            let mut view = serde_json::to_value(progress).map_err(unavailable)?;
            view["running"] = json!(true);
            view
        }
        None => json!({ "app": app, "running": false }),
    }))
}
