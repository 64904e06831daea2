//! The latest terminations and how far each got in every app, for the
//! admin API (`GET /api/v1/terminations`).
//!
//! A termination is a person whose newest directory change here is
//! `DEPROVISIONED`. Its HR event time is [`hr_event_ms`]: the moment the
//! termination took effect in HR as the change carries it
//! (`profile.terminate_at`; for an immediate termination the earlier of the
//! event's effective and recorded times, as the projector folds it). The
//! `hrsync_termination_latency_seconds` histogram measures from the same
//! moment to the app acknowledging the deactivation, and the audit records
//! the deactivation as the app acknowledged it, so an app's latency here
//! and the histogram's agree.
//!
//! Persons are listed newest first by when their newest change reached the
//! provisioner (`provisioner_person.seen_at_ms`): for a termination, when
//! it was handed the deprovisioning, unless a later change of the person
//! followed.

use hrsync_domain::{DirectoryChange, LifecycleState};
use hrsync_store::Db;

use crate::store::people::{self, Newest};
use crate::store::tasks;
use crate::store::terminations::{self as stored, HeldFor, Outcome};

/// Rows of `provisioner_person` read per query.
const SCAN_CHUNK: i64 = 500;
/// Rows of `provisioner_person` one call reads at most: a page may hold
/// fewer terminations than asked, with a cursor to go on from.
const SCAN_BUDGET: usize = 5_000;

/// When a termination took effect in HR, ms since the epoch: the HR event
/// time termination latencies are measured from (`None` unless `change`
/// deprovisions).
pub fn hr_event_ms(change: &DirectoryChange) -> Option<i64> {
    if change.lifecycle_state != LifecycleState::Deprovisioned {
        return None;
    }
    change.profile.terminate_at.map(|t| t.as_millis())
}

/// Where a terminated person's account in one app stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Deactivated since the termination took effect.
    Deactivated,
    /// Inactive without a deactivation since the termination took effect
    /// (on leave then, or created inactive before a start date).
    Inactive,
    /// Still active: the deactivation has not been made yet.
    Pending,
    /// Still active: the deprovision guard holds the deactivation.
    Held,
    /// Still active: the deactivation is parked for a retry (the app
    /// does not answer, or this person's change ran out of attempts).
    Parked,
    /// Still active: the last attempt since the termination failed.
    Failed,
    /// A manual-task app: the disable task is open (people have not
    /// closed it yet).
    Task,
}

impl Status {
    /// The name the API gives it (`deactivated`, `pending`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Deactivated => "deactivated",
            Status::Inactive => "inactive",
            Status::Pending => "pending",
            Status::Held => "held",
            Status::Parked => "parked",
            Status::Failed => "failed",
            Status::Task => "task_open",
        }
    }

    /// Whether the account is done with: deactivated, or inactive.
    pub fn is_done(self) -> bool {
        matches!(self, Status::Deactivated | Status::Inactive)
    }
}

/// A terminated person's account in one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTermination {
    /// The app.
    pub app: String,
    /// Where it stands.
    pub status: Status,
    /// When the app acknowledged the deactivation, ms since the epoch.
    pub deactivated_at_ms: Option<i64>,
    /// From the HR event time to `deactivated_at_ms`.
    pub latency_ms: Option<i64>,
    /// The W3C trace id of the deactivation, or of the failure.
    pub trace_id: Option<String>,
    /// The failure, when failed.
    pub error: Option<String>,
    /// A manual-task app's open disable task.
    pub task_id: Option<i64>,
}

/// One terminated person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// hrsync person id.
    pub person_id: String,
    /// HR employee id.
    pub employee_id: String,
    /// Version of the person's newest change.
    pub version: i64,
    /// The HR event time ([`hr_event_ms`]).
    pub hr_event_ms: Option<i64>,
    /// When the person's newest change reached the provisioner.
    pub seen_at_ms: i64,
    /// Each configured app the person has an account in, by name.
    pub apps: Vec<AppTermination>,
}

impl Termination {
    /// Whether the termination is complete: every app's account, SCIM or
    /// manual, deactivated (or inactive already).
    pub fn is_complete(&self) -> bool {
        self.apps.iter().all(|a| a.status.is_done())
    }
}

/// A page of terminations, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminations {
    /// The terminations.
    pub items: Vec<Termination>,
    /// `(seen_at_ms, person_id)` to go on from, when there may be more.
    pub next: Option<(i64, String)>,
}

