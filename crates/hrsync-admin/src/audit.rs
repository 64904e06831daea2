//! The audit of SCIM operations, searched: `GET /api/v1/audit`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use hrsync_auth::Problem;
use hrsync_domain::{AuditOperation, AuditOutcome};
use hrsync_projector::project::person_id_of;
use hrsync_provisioner::store::accounts::{self, AuditFilter, AuditRow};
use serde::{Deserialize, Serialize};

use crate::paging::{self, Page, Params};
use crate::{unavailable, AdminApi};

/// The query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// HR employee id.
    person: Option<String>,
    /// hrsync person id (instead of `person`).
    person_id: Option<String>,
    app: Option<String>,
    /// Comma-separated operations.
    operation: Option<String>,
    /// Comma-separated outcomes.
    outcome: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// One audit record as the API answers.
#[derive(Debug, Serialize)]
pub(crate) struct AuditItem {
    audit_id: String,
    person_id: String,
    /// The person's employee id, where a change of theirs is stored (the
    /// key of `/persons/{employee_id}`).
    employee_id: Option<String>,
    app: String,
    operation: String,
    outcome: String,
    http_status: Option<i64>,
    latency_ms: i64,
    attempt: i64,
    version: i64,
    scim_id: Option<String>,
    error: Option<String>,
    trace_id: Option<String>,
    at: Option<String>,
    #[serde(skip)]
    at_ms: i64,
}

impl From<AuditRow> for AuditItem {
    fn from(row: AuditRow) -> Self {
        AuditItem {
            at: paging::rfc3339(row.at_ms),
            at_ms: row.at_ms,
            audit_id: row.audit_id,
            person_id: row.person_id,
            employee_id: row.employee_id,
            app: row.app,
            operation: row.operation,
            outcome: row.outcome,
            http_status: row.http_status,
            latency_ms: row.latency_ms,
            attempt: row.attempt,
            version: row.version,
            scim_id: row.scim_id,
            error: row.error,
            trace_id: row.trace_id,
        }
    }
}

fn symbols<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter()
        .map(|v| name(*v))
        .filter(|s| *s != "UNKNOWN")
        .collect()
}

/// `GET /api/v1/audit`.
pub(crate) async fn search(
    State(api): State<Arc<AdminApi>>,
    Params(query): Params<AuditQuery>,
) -> Result<Json<Page<AuditItem>>, Problem> {
    if query.person.is_some() && query.person_id.is_some() {
        return Err(Problem::bad_request("give person or person_id, not both"));
    }
    let limit = paging::limit(query.limit)?;
    let filter = AuditFilter {
        person_id: query
            .person_id
            .or_else(|| query.person.as_deref().map(person_id_of)),
        app: query.app,
        operations: paging::one_of(
            "operation",
            query.operation.as_deref(),
            &symbols(AuditOperation::ALL, |o| o.as_str()),
        )?,
        outcomes: paging::one_of(
            "outcome",
            query.outcome.as_deref(),
            &symbols(AuditOutcome::ALL, |o| o.as_str()),
        )?,
        from_ms: paging::time("from", query.from.as_deref())?,
        to_ms: paging::time("to", query.to.as_deref())?,
        before: paging::cursor(query.cursor.as_deref())?,
        limit,
    };
    let rows = accounts::audit(api.provisioner.store(), &filter)
        .await
        .map_err(unavailable)?;
    let items: Vec<AuditItem> = rows.into_iter().map(AuditItem::from).collect();
    Ok(Json(Page::new(items, limit, |i| {
        (i.at_ms, i.audit_id.as_str())
    })))
}

/// The last `n` operations of a person in an app, newest first.
pub(crate) async fn last_operations(
    api: &AdminApi,
    person_id: &str,
    app: &str,
    n: i64,
) -> Result<Vec<AuditItem>, Problem> {
    let filter = AuditFilter {
        person_id: Some(person_id.to_owned()),
        app: Some(app.to_owned()),
        limit: n,
        ..AuditFilter::default()
    };
    items(api, &filter).await
}

/// The last `n` failed operations of an app since `since_ms`.
pub(crate) async fn last_errors(
    api: &AdminApi,
    app: &str,
    since_ms: Option<i64>,
    n: i64,
) -> Result<Vec<AuditItem>, Problem> {
    let filter = AuditFilter {
        app: Some(app.to_owned()),
        outcomes: vec!["FAILED".to_owned(), "RETRY".to_owned()],
        from_ms: since_ms,
        limit: n,
        ..AuditFilter::default()
    };
    items(api, &filter).await
}

/// The audit records `filter` selects, as the API answers them.
async fn items(api: &AdminApi, filter: &AuditFilter) -> Result<Vec<AuditItem>, Problem> {
    let rows = accounts::audit(api.provisioner.store(), filter)
        .await
        .map_err(unavailable)?;
    Ok(rows.into_iter().map(AuditItem::from).collect())
}
