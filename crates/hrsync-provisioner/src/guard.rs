//! The deprovision guard: one app's deactivations are held, once more of
//! them happen within a window than the app's limits allow, until an admin
//! releases them (`hrsync provisioner release APP`).
//!
//! The rule, decided by [`decide`] (pure) and applied by [`admit`]:
//!
//! - A deactivation is **over the limits** when, counting it, more than
//!   `max_count` deactivations happened in the window, or more than
//!   `max_share` of the app's accounts. The share is taken of the accounts
//!   active when the window began (those still active plus those
//!   deactivated within it, so the share does not grow as a flood shrinks
//!   the app), but of at least `min_accounts`: in a small app the share
//!   limit allows `max_share × min_accounts` deactivations per window
//!   instead of tripping on the first leaver.
//! - The first deactivation over the limits **trips** the guard; from then
//!   on deactivations are held durably until released.
//! - An **immediate termination** (a deprovisioning on the fast lane: the
//!   change has `priority` set and lifecycle `DEPROVISIONED`) that would be
//!   held passes instead while fewer than `immediate_allowance` of them
//!   have passed that way within the window: a leaver cut off now by HR is
//!   not left with access because of the guard, yet a flood of pushed
//!   terminations deprovisions at most that many accounts per window
//!   beyond the limits. Each such pass is logged, counted in
//!   `hrsync_provisioner_guard_allowance_total` and audited as a
//!   deactivation.
//!
//! Decisions for one app are taken one at a time, across every process
//! sharing the store (in a transaction holding the app's lock there), and
//! a deactivation is recorded in the window when admitted, so one under
//! way (its SCIM call in flight) in any process counts as done: concurrent
//! deactivations cannot overshoot the limits. One admitted that fails is
//! taken out again; one whose process died before it was done stays
//! counted (the guard errs towards holding).

use hrsync_domain::{DirectoryChange, LifecycleState};
use hrsync_store::Db;

use crate::reconcile::ReconcileError;

/// Whether `app`'s deprovision guard is tripped (1) or not (0).
pub(crate) const GUARD_TRIPPED: &str = "hrsync_provisioner_guard_tripped";
/// Guard trips, per app.
const GUARD_TRIPS: &str = "hrsync_provisioner_guard_trips_total";
/// Immediate terminations let through under the allowance, per app.
const GUARD_ALLOWANCE: &str = "hrsync_provisioner_guard_allowance_total";

/// One app's deprovision guard limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guard {
    /// Most deactivations allowed in the window.
    pub max_count: u32,
    /// Largest share of the app's accounts deactivated in the window.
    pub max_share: f64,
    /// The share is taken of at least this many accounts.
    pub min_accounts: u32,
    /// Immediate terminations that pass per window although the guard is
    /// tripped (or would trip).
    pub immediate_allowance: u32,
    /// The window.
    pub window_ms: i64,
}

/// What kind of deactivation is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deactivation {
    /// A leave, a removed app assignment, or a later change of a person
    /// already deprovisioned whose deactivation is still to be done.
    Ordinary,
    /// A termination in effect now, on the fast lane.
    ImmediateTermination,
}

impl Deactivation {
    /// The kind of the deactivation `change` asks for: a deprovisioning on
    /// the fast lane (`priority`, set by the projector when a person's
    /// lifecycle becomes `DEPROVISIONED`, from an immediate termination or
    /// a scheduled one reaching its effective time) is an immediate
    /// termination.
    pub fn of(change: &DirectoryChange) -> Self {
        if change.priority && change.lifecycle_state == LifecycleState::Deprovisioned {
            Deactivation::ImmediateTermination
        } else {
            Deactivation::Ordinary
        }
    }
}

/// What the guard knows of one app when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// The guard is tripped already.
    pub tripped: bool,
    /// Deactivations within the window, done or under way (under the
    /// allowance included).
    pub in_window: u64,
    /// Of those, the ones let through under the immediate allowance.
    pub allowance_used: u64,
    /// Accounts active when the window began: active now plus deactivated
    /// within the window.
    pub population: u64,
}

/// The guard's decision on one deactivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limits: deactivate.
    Pass,
    /// Over the limits, but an immediate termination within the allowance:
    /// deactivate. `trips` if this deactivation trips the guard.
    Allowance {
        /// The guard was not tripped before.
        trips: bool,
    },
    /// Hold it until released. `trips` if this deactivation trips the
    /// guard.
    Hold {
        /// The guard was not tripped before.
        trips: bool,
    },
}

/// Whether one more deactivation of `kind` passes `guard`, given `counts`.
pub fn decide(guard: &Guard, counts: &Counts, kind: Deactivation) -> Verdict {
    let over = counts.tripped || over_limits(guard, counts);
    let trips = over && !counts.tripped;
    if !over {
        Verdict::Pass
    } else if kind == Deactivation::ImmediateTermination
        && counts.allowance_used < u64::from(guard.immediate_allowance)
    {
        Verdict::Allowance { trips }
    } else {
        Verdict::Hold { trips }
    }
}

