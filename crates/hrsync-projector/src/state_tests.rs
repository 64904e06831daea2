//! Tests of [`crate::state`]: attribute-level sourcing, effective-time
//! ordering, the lifecycle as a function of the clock, and the property that
//! arrival order never matters.

use std::collections::BTreeMap;

use hrsync_domain::LifecycleState::{Active, Deprovisioned, Pending, Suspended};
use hrsync_domain::{
    Attribute, AttributeChange, EmployeeId, EmploymentType, EventKind, Hire, LeaveEnded,
    LeaveStarted, LifecycleEvent, LifecyclePayload, LifecycleState, Move, Rehire, SourceSystem,
    Terminate, TimeZone, Timestamp, WorkerAttributes,
};
use proptest::prelude::*;

use crate::state::{effective_ms, sort_key, AttributeSources, PersonState};

const EMPLOYEE: &str = "E0100";
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

/// An event from `source` recorded at `occurred_ms` that takes effect at
/// `effective_ms`, in the Europe/Berlin time zone.
fn recorded(
    source: &str,
    occurred_ms: i64,
    effective_ms: i64,
    payload: LifecyclePayload,
) -> LifecycleEvent {
    recorded_in("Europe/Berlin", source, occurred_ms, effective_ms, payload)
}

fn recorded_in(
    time_zone: &str,
    source: &str,
    occurred_ms: i64,
    effective_ms: i64,
    payload: LifecyclePayload,
) -> LifecycleEvent {
    LifecycleEvent::new(
        SourceSystem::new(source).unwrap(),
        EmployeeId::new(EMPLOYEE).unwrap(),
        at(occurred_ms),
        at(effective_ms),
        TimeZone::new(time_zone).unwrap(),
        payload,
    )
    .unwrap()
}

/// An event recorded at the moment it takes effect.
fn event(source: &str, effective_ms: i64, payload: LifecyclePayload) -> LifecycleEvent {
    recorded(source, effective_ms, effective_ms, payload)
}

/// Ada, an engineer with a work phone.
fn ada() -> WorkerAttributes {
    let mut attributes = WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee);
    attributes.title = Some("Engineer".to_owned());
    attributes.department = Some("R&D".to_owned());
    attributes.phone = Some("+49 111".to_owned());
    attributes
}

fn hire(attributes: WorkerAttributes) -> LifecyclePayload {
    LifecyclePayload::Hire(Hire { attributes })
}

fn rehire(attributes: WorkerAttributes) -> LifecyclePayload {
    LifecyclePayload::Rehire(Rehire { attributes })
}

fn moving(changes: &[AttributeChange]) -> LifecyclePayload {
    LifecyclePayload::Move(Move {
        changes: changes.to_vec(),
    })
}

fn set(attribute: Attribute, value: &str) -> AttributeChange {
    AttributeChange::set(attribute, value)
}

fn terminate(immediate: bool) -> LifecyclePayload {
    LifecyclePayload::Terminate(Terminate {
        immediate,
        last_day_worked: None,
        reason: None,
    })
}

fn leave_started() -> LifecyclePayload {
    LifecyclePayload::LeaveStarted(LeaveStarted {
        leave_type: Some("parental".to_owned()),
        expected_return: None,
    })
}

fn leave_ended() -> LifecyclePayload {
    LifecyclePayload::LeaveEnded(LeaveEnded { reason: None })
}

fn sources(entries: &[(&str, &[&str])]) -> AttributeSources {
    AttributeSources(
        entries
            .iter()
            .map(|(attribute, allowed)| {
                (
                    (*attribute).to_owned(),
                    allowed.iter().map(|s| (*s).to_owned()).collect(),
                )
            })
            .collect(),
    )
}

/// `phone` from the directory first, then Workday.
fn phone_sources() -> AttributeSources {
    sources(&[("phone", &["directory", "workday"])])
}

fn fold(events: &[&LifecycleEvent], sources: &AttributeSources) -> PersonState {
    PersonState::fold(EMPLOYEE, events.iter().copied(), sources)
}

/// What the projector does as events arrive: apply an event in order, or
/// refold everything seen so far (this event included) when it is late.
fn incremental(arrivals: &[&LifecycleEvent], sources: &AttributeSources) -> PersonState {
    let mut state = PersonState::new(EMPLOYEE);
    let mut seen: Vec<&LifecycleEvent> = Vec::new();
    for &event in arrivals {
        seen.push(event);
        if state.is_in_order(event) {
            state.apply_in_order(event, sources);
        } else {
            state = fold(&seen, sources);
        }
    }
    state
}

/// Every ordering of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for shorter in permutations(n - 1) {
        for i in 0..=shorter.len() {
            let mut p = shorter.clone();
            p.insert(i, n - 1);
            out.push(p);
        }
    }
    out
}

/// The state after `events`, checking that every arrival order, folded or
/// applied incrementally, gives exactly that state.
fn settled(events: &[LifecycleEvent], sources: &AttributeSources) -> PersonState {
    assert!(events.len() <= 6, "keep scenarios small: n! orders");
    let all: Vec<&LifecycleEvent> = events.iter().collect();
    let expected = fold(&all, sources);
    for order in permutations(events.len()) {
        let arrivals: Vec<&LifecycleEvent> = order.iter().map(|&i| &events[i]).collect();
        assert_eq!(fold(&arrivals, sources), expected, "fold, order {order:?}");
        assert_eq!(
            incremental(&arrivals, sources),
            expected,
            "incremental, order {order:?}"
        );
    }
    expected
}

fn attributes(state: &PersonState) -> &WorkerAttributes {
    state.attributes.as_ref().expect("attributes known")
}

fn phone(state: &PersonState) -> Option<&str> {
    attributes(state).phone.as_deref()
}

fn title(state: &PersonState) -> Option<&str> {
    attributes(state).title.as_deref()
}

fn owner<'a>(state: &'a PersonState, attribute: &str) -> Option<&'a str> {
    state.owners.get(attribute).map(String::as_str)
}

/// The lifecycle at each of `times`.
fn timeline(state: &PersonState, times: &[i64]) -> Vec<Option<LifecycleState>> {
    times.iter().map(|&t| state.lifecycle_at(t)).collect()
}

// ---------------------------------------------------------------------------
// Attribute-level sourcing
// ---------------------------------------------------------------------------

#[test]
fn workday_move_never_overwrites_a_phone_set_by_the_directory() {
    let events = [
        event("workday", T0, hire(ada())),
        event(
            "directory",
            T0 + DAY,
            moving(&[set(Attribute::Phone, "+49 222")]),
        ),
        event(
            "workday",
            T0 + 2 * DAY,
            moving(&[
                set(Attribute::Phone, "+49 333"),
                set(Attribute::Title, "Staff Engineer"),
            ]),
        ),
    ];
    let state = settled(&events, &phone_sources());
    assert_eq!(phone(&state), Some("+49 222"));
    assert_eq!(owner(&state, "phone"), Some("directory"));
    // The rest of the same move still applies.
    assert_eq!(title(&state), Some("Staff Engineer"));
    assert_eq!(owner(&state, "title"), Some("workday"));
}

