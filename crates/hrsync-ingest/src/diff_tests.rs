//! Diff rules, one behaviour per test.

use chrono::{DateTime, TimeZone as _, Utc};
use hrsync_domain::{
    Attribute, AttributeChange, EmploymentType, EventKind, LifecyclePayload, Timestamp,
};

use crate::diff::{diff, Plan, DROPPED_REASON};
use crate::snapshot::{parse, Snapshot};
use crate::source::{Format, SourceConfig, TerminationTime, WorkerStatus};

const HEADER: &str = "employee_id,given_name,family_name,title,department,manager_id,employment_type,status,hire_date,termination_date,termination_immediate,time_zone";

fn source() -> SourceConfig {
    SourceConfig::new("workday")
}

fn snap(rows: &[&str]) -> Snapshot {
    let text = std::iter::once(HEADER)
        .chain(rows.iter().copied())
        .collect::<Vec<_>>()
        .join("\n");
    parse(&source(), "snap.csv", text.as_bytes(), Format::Csv).expect("valid snapshot")
}

/// 2026-11-22 12:00 UTC.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
}

fn ts(s: &str) -> Timestamp {
    let t = DateTime::parse_from_rfc3339(s).unwrap();
    Timestamp::from_millis(t.timestamp_millis()).unwrap()
}

fn kinds(plan: &Plan) -> Vec<(String, EventKind)> {
    plan.events
        .iter()
        .map(|p| (p.event.employee_id.as_str().to_owned(), p.event.kind()))
        .collect()
}

fn day0() -> Snapshot {
    snap(&[
        "E1,Ana,Alves,Agent,Customer Support,E2,employee,active,2024-01-08,,,Europe/Lisbon",
        "E2,Ben,Brown,Lead,Customer Support,,employee,active,2020-05-01,,,America/New_York",
        "E3,Cy,Chen,Contractor,Engineering,E2,contractor,active,2025-02-01,,,Asia/Tokyo",
        "E4,Di,Diaz,Agent,Customer Support,E2,employee,on leave,2023-03-01,,,Europe/Madrid",
        "E5,Ed,Eve,Agent,Customer Support,E2,employee,terminated,2019-01-01,2024-06-30,,UTC",
        "E6,Flo,Fox,Agent,Customer Support,E2,employee,active,2026-12-01,,,Europe/Berlin",
    ])
}

#[test]
fn day_zero_hires_everyone_not_terminated_at_their_local_start() {
    let plan = diff(&source(), &Snapshot::default(), day0(), now()).unwrap();
    let e = |id: &str| (id.to_owned(), EventKind::Hire);
    assert_eq!(
        kinds(&plan),
        vec![
            e("E1"),
            e("E2"),
            e("E3"),
            e("E4"),
            ("E4".to_owned(), EventKind::LeaveStarted),
            e("E6"),
        ]
    );
    // Pre-hire: effective at midnight of the start date in Berlin (UTC+1).
    let flo = plan.events.last().unwrap();
    assert_eq!(flo.event.effective_at, ts("2026-12-01T00:00:00+01:00"));
    assert_eq!(flo.event.time_zone.name(), "Europe/Berlin");
    assert_eq!(flo.event.occurred_at.as_millis(), now().timestamp_millis());
    assert!(plan.events.iter().all(|p| !p.priority));
    assert_eq!(plan.summary.hires, 5);
    assert_eq!(plan.summary.leaves_started, 1);
    // The terminated worker is remembered, so a return is a rehire.
    assert_eq!(plan.next_baseline, day0());
}

#[test]
fn the_same_snapshot_again_plans_nothing() {
    let plan = diff(&source(), &day0(), day0(), now()).unwrap();
    assert!(plan.events.is_empty(), "{:?}", kinds(&plan));
    assert_eq!(plan.next_baseline, day0());
}

#[test]
fn event_ids_are_deterministic() {
    let a = diff(&source(), &Snapshot::default(), day0(), now()).unwrap();
    let later = now() + chrono::Duration::hours(5);
    let b = diff(&source(), &Snapshot::default(), day0(), later).unwrap();
    // Hires carry their own dates: same change, same id, whenever planned.
    let ids = |p: &Plan| -> Vec<String> {
        p.events
            .iter()
            .filter(|e| e.event.kind() == EventKind::Hire)
            .map(|e| e.event.event_id.to_string())
            .collect()
    };
    assert_eq!(ids(&a), ids(&b));
    let again = diff(&source(), &Snapshot::default(), day0(), now()).unwrap();
    assert_eq!(a.events, again.events);
    assert!(a.events.iter().all(|e| e.event.has_derived_id()));
}

