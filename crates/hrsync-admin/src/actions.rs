//! Admin actions: each one recorded with who ran it (`admin_action`), and
//! listed by `GET /api/v1/actions`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use hrsync_auth::{Principal, Problem};
use hrsync_store::actions::{self, ActionFilter, AdminAction};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::paging::{self, Page, Params};
use crate::{unavailable, AdminApi};

/// Who ran an admin action.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// The access token's subject, or the operating-system user of a CLI
    /// command.
    pub subject: &'a str,
    /// The OAuth client of the token, if any.
    pub client_id: Option<&'a str>,
    /// `api` or `cli`.
    pub via: &'a str,
}

/// Records in `db` that `actor` ran `action` on `target`, how it ended
/// (`ok`) and its `detail`; returns the record's id. The admin API and the
/// CLI's admin commands record through this one function.
///
/// # Errors
/// The record could not be written (the action has happened either way).
pub async fn record_action(
    db: &hrsync_store::Db,
    actor: Actor<'_>,
    action: &str,
    target: &str,
    ok: bool,
    detail: &Value,
) -> Result<String, hrsync_store::Error> {
    let record = AdminAction {
        action_id: uuid::Uuid::new_v4().to_string(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        subject: actor.subject.to_owned(),
        client_id: actor.client_id.map(str::to_owned),
        via: actor.via.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        outcome: if ok { "ok" } else { "failed" }.to_owned(),
        detail: detail.to_string(),
    };
    actions::record(db, &record).await?;
    Ok(record.action_id)
}

/// Records an admin action made through the API by `principal`; returns
/// its id (empty if it could not be recorded: logged, not hidden, as the
/// action has happened either way).
pub(crate) async fn record(
    api: &AdminApi,
    principal: &Principal,
    action: &str,
    target: &str,
    ok: bool,
    detail: Value,
) -> String {
    let actor = Actor {
        subject: &principal.subject,
        client_id: principal.client_id.as_deref(),
        via: "api",
    };
    record_action(api.provisioner.store(), actor, action, target, ok, &detail)
        .await
        .unwrap_or_else(|error| {
            tracing::error!(%error, action, target, subject = %principal.subject, "an admin action could not be recorded");
            String::new()
        })
}

/// The query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionQuery {
    action: Option<String>,
    target: Option<String>,
    subject: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// One admin action as the API answers.
#[derive(Debug, Serialize)]
pub(crate) struct ActionItem {
    action_id: String,
    at: Option<String>,
    subject: String,
    client_id: Option<String>,
    via: String,
    action: String,
    target: String,
    outcome: String,
    detail: Value,
    #[serde(skip)]
    at_ms: i64,
}

/// `GET /api/v1/actions`.
pub(crate) async fn search(
    State(api): State<Arc<AdminApi>>,
    Params(query): Params<ActionQuery>,
) -> Result<Json<Page<ActionItem>>, Problem> {
    let limit = paging::limit(query.limit)?;
    let filter = ActionFilter {
        action: query.action,
        target: query.target,
        subject: query.subject,
        from_ms: paging::time("from", query.from.as_deref())?,
        to_ms: paging::time("to", query.to.as_deref())?,
        before: paging::cursor(query.cursor.as_deref())?,
        limit,
    };
    // Actions are recorded in the store of the stage they act on: the
    // provisioner's, and the ingest store for `import --force`. Both are
    // read (they are often one database: a row is listed once) and merged
    // newest first, which keeps the keyset cursor valid for both.
    let mut rows = actions::search(api.provisioner.store(), &filter)
        .await
        .map_err(unavailable)?;
    rows.extend(
        actions::search(api.ingest.db(), &filter)
            .await
            .map_err(unavailable)?,
    );
    rows.sort_by(|a, b| (b.at_ms, &b.action_id).cmp(&(a.at_ms, &a.action_id)));
    rows.dedup_by(|a, b| a.action_id == b.action_id);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let items: Vec<ActionItem> = rows
        .into_iter()
        .map(|a| ActionItem {
            at: paging::rfc3339(a.at_ms),
            at_ms: a.at_ms,
            detail: serde_json::from_str(&a.detail).unwrap_or(Value::String(a.detail)),
            action_id: a.action_id,
            subject: a.subject,
            client_id: a.client_id,
            via: a.via,
            action: a.action,
            target: a.target,
            outcome: a.outcome,
        })
        .collect();
    Ok(Json(Page::new(items, limit, |i| {
        (i.at_ms, i.action_id.as_str())
    })))
}
