//! Admin actions run from the command line, recorded like those of the
//! admin API (`admin_action`, `via = "cli"`), with the operating-system
//! user as their subject.

use hrsync_admin::{record_action, Actor};
use hrsync_store::Db;
use serde_json::Value;

/// Who runs this command: `$USER` (or `$LOGNAME`), else `unknown`.
fn subject() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Records `action` on `target` in `db`, run by this command's user. A
/// failure to record is reported on stderr and in the log, not hidden; the
/// action has happened either way.
pub(crate) async fn record(db: &Db, action: &str, target: &str, ok: bool, detail: Value) {
    let subject = subject();
    let actor = Actor {
        subject: &subject,
        client_id: None,
        via: "cli",
    };
    if let Err(error) = record_action(db, actor, action, target, ok, &detail).await {
        tracing::error!(%error, action, target, "the admin action could not be recorded");
        eprintln!("warning: {action} on {target} could not be recorded in admin_action: {error}");
    }
}
