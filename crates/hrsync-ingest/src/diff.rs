//! Turns a new snapshot into lifecycle events by comparing it with the
//! source's last accepted snapshot (the baseline).
//!
//! Per worker, in this order:
//! - not in the baseline: active → hire (effective at the start of the hire
//!   date in the worker's time zone), on leave → hire then leave started,
//!   terminated → nothing (kept in the baseline, so a return is a rehire);
//! - terminated in the baseline, active or on leave now → rehire with the
//!   full attributes (then leave started if on leave);
//! - a not-yet-started worker whose start date moved → hire again at the new
//!   date (the projector keeps the latest);
//! - changed attributes → one move holding only the changed attributes (a
//!   contractor converted to an employee under the same employee id is a
//!   move of `employment_type`);
//! - active ↔ on leave → leave started / ended;
//! - a termination that is new or changed (status terminated, or a
//!   termination date set on a still active worker) → terminate, effective at
//!   the end (or start, per source) of the termination date in the worker's
//!   time zone, or now when undated;
//! - in the baseline, not terminated, missing from a full snapshot →
//!   terminate now ("dropped"); it stays in the next baseline as terminated.
//!
//! Changes that carry no date of their own (moves, leaves, drops) take effect
//! at the import time. Every event's id is derived from its content
//! ([`LifecycleEvent::new`]), so the same change gives the same id.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use hrsync_domain::{
    DomainError, EmployeeId, EventKind, Hire, LeaveEnded, LeaveStarted, LifecycleEvent,
    LifecyclePayload, Move, Rehire, SourceSystem, Terminate, TimeZone, Timestamp, WorkerAttributes,
};
use serde::Serialize;

use crate::snapshot::{Snapshot, Worker};
use crate::source::{SourceConfig, TerminationTime, WorkerStatus};

/// Reason given to workers terminated because a full snapshot no longer
/// lists them.
pub const DROPPED_REASON: &str = "missing from full HR snapshot";

/// An event to publish, with its lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    /// The event.
    pub event: LifecycleEvent,
    /// Also goes to the priority lane: a termination in effect now.
    pub priority: bool,
}

/// Counts of a plan, by kind; what `--dry-run` and refusals report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Workers in the new snapshot.
    pub workers: usize,
    /// Workers active or on leave in the baseline.
    pub active_before: usize,
    /// Hire events.
    pub hires: usize,
    /// Move events.
    pub moves: usize,
    /// Terminate events (including dropped workers).
    pub terminations: usize,
    /// Of those, workers missing from a full snapshot.
    pub dropped: usize,
    /// Rehire events.
    pub rehires: usize,
    /// Leave started events.
    pub leaves_started: usize,
    /// Leave ended events.
    pub leaves_ended: usize,
    /// Events for the priority lane.
    pub priority: usize,
}

impl Summary {
    /// Events in all.
    pub fn events(&self) -> usize {
        self.hires
            + self.moves
            + self.terminations
            + self.rehires
            + self.leaves_started
            + self.leaves_ended
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} workers ({} active before): {} hires, {} moves, {} terminations ({} dropped from the \
             snapshot), {} rehires, {} leaves started, {} leaves ended; {} on the priority lane",
            self.workers,
            self.active_before,
            self.hires,
            self.moves,
            self.terminations,
            self.dropped,
            self.rehires,
            self.leaves_started,
            self.leaves_ended,
            self.priority
        )
    }
}

/// What importing a snapshot would do. `E` is the form its events are kept
/// in: as planned ([`diff`]), or already encoded for the outbox (an import,
/// through [`diff_into`], so a large export's events are never held twice).
#[derive(Debug, Clone)]
pub struct Plan<E = PlannedEvent> {
    /// Events in publishing order (per worker in the order of the module
    /// docs; workers by employee id).
    pub events: Vec<E>,
    /// The baseline once the events are published.
    pub next_baseline: Snapshot,
    /// Counts.
    pub summary: Summary,
}

/// Why a snapshot is refused by the safety limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Human-readable reasons, one per limit exceeded.
    pub reasons: Vec<String>,
}

