//! The hooks' deliveries: `GET /api/v1/hooks/deliveries`, what each hook
//! endpoint and SSF receiver was owed and what became of it.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use hrsync_auth::Problem;
use hrsync_hooks::store::{self, DeliveryFilter, DeliveryRecord};
use serde::{Deserialize, Serialize};

use crate::paging::{self, Page, Params};
use crate::{unavailable, AdminApi};

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

/// `GET /api/v1/hooks/deliveries`, newest first.
pub(crate) async fn deliveries(
    State(api): State<Arc<AdminApi>>,
    Params(query): Params<DeliveryQuery>,
) -> Result<Json<Page<DeliveryItem>>, Problem> {
    let Some(db) = &api.hooks else {
        return Err(Problem::not_found(
            "the hooks role is not configured ([hooks] in hrsync's config)",
        ));
    };
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