#[test]
fn workday_cannot_clear_a_phone_set_by_the_directory() {
    let events = [
        event("workday", T0, hire(ada())),
        event(
            "directory",
            T0 + DAY,
            moving(&[set(Attribute::Phone, "+49 222")]),
        ),
        event(
            "workday",
            T0 + 2 * DAY,
            moving(&[AttributeChange::clear(Attribute::Phone)]),
        ),
    ];
    let state = settled(&events, &phone_sources());
    assert_eq!(phone(&state), Some("+49 222"));
    assert_eq!(owner(&state, "phone"), Some("directory"));
}

#[test]
fn directory_overwrites_a_phone_set_by_workday() {
    let events = [
        event("workday", T0, hire(ada())),
        event(
            "workday",
            T0 + DAY,
            moving(&[set(Attribute::Phone, "+49 333")]),
        ),
        event(
            "directory",
            T0 + 2 * DAY,
            moving(&[set(Attribute::Phone, "+49 222")]),
        ),
        // Equal precedence may overwrite: the directory updates its own value.
        event(
            "directory",
            T0 + 3 * DAY,
            moving(&[set(Attribute::Phone, "+49 444")]),
        ),
    ];
    let state = settled(&events, &phone_sources());
    assert_eq!(phone(&state), Some("+49 444"));
    assert_eq!(owner(&state, "phone"), Some("directory"));
}

#[test]
fn a_lower_source_sets_and_clears_what_no_higher_source_owns() {
    let mut no_phone = ada();
    no_phone.phone = None;
    let events = [
        event("workday", T0, hire(no_phone)),
        event(
            "workday",
            T0 + DAY,
            moving(&[set(Attribute::Phone, "+49 333")]),
        ),
    ];
    let state = settled(&events, &phone_sources());
    assert_eq!(phone(&state), Some("+49 333"));
    assert_eq!(owner(&state, "phone"), Some("workday"));

    let cleared = settled(
        &[
            events[0].clone(),
            events[1].clone(),
            event(
                "workday",
                T0 + 2 * DAY,
                moving(&[AttributeChange::clear(Attribute::Phone)]),
            ),
        ],
        &phone_sources(),
    );
    assert_eq!(phone(&cleared), None);
    assert_eq!(owner(&cleared, "phone"), Some("workday"));
}

#[test]
fn a_source_not_listed_for_an_attribute_cannot_set_it() {
    let events = [
        event("workday", T0, hire(ada())),
        event(
            "bamboohr",
            T0 + DAY,
            moving(&[
                set(Attribute::Phone, "+1 555"),
                set(Attribute::Department, "Sales"),
            ]),
        ),
    ];
    let state = settled(&events, &phone_sources());
    assert_eq!(phone(&state), Some("+49 111"));
    assert_eq!(owner(&state, "phone"), Some("workday"));
    // The unconfigured attribute of the same move applies.
    assert_eq!(attributes(&state).department.as_deref(), Some("Sales"));
    assert_eq!(owner(&state, "department"), Some("bamboohr"));
}

#[test]
fn a_source_not_listed_cannot_set_an_attribute_nobody_set_yet() {
    let mut no_phone = ada();
    no_phone.phone = None;
    let events = [
        event("workday", T0, hire(no_phone)),
        event(
            "bamboohr",
            T0 + DAY,
            moving(&[set(Attribute::Phone, "+1 555")]),
        ),
    ];
    let state = settled(&events, &phone_sources());
    assert_eq!(phone(&state), None);
    assert_eq!(owner(&state, "phone"), None);
}

#[test]
fn unconfigured_attributes_accept_any_source() {
    let badge = Attribute::Custom("badge".to_owned());
    let events = [
        event("workday", T0, hire(ada())),
        event(
            "bamboohr",
            T0 + DAY,
            moving(&[set(Attribute::Title, "Lead")]),
        ),
        event(
            "directory",
            T0 + 2 * DAY,
            moving(&[set(Attribute::Title, "Principal"), set(badge.clone(), "7")]),
        ),
        event("workday", T0 + 3 * DAY, moving(&[set(badge, "8")])),
    ];
    let state = settled(&events, &phone_sources());
    assert_eq!(title(&state), Some("Principal"));
    assert_eq!(owner(&state, "title"), Some("directory"));
    assert_eq!(
        attributes(&state).custom.get("badge").map(String::as_str),
        Some("8")
    );
    assert_eq!(owner(&state, "custom.badge"), Some("workday"));
}

#[test]
fn custom_attributes_are_sourced_by_their_full_name() {
    let badge = Attribute::Custom("badge".to_owned());
    let configured = sources(&[("custom.badge", &["directory"])]);
    let events = [
        event("workday", T0, hire(ada())),
        event("directory", T0 + DAY, moving(&[set(badge.clone(), "7")])),
        event("workday", T0 + 2 * DAY, moving(&[set(badge, "8")])),
    ];
    let state = settled(&events, &configured);
    assert_eq!(
        attributes(&state).custom.get("badge").map(String::as_str),
        Some("7")
    );
    assert_eq!(owner(&state, "custom.badge"), Some("directory"));
}

#[test]
fn duplicate_hire_from_a_lower_source_does_not_clobber_a_higher_source() {
    let mut again = ada();
    again.title = Some("Senior Engineer".to_owned());
    again.phone = Some("+49 999".to_owned());
    let mut again_without_phone = again.clone();
    again_without_phone.phone = None;
    let events = [
        event("workday", T0, hire(ada())),
        event(
            "directory",
            T0 + DAY,
            moving(&[set(Attribute::Phone, "+49 222")]),
        ),
        // Workday hires again (a pre-hire whose start moved): its phone
        // neither replaces nor clears the directory's.
        event("workday", T0 + 2 * DAY, hire(again)),
        event("workday", T0 + 3 * DAY, hire(again_without_phone)),
    ];
    let state = settled(&events, &phone_sources());
    assert_eq!(phone(&state), Some("+49 222"));
    assert_eq!(owner(&state, "phone"), Some("directory"));
    // The attributes it may set do change.
    assert_eq!(title(&state), Some("Senior Engineer"));
    assert_eq!(owner(&state, "title"), Some("workday"));
    assert_eq!(state.employed_from_ms, Some(T0 + 3 * DAY));
}