impl<E> Plan<E> {
    /// Checks the source's safety limits; `Err` lists every limit exceeded.
    pub fn check_limits(&self, source: &SourceConfig) -> Result<(), Refusal> {
        let s = &self.summary;
        let mut reasons = Vec::new();
        if s.active_before > 0 {
            #[allow(clippy::cast_precision_loss)] // populations are far below 2^52
            let share = s.terminations as f64 / s.active_before as f64;
            if share > source.max_termination_share {
                reasons.push(format!(
                    "it terminates {} of {} active workers ({:.1} %), more than max_termination_share {:.1} %",
                    s.terminations,
                    s.active_before,
                    share * 100.0,
                    source.max_termination_share * 100.0
                ));
            }
        }
        if s.dropped > source.max_dropped as usize {
            reasons.push(format!(
                "{} active workers are missing from the snapshot, more than max_dropped {}",
                s.dropped, source.max_dropped
            ));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Refusal { reasons })
        }
    }
}

/// A worker whose values the event model does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("worker {employee_id}: {reason}")]
pub struct DiffError {
    /// The worker.
    pub employee_id: String,
    /// Why.
    pub reason: String,
}

impl DiffError {
    fn of(employee_id: &str, error: &DomainError) -> Self {
        DiffError {
            employee_id: employee_id.to_owned(),
            reason: error.to_string(),
        }
    }
}

/// Compares `new` with `baseline` and plans the events, as of `now`.
///
/// # Errors
/// The first worker whose values the event model rejects; nothing is planned.
pub fn diff(
    source: &SourceConfig,
    baseline: &Snapshot,
    new: Snapshot,
    now: DateTime<Utc>,
) -> Result<Plan, DiffError> {
    diff_into(source, baseline, new, now, Ok)
}

/// [`diff`], with each event handed to `keep` as it is planned and the plan
/// holding what `keep` makes of it (an import encodes it at once).
///
/// # Errors
/// The first worker whose values the event model rejects, or the first
/// error of `keep`; nothing is planned.
pub fn diff_into<E, Error: From<DiffError>>(
    source: &SourceConfig,
    baseline: &Snapshot,
    new: Snapshot,
    now: DateTime<Utc>,
    mut keep: impl FnMut(PlannedEvent) -> Result<E, Error>,
) -> Result<Plan<E>, Error> {
    let planner = Planner::new(source, now)?;
    let mut kept = Kept {
        events: Vec::new(),
        summary: Summary {
            workers: new.workers.len(),
            active_before: baseline
                .workers
                .values()
                .filter(|w| w.status != WorkerStatus::Terminated)
                .count(),
            ..Summary::default()
        },
        pending: Vec::new(),
    };
    for (id, worker) in &new.workers {
        planner
            .worker(baseline.workers.get(id), worker, &mut kept.pending)
            .map_err(|e| DiffError::of(id, &e))?;
        kept.flush(&mut keep)?;
    }
    // The new snapshot becomes the next baseline (moved, not copied).
    let mut next = new.workers;
    for (id, old) in &baseline.workers {
        if next.contains_key(id) {
            continue;
        }
        let mut gone = old.clone();
        if source.full_snapshot && old.status != WorkerStatus::Terminated {
            planner
                .dropped(old, &mut kept.pending)
                .map_err(|e| DiffError::of(id, &e))?;
            kept.flush(&mut keep)?;
            kept.summary.dropped += 1;
            gone.status = WorkerStatus::Terminated;
            gone.termination_date = Some(planner.today_in(&old.time_zone));
            gone.termination_reason = Some(DROPPED_REASON.to_owned());
            gone.termination_immediate = false;
        }
        // Workers HR no longer lists stay known, so a return is a rehire.
        next.insert(id.clone(), gone);
    }
    Ok(Plan {
        events: kept.events,
        next_baseline: Snapshot { workers: next },
        summary: kept.summary,
    })
}

/// The events of a plan being made, counted as they are kept.
struct Kept<E> {
    events: Vec<E>,
    summary: Summary,
    /// The current worker's events, not yet counted or kept.
    pending: Vec<PlannedEvent>,
}

impl<E> Kept<E> {
    fn flush<Error>(
        &mut self,
        keep: &mut impl FnMut(PlannedEvent) -> Result<E, Error>,
    ) -> Result<(), Error> {
        for planned in self.pending.drain(..) {
            let count = match planned.event.kind() {
                EventKind::Hire => &mut self.summary.hires,
                EventKind::Move => &mut self.summary.moves,
                EventKind::Terminate => &mut self.summary.terminations,
                EventKind::Rehire => &mut self.summary.rehires,
                EventKind::LeaveStarted => &mut self.summary.leaves_started,
                EventKind::LeaveEnded => &mut self.summary.leaves_ended,
            };
            *count += 1;
            self.summary.priority += usize::from(planned.priority);
            self.events.push(keep(planned)?);
        }
        Ok(())
    }
}

