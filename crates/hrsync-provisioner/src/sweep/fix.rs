//! The fixes a reconciliation makes, each through the provisioner's own
//! paths (per-person lock, version checks, guard, audit).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hrsync_domain::{
    AuditOperation, AuditOutcome, DirectoryChange, PersonId, ProvisioningAudit, Timestamp,
};
use hrsync_store::Db;

use crate::guard::Deactivation;
use crate::reconcile::{App, Operation, ReconcileError};
use crate::run::Provisioner;
use crate::scim::ScimError;

use super::inputs::decode_persons;
use super::progress::{Phase, Progress};
use super::report::{Action, Finding, FixResult};
use super::{Options, FIXES};

/// Applies the fixes the findings call for, kind by kind (links, creates,
/// re-applies, deactivations), up to `fix_concurrency` at once.
pub(super) async fn fix(
    provisioner: &Provisioner,
    app: &App,
    findings: &mut [Finding],
    changes: &HashMap<&str, &DirectoryChange>,
    options: &Options,
    started_ms: i64,
    progress: &Progress,
) {
    // Orphans whose person reached the provisioner while the app was read
    // are not orphans: left for the next reconciliation.
    let arrived = arrived_since(&provisioner.db, app, started_ms).await;
    for action in [
        Action::Link,
        Action::Create,
        Action::Reapply,
        Action::Deactivate,
    ] {
        let work: Vec<(usize, Finding)> = findings
            .iter()
            .enumerate()
            .filter(|(_, f)| f.action == action)
            .map(|(i, f)| (i, f.clone()))
            .collect();
        let arrived = &arrived;
        let results: Vec<(usize, FixResult)> = futures::stream::iter(work)
            .map(|(i, finding)| async move {
                let result = match action {
                    Action::Link => link(provisioner, app, &finding, changes).await,
                    Action::Create | Action::Reapply => {
                        provision(provisioner, app, finding.person_id.as_deref()).await
                    }
                    Action::Deactivate => match arrived {
                        Err(error) => FixResult::Skipped {
                            reason: format!(
                                "persons that arrived meanwhile could not be read: {error}"
                            ),
                        },
                        Ok(keys) if is_claimed(&finding, keys) => FixResult::Skipped {
                            reason: "an HR person matching it reached the provisioner \
                                     meanwhile"
                                .to_owned(),
                        },
                        Ok(_) => deactivate_orphan(provisioner, app, &finding).await,
                    },
                    Action::None | Action::Memberships | Action::Report => return (i, None),
                };
                let outcome = match &result {
                    FixResult::Done { .. } => "done",
                    FixResult::Held { .. } => "held",
                    FixResult::Parked => "parked",
                    FixResult::Skipped { .. } => "skipped",
                    FixResult::Failed { .. } => "failed",
                };
                count_fix(app, action, outcome);
                progress.fixed(!matches!(result, FixResult::Failed { .. }));
                (i, Some(result))
            })
            .buffer_unordered(options.fix_concurrency.max(1))
            .filter_map(|(i, result)| async move { result.map(|r| (i, r)) })
            .collect()
            .await;
        for (i, result) in results {
            findings[i].result = Some(result);
        }
    }
    progress.enter(Phase::Memberships);
    fix_memberships(provisioner, app, findings, changes).await;
}

/// Records in `finding` how its requested memberships went: `flushed` is
/// the group writer's flush, `refused` what the app refused.
fn record_memberships(
    app: &App,
    finding: &mut Finding,
    flushed: &Result<bool, ReconcileError>,
    refused: &[(String, String, String)],
) {
    let groups = format!(
        "join [{}], leave [{}]",
        finding.groups_to_join.join(", "),
        finding.groups_to_leave.join(", ")
    );
    let refusals: Vec<String> = refused
        .iter()
        .filter(|(group, member, _)| {
            finding.account_id.as_ref() == Some(member)
                && (finding.groups_to_join.contains(group)
                    || finding.groups_to_leave.contains(group))
        })
        .map(|(group, _, error)| format!("{group}: {error}"))
        .collect();
    let operation = match &flushed {
        Err(error) => {
            finding.result = Some(FixResult::Failed {
                error: format!("group memberships ({groups}): {error}"),
            });
            count_fix(app, Action::Memberships, "failed");
            return;
        }
        Ok(_) if !refusals.is_empty() => {
            finding.result = Some(FixResult::Failed {
                error: format!("the app refused: {}", refusals.join("; ")),
            });
            count_fix(app, Action::Memberships, "failed");
            return;
        }
        Ok(true) => format!("groups: {groups}"),
        Ok(false) => format!(
            "groups requested: {groups} (applied by the process that writes this app's groups)"
        ),
    };
    count_fix(app, Action::Memberships, "done");
    match &mut finding.result {
        Some(FixResult::Done { operations }) => operations.push(operation),
        _ => {
            finding.result = Some(FixResult::Done {
                operations: vec![operation],
            });
        }
    }
}