#[test]
fn rehire_from_a_lower_source_does_not_clobber_a_higher_source() {
    let mut back = ada();
    back.phone = Some("+49 999".to_owned());
    back.department = Some("Sales".to_owned());
    let events = [
        event("workday", T0, hire(ada())),
        event(
            "directory",
            T0 + DAY,
            moving(&[set(Attribute::Phone, "+49 222")]),
        ),
        event("workday", T0 + 10 * DAY, terminate(false)),
        event("workday", T0 + 20 * DAY, rehire(back)),
    ];
    let state = settled(&events, &phone_sources());
    assert_eq!(phone(&state), Some("+49 222"));
    assert_eq!(owner(&state, "phone"), Some("directory"));
    assert_eq!(attributes(&state).department.as_deref(), Some("Sales"));
    assert_eq!(state.lifecycle_at(T0 + 20 * DAY), Some(Active));
}

#[test]
fn a_higher_source_hire_overwrites_a_lower_source() {
    let mut from_directory = ada();
    from_directory.phone = Some("+49 222".to_owned());
    let events = [
        event("workday", T0, hire(ada())),
        event("directory", T0 + DAY, hire(from_directory)),
    ];
    let state = settled(&events, &phone_sources());
    assert_eq!(phone(&state), Some("+49 222"));
    assert_eq!(owner(&state, "phone"), Some("directory"));
    // Attributes equal in both hires keep their first owner.
    assert_eq!(owner(&state, "title"), Some("workday"));
}

#[test]
fn owners_record_the_source_of_every_value() {
    let state = settled(&[event("workday", T0, hire(ada()))], &phone_sources());
    let expected: BTreeMap<String, String> = [
        "given_name",
        "family_name",
        "phone",
        "title",
        "department",
        "employment_type",
    ]
    .into_iter()
    .map(|a| (a.to_owned(), "workday".to_owned()))
    .collect();
    assert_eq!(state.owners, expected);

    let state = settled(
        &[
            event("workday", T0, hire(ada())),
            event(
                "bamboohr",
                T0 + DAY,
                moving(&[
                    set(Attribute::Title, "Lead"),
                    AttributeChange::clear(Attribute::Department),
                ]),
            ),
        ],
        &phone_sources(),
    );
    assert_eq!(owner(&state, "title"), Some("bamboohr"));
    // Clearing is setting: the clearer owns the (absent) value.
    assert_eq!(owner(&state, "department"), Some("bamboohr"));
    assert_eq!(attributes(&state).department, None);
    assert_eq!(owner(&state, "given_name"), Some("workday"));
}

#[test]
fn a_change_the_model_rejects_is_skipped_and_takes_no_ownership() {
    let events = [
        event("workday", T0, hire(ada())),
        event(
            "bamboohr",
            T0 + DAY,
            moving(&[
                AttributeChange::clear(Attribute::GivenName),
                set(Attribute::EmploymentType, "BOSS"),
                set(Attribute::Title, "Lead"),
            ]),
        ),
    ];
    let state = settled(&events, &AttributeSources::default());
    assert_eq!(attributes(&state).given_name, "Ada");
    assert_eq!(attributes(&state).employment_type, EmploymentType::Employee);
    assert_eq!(owner(&state, "given_name"), Some("workday"));
    assert_eq!(owner(&state, "employment_type"), Some("workday"));
    assert_eq!(title(&state), Some("Lead"));
}

#[test]
fn attribute_sources_are_a_plain_map_in_json_and_toml() {
    let expected = sources(&[
        ("phone", &["directory", "workday"]),
        ("custom.badge", &["directory"]),
    ]);
    let json = r#"{"custom.badge":["directory"],"phone":["directory","workday"]}"#;
    let parsed: AttributeSources = serde_json::from_str(json).unwrap();
    assert_eq!(parsed, expected);
    assert_eq!(serde_json::to_string(&parsed).unwrap(), json);

    let parsed: AttributeSources = toml::from_str(
        "phone = [\"directory\", \"workday\"]\n\"custom.badge\" = [\"directory\"]\n",
    )
    .unwrap();
    assert_eq!(parsed, expected);
    // Precedence is the list order.
    assert_eq!(parsed.0["phone"], ["directory", "workday"]);
    assert_eq!(
        serde_json::from_str::<AttributeSources>("{}").unwrap(),
        AttributeSources::default()
    );
}

// ---------------------------------------------------------------------------
// Effective time decides, not arrival order
// ---------------------------------------------------------------------------

#[test]
fn a_termination_arriving_before_its_hire_still_wins() {
    let hire = event("workday", T0, hire(ada()));
    let terminate = event("workday", T0 + 10 * DAY, terminate(false));
    // Folded in arrival order: the termination first.
    let state = fold(&[&terminate, &hire], &AttributeSources::default());
    assert_eq!(state.terminate_at_ms, Some(T0 + 10 * DAY));
    assert_eq!(state.employed_from_ms, Some(T0));
    assert_eq!(
        timeline(
            &state,
            &[T0 - 1, T0, T0 + 10 * DAY - 1, T0 + 10 * DAY, T0 + 99 * DAY]
        ),
        [
            Some(Pending),
            Some(Active),
            Some(Active),
            Some(Deprovisioned),
            Some(Deprovisioned)
        ]
    );

    // Incrementally, the late hire is not in order and causes a refold.
    let mut incremental = PersonState::new(EMPLOYEE);
    incremental.apply_in_order(&terminate, &AttributeSources::default());
    assert_eq!(incremental.lifecycle_at(T0 + 11 * DAY), None, "no hire yet");
    assert!(!incremental.is_in_order(&hire));
    assert_eq!(
        settled(&[hire, terminate], &AttributeSources::default()),
        state
    );
}

#[test]
fn an_older_move_does_not_overwrite_a_newer_value() {
    let hire = event("workday", T0, hire(ada()));
    let newer = event(
        "workday",
        T0 + 2 * DAY,
        moving(&[set(Attribute::Title, "Lead")]),
    );
    let older = event(
        "workday",
        T0 + DAY,
        moving(&[set(Attribute::Title, "Senior")]),
    );
    let state = fold(&[&hire, &newer, &older], &AttributeSources::default());
    assert_eq!(title(&state), Some("Lead"));

    let mut so_far = fold(&[&hire, &newer], &AttributeSources::default());
    assert!(!so_far.is_in_order(&older), "an older move needs a refold");
    so_far = fold(&[&hire, &newer, &older], &AttributeSources::default());
    assert_eq!(so_far, state);
    assert_eq!(
        settled(&[hire, newer, older], &AttributeSources::default()),
        state
    );
}

#[test]
fn a_move_replayed_after_a_termination_does_not_resurrect() {
    let events = [
        event("workday", T0, hire(ada())),
        event("workday", T0 + 10 * DAY, terminate(false)),
        // An old move replayed late, and one dated after the termination.
        event(
            "workday",
            T0 + DAY,
            moving(&[set(Attribute::Title, "Lead")]),
        ),
        event(
            "workday",
            T0 + 20 * DAY,
            moving(&[set(Attribute::Department, "Sales")]),
        ),
    ];
    let state = settled(&events, &AttributeSources::default());
    assert_eq!(state.terminate_at_ms, Some(T0 + 10 * DAY));
    assert_eq!(state.employed_from_ms, Some(T0));
    for now in [T0 + 10 * DAY, T0 + 15 * DAY, T0 + 20 * DAY, T0 + 365 * DAY] {
        assert_eq!(state.lifecycle_at(now), Some(Deprovisioned), "at {now}");
    }
    // The attributes still follow the moves.
    assert_eq!(title(&state), Some("Lead"));
    assert_eq!(attributes(&state).department.as_deref(), Some("Sales"));
}