#[test]
fn a_move_carries_only_the_changed_attributes() {
    let mut day1 = day0();
    let ana = day1.workers.get_mut("E1").unwrap();
    ana.attributes.title = Some("Team Lead".into());
    ana.attributes.manager_id = None;
    let plan = diff(&source(), &day0(), day1.clone(), now()).unwrap();
    assert_eq!(kinds(&plan), vec![("E1".to_owned(), EventKind::Move)]);
    let LifecyclePayload::Move(m) = &plan.events[0].event.payload else {
        panic!("move expected")
    };
    assert_eq!(
        m.changes,
        vec![
            AttributeChange::set(Attribute::Title, "Team Lead"),
            AttributeChange::clear(Attribute::ManagerId),
        ]
    );
    assert_eq!(
        plan.events[0].event.effective_at.as_millis(),
        now().timestamp_millis()
    );
}

#[test]
fn contractor_conversion_is_a_move_not_a_terminate_and_hire() {
    let mut day1 = day0();
    day1.workers
        .get_mut("E3")
        .unwrap()
        .attributes
        .employment_type = EmploymentType::Employee;
    let plan = diff(&source(), &day0(), day1.clone(), now()).unwrap();
    assert_eq!(kinds(&plan), vec![("E3".to_owned(), EventKind::Move)]);
    let LifecyclePayload::Move(m) = &plan.events[0].event.payload else {
        panic!("move expected")
    };
    assert_eq!(
        m.changes,
        vec![AttributeChange::set(Attribute::EmploymentType, "EMPLOYEE")]
    );
}

#[test]
fn a_dated_termination_takes_effect_at_the_end_of_that_day_locally() {
    let mut day1 = day0();
    let ben = day1.workers.get_mut("E2").unwrap();
    ben.status = WorkerStatus::Terminated;
    ben.termination_date = Some("2026-11-30".parse().unwrap());
    ben.termination_reason = Some("resigned".into());
    let plan = diff(&source(), &day0(), day1.clone(), now()).unwrap();
    assert_eq!(kinds(&plan), vec![("E2".to_owned(), EventKind::Terminate)]);
    let planned = &plan.events[0];
    assert_eq!(
        planned.event.effective_at,
        ts("2026-12-01T00:00:00-05:00"),
        "end of Nov 30 in New York"
    );
    assert!(!planned.priority, "a future termination waits for its time");
    let LifecyclePayload::Terminate(t) = &planned.event.payload else {
        panic!()
    };
    assert_eq!(t.reason.as_deref(), Some("resigned"));
    assert!(!t.immediate);

    let mut start_of_day = source();
    start_of_day.termination_time = TerminationTime::StartOfDay;
    let plan = diff(&start_of_day, &day0(), day1.clone(), now()).unwrap();
    assert_eq!(
        plan.events[0].event.effective_at,
        ts("2026-11-30T00:00:00-05:00")
    );
}

#[test]
fn immediate_or_past_terminations_take_the_priority_lane() {
    let mut day1 = day0();
    let ana = day1.workers.get_mut("E1").unwrap();
    ana.status = WorkerStatus::Terminated;
    ana.termination_date = Some("2026-12-31".parse().unwrap());
    ana.termination_immediate = true;
    let cy = day1.workers.get_mut("E3").unwrap();
    cy.status = WorkerStatus::Terminated;
    cy.termination_date = Some("2026-11-20".parse().unwrap());
    let plan = diff(&source(), &day0(), day1.clone(), now()).unwrap();
    assert_eq!(plan.summary.terminations, 2);
    assert_eq!(plan.summary.priority, 2);
    assert!(plan.events.iter().all(|p| p.priority));
}

#[test]
fn a_future_termination_date_on_an_active_worker_is_announced_once() {
    let mut day1 = day0();
    day1.workers.get_mut("E1").unwrap().termination_date = Some("2027-01-15".parse().unwrap());
    let plan = diff(&source(), &day0(), day1.clone(), now()).unwrap();
    assert_eq!(kinds(&plan), vec![("E1".to_owned(), EventKind::Terminate)]);
    assert_eq!(
        plan.events[0].event.effective_at,
        ts("2027-01-16T00:00:00+00:00")
    );
    // When the status later flips to terminated on that date: nothing new.
    let mut day2 = day1.clone();
    day2.workers.get_mut("E1").unwrap().status = WorkerStatus::Terminated;
    let plan = diff(&source(), &day1, day2.clone(), now()).unwrap();
    assert!(plan.events.is_empty(), "{:?}", kinds(&plan));
}