/// Whether one more deactivation exceeds the count or the share limit.
fn over_limits(guard: &Guard, counts: &Counts) -> bool {
    let next = counts.in_window + 1;
    if next > u64::from(guard.max_count) {
        return true;
    }
    let base = counts.population.max(u64::from(guard.min_accounts)).max(1);
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let share = next as f64 / base as f64;
    share > guard.max_share
}

/// The lock under which one app's guard decides in this process (one
/// decision at a time per app; across processes, the decision's
/// transaction holds the app's lock in the store).
#[derive(Debug, Default)]
pub struct Gate {
    decide: tokio::sync::Mutex<()>,
}

/// A deactivation admitted by the guard: recorded in the app's window from
/// its admission, in every process sharing the store. [`Ticket::record`]
/// marks it done; dropped without, it is taken out of the window (a
/// deactivation that failed does not count).
#[derive(Debug)]
pub struct Ticket {
    db: Db,
    id: String,
    done: bool,
}

impl Ticket {
    /// Records the deactivation as done in the app's window.
    ///
    /// # Errors
    /// Store failures (it still counts, as under way).
    pub async fn record(mut self) -> Result<(), ReconcileError> {
        self.done = true;
        crate::store::guard::mark_done(&self.db, &self.id).await?;
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (db, id) = (self.db.clone(), std::mem::take(&mut self.id));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = crate::store::guard::cancel(&db, &id).await {
                    tracing::warn!(%error, "a deactivation that was not done still counts in its guard's window");
                }
            });
        }
    }
}

/// Records a deactivation of `app` done now; `allowance` if it passed
/// under the immediate allowance.
///
/// # Errors
/// Store failures.
pub(crate) async fn record_deactivation(
    db: &Db,
    app: &str,
    allowance: bool,
) -> Result<(), ReconcileError> {
    crate::store::guard::record_deactivation(db, app, allowance).await?;
    Ok(())
}

/// Whether `app`'s deprovision guard is tripped.
///
/// # Errors
/// Store failures.
pub async fn guard_tripped(db: &Db, app: &str) -> Result<bool, ReconcileError> {
    Ok(crate::store::guard::is_tripped(db, app).await?)
}