#[test]
fn a_move_before_any_hire_is_superseded_by_the_hire() {
    let lone = fold(
        &[&event(
            "workday",
            T0,
            moving(&[set(Attribute::Title, "Lead")]),
        )],
        &AttributeSources::default(),
    );
    assert_eq!(lone.attributes, None);
    assert_eq!(lone.lifecycle_at(T0 + DAY), None);

    let events = [
        event("workday", T0, moving(&[set(Attribute::Title, "Lead")])),
        event("workday", T0 + DAY, hire(ada())),
    ];
    let state = settled(&events, &AttributeSources::default());
    assert_eq!(state.attributes, Some(ada()));
}

#[test]
fn rehire_after_termination_starts_a_new_employment() {
    let events = [
        event("workday", T0, hire(ada())),
        event("workday", T0 + 10 * DAY, terminate(true)),
        event("workday", T0 + 20 * DAY, rehire(ada())),
    ];
    let state = settled(&events, &AttributeSources::default());
    assert_eq!(state.terminate_at_ms, None);
    assert!(!state.terminate_immediate);
    assert_eq!(state.employed_from_ms, Some(T0 + 20 * DAY));
    assert_eq!(
        timeline(&state, &[T0 + 20 * DAY, T0 + 365 * DAY]),
        [Some(Active), Some(Active)]
    );
}

#[test]
fn rehire_ends_a_leave_and_is_then_terminated_again() {
    let events = [
        event("workday", T0, hire(ada())),
        event("workday", T0 + DAY, leave_started()),
        event("workday", T0 + 10 * DAY, terminate(false)),
        event("workday", T0 + 20 * DAY, rehire(ada())),
        event("workday", T0 + 30 * DAY, terminate(false)),
    ];
    let state = settled(&events, &AttributeSources::default());
    assert!(state.leave.is_none());
    assert_eq!(state.employed_from_ms, Some(T0 + 20 * DAY));
    assert_eq!(state.terminate_at_ms, Some(T0 + 30 * DAY));
    assert_eq!(
        timeline(&state, &[T0 + 25 * DAY, T0 + 30 * DAY]),
        [Some(Active), Some(Deprovisioned)]
    );
}

#[test]
fn a_hire_after_an_earlier_termination_is_a_new_employment() {
    let mut back = ada();
    back.title = Some("Contractor".to_owned());
    let events = [
        event("workday", T0, hire(ada())),
        event("workday", T0 + 10 * DAY, terminate(false)),
        event("bamboohr", T0 + 20 * DAY, hire(back)),
    ];
    let state = settled(&events, &AttributeSources::default());
    assert_eq!(state.terminate_at_ms, None);
    assert_eq!(state.employed_from_ms, Some(T0 + 20 * DAY));
    assert_eq!(title(&state), Some("Contractor"));
    assert_eq!(
        timeline(&state, &[T0 + 19 * DAY, T0 + 20 * DAY]),
        [Some(Deprovisioned), Some(Active)],
        "between the employments the old one's termination holds"
    );
}

#[test]
fn a_repeated_hire_keeps_a_later_termination() {
    let events = [
        event("workday", T0, hire(ada())),
        event("workday", T0 + 30 * DAY, terminate(false)),
        event("bamboohr", T0 + 5 * DAY, hire(ada())),
    ];
    let state = settled(&events, &AttributeSources::default());
    assert_eq!(state.employed_from_ms, Some(T0 + 5 * DAY));
    assert_eq!(state.terminate_at_ms, Some(T0 + 30 * DAY));
    assert_eq!(state.lifecycle_at(T0 + 30 * DAY), Some(Deprovisioned));
}

#[test]
fn at_the_same_instant_the_termination_comes_last() {
    // Hire, rehire, move, leave and termination all at one instant: the
    // termination sorts last whatever the arrival order.
    let events = [
        event("workday", T0, terminate(false)),
        event("workday", T0, leave_ended()),
        event("workday", T0, leave_started()),
        event("workday", T0, moving(&[set(Attribute::Title, "Lead")])),
        event("workday", T0, rehire(ada())),
        event("workday", T0, hire(ada())),
    ];
    let state = settled(&events, &AttributeSources::default());
    assert_eq!(state.terminate_at_ms, Some(T0));
    assert_eq!(state.lifecycle_at(T0), Some(Deprovisioned));
    // Leave ended sorts after leave started.
    assert!(!state.on_leave_at(T0));
    // The move sorts after the (re)hires.
    assert_eq!(title(&state), Some("Lead"));
    let mut in_fold_order: Vec<&LifecycleEvent> = events.iter().collect();
    in_fold_order.sort_by_cached_key(|e| sort_key(e));
    let kinds: Vec<&str> = in_fold_order.iter().map(|e| e.kind().as_str()).collect();
    assert_eq!(
        kinds,
        [
            "hire",
            "rehire",
            "move",
            "leave_started",
            "leave_ended",
            "terminate"
        ]
    );
}

#[test]
fn ties_of_one_kind_are_broken_by_event_id() {
    let a = event("workday", T0 + DAY, moving(&[set(Attribute::Title, "A")]));
    let b = event("workday", T0 + DAY, moving(&[set(Attribute::Title, "B")]));
    assert_ne!(a.event_id, b.event_id);
    let last = if a.event_id.as_str() > b.event_id.as_str() {
        "A"
    } else {
        "B"
    };
    let state = settled(
        &[event("workday", T0, hire(ada())), a, b],
        &AttributeSources::default(),
    );
    assert_eq!(title(&state), Some(last));
}

#[test]
fn time_zone_is_the_latest_event_in_effective_order() {
    let events = [
        recorded_in("Asia/Tokyo", "workday", T0, T0, hire(ada())),
        // Recorded last, but effective first.
        recorded_in(
            "America/New_York",
            "workday",
            T0 + 9 * DAY,
            T0 - DAY,
            moving(&[set(Attribute::Title, "Lead")]),
        ),
        recorded_in(
            "Europe/Berlin",
            "workday",
            T0 + DAY,
            T0 + DAY,
            moving(&[set(Attribute::Location, "Berlin")]),
        ),
    ];
    let state = settled(&events, &AttributeSources::default());
    assert_eq!(state.time_zone, "Europe/Berlin");
    assert_eq!(PersonState::new(EMPLOYEE).time_zone, "UTC");
}

// ---------------------------------------------------------------------------
// Lifecycle as a function of the clock
// ---------------------------------------------------------------------------

