//! Admin actions run from the command line, recorded like those of the
//! admin API (`admin_action`, `via = "cli"`), with the operating-system
//! user as their subject.

use hrsync_store::actions::{self, AdminAction};
use hrsync_store::Db;
use serde_json::Value;

/// Who runs this command: `$USER` (or `$LOGNAME`), else `unknown`.
fn subject() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Records `action` on `target` in `db`. A failure to record is reported on
/// stderr and in the log, not hidden; the action has happened either way.
pub(crate) async fn record(db: &Db, action: &str, target: &str, ok: bool, detail: Value) {
    let record = AdminAction {
        action_id: uuid::Uuid::new_v4().to_string(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        subject: subject(),
        client_id: None,
        via: "cli".to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        outcome: if ok { "ok" } else { "failed" }.to_owned(),
        detail: detail.to_string(),
    };
    if let Err(error) = actions::record(db, &record).await {
        tracing::error!(%error, action, target, "the admin action could not be recorded");
        eprintln!("warning: {action} on {target} could not be recorded in admin_action: {error}");
    }
}