/// The guard's decision on one more deactivation of `kind` in `app`: a
/// ticket to deactivate, or `None` to hold it. Trips the guard (durably,
/// with the gauge, the trips counter and a log line) when this
/// deactivation is the first over the limits.
///
/// # Errors
/// Store failures.
pub async fn admit(
    db: &Db,
    app: &str,
    guard: &Guard,
    gate: &Gate,
    kind: Deactivation,
) -> Result<Option<Ticket>, ReconcileError> {
    let _deciding = gate.decide.lock().await;
    let now = chrono::Utc::now().timestamp_millis();
    // One decision at a time per app across processes: SQLite's writer
    // lock (taken at BEGIN), PostgreSQL's advisory lock of the transaction.
    let mut tx = db.begin_write().await?;
    if db.backend() == hrsync_store::Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(hrsync_store::claim_key(&format!("guard:{app}")))
            .execute(&mut *tx)
            .await?;
    }
    let window = crate::store::guard::window(&mut tx, app, now - guard.window_ms).await?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    // Deactivations under way are still active in the link table, so they
    // add to the window's count but not to the population.
    let counts = Counts {
        tripped: window.tripped,
        in_window: count(window.deactivations),
        allowance_used: count(window.allowance),
        population: count(window.active) + count(window.done),
    };
    let verdict = decide(guard, &counts, kind);
    let trips = matches!(
        verdict,
        Verdict::Allowance { trips: true } | Verdict::Hold { trips: true }
    );
    if trips {
        crate::store::guard::trip(&mut tx, app, now).await?;
    }
    let allowance = match verdict {
        Verdict::Hold { .. } => None,
        Verdict::Pass => Some(false),
        Verdict::Allowance { .. } => Some(true),
    };
    let id = uuid::Uuid::new_v4().to_string();
    if let Some(allowance) = allowance {
        crate::store::guard::admit(&mut tx, app, now, allowance, &id).await?;
    }
    tx.commit().await?;
    if trips {
        metrics::counter!(GUARD_TRIPS, "app" => app.to_owned()).increment(1);
        metrics::gauge!(GUARD_TRIPPED, "app" => app.to_owned()).set(1.0);
        tracing::warn!(
            app,
            deactivations_in_window = counts.in_window,
            accounts_at_window_start = counts.population,
            "deprovision guard tripped: deactivations are held until `hrsync provisioner release {app}`"
        );
    }
    match allowance {
        None => return Ok(None),
        Some(false) => {}
        Some(true) => {
            metrics::counter!(GUARD_ALLOWANCE, "app" => app.to_owned()).increment(1);
            tracing::warn!(
                app,
                used = counts.allowance_used + 1,
                allowance = guard.immediate_allowance,
                "deprovision guard tripped, but an immediate termination passes under the per-window allowance"
            );
        }
    }
    Ok(Some(Ticket {
        db: db.clone(),
        id,
        done: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard {
            max_count: 25,
            max_share: 0.05,
            min_accounts: 50,
            immediate_allowance: 3,
            window_ms: 3_600_000,
        }
    }

    fn counts(in_window: u64, population: u64) -> Counts {
        Counts {
            tripped: false,
            in_window,
            allowance_used: 0,
            population,
        }
    }

    use Deactivation::{ImmediateTermination as Immediate, Ordinary};

    #[test]
    fn a_small_apps_first_leaver_passes() {
        // 10 accounts: 1/10 is over 5 %, but the share is taken of 50.
        assert_eq!(decide(&guard(), &counts(0, 10), Ordinary), Verdict::Pass);
        assert_eq!(decide(&guard(), &counts(1, 10), Ordinary), Verdict::Pass);
        // The third in the window is 3/50 = 6 %.
        assert_eq!(
            decide(&guard(), &counts(2, 10), Ordinary),
            Verdict::Hold { trips: true }
        );
    }

    #[test]
    fn past_the_minimum_the_share_is_of_the_apps_accounts() {
        // 200 accounts: 10 deactivations (5 %) pass, the 11th trips.
        assert_eq!(decide(&guard(), &counts(9, 200), Ordinary), Verdict::Pass);
        assert_eq!(
            decide(&guard(), &counts(10, 200), Ordinary),
            Verdict::Hold { trips: true }
        );
    }

    #[test]
    fn the_count_limit_applies_at_any_size() {
        let g = Guard {
            max_share: 1.0,
            ..guard()
        };
        assert_eq!(decide(&g, &counts(24, 10_000), Ordinary), Verdict::Pass);
        assert_eq!(
            decide(&g, &counts(25, 10_000), Ordinary),
            Verdict::Hold { trips: true }
        );
    }

    #[test]
    fn immediate_terminations_pass_under_the_allowance_then_are_held() {
        let g = guard();
        // Within the limits an immediate termination is an ordinary pass.
        assert_eq!(decide(&g, &counts(0, 1000), Immediate), Verdict::Pass);
        // The one that would trip the guard trips it and passes.
        assert_eq!(
            decide(&g, &counts(25, 1000), Immediate),
            Verdict::Allowance { trips: true }
        );
        let tripped = |allowance_used| Counts {
            tripped: true,
            in_window: 26 + allowance_used,
            allowance_used,
            population: 1000,
        };
        assert_eq!(
            decide(&g, &tripped(1), Immediate),
            Verdict::Allowance { trips: false }
        );
        assert_eq!(
            decide(&g, &tripped(2), Immediate),
            Verdict::Allowance { trips: false }
        );
        assert_eq!(
            decide(&g, &tripped(3), Immediate),
            Verdict::Hold { trips: false }
        );
        // Ordinary deactivations are held while tripped, whatever the
        // allowance.
        assert_eq!(
            decide(&g, &tripped(0), Ordinary),
            Verdict::Hold { trips: false }
        );
    }

    #[test]
    fn a_tripped_guard_holds_even_below_the_limits() {
        let c = Counts {
            tripped: true,
            ..counts(0, 1000)
        };
        assert_eq!(
            decide(&guard(), &c, Ordinary),
            Verdict::Hold { trips: false }
        );
    }

    #[test]
    fn no_allowance_holds_immediate_terminations_too() {
        let g = Guard {
            immediate_allowance: 0,
            ..guard()
        };
        assert_eq!(
            decide(&g, &counts(25, 1000), Immediate),
            Verdict::Hold { trips: true }
        );
    }

    #[test]
    fn only_a_deprovisioning_on_the_fast_lane_is_an_immediate_termination() {
        use hrsync_domain::{
            EmployeeId, EmploymentType, PersonId, Profile, TimeZone, Timestamp, WorkerAttributes,
        };
        let change = |state, priority| DirectoryChange {
            person_id: PersonId::new("p-1").unwrap(),
            employee_id: EmployeeId::new("E1").unwrap(),
            version: 2,
            lifecycle_state: state,
            profile: Profile {
                attributes: WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee),
                time_zone: TimeZone::new("Europe/London").unwrap(),
                start_at: None,
                terminate_at: None,
            },
            groups: vec![],
            apps: vec![],
            caused_by: vec![],
            priority,
            changed_at: Timestamp::from_millis(1_790_000_000_000).unwrap(),
        };
        use LifecycleState::*;
        assert_eq!(
            Deactivation::of(&change(Deprovisioned, true)),
            Deactivation::ImmediateTermination
        );
        assert_eq!(
            Deactivation::of(&change(Deprovisioned, false)),
            Deactivation::Ordinary
        );
        assert_eq!(
            Deactivation::of(&change(Suspended, true)),
            Deactivation::Ordinary
        );
        // An app removal on the fast lane.
        assert_eq!(
            Deactivation::of(&change(Active, true)),
            Deactivation::Ordinary
        );
    }
}