#[test]
fn no_lifecycle_without_a_hire() {
    assert_eq!(PersonState::new(EMPLOYEE).lifecycle_at(T0), None);
    for payload in [
        terminate(false),
        terminate(true),
        leave_started(),
        leave_ended(),
        moving(&[set(Attribute::Title, "Lead")]),
    ] {
        let state = fold(
            &[&event("workday", T0, payload)],
            &AttributeSources::default(),
        );
        assert_eq!(state.attributes, None);
        assert_eq!(state.employed_from_ms, None);
        assert_eq!(
            timeline(&state, &[T0 - 1, T0, T0 + DAY]),
            [None, None, None]
        );
    }
}

#[test]
fn pending_before_the_start_and_active_from_it() {
    let state = fold(
        &[&recorded("workday", T0, T0 + 14 * DAY, hire(ada()))],
        &AttributeSources::default(),
    );
    assert_eq!(state.employed_from_ms, Some(T0 + 14 * DAY));
    assert_eq!(
        timeline(
            &state,
            &[T0, T0 + 14 * DAY - 1, T0 + 14 * DAY, T0 + 365 * DAY]
        ),
        [Some(Pending), Some(Pending), Some(Active), Some(Active)]
    );
}

#[test]
fn suspended_on_leave_and_active_when_it_ends() {
    let on_leave = settled(
        &[
            event("workday", T0, hire(ada())),
            event("workday", T0 + DAY, leave_started()),
        ],
        &AttributeSources::default(),
    );
    assert!(on_leave.on_leave_at(T0 + 2 * DAY));
    assert_eq!(on_leave.lifecycle_at(T0 + 2 * DAY), Some(Suspended));

    let back = settled(
        &[
            event("workday", T0, hire(ada())),
            event("workday", T0 + DAY, leave_started()),
            event("workday", T0 + 5 * DAY, leave_ended()),
        ],
        &AttributeSources::default(),
    );
    assert!(back.on_leave_at(T0 + 4 * DAY));
    assert!(!back.on_leave_at(T0 + 6 * DAY));
    assert_eq!(back.lifecycle_at(T0 + 6 * DAY), Some(Active));
}

#[test]
fn a_pre_hire_on_leave_is_pending_until_the_start() {
    let state = settled(
        &[
            recorded("workday", T0, T0 + 10 * DAY, hire(ada())),
            recorded("workday", T0, T0 + 10 * DAY, leave_started()),
        ],
        &AttributeSources::default(),
    );
    assert_eq!(
        timeline(&state, &[T0, T0 + 10 * DAY]),
        [Some(Pending), Some(Suspended)]
    );
}

#[test]
fn deprovisioned_at_and_after_the_termination_even_on_leave() {
    let state = settled(
        &[
            event("workday", T0, hire(ada())),
            event("workday", T0 + DAY, leave_started()),
            recorded("workday", T0 + 2 * DAY, T0 + 30 * DAY, terminate(false)),
        ],
        &AttributeSources::default(),
    );
    assert!(!state.terminate_immediate);
    assert_eq!(
        timeline(&state, &[T0 + 30 * DAY - 1, T0 + 30 * DAY, T0 + 31 * DAY]),
        [Some(Suspended), Some(Deprovisioned), Some(Deprovisioned)]
    );
}

#[test]
fn an_immediate_termination_takes_effect_when_it_was_recorded() {
    let far_future = T0 + 365 * DAY;
    let immediate = recorded("workday", T0 + 5 * DAY, far_future, terminate(true));
    assert_eq!(effective_ms(&immediate), T0 + 5 * DAY);
    assert_eq!(sort_key(&immediate).0, T0 + 5 * DAY);

    let state = settled(
        &[event("workday", T0, hire(ada())), immediate.clone()],
        &AttributeSources::default(),
    );
    assert_eq!(state.terminate_at_ms, Some(T0 + 5 * DAY));
    assert!(state.terminate_immediate);
    assert_eq!(
        timeline(&state, &[T0 + 5 * DAY - 1, T0 + 5 * DAY]),
        [Some(Active), Some(Deprovisioned)]
    );
    assert_eq!(state.last_key.as_ref().unwrap().0, T0 + 5 * DAY);

    // The same termination, not immediate, waits for its effective time.
    let scheduled = recorded("workday", T0 + 5 * DAY, far_future, terminate(false));
    assert_eq!(effective_ms(&scheduled), far_future);
    let state = settled(
        &[event("workday", T0, hire(ada())), scheduled],
        &AttributeSources::default(),
    );
    assert_eq!(state.terminate_at_ms, Some(far_future));
    assert_eq!(state.lifecycle_at(T0 + 5 * DAY), Some(Active));
}

#[test]
fn effective_ms_is_the_earlier_time_only_for_immediate_terminations() {
    // Backdated immediate termination: its effective time is earlier still.
    let backdated = recorded("workday", T0 + 5 * DAY, T0 + DAY, terminate(true));
    assert_eq!(effective_ms(&backdated), T0 + DAY);
    // Every other kind ignores when it was recorded.
    for payload in [
        hire(ada()),
        rehire(ada()),
        moving(&[set(Attribute::Title, "Lead")]),
        leave_started(),
        leave_ended(),
        terminate(false),
    ] {
        let late = recorded("workday", T0, T0 + 9 * DAY, payload.clone());
        assert_eq!(effective_ms(&late), T0 + 9 * DAY, "{:?}", late.kind());
        let backdated = recorded("workday", T0 + 9 * DAY, T0, payload);
        assert_eq!(effective_ms(&backdated), T0, "{:?}", backdated.kind());
    }
}

#[test]
fn sort_key_orders_by_time_then_kind_then_event_id() {
    let kinds = [
        (EventKind::Hire, hire(ada())),
        (EventKind::Rehire, rehire(ada())),
        (EventKind::Move, moving(&[set(Attribute::Title, "Lead")])),
        (EventKind::LeaveStarted, leave_started()),
        (EventKind::LeaveEnded, leave_ended()),
        (EventKind::Terminate, terminate(false)),
    ];
    let keys: Vec<_> = kinds
        .iter()
        .map(|(kind, payload)| {
            let e = event("workday", T0, payload.clone());
            assert_eq!(e.kind(), *kind);
            sort_key(&e)
        })
        .collect();
    for pair in keys.windows(2) {
        assert!(pair[0] < pair[1], "{pair:?}");
        assert_eq!(pair[0].0, T0);
    }
    // Time outranks kind: a termination a millisecond earlier sorts first.
    let earlier = event("workday", T0 - 1, terminate(false));
    assert!(sort_key(&earlier) < keys[0]);
    // The id is the last component.
    let e = event("workday", T0, hire(ada()));
    assert_eq!(sort_key(&e).2, e.event_id.to_string());
}

