//! The hooks' deliveries: `GET /api/v1/hooks/deliveries`, what each hook
//! endpoint, SSF receiver and revocation call was owed and what became of
//! it; `POST /api/v1/hooks/redrive` sends the dead ones again.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use hrsync_auth::{Principal, Problem};
use hrsync_hooks::store::{self, DeliveryFilter, DeliveryRecord};
use serde::{Deserialize, Serialize};

use crate::paging::{self, Page, Params};
use crate::{actions, unavailable, AdminApi};

/// The query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryQuery {
    /// Only this endpoint's or receiver's.
    hook: Option<String>,
    /// `pending`, `delivered` or `dead`.
    status: Option<String>,
    /// Only this person's.
    employee_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// One delivery as the API answers.
#[derive(Debug, Serialize)]
pub(crate) struct DeliveryItem {
    delivery_id: String,
    hook: String,
    employee_id: String,
    person_id: String,
    version: i64,
    event_type: String,
    priority: bool,
    status: String,
    attempts: i64,
    http_status: Option<i64>,
    last_error: Option<String>,
    trace_id: Option<String>,
    created_at: Option<String>,
    done_at: Option<String>,
    #[serde(skip)]
    created_at_ms: i64,
}

impl From<DeliveryRecord> for DeliveryItem {
    fn from(record: DeliveryRecord) -> Self {
        DeliveryItem {
            created_at: paging::rfc3339(record.created_at_ms),
            created_at_ms: record.created_at_ms,
            done_at: record.done_at_ms.and_then(paging::rfc3339),
            delivery_id: record.delivery_id,
            hook: record.hook,
            employee_id: record.employee_id,
            person_id: record.person_id,
            version: record.version,
            event_type: record.event_type,
            priority: record.priority,
            status: record.status,
            attempts: record.attempts,
            http_status: record.http_status,
            last_error: record.last_error,
            trace_id: record.trace_id,
        }
    }
}

/// The hooks' store, or a 404 saying hooks are not configured.
fn store(api: &AdminApi) -> Result<&hrsync_store::Db, Problem> {
    api.hooks.as_ref().ok_or_else(|| {
        Problem::not_found("the hooks role is not configured ([hooks] in hrsync's config)")
    })
}

/// `GET /api/v1/hooks/deliveries`, newest first.
pub(crate) async fn deliveries(
    State(api): State<Arc<AdminApi>>,
    Params(query): Params<DeliveryQuery>,
) -> Result<Json<Page<DeliveryItem>>, Problem> {
    let db = store(&api)?;
    if let Some(status) = query.status.as_deref() {
        if !matches!(status, "pending" | "delivered" | "dead") {
            return Err(Problem::bad_request(format!(
                "status {status:?} is not pending, delivered or dead"
            )));
        }
    }
    let limit = paging::limit(query.limit)?;
    let filter = DeliveryFilter {
        hook: query.hook,
        status: query.status,
        employee_id: query.employee_id,
        before: paging::cursor(query.cursor.as_deref())?,
        limit,
    };
    let records = store::list(db, &filter).await.map_err(unavailable)?;
    let items: Vec<DeliveryItem> = records.into_iter().map(DeliveryItem::from).collect();
    Ok(Json(Page::new(items, limit, |i| {
        (i.created_at_ms, i.delivery_id.as_str())
    })))
}

/// The body of a redrive request (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedriveRequest {
    /// Only this endpoint's, receiver's or revocation call's.
    #[serde(default)]
    hook: Option<String>,
}

/// What a redrive did.
#[derive(Debug, Serialize)]
pub(crate) struct Revived {
    action_id: String,
    /// Dead deliveries made pending again (due now, their attempts counted
    /// afresh): the hooks role sends them in order.
    revived: u64,
}

/// `POST /api/v1/hooks/redrive`: every dead delivery (or one hook's)
/// pending again, as `hrsync hooks redrive` does. An admin action.
pub(crate) async fn redrive(
    State(api): State<Arc<AdminApi>>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<Revived>, Problem> {
    let db = store(&api)?;
    let request: RedriveRequest =
        serde_json::from_slice(if body.is_empty() { b"{}" } else { &body })
            .map_err(|e| Problem::unprocessable("$", format!("not a redrive request: {e}")))?;
    let outcome = store::redrive(db, request.hook.as_deref()).await;
    let detail = match &outcome {
        Ok(revived) => serde_json::json!({ "hook": request.hook, "deliveries": revived }),
        Err(e) => serde_json::json!({ "hook": request.hook, "error": e.to_string() }),
    };
    let target = request.hook.as_deref().unwrap_or("*");
    let action_id = actions::record(
        &api,
        &principal,
        "hooks.redrive",
        target,
        outcome.is_ok(),
        detail,
    )
    .await;
    let revived = outcome.map_err(unavailable)?;
    Ok(Json(Revived { action_id, revived }))
}
