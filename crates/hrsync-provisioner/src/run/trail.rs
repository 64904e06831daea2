//! The audit trail of what applying changes did: one record per
//! operation or failed attempt.

use std::time::Duration;

use hrsync_domain::{
    AuditOperation, AuditOutcome, DirectoryChange, PersonId, ProvisioningAudit, Timestamp,
};

use super::Provisioner;
use crate::reconcile::{App, Operation, ReconcileError};

impl Provisioner {
    /// Records each of `ops` in the audit trail.
    pub(crate) async fn audit_ops(
        &self,
        app: &str,
        change: &DirectoryChange,
        ops: &[Operation],
        latency: Duration,
        attempt: u32,
    ) {
        let records = ops
            .iter()
            .filter_map(|op| {
                let (operation, outcome, scim_id) = match op {
                    Operation::Stale | Operation::Unchanged => {
                        (AuditOperation::Update, AuditOutcome::Skipped, None)
                    }
                    Operation::Linked { scim_id } => (
                        AuditOperation::Link,
                        AuditOutcome::Success,
                        Some(scim_id.clone()),
                    ),
                    Operation::Created { scim_id } => (
                        AuditOperation::Create,
                        AuditOutcome::Success,
                        Some(scim_id.clone()),
                    ),
                    Operation::Updated { .. } => {
                        (AuditOperation::Update, AuditOutcome::Success, None)
                    }
                    Operation::Deactivated => {
                        (AuditOperation::Deactivate, AuditOutcome::Success, None)
                    }
                    Operation::Reactivated => {
                        (AuditOperation::Reactivate, AuditOutcome::Success, None)
                    }
                    Operation::Groups { .. } => {
                        (AuditOperation::GroupMembers, AuditOutcome::Success, None)
                    }
                    Operation::GroupRenamed { .. } => {
                        (AuditOperation::GroupUpdate, AuditOutcome::Success, None)
                    }
                    Operation::Held => (AuditOperation::GuardHold, AuditOutcome::Held, None),
                    Operation::Parked => (AuditOperation::Unknown, AuditOutcome::Held, None),
                    Operation::Task { action, .. } => {
                        (action.operation(), AuditOutcome::Task, None)
                    }
                };
                audit_record(
                    app,
                    (&change.person_id, change.version),
                    operation,
                    outcome,
                    scim_id,
                    None,
                    latency,
                    attempt,
                )
            })
            .collect();
        self.audit.record(records).await;
    }

    pub(super) async fn audit_failure(
        &self,
        app: &App,
        change: &DirectoryChange,
        error: &ReconcileError,
        latency: Duration,
        attempt: u32,
    ) {
        let outcome = match error {
            ReconcileError::Scim { source, .. } if source.is_retryable() => AuditOutcome::Retry,
            _ => AuditOutcome::Failed,
        };
        let record = audit_record(
            &app.name,
            (&change.person_id, change.version),
            failed_operation(app, change, error),
            outcome,
            None,
            Some(error),
            latency,
            attempt,
        );
        self.audit.record(record.into_iter().collect()).await;
    }
}

/// Which operation a failure belongs to, from the request that failed:
/// matching (`GET`, or a match that found several accounts), creating
/// (`POST /Users`), changing an account (`PATCH`/`PUT /Users/…`: a
/// deactivation when the change takes the account away, else an update or
/// reactivation, recorded as an update), or a group's; `UNKNOWN` for store
/// failures, which are not SCIM operations.
fn failed_operation(app: &App, change: &DirectoryChange, error: &ReconcileError) -> AuditOperation {
    let ReconcileError::Scim { source, .. } = error else {
        return AuditOperation::Unknown;
    };
    let Some((method, path)) = source.request() else {
        return AuditOperation::Match;
    };
    let groups = path.starts_with("/Groups");
    match (method, groups) {
        ("GET", _) => AuditOperation::Match,
        ("POST", false) => AuditOperation::Create,
        ("POST", true) => AuditOperation::GroupCreate,
        (_, true) => AuditOperation::GroupMembers,
        _ => {
            let keeps_account = change.lifecycle_state == hrsync_domain::LifecycleState::Active
                && change.apps.iter().any(|a| a.app == app.name);
            if keeps_account {
                AuditOperation::Update
            } else {
                AuditOperation::Deactivate
            }
        }
    }
}

/// The audit record of one operation (counted in
/// `hrsync_provisioner_operations_total`), with the current trace context.
#[allow(clippy::too_many_arguments)]
pub(crate) fn audit_record(
    app: &str,
    (person_id, version): (&PersonId, u64),
    operation: AuditOperation,
    outcome: AuditOutcome,
    scim_id: Option<String>,
    error: Option<&ReconcileError>,
    latency: Duration,
    attempt: u32,
) -> Option<(ProvisioningAudit, Vec<(String, String)>)> {
    metrics::counter!("hrsync_provisioner_operations_total", "app" => app.to_owned(), "operation" => operation.as_str(), "outcome" => outcome.as_str()).increment(1);
    let at = Timestamp::from_millis(chrono::Utc::now().timestamp_millis()).ok()?;
    let span = tracing::Span::current();
    let record = ProvisioningAudit {
        audit_id: uuid::Uuid::new_v4().to_string(),
        person_id: person_id.clone(),
        app: app.to_owned(),
        operation,
        outcome,
        http_status: match error {
            Some(ReconcileError::Scim { source, .. }) => source.status(),
            _ => None,
        },
        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        attempt,
        version,
        scim_id,
        error: error.map(ToString::to_string),
        trace_id: hrsync_telemetry::propagation::trace_id(&span),
        at,
    };
    Some((record, hrsync_telemetry::propagation::inject(&span)))
}