#[test]
fn a_terminated_worker_active_again_is_rehired() {
    let mut day1 = day0();
    let ed = day1.workers.get_mut("E5").unwrap();
    ed.status = WorkerStatus::Active;
    ed.hire_date = "2026-12-07".parse().unwrap();
    ed.termination_date = None;
    let plan = diff(&source(), &day0(), day1.clone(), now()).unwrap();
    assert_eq!(kinds(&plan), vec![("E5".to_owned(), EventKind::Rehire)]);
    assert_eq!(
        plan.events[0].event.effective_at,
        ts("2026-12-07T00:00:00Z")
    );
}

#[test]
fn leave_starts_and_ends() {
    let mut day1 = day0();
    day1.workers.get_mut("E1").unwrap().status = WorkerStatus::OnLeave;
    day1.workers.get_mut("E4").unwrap().status = WorkerStatus::Active;
    let plan = diff(&source(), &day0(), day1.clone(), now()).unwrap();
    assert_eq!(
        kinds(&plan),
        vec![
            ("E1".to_owned(), EventKind::LeaveStarted),
            ("E4".to_owned(), EventKind::LeaveEnded),
        ]
    );
}

#[test]
fn a_worker_missing_from_a_full_snapshot_is_terminated_now_and_remembered() {
    let mut day1 = day0();
    day1.workers.remove("E1");
    day1.workers.remove("E5"); // already terminated: nothing
    let plan = diff(&source(), &day0(), day1.clone(), now()).unwrap();
    assert_eq!(kinds(&plan), vec![("E1".to_owned(), EventKind::Terminate)]);
    assert!(plan.events[0].priority);
    assert_eq!(plan.summary.dropped, 1);
    let LifecyclePayload::Terminate(t) = &plan.events[0].event.payload else {
        panic!()
    };
    assert_eq!(t.reason.as_deref(), Some(DROPPED_REASON));
    let kept = &plan.next_baseline.workers["E1"];
    assert_eq!(kept.status, WorkerStatus::Terminated);
    assert!(plan.next_baseline.workers.contains_key("E5"));

    // Listed again as active later: a rehire.
    let plan = diff(&source(), &plan.next_baseline, day0(), now()).unwrap();
    assert_eq!(kinds(&plan), vec![("E1".to_owned(), EventKind::Rehire)]);

    // A partial export terminates nobody.
    let mut partial = source();
    partial.full_snapshot = false;
    let plan = diff(&partial, &day0(), day1.clone(), now()).unwrap();
    assert!(plan.events.is_empty());
    assert_eq!(plan.next_baseline, day0());
}

#[test]
fn a_pre_hire_whose_start_moves_is_hired_again_at_the_new_date() {
    let mut day1 = day0();
    day1.workers.get_mut("E6").unwrap().hire_date = "2027-01-04".parse().unwrap();
    let plan = diff(&source(), &day0(), day1.clone(), now()).unwrap();
    assert_eq!(kinds(&plan), vec![("E6".to_owned(), EventKind::Hire)]);
    assert_eq!(
        plan.events[0].event.effective_at,
        ts("2027-01-04T00:00:00+01:00")
    );
}

#[test]
fn limits_refuse_mass_terminations_and_mass_drops() {
    let mut day1 = day0();
    for id in ["E1", "E2"] {
        let w = day1.workers.get_mut(id).unwrap();
        w.status = WorkerStatus::Terminated;
        w.termination_date = Some("2026-11-21".parse().unwrap());
    }
    let plan = diff(&source(), &day0(), day1.clone(), now()).unwrap();
    let refusal = plan.check_limits(&source()).unwrap_err();
    assert_eq!(refusal.reasons.len(), 1, "{:?}", refusal.reasons);
    assert!(
        refusal.reasons[0].contains("2 of 5 active workers (40.0 %)"),
        "{:?}",
        refusal.reasons
    );

    let mut lenient = source();
    lenient.max_termination_share = 0.5;
    assert!(plan.check_limits(&lenient).is_ok());

    let mut dropped = day0();
    dropped.workers.retain(|id, _| id == "E5");
    let plan = diff(&lenient, &day0(), dropped.clone(), now()).unwrap();
    lenient.max_dropped = 3;
    let refusal = plan.check_limits(&lenient).unwrap_err();
    assert!(refusal
        .reasons
        .iter()
        .any(|r| r.contains("5 active workers are missing")));
}