#[test]
fn is_in_order_compares_with_the_last_applied_event() {
    let sources = AttributeSources::default();
    let mut state = PersonState::new(EMPLOYEE);
    let move_at_t0 = event("workday", T0 + DAY, moving(&[set(Attribute::Title, "A")]));
    assert!(state.is_in_order(&move_at_t0), "anything goes first");
    state.apply_in_order(&event("workday", T0, hire(ada())), &sources);
    state.apply_in_order(&move_at_t0, &sources);
    assert_eq!(state.last_key, Some(sort_key(&move_at_t0)));

    assert!(!state.is_in_order(&move_at_t0), "a redelivery is not new");
    // Same instant: a higher-ranked kind is in order, a lower-ranked not.
    assert!(state.is_in_order(&event("workday", T0 + DAY, terminate(false))));
    assert!(state.is_in_order(&event("workday", T0 + DAY, leave_started())));
    assert!(!state.is_in_order(&event("workday", T0 + DAY, rehire(ada()))));
    // Later and earlier.
    assert!(state.is_in_order(&event("workday", T0 + DAY + 1, hire(ada()))));
    assert!(!state.is_in_order(&event("workday", T0 + DAY - 1, terminate(false))));
    // An immediate termination is placed by when it was recorded.
    assert!(!state.is_in_order(&recorded(
        "workday",
        T0 + DAY - 1,
        T0 + 99 * DAY,
        terminate(true)
    )));
}

#[test]
fn next_change_walks_pre_hire_windows_start_and_termination() {
    let start = T0 + 30 * DAY;
    let end = T0 + 90 * DAY;
    let state = settled(
        &[
            recorded("workday", T0, start, hire(ada())),
            recorded("workday", T0 + DAY, end, terminate(false)),
        ],
        &AttributeSources::default(),
    );
    let offsets = [7 * DAY, 14 * DAY];
    assert_eq!(
        state.next_change_after(T0, &offsets),
        Some(start - 14 * DAY)
    );
    assert_eq!(
        state.next_change_after(start - 14 * DAY, &offsets),
        Some(start - 7 * DAY),
        "strictly after now"
    );
    assert_eq!(
        state.next_change_after(start - 7 * DAY, &offsets),
        Some(start)
    );
    assert_eq!(state.next_change_after(start, &offsets), Some(end));
    assert_eq!(state.next_change_after(end - 1, &offsets), Some(end));
    assert_eq!(state.next_change_after(end, &offsets), None);
    // Without pre-hire offsets, the start comes first.
    assert_eq!(state.next_change_after(T0, &[]), Some(start));
    // A window wider than the lead time is already open.
    assert_eq!(
        state.next_change_after(start - 10 * DAY, &[60 * DAY]),
        Some(start)
    );
}

#[test]
fn next_change_is_none_when_nothing_is_ahead() {
    assert_eq!(
        PersonState::new(EMPLOYEE).next_change_after(T0, &[DAY]),
        None
    );
    let active = settled(
        &[event("workday", T0, hire(ada()))],
        &AttributeSources::default(),
    );
    assert_eq!(active.next_change_after(T0, &[DAY]), None);
    assert_eq!(active.next_change_after(T0 - 1, &[]), Some(T0));
    let rehired = settled(
        &[
            event("workday", T0, hire(ada())),
            event("workday", T0 + DAY, terminate(false)),
            event("workday", T0 + 2 * DAY, rehire(ada())),
        ],
        &AttributeSources::default(),
    );
    assert_eq!(rehired.next_change_after(T0 + 3 * DAY, &[DAY]), None);
    assert_eq!(
        rehired.next_change_after(T0, &[DAY]),
        Some(T0 + DAY),
        "the rehire's pre-hire window"
    );
}

#[test]
fn an_immediate_termination_is_due_at_once() {
    let state = settled(
        &[
            event("workday", T0, hire(ada())),
            recorded("workday", T0 + DAY, T0 + 60 * DAY, terminate(true)),
        ],
        &AttributeSources::default(),
    );
    assert_eq!(state.next_change_after(T0, &[]), Some(T0 + DAY));
    assert_eq!(state.next_change_after(T0 + DAY, &[]), None);
}

#[test]
fn state_round_trips_through_json() {
    let state = settled(
        &[
            event("workday", T0, hire(ada())),
            event(
                "directory",
                T0 + DAY,
                moving(&[set(Attribute::Phone, "+49 222")]),
            ),
            event("workday", T0 + 2 * DAY, terminate(true)),
        ],
        &phone_sources(),
    );
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(serde_json::from_str::<PersonState>(&json).unwrap(), state);
}

// ---------------------------------------------------------------------------
// Properties: arrival order never matters
// ---------------------------------------------------------------------------

const SOURCE_NAMES: [&str; 3] = ["workday", "directory", "bamboohr"];
const TIME_ZONES: [&str; 3] = ["UTC", "Europe/Berlin", "Asia/Tokyo"];

/// `phone` from the directory then Workday, `title` from Workday only,
/// `custom.badge` from all three in a fixed order; the rest from anyone.
fn property_sources() -> AttributeSources {
    sources(&[
        ("phone", &["directory", "workday"]),
        ("title", &["workday"]),
        ("custom.badge", &["directory", "bamboohr", "workday"]),
    ])
}

fn arb_value() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned))
}

fn arb_attributes() -> impl Strategy<Value = WorkerAttributes> {
    (
        prop::sample::select(vec!["Ada", "Grace"]),
        arb_value(),
        arb_value(),
        arb_value(),
    )
        .prop_map(|(given, phone, title, badge)| {
            let mut attributes = WorkerAttributes::new(given, "Lovelace", EmploymentType::Employee);
            attributes.phone = phone;
            attributes.title = title;
            if let Some(badge) = badge {
                attributes.custom.insert("badge".to_owned(), badge);
            }
            attributes
        })
}

/// Attributes a move may touch; clearing `given_name` is rejected by the
/// model, which the fold must skip.
fn move_attribute(i: usize) -> Attribute {
    match i {
        0 => Attribute::Phone,
        1 => Attribute::Title,
        2 => Attribute::Department,
        3 => Attribute::Custom("badge".to_owned()),
        _ => Attribute::GivenName,
    }
}

fn arb_payload() -> impl Strategy<Value = LifecyclePayload> {
    prop_oneof![
        2 => arb_attributes().prop_map(hire),
        1 => arb_attributes().prop_map(rehire),
        4 => prop::collection::btree_map(0usize..5, arb_value(), 1..4).prop_map(|changes| {
            LifecyclePayload::Move(Move {
                changes: changes
                    .into_iter()
                    .map(|(i, value)| AttributeChange {
                        attribute: move_attribute(i),
                        value,
                    })
                    .collect(),
            })
        }),
        2 => any::<bool>().prop_map(terminate),
        1 => Just(leave_started()),
        1 => Just(leave_ended()),
    ]
}