/// One worker of the new snapshot against the baseline.
struct Change<'a> {
    old: Option<&'a Worker>,
    new: &'a Worker,
    /// Not employed before: new, or terminated in the baseline.
    was_out: bool,
    /// Start of the hire date in the worker's time zone.
    start: Timestamp,
    tz: Tz,
}

struct Planner<'a> {
    source: &'a SourceConfig,
    system: SourceSystem,
    now: DateTime<Utc>,
    now_ts: Timestamp,
}

/// What makes a termination: a new or changed one is published.
#[derive(PartialEq)]
struct TerminationSpec<'w> {
    date: Option<NaiveDate>,
    immediate: bool,
    reason: Option<&'w str>,
    last_day_worked: Option<NaiveDate>,
}

fn termination(worker: &Worker) -> Option<TerminationSpec<'_>> {
    let terminated = worker.status == WorkerStatus::Terminated;
    (terminated || worker.termination_date.is_some()).then_some(TerminationSpec {
        date: worker.termination_date,
        immediate: worker.termination_immediate,
        reason: worker.termination_reason.as_deref(),
        last_day_worked: worker.last_day_worked,
    })
}

impl<'a> Planner<'a> {
    fn new(source: &'a SourceConfig, now: DateTime<Utc>) -> Result<Self, DiffError> {
        let system = SourceSystem::new(source.name.clone()).map_err(|e| DiffError {
            employee_id: String::new(),
            reason: format!("source name: {e}"),
        })?;
        let now_ts = Timestamp::from_millis(now.timestamp_millis()).map_err(|e| DiffError {
            employee_id: String::new(),
            reason: format!("clock: {e}"),
        })?;
        Ok(Planner {
            source,
            system,
            now,
            now_ts,
        })
    }

    fn tz(name: &str) -> Result<(Tz, TimeZone), DomainError> {
        let zone = TimeZone::new(name)?;
        Ok((zone.tz(), zone))
    }

    fn today_in(&self, time_zone: &str) -> NaiveDate {
        Self::tz(time_zone).map_or_else(
            |_| self.now.date_naive(),
            |(tz, _)| self.now.with_timezone(&tz).date_naive(),
        )
    }

