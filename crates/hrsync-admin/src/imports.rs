//! The history of snapshot imports: `GET /api/v1/imports`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use hrsync_auth::Problem;
use hrsync_ingest::import::ImportError;
use hrsync_ingest::store::{ImportFilter, ImportRecord};
use serde::{Deserialize, Serialize};

use crate::paging::{self, Page, Params};
use crate::{unavailable, AdminApi};

/// The query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportQuery {
    /// Only this source's imports.
    source: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// One import as the API answers.
#[derive(Debug, Serialize)]
pub(crate) struct ImportItem {
    import_id: String,
    source: String,
    file_digest: String,
    /// `publishing`, `baseline` or `accepted`.
    state: String,
    event_count: i64,
    created_at: Option<String>,
    /// When it became the source's baseline (`null` while publishing).
    accepted_at: Option<String>,
    #[serde(skip)]
    created_at_ms: i64,
}

impl From<ImportRecord> for ImportItem {
    fn from(record: ImportRecord) -> Self {
        ImportItem {
            created_at: paging::rfc3339(record.created_at_ms),
            created_at_ms: record.created_at_ms,
            accepted_at: record.accepted_at_ms.and_then(paging::rfc3339),
            import_id: record.import_id,
            source: record.source,
            file_digest: record.file_digest,
            state: record.state,
            event_count: record.event_count,
        }
    }
}

/// `GET /api/v1/imports`.
pub(crate) async fn history(
    State(api): State<Arc<AdminApi>>,
    Params(query): Params<ImportQuery>,
) -> Result<Json<Page<ImportItem>>, Problem> {
    let limit = paging::limit(query.limit)?;
    let filter = ImportFilter {
        source: query.source,
        before: paging::cursor(query.cursor.as_deref())?,
        limit,
    };
    let records = api.ingest.imports(&filter).await.map_err(unavailable)?;
    let items: Vec<ImportItem> = records.into_iter().map(ImportItem::from).collect();
    Ok(Json(Page::new(items, limit, |i| {
        (i.created_at_ms, i.import_id.as_str())
    })))
}

/// The query parameters of a dry run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DryRunQuery {
    /// `csv` or `jsonl`; default: the source's format, else the request's
    /// content type (`text/csv`, `application/x-ndjson`).
    format: Option<String>,
    /// At most this many events listed per kind (default 1,000); the
    /// summary always counts them all.
    limit: Option<usize>,
}

/// One event a dry run would publish.
#[derive(Debug, Serialize)]
pub(crate) struct PlannedItem {
    employee_id: String,
    /// The worker's name as the export gives it (or the baseline, for one
    /// the export no longer lists).
    name: Option<String>,
    event_id: String,
    effective_at: String,
    /// Also on the priority lane (a termination in effect now).
    priority: bool,
}

/// What importing an uploaded export would do.
#[derive(Debug, Serialize)]
pub(crate) struct DryRun {
    source: String,
    /// Counts by kind.
    summary: hrsync_ingest::diff::Summary,
    /// Why a real import would be refused without `--force` (empty: it
    /// would not be).
    refused_without_force: Vec<String>,
    /// The events by kind (`hire`, `move`, `terminate`, ...), by employee id.
    events: std::collections::BTreeMap<&'static str, Vec<PlannedItem>>,
    /// Some kind had more events than `limit`.
    events_truncated: bool,
}

/// The display name of worker `employee_id` in `snapshot`: its display
/// name, else its preferred (or given) and family names.
fn worker_name(snapshot: &hrsync_ingest::snapshot::Snapshot, employee_id: &str) -> Option<String> {
    let attributes = &snapshot.workers.get(employee_id)?.attributes;
    if let Some(display) = attributes.display_name.clone() {
        return Some(display);
    }
    let given = attributes
        .preferred_name
        .as_deref()
        .unwrap_or(&attributes.given_name);
    let name = format!("{given} {}", attributes.family_name);
    Some(name.trim().to_owned()).filter(|n| !n.is_empty())
}

/// The largest export a dry run reads.
pub(crate) const DRY_RUN_BODY_LIMIT: usize = 256 * 1024 * 1024;

/// `POST /api/v1/imports/{source}/dry-run`: the body an HR export of the
/// source (CSV or JSON Lines) compared with its baseline; nothing is
/// published or stored.
pub(crate) async fn dry_run(
    State(api): State<Arc<AdminApi>>,
    axum::extract::Path(source): axum::extract::Path<String>,
    Params(query): Params<DryRunQuery>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<DryRun>, Problem> {
    let config = api
        .sources
        .iter()
        .find(|s| s.name == source)
        .ok_or_else(|| {
            Problem::not_found(format!("no source named {source:?} in [[ingest.sources]]"))
        })?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let format = match query.format.as_deref() {
        Some("csv") => "csv",
        Some("jsonl") => "jsonl",
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "format={other:?}: csv or jsonl"
            )))
        }
        None if content_type.contains("ndjson") || content_type.contains("jsonl") => "jsonl",
        None => "csv",
    };
    let limit = query.limit.unwrap_or(1_000);
    let file = format!("upload.{format}");
    let plan =
        hrsync_ingest::import::dry_run(&api.ingest, config, &file, &body, chrono::Utc::now())
            .await
            .map_err(|e| match e {
                ImportError::Store(e) => unavailable(e),
                other => Problem::unprocessable("$", other.to_string()),
            })?;
    let mut truncated = false;
    let events = hrsync_ingest::diff::by_kind(&plan)
        .into_iter()
        .map(|(kind, planned)| {
            truncated |= planned.len() > limit;
            let items = planned
                .into_iter()
                .take(limit)
                .map(|p| PlannedItem {
                    name: worker_name(&plan.next_baseline, p.event.employee_id.as_str()),
                    employee_id: p.event.employee_id.as_str().to_owned(),
                    event_id: p.event.event_id.to_string(),
                    effective_at: p.event.effective_at.as_datetime().to_rfc3339(),
                    priority: p.priority,
                })
                .collect();
            (kind, items)
        })
        .collect();
    Ok(Json(DryRun {
        source,
        refused_without_force: plan
            .check_limits(config)
            .err()
            .map(|r| r.reasons)
            .unwrap_or_default(),
        summary: plan.summary,
        events,
        events_truncated: truncated,
    }))
}