/// An event at a few coarse instants (so ties are common), from one of three
/// sources, sometimes recorded after or before it takes effect.
fn arb_event() -> impl Strategy<Value = LifecycleEvent> {
    (
        prop::sample::select(SOURCE_NAMES.to_vec()),
        prop::sample::select(TIME_ZONES.to_vec()),
        0i64..6,
        0i64..6,
        arb_payload(),
    )
        .prop_map(|(source, time_zone, effective, occurred, payload)| {
            recorded_in(
                time_zone,
                source,
                T0 + occurred * DAY,
                T0 + effective * DAY,
                payload,
            )
        })
}

/// Distinct events (the projector drops a redelivered event id before
/// folding), with a shuffled arrival order of them.
fn arb_history() -> impl Strategy<Value = (Vec<LifecycleEvent>, Vec<LifecycleEvent>)> {
    prop::collection::vec(arb_event(), 0..12)
        .prop_map(|events| {
            let mut ids = std::collections::BTreeSet::new();
            events
                .into_iter()
                .filter(|e| ids.insert(e.event_id.clone()))
                .collect::<Vec<_>>()
        })
        .prop_flat_map(|events| (Just(events.clone()), Just(events).prop_shuffle()))
}

/// Instants around every boundary the events can create.
fn sample_times() -> Vec<i64> {
    (-1..8)
        .flat_map(|d| [T0 + d * DAY - 1, T0 + d * DAY])
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fold_ignores_arrival_order((events, arrivals) in arb_history()) {
        let sources = property_sources();
        let all: Vec<&LifecycleEvent> = events.iter().collect();
        let shuffled: Vec<&LifecycleEvent> = arrivals.iter().collect();
        let expected = fold(&all, &sources);
        let state = fold(&shuffled, &sources);
        prop_assert_eq!(
            timeline(&state, &sample_times()),
            timeline(&expected, &sample_times())
        );
        prop_assert_eq!(&state.attributes, &expected.attributes);
        prop_assert_eq!(&state.owners, &expected.owners);
        prop_assert_eq!(state.employed_from_ms, expected.employed_from_ms);
        prop_assert_eq!(state.terminate_at_ms, expected.terminate_at_ms);
        prop_assert_eq!(&state.leave, &expected.leave);
        // And everything else too (time zone, last key).
        prop_assert_eq!(&state, &expected);
    }

    #[test]
    fn a_stored_state_reads_back_as_it_was((events, _arrivals) in arb_history()) {
        let state = fold(&events.iter().collect::<Vec<_>>(), &property_sources());
        let stored = state.to_stored().unwrap();
        prop_assert_eq!(PersonState::from_stored(&stored).unwrap(), state);
    }

    #[test]
    fn incremental_application_equals_the_fold((events, arrivals) in arb_history()) {
        let sources = property_sources();
        let all: Vec<&LifecycleEvent> = events.iter().collect();
        let shuffled: Vec<&LifecycleEvent> = arrivals.iter().collect();
        // Including `last_key`.
        prop_assert_eq!(incremental(&shuffled, &sources), fold(&all, &sources));
    }

    #[test]
    fn moves_never_change_the_lifecycle((events, _arrivals) in arb_history()) {
        let sources = property_sources();
        let all: Vec<&LifecycleEvent> = events.iter().collect();
        let without_moves: Vec<&LifecycleEvent> =
            events.iter().filter(|e| e.kind() != EventKind::Move).collect();
        let state = fold(&all, &sources);
        let bare = fold(&without_moves, &sources);
        prop_assert_eq!(
            timeline(&state, &sample_times()),
            timeline(&bare, &sample_times())
        );
        prop_assert_eq!(state.employed_from_ms, bare.employed_from_ms);
        prop_assert_eq!(state.terminate_at_ms, bare.terminate_at_ms);
        prop_assert_eq!(state.terminate_immediate, bare.terminate_immediate);
        prop_assert_eq!(&state.leave, &bare.leave);
    }

    #[test]
    fn the_lifecycle_holds_until_the_next_change(
        (events, _arrivals) in arb_history(),
        offsets in prop::collection::vec(0i64..10 * DAY, 0..3),
    ) {
        let state = fold(&events.iter().collect::<Vec<_>>(), &property_sources());
        for now in sample_times() {
            let next = state.next_change_after(now, &[]);
            match next {
                Some(next) => {
                    prop_assert!(next > now);
                    prop_assert_eq!(state.lifecycle_at(now), state.lifecycle_at(next - 1));
                }
                None => {
                    prop_assert_eq!(state.lifecycle_at(now), state.lifecycle_at(T0 + 999 * DAY));
                }
            }
            // Pre-hire windows only add earlier wake-ups.
            let with_windows = state.next_change_after(now, &offsets);
            prop_assert!(with_windows.is_none_or(|t| t > now));
            if let Some(next) = next {
                prop_assert!(with_windows.is_some_and(|t| t <= next));
            }
            if let Some(end) = state.terminate_at_ms {
                if state.attributes.is_some() && state.employed_from_ms.is_some() {
                    prop_assert_eq!(state.lifecycle_at(end.max(now)), Some(Deprovisioned));
                }
            }
        }
    }

    #[test]
    fn configured_attributes_are_owned_by_allowed_sources(
        (events, _arrivals) in arb_history(),
    ) {
        let sources = property_sources();
        let state = fold(&events.iter().collect::<Vec<_>>(), &sources);
        // The hire that created the profile may set anything; after it, only
        // listed sources.
        let creator = events
            .iter()
            .filter(|e| matches!(e.kind(), EventKind::Hire | EventKind::Rehire))
            .min_by_key(|e| sort_key(e))
            .map(|e| e.source_system.as_str());
        for (attribute, allowed) in &sources.0 {
            if let Some(owner) = owner(&state, attribute) {
                prop_assert!(
                    allowed.iter().any(|s| s == owner) || Some(owner) == creator,
                    "{} owned by {}",
                    attribute,
                    owner
                );
            }
        }
    }
}

// Found by review of the first fold: each was wrong before the employment
// and termination rules used recording times.

#[test]
fn an_immediate_termination_wins_over_a_scheduled_one() {
    let state = settled(
        &[
            event("workday", T0, hire(ada())),
            recorded("workday", T0 + DAY, T0 + 30 * DAY, terminate(false)),
            recorded("workday", T0 + 5 * DAY, T0 + 30 * DAY, terminate(true)),
        ],
        &AttributeSources::default(),
    );
    assert_eq!(state.lifecycle_at(T0 + 5 * DAY), Some(Deprovisioned));
    assert_eq!(state.terminate_at_ms, Some(T0 + 5 * DAY));
}

#[test]
fn a_termination_moved_earlier_takes_the_earlier_date() {
    let state = settled(
        &[
            event("workday", T0, hire(ada())),
            recorded("workday", T0 + DAY, T0 + 30 * DAY, terminate(false)),
            recorded("workday", T0 + 2 * DAY, T0 + 20 * DAY, terminate(false)),
        ],
        &AttributeSources::default(),
    );
    assert_eq!(state.terminate_at_ms, Some(T0 + 20 * DAY));
    assert_eq!(state.lifecycle_at(T0 + 25 * DAY), Some(Deprovisioned));
}