    /// Midnight starting `date` in `tz`, as a timestamp. On a day whose
    /// midnight does not exist (a DST jump at 00:00) the first instant of
    /// the day is used.
    fn start_of(date: NaiveDate, tz: Tz) -> Result<Timestamp, DomainError> {
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        let local = midnight
            .and_local_timezone(tz)
            .earliest()
            .or_else(|| {
                (1..=4).find_map(|h| {
                    (midnight + chrono::Duration::hours(h))
                        .and_local_timezone(tz)
                        .earliest()
                })
            })
            .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc));
        Timestamp::from_millis(local.timestamp_millis())
    }

    fn event(
        &self,
        worker: &Worker,
        effective_at: Timestamp,
        payload: LifecyclePayload,
    ) -> Result<PlannedEvent, DomainError> {
        let (_, zone) = Self::tz(&worker.time_zone)?;
        let priority = match &payload {
            LifecyclePayload::Terminate(t) => t.immediate || effective_at <= self.now_ts,
            _ => false,
        };
        let event = LifecycleEvent::new(
            self.system.clone(),
            EmployeeId::new(worker.employee_id.clone())?,
            self.now_ts,
            effective_at,
            zone,
            payload,
        )?;
        Ok(PlannedEvent { event, priority })
    }

    fn worker(
        &self,
        old: Option<&Worker>,
        new: &Worker,
        out: &mut Vec<PlannedEvent>,
    ) -> Result<(), DomainError> {
        let (tz, _) = Self::tz(&new.time_zone)?;
        let attributes = new.attributes.clone();
        let start = Self::start_of(new.hire_date, tz)?;
        if old.is_none() && new.status == WorkerStatus::Terminated {
            // Never hired here and already gone: nothing to provision.
            return Ok(());
        }
        let change = Change {
            old,
            new,
            was_out: old.is_none_or(|o| o.status == WorkerStatus::Terminated),
            start,
            tz,
        };
        self.profile(&change, attributes, out)?;
        self.leave(&change, out)?;
        self.termination(&change, out)
    }

    /// The hire, rehire or move of a worker's profile.
    fn profile(
        &self,
        c: &Change<'_>,
        attributes: WorkerAttributes,
        out: &mut Vec<PlannedEvent>,
    ) -> Result<(), DomainError> {
        let new = c.new;
        match (c.old, new.status) {
            (None, _) => {
                out.push(self.event(new, c.start, LifecyclePayload::Hire(Hire { attributes }))?);
            }
            (Some(_), WorkerStatus::Terminated) if c.was_out => {}
            (Some(old), _) if c.was_out => {
                // A rehire takes effect on the new start date when HR moved
                // it forward, otherwise now.
                let effective = if new.hire_date > old.hire_date {
                    c.start
                } else {
                    self.now_ts
                };
                out.push(self.event(
                    new,
                    effective,
                    LifecyclePayload::Rehire(Rehire { attributes }),
                )?);
            }
            (Some(old), _) => {
                let before = &old.attributes;
                let today = self.now.with_timezone(&c.tz).date_naive();
                if new.hire_date != old.hire_date && old.hire_date > today {
                    // Start date of a pre-hire moved: hire again at the new
                    // date, with the current attributes.
                    out.push(self.event(
                        new,
                        c.start,
                        LifecyclePayload::Hire(Hire { attributes }),
                    )?);
                } else {
                    let changes = WorkerAttributes::diff(before, &attributes);
                    if !changes.is_empty() {
                        out.push(self.event(
                            new,
                            self.now_ts,
                            LifecyclePayload::Move(Move { changes }),
                        )?);
                    }
                }
            }
        }
        Ok(())
    }

    /// A leave that starts or ends.
    fn leave(&self, c: &Change<'_>, out: &mut Vec<PlannedEvent>) -> Result<(), DomainError> {
        let old_status = if c.was_out {
            WorkerStatus::Active
        } else {
            c.old.map_or(WorkerStatus::Active, |o| o.status)
        };
        match (old_status, c.new.status) {
            (WorkerStatus::Active, WorkerStatus::OnLeave) => {
                let effective = if c.was_out && c.start > self.now_ts {
                    c.start
                } else {
                    self.now_ts
                };
                out.push(self.event(
                    c.new,
                    effective,
                    LifecyclePayload::LeaveStarted(LeaveStarted {
                        leave_type: None,
                        expected_return: None,
                    }),
                )?);
            }
            (WorkerStatus::OnLeave, WorkerStatus::Active) => {
                out.push(self.event(
                    c.new,
                    self.now_ts,
                    LifecyclePayload::LeaveEnded(LeaveEnded { reason: None }),
                )?);
            }
            _ => {}
        }
        Ok(())
    }

    /// A new or changed termination.
    fn termination(&self, c: &Change<'_>, out: &mut Vec<PlannedEvent>) -> Result<(), DomainError> {
        // A returning worker's old termination is history; otherwise only a
        // new or changed termination is published.
        let before = if c.was_out && c.new.status != WorkerStatus::Terminated {
            None
        } else {
            c.old.and_then(termination)
        };
        let Some(spec) = termination(c.new) else {
            return Ok(());
        };
        if before.as_ref() == Some(&spec) {
            return Ok(());
        }
        let effective = match spec.date {
            Some(date) => match self.source.termination_time {
                TerminationTime::EndOfDay => {
                    Self::start_of(date.checked_add_days(Days::new(1)).unwrap_or(date), c.tz)?
                }
                TerminationTime::StartOfDay => Self::start_of(date, c.tz)?,
            },
            None => self.now_ts,
        };
        out.push(self.event(
            c.new,
            effective,
            LifecyclePayload::Terminate(Terminate {
                immediate: spec.immediate,
                last_day_worked: spec.last_day_worked,
                reason: spec.reason.map(str::to_owned),
            }),
        )?);
        Ok(())
    }

    fn dropped(&self, old: &Worker, out: &mut Vec<PlannedEvent>) -> Result<(), DomainError> {
        out.push(self.event(
            old,
            self.now_ts,
            LifecyclePayload::Terminate(Terminate {
                immediate: false,
                last_day_worked: None,
                reason: Some(DROPPED_REASON.to_owned()),
            }),
        )?);
        Ok(())
    }
}

/// Events of a plan grouped by kind, for `--dry-run`.
pub fn by_kind(plan: &Plan) -> BTreeMap<&'static str, Vec<&PlannedEvent>> {
    let mut grouped: BTreeMap<&'static str, Vec<&PlannedEvent>> = BTreeMap::new();
    for planned in &plan.events {
        grouped
            .entry(planned.event.kind().as_str())
            .or_default()
            .push(planned);
    }
    grouped
}
