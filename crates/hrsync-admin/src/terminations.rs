//! The latest terminations and, per app, when the account was deactivated
//! and how long after the HR event: `GET /api/v1/terminations`.
//!
//! The HR event time and the order are the provisioner's
//! ([`hrsync_provisioner::terminations`]): the moment the termination took
//! effect in HR, the one `hrsync_termination_latency_seconds` measures
//! from; newest first by when the provisioner received the person's
//! newest change.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use hrsync_auth::Problem;
use hrsync_provisioner::terminations::{self, AppTermination, Termination};
use serde::{Deserialize, Serialize};

use crate::paging::{self, Page, Params};
use crate::{unavailable, AdminApi};

/// The query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TerminationQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// One terminated person as the API answers.
#[derive(Debug, Serialize)]
pub(crate) struct TerminationItem {
    employee_id: String,
    person_id: String,
    /// Version of the person's newest directory change.
    version: i64,
    /// The HR event time: when the termination took effect in HR.
    terminated_at: Option<String>,
    /// When the provisioner received the person's newest change.
    received_at: Option<String>,
    /// Whether every app's account, SCIM or manual, is done with
    /// (deactivated, or inactive already).
    complete: bool,
    /// Each configured app the person has an account in.
    apps: Vec<AppItem>,
}

/// A terminated person's account in one app.
#[derive(Debug, Serialize)]
struct AppItem {
    app: String,
    /// `deactivated`, `inactive`, `pending`, `held`, `parked`, `failed`, or
    /// `task_open` (a manual-task app whose disable task is open).
    status: &'static str,
    /// When the app acknowledged the deactivation.
    deactivated_at: Option<String>,
    /// From `terminated_at` to `deactivated_at`.
    latency_ms: Option<i64>,
    /// W3C trace id of the deactivation, or of the failure.
    trace_id: Option<String>,
    error: Option<String>,
    /// The open disable task, for a manual-task app.
    task_id: Option<i64>,
}

impl From<AppTermination> for AppItem {
    fn from(app: AppTermination) -> Self {
        AppItem {
            app: app.app,
            status: app.status.as_str(),
            deactivated_at: app.deactivated_at_ms.and_then(paging::rfc3339),
            latency_ms: app.latency_ms,
            trace_id: app.trace_id,
            error: app.error,
            task_id: app.task_id,
        }
    }
}

impl From<Termination> for TerminationItem {
    fn from(t: Termination) -> Self {
        TerminationItem {
            complete: t.is_complete(),
            employee_id: t.employee_id,
            person_id: t.person_id,
            version: t.version,
            terminated_at: t.hr_event_ms.and_then(paging::rfc3339),
            received_at: paging::rfc3339(t.seen_at_ms),
            apps: t.apps.into_iter().map(AppItem::from).collect(),
        }
    }
}

/// `GET /api/v1/terminations`: a page may hold fewer items than `limit`
/// (the provisioner reads a bounded number of persons per request); follow
/// `next_cursor` until it is `null`.
pub(crate) async fn latest(
    State(api): State<Arc<AdminApi>>,
    Params(query): Params<TerminationQuery>,
) -> Result<Json<Page<TerminationItem>>, Problem> {
    let limit = paging::limit(query.limit)?;
    let before = paging::cursor(query.cursor.as_deref())?;
    let apps = api.provisioner.app_names();
    let page = terminations::latest(
        api.provisioner.store(),
        &apps,
        before,
        usize::try_from(limit).unwrap_or(1),
    )
    .await
    .map_err(unavailable)?;
    let items = page.items.into_iter().map(TerminationItem::from).collect();
    Ok(Json(Page::with_next(items, page.next)))
}