#[test]
fn an_extended_notice_period_takes_the_later_date() {
    let state = settled(
        &[
            event("workday", T0, hire(ada())),
            recorded("workday", T0 + DAY, T0 + 20 * DAY, terminate(false)),
            recorded("workday", T0 + 2 * DAY, T0 + 30 * DAY, terminate(false)),
        ],
        &AttributeSources::default(),
    );
    assert_eq!(state.terminate_at_ms, Some(T0 + 30 * DAY));
    assert_eq!(state.lifecycle_at(T0 + 25 * DAY), Some(Active));
}

#[test]
fn a_rescinded_pre_hire_never_becomes_active() {
    for immediate in [false, true] {
        let state = settled(
            &[
                recorded("workday", T0, T0 + 14 * DAY, hire(ada())),
                recorded("workday", T0 + DAY, T0 + DAY, terminate(immediate)),
            ],
            &AttributeSources::default(),
        );
        assert_eq!(
            state.lifecycle_at(T0 + DAY / 2),
            Some(Pending),
            "immediate: {immediate}"
        );
        assert_eq!(
            state.lifecycle_at(T0 + 14 * DAY),
            Some(Deprovisioned),
            "immediate: {immediate}"
        );
    }
}

#[test]
fn a_start_date_moved_earlier_is_honoured() {
    let state = settled(
        &[
            recorded("workday", T0, T0 + 20 * DAY, hire(ada())),
            recorded("workday", T0 + 2 * DAY, T0 + 10 * DAY, hire(ada())),
        ],
        &AttributeSources::default(),
    );
    assert_eq!(state.employed_from_ms, Some(T0 + 10 * DAY));
    assert_eq!(state.lifecycle_at(T0 + 12 * DAY), Some(Active));
}

#[test]
fn a_future_rehire_keeps_the_current_employment_until_it_ends() {
    let state = settled(
        &[
            event("workday", T0, hire(ada())),
            recorded("workday", T0 + DAY, T0 + 10 * DAY, terminate(false)),
            recorded("workday", T0 + 2 * DAY, T0 + 20 * DAY, rehire(ada())),
        ],
        &AttributeSources::default(),
    );
    assert_eq!(state.lifecycle_at(T0 + 3 * DAY), Some(Active));
    assert_eq!(
        state.next_change_after(T0 + 3 * DAY, &[]),
        Some(T0 + 10 * DAY)
    );
    assert_eq!(state.lifecycle_at(T0 + 15 * DAY), Some(Deprovisioned));
    assert_eq!(
        state.next_change_after(T0 + 15 * DAY, &[]),
        Some(T0 + 20 * DAY)
    );
    assert_eq!(state.lifecycle_at(T0 + 21 * DAY), Some(Active));
}

#[test]
fn a_future_leave_suspends_only_when_it_starts() {
    let state = settled(
        &[
            event("workday", T0, hire(ada())),
            recorded("workday", T0 + DAY, T0 + 10 * DAY, leave_started()),
        ],
        &AttributeSources::default(),
    );
    assert_eq!(state.lifecycle_at(T0 + 2 * DAY), Some(Active));
    assert_eq!(
        state.next_change_after(T0 + 2 * DAY, &[]),
        Some(T0 + 10 * DAY)
    );
    assert_eq!(state.lifecycle_at(T0 + 10 * DAY), Some(Suspended));
}

#[test]
fn the_first_hire_respects_attribute_sources() {
    let state = settled(
        &[event("workday", T0, hire(ada()))],
        &sources(&[("phone", &["directory"])]),
    );
    assert_eq!(phone(&state), None);
    assert_eq!(owner(&state, "phone"), None);
    assert_eq!(owner(&state, "given_name"), Some("workday"));
}

#[test]
fn a_repeated_hire_does_not_end_a_leave() {
    let state = settled(
        &[
            event("workday", T0, hire(ada())),
            event("workday", T0 + DAY, leave_started()),
            event("bamboohr", T0 + 2 * DAY, hire(ada())),
        ],
        &AttributeSources::default(),
    );
    assert_eq!(state.lifecycle_at(T0 + 3 * DAY), Some(Suspended));
}

/// The stored binary form is fixed: these bytes must keep reading as this
/// state (stores hold them). Changing the fields of `PersonState` or their
/// order breaks this test; that needs a new format byte and a reader for
/// this one.
#[test]
fn the_stored_binary_form_is_pinned() {
    let mut attributes = ada();
    attributes.manager_id = Some(EmployeeId::new("E0001").unwrap());
    attributes.custom.insert("badge".to_owned(), "7".to_owned());
    let state = PersonState {
        employee_id: EMPLOYEE.to_owned(),
        time_zone: "Europe/Berlin".to_owned(),
        attributes: Some(attributes),
        owners: BTreeMap::from([("title".to_owned(), "workday".to_owned())]),
        employed_from_ms: Some(T0),
        start_recorded_ms: T0 - DAY,
        terminate_at_ms: Some(T0 + 30 * DAY),
        terminate_immediate: false,
        terminate_recorded_ms: i64::MIN,
        previous: Some(crate::state::Employment {
            from_ms: T0 - 400 * DAY,
            terminate_at_ms: Some(T0 - 100 * DAY),
        }),
        leave: Some(crate::state::Leave {
            from_ms: T0 + DAY,
            until_ms: None,
        }),
        last_key: Some((T0, 2, "id-1".to_owned())),
    };
    let stored = state.to_stored().unwrap();
    let hex: String = stored.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, PINNED_V1);
    assert_eq!(PersonState::from_stored(&stored).unwrap(), state);
}

/// The bytes of the state in [`the_stored_binary_form_is_pinned`].
const PINNED_V1: &str = concat!(
    "010545303130300d4575726f70652f4265726c696e0103416461084c6f76656c",
    "6163650000000001072b3439203131310108456e67696e656572010352264401",
    "05453030303100000001056261646765013701057469746c6507776f726b6461",
    "790180a0d5edee6680b0a29bee660180c0cb95826700ffffffffffffffffff01",
    "0180a0d7aeed640180e0f5bdae6601809088c0ef66000180a0d5edee66020469",
    "642d31",
);

#[test]
fn an_unreadable_stored_state_says_why() {
    let error = PersonState::from_stored(&[]).unwrap_err().to_string();
    assert_eq!(error, "empty state");
    let error = PersonState::from_stored(&[9, 1, 2])
        .unwrap_err()
        .to_string();
    assert_eq!(error, "unknown state format 9");
    let error = PersonState::from_stored(&[1, 200]).unwrap_err().to_string();
    assert!(error.starts_with("binary state (format 1): "), "{error}");
    // The JSON of states stored before the binary form is not read.
    let error = PersonState::from_stored(b"{\"employee_id\":")
        .unwrap_err()
        .to_string();
    assert_eq!(error, "unknown state format 123");
}
