//! The decision for a manual-task app, with no I/O: what a change asks of
//! a person's account ([`Wanted`]) and what hrsync last asked of it
//! ([`Asked`]) in, the task to hand people ([`Decision`]) out; and how a
//! new task takes over an open one of the same account ([`fold`]).
//!
//! The comparison is with what was last *asked*, not with what people
//! confirmed: the app cannot be read, and an open task already asks for
//! the difference. So a person who joins, then moves before the create is
//! done, gets one create task with the newest fields (the first one is
//! superseded), never a create and an update of an account that does not
//! exist yet.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What people are asked to do to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Make the account, with the fields given.
    Create,
    /// Change the fields listed in the task's changes.
    Update,
    /// Disable the account (a leaver, a leave of absence, the app taken
    /// away). The fast lane: listed first.
    Disable,
    /// Enable the account again (back from leave, rehired, the app given
    /// back), with the fields listed in the changes.
    Reactivate,
}

impl Action {
    /// The name the API and the store give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Disable => "disable",
            Action::Reactivate => "reactivate",
        }
    }

    /// Parses [`Action::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        [
            Action::Create,
            Action::Update,
            Action::Disable,
            Action::Reactivate,
        ]
        .into_iter()
        .find(|a| a.as_str() == text)
    }

    /// The audit operation a task of this action is recorded under.
    pub fn operation(self) -> hrsync_domain::AuditOperation {
        use hrsync_domain::AuditOperation;
        match self {
            Action::Create => AuditOperation::Create,
            Action::Update => AuditOperation::Update,
            Action::Disable => AuditOperation::Deactivate,
            Action::Reactivate => AuditOperation::Reactivate,
        }
    }
}

/// The field that says whether the account is enabled.
pub const ENABLED: &str = "enabled";

/// One field a task changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field, as the task's fields name it (`title`, `name.givenName`,
    /// `groups`, ...).
    pub field: String,
    /// What it was asked to be before (`null`: not set).
    pub from: Value,
    /// What it should be now (`null`: clear it).
    pub to: Value,
}

/// The account's fields: a flat map from a field's name to its value.
pub type Fields = BTreeMap<String, Value>;

/// What a directory change asks of one person's account in a manual app.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// The change's version.
    pub version: i64,
    /// An account is wanted: the app is assigned and the person not
    /// deprovisioned.
    pub wanted: bool,
    /// It is active: assigned, and the person active.
    pub active: bool,
    /// The fields the account should have.
    pub fields: Fields,
}

/// What hrsync last asked of the account.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    /// The version of the change it was last asked at (or recorded as
    /// needing nothing).
    pub version: i64,
    /// A create was asked for (the account may exist).
    pub asked: bool,
    /// It was asked to be active.
    pub active: bool,
    /// The fields as last asked.
    pub fields: Fields,
}

/// What to do for one change.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The change is not newer than what was last asked: nothing.
    Stale,
    /// Nothing for people to do; record the version (and the fields, if
    /// any were asked).
    Record,
    /// Hand people a task.
    Task {
        /// What to do.
        action: Action,
        /// The fields it changes (for a create: every field).
        changes: Vec<FieldChange>,
    },
}

/// The task (if any) that makes the account what `wanted` asks, given what
/// was last asked.
pub fn decide(wanted: &Wanted, asked: Option<&Asked>) -> Decision {
    if asked.is_some_and(|a| a.version >= wanted.version) {
        return Decision::Stale;
    }
    let Some(asked) = asked.filter(|a| a.asked) else {
        // No account was ever asked for: make one if it is wanted (a
        // pending person's is made disabled, enabled on the start date).
        return if wanted.wanted {
            Decision::Task {
                action: Action::Create,
                changes: diff(&Fields::new(), &wanted.fields),
            }
        } else {
            Decision::Record
        };
    };
    let changes = diff(&asked.fields, &wanted.fields);
    let action = match (asked.active, wanted.active) {
        (true, false) => Action::Disable,
        (false, true) => Action::Reactivate,
        _ if wanted.wanted && !changes.is_empty() => Action::Update,
        _ => return Decision::Record,
    };
    // A disable changes only that: the rest waits for a reactivation.
    let changes = if action == Action::Disable {
        changes.into_iter().filter(|c| c.field == ENABLED).collect()
    } else {
        changes
    };
    Decision::Task { action, changes }
}

/// The fields that differ from `before` to `after`, by name.
pub fn diff(before: &Fields, after: &Fields) -> Vec<FieldChange> {
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let from = before.get(name).cloned().unwrap_or(Value::Null);
            let to = after.get(name).cloned().unwrap_or(Value::Null);
            (from != to).then(|| FieldChange {
                field: name.clone(),
                from,
                to,
            })
        })
        .collect()
}

/// A new task (`action`, `changes`) of an account that has an open one
/// (`open_action`, `open_changes`): the one task that asks for both, if
/// one can, else `None` (both stay open, the older done first). A change
/// the two tasks cancel out (a field set back) is left out.
pub fn fold(
    open_action: Action,
    open_changes: &[FieldChange],
    action: Action,
    changes: &[FieldChange],
) -> Option<(Action, Vec<FieldChange>)> {
    use Action::{Create, Disable, Reactivate, Update};
    let merged = || merge(open_changes, changes);
    match (open_action, action) {
        // Not made yet: make it as it is wanted now.
        (Create, Update | Reactivate) => Some((Create, merged())),
        // Whatever was asked before, it is to be disabled now (an account
        // whose create is not done may exist all the same: disabling is
        // the safe side for a leaver).
        (_, Disable) => Some((Disable, changes.to_vec())),
        (Update, Update) => Some((Update, merged())),
        (Update | Reactivate, Reactivate) | (Reactivate, Update) => Some((Reactivate, merged())),
        // Asked to disable, now to enable: whichever was done, enabled
        // with the fields as they are now.
        (Disable, Reactivate) => Some((Reactivate, changes.to_vec())),
        // An update of a disabled account, or a create after a disable:
        // after the open task.
        (Disable, Update | Create) | (Create | Update | Reactivate, Create) => None,
    }
}