/// Up to `limit` terminations, newest first, before `before` (a `next` of
/// an earlier page) if given; each with its accounts in `apps` (the
/// configured apps).
///
/// # Errors
/// Query failures.
pub async fn latest(
    db: &Db,
    apps: &[&str],
    before: Option<(i64, String)>,
    limit: usize,
) -> sqlx::Result<Terminations> {
    let (found, next) = terminated(db, before, limit).await?;
    let ids: Vec<String> = found.iter().map(|(n, _)| n.person_id.clone()).collect();
    if ids.is_empty() {
        return Ok(Terminations {
            items: Vec::new(),
            next,
        });
    }
    let mut accounts = stored::accounts(db, &ids).await?;
    accounts.extend(tasks::accounts(db, &ids).await?.into_iter().map(
        |(person_id, app, active)| stored::AccountState {
            person_id,
            app,
            active,
        },
    ));
    let open_disables = tasks::open_disables(db, &ids).await?;
    let outcomes = stored::outcomes(db, &ids).await?;
    let held = stored::held(db, &ids).await?;
    let items = found
        .into_iter()
        .map(|(newest, hr_event_ms)| {
            let mut apps: Vec<AppTermination> = accounts
                .iter()
                .filter(|a| a.person_id == newest.person_id && apps.contains(&a.app.as_str()))
                .map(|account| {
                    let mine =
                        |person: &str, app: &str| person == newest.person_id && app == account.app;
                    let mut app = app_termination(
                        &account.app,
                        account.active,
                        hr_event_ms,
                        outcomes.iter().filter(|o| mine(&o.person_id, &o.app)),
                        held.iter().find(|h| mine(&h.person_id, &h.app)),
                    );
                    // A manual app's account was asked to be disabled (so
                    // it reads as inactive) but is not until the task is
                    // closed.
                    if let Some(task) = open_disables.iter().find(|t| mine(&t.person_id, &t.app)) {
                        app.status = Status::Task;
                        app.task_id = Some(task.task_id);
                    }
                    app
                })
                .collect();
            apps.sort_by(|a, b| a.app.cmp(&b.app));
            Termination {
                person_id: newest.person_id,
                employee_id: newest.employee_id,
                version: newest.version,
                hr_event_ms,
                seen_at_ms: newest.seen_at_ms,
                apps,
            }
        })
        .collect();
    Ok(Terminations { items, next })
}

/// The terminated persons among the newest changes before `before`, up to
/// `limit` of them, each with its HR event time; and where to go on from.
async fn terminated(
    db: &Db,
    mut before: Option<(i64, String)>,
    limit: usize,
) -> sqlx::Result<(Vec<(Newest, Option<i64>)>, Option<(i64, String)>)> {
    let mut found = Vec::new();
    let mut scanned = 0;
    loop {
        let key = before.as_ref().map(|(at, id)| (*at, id.as_str()));
        let chunk = people::newest_first(db, key, SCAN_CHUNK).await?;
        let last_chunk = i64::try_from(chunk.len()).unwrap_or(i64::MAX) < SCAN_CHUNK;
        for newest in chunk {
            scanned += 1;
            before = Some((newest.seen_at_ms, newest.person_id.clone()));
            let change = match hrsync_schema::decode_directory_change(&newest.payload) {
                Ok(change) => change,
                Err(error) => {
                    // Its next change replaces it; the list goes on.
                    tracing::warn!(person = %newest.person_id, %error, "a stored change no longer decodes; left out of the terminations");
                    continue;
                }
            };
            if change.lifecycle_state == LifecycleState::Deprovisioned {
                found.push((newest, hr_event_ms(&change)));
                if found.len() >= limit {
                    return Ok((found, before));
                }
            }
        }
        if last_chunk {
            return Ok((found, None));
        }
        if scanned >= SCAN_BUDGET {
            return Ok((found, before));
        }
    }
}

