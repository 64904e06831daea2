//! The lines in memory: what a commit changes, and which batches it
//! conflicts with.

use super::*;

fn index(links: &[(&str, &str)], counts: &[(&str, i64)]) -> Index {
    let mut index = Index::default();
    index.apply(&Changes {
        managers: links.iter().map(|&(p, m)| (p, Some(m))).collect(),
        deltas: counts.iter().map(|(m, c)| ((*m).to_owned(), *c)).collect(),
    });
    index
}

/// Reads of the counts of `counts`.
fn reads(since: u64, counts: &[&str]) -> Reads<'static> {
    Reads {
        lines: None,
        since,
        keys: keys(counts).unwrap(),
    }
}

fn set(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|k| (*k).to_owned()).collect()
}

/// The counts of `counts`.
fn keys(counts: &[&str]) -> Option<Keys> {
    Some(Keys {
        counts: set(counts),
        ..Keys::default()
    })
}

#[test]
fn a_move_changes_both_managers_reports_and_the_counts() {
    let mut index = index(&[("R1", "A"), ("R2", "A")], &[("A", 2)]);
    let changes = Changes {
        managers: vec![("R1", Some("B")), ("R2", Some("A"))],
        deltas: [("A".to_owned(), -1), ("B".to_owned(), 1)].into(),
    };
    assert_eq!(
        index.touched(&changes),
        Keys {
            counts: set(&["A", "B"]),
            managers: set(&["R1"]),
            reports: set(&["A", "B"]),
        }
    );
    index.apply(&changes);
    assert_eq!(
        index,
        self::index(&[("R1", "B"), ("R2", "A")], &[("A", 1), ("B", 1)])
    );

    // Losing the last report and the manager: nothing left of A.
    index.apply(&Changes {
        managers: vec![("R2", None)],
        deltas: [("A".to_owned(), -1)].into(),
    });
    assert_eq!(index, self::index(&[("R1", "B")], &[("B", 1)]));
}

/// A state with a batch under way since generation 0 (so that no
/// commit is forgotten).
fn watched() -> State {
    let mut state = State::default();
    state.active.insert(0, 1);
    state
}

#[test]
fn a_batch_conflicts_with_commits_since_it_started_that_changed_what_it_read() {
    let mut state = watched();
    state.record(keys(&["A"]), Keys::default());
    state.record(keys(&["B", "C"]), Keys::default());
    let none = Keys::default();
    // Started after both.
    assert_eq!(state.conflict(&reads(2, &["A", "B"]), Some(&none)), None);
    // Started after the first: only the second counts.
    assert_eq!(state.conflict(&reads(1, &["A", "D"]), Some(&none)), None);
    assert_eq!(
        state.conflict(&reads(1, &["D", "C"]), Some(&none)),
        Some("the report count of C".to_owned())
    );
    assert!(state.conflict(&reads(0, &["A"]), Some(&none)).is_some());
    // Read again since: anything may have changed, for a batch that
    // read any.
    state.record(None, Keys::default());
    assert!(state.conflict(&reads(2, &["Z"]), Some(&none)).is_some());
    assert_eq!(state.conflict(&reads(2, &[]), Some(&none)), None);
    assert_eq!(state.conflict(&reads(3, &["Z"]), Some(&none)), None);
}

#[test]
fn a_batch_conflicts_with_commits_since_it_started_that_read_what_it_changes() {
    let mut state = watched();
    state.record(keys(&[]), keys(&["M", "R1"]).unwrap());
    let touching = |k: &[&str]| keys(k).unwrap();
    assert_eq!(
        state.conflict(&reads(0, &["X"]), Some(&touching(&["M"]))),
        Some("the report count of M (read by a batch that committed first)".to_owned())
    );
    assert_eq!(
        state.conflict(&reads(0, &["X"]), Some(&touching(&["N"]))),
        None
    );
    // Not known what it changes (the lines were not read yet).
    assert!(state.conflict(&reads(0, &[]), None).is_some());
    assert_eq!(state.conflict(&reads(1, &[]), None), None);
}

#[test]
fn a_batch_older_than_the_remembered_commits_conflicts() {
    let mut state = watched();
    for _ in 0..=LOG {
        state.record(keys(&["A"]), Keys::default());
    }
    assert!(state.conflict(&reads(0, &["Z"]), None).is_some());
    assert_eq!(state.conflict(&reads(1, &["Z"]), None), None);
}

#[test]
fn lines_of_different_kinds_do_not_conflict() {
    let walked = |since| Reads {
        lines: None,
        since,
        keys: Keys {
            managers: set(&["E0"]),
            ..Keys::default()
        },
    };
    // A termination changed E0's count beside a batch that walked a
    // chain through E0...
    let mut state = watched();
    state.record(keys(&["E0"]), Keys::default());
    assert_eq!(state.conflict(&walked(0), Some(&Keys::default())), None);
    // ... or the other way round.
    let mut state = watched();
    state.record(Some(Keys::default()), walked(0).keys.clone());
    assert_eq!(state.conflict(&reads(0, &[]), keys(&["E0"]).as_ref()), None);
    // A change of E0's manager is one the walk read.
    let mut state = watched();
    state.record(Some(walked(0).keys.clone()), Keys::default());
    assert_eq!(
        state.conflict(&walked(0), Some(&Keys::default())),
        Some("the manager of E0".to_owned())
    );
}

#[test]
fn commits_are_forgotten_once_no_batch_under_way_needs_them() {
    let generations =
        |state: &State| -> Vec<u64> { state.log.iter().map(|e| e.generation).collect() };
    let mut state = watched();
    state.record(keys(&["A"]), keys(&["A"]).unwrap());
    // Another batch starts after the first commit.
    state.active.insert(1, 1);
    state.record(keys(&["B"]), keys(&["B"]).unwrap());
    assert_eq!(generations(&state), [1, 2]);
    state.finish(0);
    assert_eq!(generations(&state), [2], "the batch since 1 needs 2");
    state.finish(1);
    assert_eq!(generations(&state), Vec::<u64>::new());
    // With no batch under way, a commit is forgotten at once.
    state.record(keys(&["C"]), Keys::default());
    assert!(state.log.is_empty());
}