/// `older` then `newer`: each field from where `older` took it to where
/// `newer` leaves it; fields back where they were are left out.
fn merge(older: &[FieldChange], newer: &[FieldChange]) -> Vec<FieldChange> {
    let mut by_field: BTreeMap<&str, FieldChange> = older
        .iter()
        .map(|c| (c.field.as_str(), c.clone()))
        .collect();
    for change in newer {
        by_field
            .entry(change.field.as_str())
            .and_modify(|c| c.to = change.to.clone())
            .or_insert_with(|| change.clone());
    }
    by_field.into_values().filter(|c| c.from != c.to).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(pairs: &[(&str, Value)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn wanted(version: i64, wanted: bool, active: bool, f: Fields) -> Wanted {
        Wanted {
            version,
            wanted,
            active,
            fields: f,
        }
    }

    fn asked(version: i64, active: bool, f: Fields) -> Asked {
        Asked {
            version,
            asked: true,
            active,
            fields: f,
        }
    }

    fn change(field: &str, from: Value, to: Value) -> FieldChange {
        FieldChange {
            field: field.to_owned(),
            from,
            to,
        }
    }

    #[test]
    fn a_joiner_gets_a_create_with_every_field() {
        let f = fields(&[("title", json!("Engineer")), ("userName", json!("a@x"))]);
        let decision = decide(&wanted(1, true, true, f), None);
        assert_eq!(
            decision,
            Decision::Task {
                action: Action::Create,
                changes: vec![
                    change("title", Value::Null, json!("Engineer")),
                    change("userName", Value::Null, json!("a@x")),
                ],
            }
        );
    }

    #[test]
    fn nothing_is_asked_for_a_person_never_given_the_app() {
        assert_eq!(
            decide(&wanted(3, false, false, Fields::new()), None),
            Decision::Record
        );
        let never = Asked {
            version: 2,
            asked: false,
            active: false,
            fields: Fields::new(),
        };
        assert_eq!(
            decide(&wanted(3, false, false, Fields::new()), Some(&never)),
            Decision::Record
        );
    }

    #[test]
    fn a_mover_gets_an_update_of_what_changed_and_an_unchanged_change_asks_nothing() {
        let before = fields(&[("title", json!("Engineer")), ("dept", json!("R&D"))]);
        let after = fields(&[("title", json!("Lead")), ("dept", json!("R&D"))]);
        assert_eq!(
            decide(
                &wanted(2, true, true, after),
                Some(&asked(1, true, before.clone()))
            ),
            Decision::Task {
                action: Action::Update,
                changes: vec![change("title", json!("Engineer"), json!("Lead"))],
            }
        );
        assert_eq!(
            decide(
                &wanted(2, true, true, before.clone()),
                Some(&asked(1, true, before))
            ),
            Decision::Record
        );
    }

    #[test]
    fn a_leaver_gets_a_disable_and_a_returner_a_reactivate_with_what_changed() {
        let f = fields(&[("title", json!("Engineer"))]);
        assert_eq!(
            decide(
                &wanted(3, false, false, f.clone()),
                Some(&asked(2, true, f.clone()))
            ),
            Decision::Task {
                action: Action::Disable,
                changes: Vec::new(),
            }
        );
        let back = fields(&[("title", json!("Lead"))]);
        assert_eq!(
            decide(&wanted(4, true, true, back), Some(&asked(3, false, f))),
            Decision::Task {
                action: Action::Reactivate,
                changes: vec![change("title", json!("Engineer"), json!("Lead"))],
            }
        );
    }

    #[test]
    fn a_change_no_newer_than_the_last_asked_is_stale() {
        let f = fields(&[]);
        assert_eq!(
            decide(
                &wanted(2, false, false, f.clone()),
                Some(&asked(2, true, f))
            ),
            Decision::Stale
        );
    }

    #[test]
    fn a_move_before_the_create_is_done_makes_one_create_with_the_new_fields() {
        let created = vec![change("title", Value::Null, json!("Engineer"))];
        let moved = vec![change("title", json!("Engineer"), json!("Lead"))];
        assert_eq!(
            fold(Action::Create, &created, Action::Update, &moved),
            Some((
                Action::Create,
                vec![change("title", Value::Null, json!("Lead"))]
            ))
        );
    }

    #[test]
    fn a_disable_takes_over_any_open_task_and_an_update_waits_behind_a_disable() {
        for open in [
            Action::Create,
            Action::Update,
            Action::Reactivate,
            Action::Disable,
        ] {
            assert_eq!(
                fold(open, &[], Action::Disable, &[]),
                Some((Action::Disable, Vec::new()))
            );
        }
        assert_eq!(fold(Action::Disable, &[], Action::Update, &[]), None);
    }

    #[test]
    fn two_updates_merge_and_a_field_set_back_drops_out() {
        let first = vec![
            change("title", json!("A"), json!("B")),
            change("dept", json!("X"), json!("Y")),
        ];
        let second = vec![change("title", json!("B"), json!("A"))];
        assert_eq!(
            fold(Action::Update, &first, Action::Update, &second),
            Some((Action::Update, vec![change("dept", json!("X"), json!("Y"))]))
        );
    }

    #[test]
    fn actions_parse_what_they_print() {
        for action in [
            Action::Create,
            Action::Update,
            Action::Disable,
            Action::Reactivate,
        ] {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("delete"), None);
    }
}
