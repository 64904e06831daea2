//! Reconciling each app on its schedule.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::ProvisionerConfig;
use crate::run::Provisioner;

use super::{claim_role, last_run, sweep, Options, ReconcileMode};

/// How often the schedule looks whether a run is due (a run made by
/// another process, or by hand, moves the next one).
pub(super) const SCHEDULE_CHECK: Duration = Duration::from_secs(30);

/// Reconciles every app with `reconcile_every_secs` on its schedule until
/// `stop`: each app once per interval, counted from its last run in the
/// same mode by any process (or by hand), one process at a time. An app
/// never reconciled in that mode is first reconciled one interval after
/// the start. A run in progress is abandoned on `stop` (each fix is a
/// change of its own; the next run finds what is left).
pub async fn scheduled(
    provisioner: Arc<Provisioner>,
    config: &ProvisionerConfig,
    stop: CancellationToken,
) {
    let apps = config.apps.iter().filter_map(|app| {
        let every = Duration::from_secs(app.reconcile_every_secs?);
        let options = Options::new(app.reconcile_mode == ReconcileMode::Report, app.orphans);
        Some(schedule(
            provisioner.clone(),
            app.name.clone(),
            every,
            app.reconcile_mode,
            options,
            stop.clone(),
        ))
    });
    futures::future::join_all(apps).await;
}

pub(super) async fn schedule(
    provisioner: Arc<Provisioner>,
    app: String,
    every: Duration,
    mode: ReconcileMode,
    options: Options,
    stop: CancellationToken,
) {
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    let first_due = chrono::Utc::now()
        .timestamp_millis()
        .saturating_add(every_ms);
    let due = |last: Option<i64>| last.map_or(first_due, |l| l.saturating_add(every_ms));
    tracing::info!(app = %app, every_secs = every.as_secs(), mode = mode.as_str(), "reconciliation scheduled");
    loop {
        let wait = match last_run(&provisioner.db, &app, mode).await {
            Ok(last) => due(last) - chrono::Utc::now().timestamp_millis(),
            Err(error) => {
                tracing::warn!(app = %app, %error, "reconciliation schedule not read; trying again");
                i64::try_from(SCHEDULE_CHECK.as_millis()).unwrap_or(i64::MAX)
            }
        };
        if wait > 0 {
            let wait = Duration::from_millis(u64::try_from(wait).unwrap_or(0)).min(SCHEDULE_CHECK);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let run = async {
            let claim = match provisioner.db.try_claim(&claim_role(&app)).await {
                Ok(Some(claim)) => claim,
                // Another process is reconciling it.
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(app = %app, %error, "reconciliation not claimed");
                    return;
                }
            };
            // Due still? Another process may have run it meanwhile.
            let still_due = last_run(&provisioner.db, &app, mode)
                .await
                .is_ok_and(|last| due(last) <= chrono::Utc::now().timestamp_millis());
            if still_due {
                if let Some(app) = provisioner.apps().iter().find(|a| a.name == app) {
                    let running = provisioner.reconciling.start(&app.name, options.dry_run);
                    match sweep(&provisioner, app, &options, &running.progress).await {
                        Ok(report) => tracing::info!(
                            app = %app.name,
                            dry_run = report.dry_run,
                            counts = ?report.counts.iter().map(|(c, n)| (c.as_str(), n)).collect::<Vec<_>>(),
                            failures = report.failures(),
                            held = report.held(),
                            "scheduled reconciliation done"
                        ),
                        Err(error) => {
                            tracing::warn!(app = %app.name, %error, "scheduled reconciliation failed")
                        }
                    }
                }
            }
            claim.release().await;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = run => {}
        }
        // A failed run is not recorded: wait before trying it again.
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SCHEDULE_CHECK.min(every)) => {}
        }
    }
}