/// Requests the membership drift of every linked account whose other fixes
/// (if any) were done of the app's group writer, each under its person's
/// lock and only while the person's newest change is the one classified
/// against; then flushes the writer (or, when another process writes this
/// app's groups, leaves them to it).
pub(super) async fn fix_memberships(
    provisioner: &Provisioner,
    app: &App,
    findings: &mut [Finding],
    changes: &HashMap<&str, &DirectoryChange>,
) {
    let db = &provisioner.db;
    let mut requested = Vec::new();
    for (i, finding) in findings.iter_mut().enumerate() {
        let eligible = matches!(
            (&finding.result, finding.action),
            (None, Action::Memberships)
                | (Some(FixResult::Done { .. }), Action::Reapply | Action::Link)
        );
        let (Some(person_id), Some(account_id)) = (&finding.person_id, &finding.account_id) else {
            continue;
        };
        let drift = !finding.groups_to_join.is_empty() || !finding.groups_to_leave.is_empty();
        let Some(change) = changes
            .get(person_id.as_str())
            .filter(|_| eligible && drift)
        else {
            continue;
        };
        let memberships: Vec<crate::groups::Membership> = finding
            .groups_to_join
            .iter()
            .map(|g| (g, true))
            .chain(finding.groups_to_leave.iter().map(|g| (g, false)))
            .map(|(group, member)| crate::groups::Membership {
                group: group.clone(),
                person_id: person_id.clone(),
                member_id: account_id.clone(),
                member,
            })
            .collect();
        let outcome = {
            let _person = provisioner.lock_person(&change.person_id).await;
            match newest_version(db, person_id).await {
                Ok(Some(version)) if u64::try_from(version).ok() == Some(change.version) => {
                    crate::groups::request(db, &app.name, &memberships)
                        .await
                        .map(|()| true)
                }
                Ok(_) => Ok(false),
                Err(error) => Err(error),
            }
        };
        match outcome {
            Ok(true) => requested.push(i),
            Ok(false) if finding.action == Action::Memberships => {
                finding.result = Some(FixResult::Skipped {
                    reason: "a newer change of the person arrived; it brings the memberships"
                        .to_owned(),
                });
            }
            Ok(false) => {}
            Err(error) => {
                finding.result = Some(FixResult::Failed {
                    error: format!("group memberships: {error}"),
                });
            }
        }
    }
    if requested.is_empty() {
        return;
    }
    let flushed = app.flush_groups(db).await;
    let refused = match &flushed {
        Ok(true) => crate::groups::refused(db, &app.name)
            .await
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    for i in requested {
        record_memberships(app, &mut findings[i], &flushed, &refused);
    }
}

pub(super) fn count_fix(app: &App, action: Action, outcome: &'static str) {
    metrics::counter!(FIXES, "app" => app.name.clone(), "action" => action.done(), "outcome" => outcome)
        .increment(1);
}

/// The version of the newest change stored for `person_id`.
pub(super) async fn newest_version(
    db: &Db,
    person_id: &str,
) -> Result<Option<i64>, ReconcileError> {
    Ok(crate::store::people::newest_version(db, person_id).await?)
}

/// The match keys of the persons whose newest change reached the
/// provisioner since `started_ms`.
pub(super) async fn arrived_since(
    db: &Db,
    app: &App,
    started_ms: i64,
) -> Result<HashSet<(usize, String)>, ReconcileError> {
    let payloads = crate::store::people::seen_since(db, started_ms).await?;
    Ok(decode_persons(app, &payloads, &HashMap::new())
        .into_iter()
        .flat_map(|p| p.keys)
        .collect())
}

pub(super) fn is_claimed(finding: &Finding, keys: &HashSet<(usize, String)>) -> bool {
    finding.keys.iter().any(|k| keys.contains(k))
}

/// Links the finding's account to its person, unless the person got
/// another account meanwhile, then applies their desired state to it.
pub(super) async fn link(
    provisioner: &Provisioner,
    app: &App,
    finding: &Finding,
    changes: &HashMap<&str, &DirectoryChange>,
) -> FixResult {
    let (Some(person_id), Some(account_id)) = (&finding.person_id, &finding.account_id) else {
        return FixResult::Skipped {
            reason: "no person or account to link".to_owned(),
        };
    };
    let Some(change) = changes.get(person_id.as_str()) else {
        return FixResult::Skipped {
            reason: "the person's change is gone".to_owned(),
        };
    };
    let linked = {
        let _person = provisioner.lock_person(&change.person_id).await;
        write_link(
            &provisioner.db,
            &app.name,
            change,
            account_id,
            finding.active.unwrap_or(true),
            finding.previous_account_id.as_deref().unwrap_or_default(),
        )
        .await
    };
    match linked {
        Err(error) => {
            return FixResult::Failed {
                error: error.to_string(),
            }
        }
        Ok(false) => {
            return FixResult::Skipped {
                reason: "the person was linked to an account meanwhile".to_owned(),
            }
        }
        Ok(true) => {}
    }
    let op = Operation::Linked {
        scim_id: account_id.clone(),
    };
    provisioner
        .audit_ops(
            &app.name,
            change,
            std::slice::from_ref(&op),
            Duration::ZERO,
            1,
        )
        .await;
    match provision(provisioner, app, Some(person_id)).await {
        FixResult::Done { mut operations } => {
            operations.insert(0, describe(&op));
            FixResult::Done { operations }
        }
        FixResult::Held { mut operations } => {
            operations.insert(0, describe(&op));
            FixResult::Held { operations }
        }
        other => other,
    }
}

/// Links (person, app) to account `scim_id` if its link has no account,
/// or still names `previous` (an account gone from the app). The version
/// applied stays, so the person's newest change is applied next. Returns
/// whether it linked.
pub(super) async fn write_link(
    db: &Db,
    app: &str,
    change: &DirectoryChange,
    scim_id: &str,
    active: bool,
    previous: &str,
) -> Result<bool, ReconcileError> {
    let owner = crate::store::links::Owner {
        person_id: change.person_id.as_str(),
        employee_id: change.employee_id.as_str(),
        app,
    };
    Ok(crate::store::links::link_found(db, owner, scim_id, active, previous).await?)
}

/// Applies the person's newest desired state to the app now, each account
/// read back first (`provision-now`).
pub(super) async fn provision(
    provisioner: &Provisioner,
    app: &App,
    person_id: Option<&str>,
) -> FixResult {
    let Some(person_id) = person_id else {
        return FixResult::Skipped {
            reason: "no person".to_owned(),
        };
    };
    let results = match provisioner.provision_now(person_id, Some(&app.name)).await {
        Ok((_, results)) => results,
        Err(error) => {
            return FixResult::Failed {
                error: error.to_string(),
            }
        }
    };
    let Some(result) = results.into_iter().next() else {
        return FixResult::Failed {
            error: "the app did not run".to_owned(),
        };
    };
    match result.result {
        Err(error) => FixResult::Failed {
            error: error.to_string(),
        },
        Ok(ops) if ops.contains(&Operation::Parked) => FixResult::Parked,
        Ok(ops) => {
            let held = ops.contains(&Operation::Held);
            let operations = ops.iter().map(describe).collect();
            if held {
                FixResult::Held { operations }
            } else {
                FixResult::Done { operations }
            }
        }
    }
}

/// Deactivates an orphan (never deletes it) if the deprovision guard lets
/// it, counting it in the guard's window; audited either way. A held one
/// stays an orphan for the next reconciliation.
pub(super) async fn deactivate_orphan(
    provisioner: &Provisioner,
    app: &App,
    finding: &Finding,
) -> FixResult {
    let Some(id) = finding.account_id.as_deref() else {
        return FixResult::Skipped {
            reason: "no account".to_owned(),
        };
    };
    let db = &provisioner.db;
    let failed = |error: ReconcileError| FixResult::Failed {
        error: error.to_string(),
    };
    let linked = crate::store::links::is_linked(db, &app.name, id).await;
    match linked {
        Err(error) => return failed(error.into()),
        Ok(true) => {
            return FixResult::Skipped {
                reason: "linked to a person meanwhile".to_owned(),
            }
        }
        Ok(_) => {}
    }
    let ticket = match admit_orphan(provisioner, app, id).await {
        Ok(ticket) => ticket,
        Err(result) => return result,
    };
    let started = Instant::now();
    let sent = app.client.set_active(id, false, app.patch).await;
    let latency = started.elapsed();
    if let Err(error) = sent {
        let outcome = if error.is_retryable() {
            AuditOutcome::Retry
        } else {
            AuditOutcome::Failed
        };
        audit_orphan(
            provisioner,
            app,
            id,
            AuditOperation::Deactivate,
            outcome,
            Some(&error),
            latency,
        )
        .await;
        return FixResult::Failed {
            error: format!("{}: {error}", app.name),
        };
    }
    let recorded = match ticket {
        Some(ticket) => ticket.record().await,
        None => crate::guard::record_deactivation(db, &app.name, false).await,
    };
    audit_orphan(
        provisioner,
        app,
        id,
        AuditOperation::Deactivate,
        AuditOutcome::Success,
        None,
        latency,
    )
    .await;
    if let Err(error) = recorded {
        tracing::warn!(app = %app.name, %error, "an orphan's deactivation is not counted in the guard's window");
    }
    FixResult::Done {
        operations: vec![describe(&Operation::Deactivated)],
    }
}

/// The deprovision guard's word on deactivating orphan `id`: go ahead
/// (with its ticket, when the app has a guard), or the fix's result: held
/// (audited), or failed.
async fn admit_orphan(
    provisioner: &Provisioner,
    app: &App,
    id: &str,
) -> Result<Option<crate::guard::Ticket>, FixResult> {
    let Some(guard) = &app.guard else {
        return Ok(None);
    };
    let db = &provisioner.db;
    match crate::guard::admit(
        db,
        &app.name,
        guard,
        &app.guard_gate,
        Deactivation::Ordinary,
    )
    .await
    {
        Err(error) => Err(FixResult::Failed {
            error: error.to_string(),
        }),
        Ok(None) => {
            audit_orphan(
                provisioner,
                app,
                id,
                AuditOperation::GuardHold,
                AuditOutcome::Held,
                None,
                Duration::ZERO,
            )
            .await;
            Err(FixResult::Held {
                operations: Vec::new(),
            })
        }
        Ok(Some(ticket)) => Ok(Some(ticket)),
    }
}

/// Audits an operation on orphan `scim_id`: it has no person, so the
/// record's person is `orphan:<SCIM id>` and its version 0.
pub(super) async fn audit_orphan(
    provisioner: &Provisioner,
    app: &App,
    scim_id: &str,
    operation: AuditOperation,
    outcome: AuditOutcome,
    error: Option<&ScimError>,
    latency: Duration,
) {
    metrics::counter!("hrsync_provisioner_operations_total", "app" => app.name.clone(), "operation" => operation.as_str(), "outcome" => outcome.as_str()).increment(1);
    let (Ok(person_id), Ok(at)) = (
        PersonId::new(format!("orphan:{scim_id}")),
        Timestamp::from_millis(chrono::Utc::now().timestamp_millis()),
    ) else {
        tracing::warn!(app = %app.name, "an orphan's audit record could not be made");
        return;
    };
    let span = tracing::Span::current();
    let record = ProvisioningAudit {
        audit_id: uuid::Uuid::new_v4().to_string(),
        person_id,
        app: app.name.clone(),
        operation,
        outcome,
        http_status: error.and_then(ScimError::status),
        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        attempt: 1,
        version: 0,
        scim_id: Some(scim_id.to_owned()),
        error: error.map(|e| format!("{}: {e}", app.name)),
        trace_id: hrsync_telemetry::propagation::trace_id(&span),
        at,
    };
    provisioner
        .audit
        .record(vec![(record, hrsync_telemetry::propagation::inject(&span))])
        .await;
}

/// One operation for the report.
pub(super) fn describe(op: &Operation) -> String {
    match op {
        Operation::Stale => "stale: a newer change was applied".to_owned(),
        Operation::Unchanged => "unchanged".to_owned(),
        Operation::Linked { scim_id } => format!("linked {scim_id}"),
        Operation::Created { scim_id } => format!("created {scim_id}"),
        Operation::Updated { attributes } => format!("updated {}", attributes.join(", ")),
        Operation::Deactivated => "deactivated".to_owned(),
        Operation::Reactivated => "reactivated".to_owned(),
        Operation::Held => "deactivation held by the deprovision guard".to_owned(),
        Operation::Parked => "parked: app quarantined".to_owned(),
        Operation::Task { task_id, action } => format!("task {task_id}: {}", action.as_str()),
        Operation::GroupRenamed { from, to } => format!("group {from:?} renamed to {to:?}"),
        Operation::Groups { added, removed } => {
            format!(
                "groups: joined [{}], left [{}]",
                added.join(", "),
                removed.join(", ")
            )
        }
    }
}