/// Where an account (`active` now) stands after a termination that took
/// effect at `hr_event_ms`, from its deactivations and failures (oldest
/// first) and the change held for it, if any.
fn app_termination<'a>(
    app: &str,
    active: bool,
    hr_event_ms: Option<i64>,
    outcomes: impl Iterator<Item = &'a Outcome>,
    held: Option<&HeldFor>,
) -> AppTermination {
    let since = hr_event_ms.unwrap_or(i64::MIN);
    let mut deactivated = None;
    let mut failed = None;
    for outcome in outcomes.filter(|o| o.at_ms >= since) {
        if outcome.deactivated {
            // The first deactivation since it took effect is the
            // termination's; a later one (after a sweep, say) is not.
            deactivated = deactivated.or(Some(outcome));
        } else {
            failed = Some(outcome);
        }
    }
    let mut result = AppTermination {
        app: app.to_owned(),
        status: Status::Pending,
        deactivated_at_ms: None,
        latency_ms: None,
        trace_id: None,
        error: None,
        task_id: None,
    };
    if let Some(done) = deactivated {
        result.status = Status::Deactivated;
        result.deactivated_at_ms = Some(done.at_ms);
        result.latency_ms = hr_event_ms.map(|t| done.at_ms - t);
        result.trace_id.clone_from(&done.trace_id);
    } else if !active {
        result.status = Status::Inactive;
    } else if let Some(held) = held {
        result.status = if held.reason == "guard" {
            Status::Held
        } else {
            Status::Parked
        };
    } else if let Some(failure) = failed {
        result.status = Status::Failed;
        result.trace_id.clone_from(&failure.trace_id);
        result.error.clone_from(&failure.error);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_800_000_000_000;

    fn outcome(deactivated: bool, at_ms: i64) -> Outcome {
        Outcome {
            person_id: "p".into(),
            app: "slack".into(),
            deactivated,
            at_ms,
            trace_id: Some(format!("trace-{at_ms}")),
            error: (!deactivated).then(|| "HTTP 500".to_owned()),
        }
    }

    fn held(reason: &str) -> HeldFor {
        HeldFor {
            person_id: "p".into(),
            app: "slack".into(),
            reason: reason.into(),
            held_at_ms: T,
        }
    }

    fn status(active: bool, outcomes: &[Outcome], held: Option<&HeldFor>) -> AppTermination {
        app_termination("slack", active, Some(T), outcomes.iter(), held)
    }

    #[test]
    fn the_first_deactivation_since_the_hr_event_is_the_terminations() {
        // A deactivation during an earlier leave does not count; of two
        // since, the first does.
        let outcomes = [
            outcome(true, T - 86_400_000),
            outcome(false, T + 100),
            outcome(true, T + 1_500),
            outcome(true, T + 9_000),
        ];
        let done = status(false, &outcomes, None);
        assert_eq!(done.status, Status::Deactivated);
        assert_eq!(done.deactivated_at_ms, Some(T + 1_500));
        assert_eq!(done.latency_ms, Some(1_500));
        assert_eq!(done.trace_id.as_deref(), Some("trace-1800000001500"));
        assert_eq!(done.error, None);
    }

    #[test]
    fn an_account_not_deactivated_since_is_inactive_held_parked_failed_or_pending() {
        let before = [outcome(true, T - 1)];
        assert_eq!(status(false, &before, None).status, Status::Inactive);
        assert_eq!(status(false, &[], None).latency_ms, None);
        assert_eq!(status(true, &[], Some(&held("guard"))).status, Status::Held);
        assert_eq!(
            status(true, &[outcome(false, T + 5)], Some(&held("quarantine"))).status,
            Status::Parked
        );
        let failed = status(true, &[outcome(false, T + 5)], None);
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(failed.error.as_deref(), Some("HTTP 500"));
        assert_eq!(failed.deactivated_at_ms, None);
        // A failure before the termination took effect is not its.
        assert_eq!(
            status(true, &[outcome(false, T - 5)], None).status,
            Status::Pending
        );
        assert_eq!(status(true, &[], None).status, Status::Pending);
    }

    #[test]
    fn only_a_deprovisioning_change_has_an_hr_event_time() {
        use hrsync_domain::{
            EmployeeId, EmploymentType, PersonId, Profile, TimeZone, Timestamp, WorkerAttributes,
        };
        let change = |state| DirectoryChange {
            person_id: PersonId::new("p-1").unwrap(),
            employee_id: EmployeeId::new("E1").unwrap(),
            version: 3,
            lifecycle_state: state,
            profile: Profile {
                attributes: WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee),
                time_zone: TimeZone::new("Europe/London").unwrap(),
                start_at: None,
                terminate_at: Some(Timestamp::from_millis(T).unwrap()),
            },
            groups: vec![],
            apps: vec![],
            caused_by: vec![],
            priority: true,
            changed_at: Timestamp::from_millis(T + 20).unwrap(),
        };
        assert_eq!(hr_event_ms(&change(LifecycleState::Deprovisioned)), Some(T));
        assert_eq!(hr_event_ms(&change(LifecycleState::Suspended)), None);
        let mut unknown = change(LifecycleState::Deprovisioned);
        unknown.profile.terminate_at = None;
        assert_eq!(hr_event_ms(&unknown), None);
    }
}
