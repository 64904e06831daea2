//! The decision alone: desired and applied state in, steps out.

use std::collections::{BTreeSet, HashMap};

use hrsync_domain::LifecycleState::{self, Active, Deprovisioned, Pending, Suspended};
use hrsync_tests::directory_change;
use serde_json::{json, Value};

use super::*;

const APP: &str = "zendesk";

fn managed() -> BTreeSet<String> {
    ["userName", "displayName", "title", "emails"]
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn rules<'a>(
    managed: &'a BTreeSet<String>,
    renames: &'a HashMap<String, Vec<String>>,
) -> Rules<'a> {
    Rules {
        managed,
        push_groups: true,
        renames,
    }
}

/// Ada's desired state at `version` in `state`, assigned the app with
/// `groups` when `assigned`, her title `title`.
fn ada(
    version: u64,
    state: LifecycleState,
    assigned: bool,
    groups: &[&str],
    title: Option<&str>,
) -> Desired {
    let apps: &[&str] = if assigned { &[APP] } else { &[] };
    let mut desired = Desired::of(
        &directory_change("E1", "Ada Lovelace", version, state, apps, groups),
        APP,
    );
    let mut user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ada@example.com",
        "displayName": "Ada Lovelace",
        "active": desired.active,
    });
    if let Some(title) = title {
        user["title"] = json!(title);
    }
    desired.user = user;
    desired
}

/// The link of an account as `desired` was applied to it.
fn applied(desired: &Desired, scim_id: &str) -> Link {
    Link {
        scim_id: scim_id.to_owned(),
        applied_version: desired.version,
        applied: desired.user.clone(),
        active: desired.active,
        groups: if desired.wanted {
            desired.groups.clone()
        } else {
            Vec::new()
        },
        etag: None,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn decide(desired: &Desired, link: Option<&Link>, matched: Option<&Value>) -> Vec<Step> {
    let (managed, renames) = (managed(), HashMap::new());
    plan(desired, link, matched, rules(&managed, &renames))
}

#[test]
fn a_joiner_gets_an_account_and_their_groups() {
    let desired = ada(1, Active, true, &["Everyone", "Support"], Some("Agent"));
    assert!(desired.wanted && desired.active);
    assert!(needs_search(&desired, None));
    assert_eq!(
        decide(&desired, None, None),
        [
            Step::Create,
            Step::Groups {
                join: strings(&["Everyone", "Support"]),
                leave: vec![],
            },
            Step::Record {
                groups: strings(&["Everyone", "Support"])
            },
        ]
    );
}

#[test]
fn a_joiner_with_an_account_in_the_app_is_linked_to_it_and_brought_in_line() {
    let desired = ada(1, Active, true, &["Everyone"], Some("Agent"));
    let mut found = desired.user.clone();
    found["id"] = json!("u-7");
    found["meta"] = json!({"resourceType": "User", "version": "W/\"3\""});
    found["title"] = json!("Intern");
    found["active"] = json!("False");
    assert_eq!(
        decide(&desired, None, Some(&found)),
        [
            Step::Link {
                scim_id: "u-7".into()
            },
            Step::Update {
                set: strings(&["title"]),
                remove: vec![],
            },
            Step::Reactivate,
            Step::Groups {
                join: strings(&["Everyone"]),
                leave: vec![],
            },
            Step::Record {
                groups: strings(&["Everyone"])
            },
        ]
    );
    let link = found_link(&found);
    assert_eq!(link.etag.as_deref(), Some("W/\"3\""));
    assert_eq!(link.applied.get("id"), None);
}

#[test]
fn a_mover_sends_what_changed_and_changes_groups() {
    let before = ada(1, Active, true, &["Everyone", "Support"], Some("Agent"));
    let link = applied(&before, "u-1");
    let after = ada(2, Active, true, &["Everyone", "Sales"], Some("Lead"));
    assert!(!needs_search(&after, Some(&link)));
    assert_eq!(
        decide(&after, Some(&link), None),
        [
            Step::Update {
                set: strings(&["title"]),
                remove: vec![],
            },
            Step::Groups {
                join: strings(&["Sales"]),
                leave: strings(&["Support"]),
            },
            Step::Record {
                groups: strings(&["Everyone", "Sales"])
            },
        ]
    );
    // A managed attribute HR removed is removed from the account, unless
    // its mapping failed (then it is left as it is).
    let mut untitled = ada(2, Active, true, &["Everyone", "Support"], None);
    assert_eq!(
        decide(&untitled, Some(&link), None)[0],
        Step::Update {
            set: vec![],
            remove: strings(&["title"]),
        }
    );
    untitled.failed = strings(&["title"]);
    assert_eq!(
        decide(&untitled, Some(&link), None),
        [Step::Record {
            groups: strings(&["Everyone", "Support"])
        }]
    );
}

#[test]
fn a_leaver_is_deactivated_and_leaves_every_group() {
    let before = ada(1, Active, true, &["Everyone"], Some("Agent"));
    let link = applied(&before, "u-1");
    let after = ada(2, Deprovisioned, true, &["Everyone"], Some("Agent"));
    assert!(!after.wanted && !after.active);
    assert_eq!(
        decide(&after, Some(&link), None),
        [
            Step::Deactivate,
            Step::Groups {
                join: vec![],
                leave: strings(&["Everyone"]),
            },
            Step::Record { groups: vec![] },
        ]
    );
    // An app unassigned is the same as a leave for that app.
    let unassigned = ada(2, Active, false, &["Everyone"], Some("Agent"));
    assert_eq!(
        decide(&unassigned, Some(&link), None),
        decide(&after, Some(&link), None)
    );
}

#[test]
fn a_leaver_without_an_account_records_the_version_only() {
    let leaver = ada(4, Deprovisioned, true, &[], None);
    // Nothing recorded: the app is searched first (see the next test).
    assert!(needs_search(&leaver, None));
    assert_eq!(decide(&leaver, None, None), [Step::RecordAbsence]);
    // Once the absence is recorded, a later change does not search again.
    assert!(!needs_search(&leaver, Some(&Link::absent(4))));
    // A create queued behind that termination is stale.
    let absent = Link::absent(4);
    let joiner = ada(3, Active, true, &[], None);
    assert!(!needs_search(&joiner, Some(&absent)));
    assert_eq!(decide(&joiner, Some(&absent), None), [Step::Stale]);
}

/// The create of a hire reached the app, then a crash lost its link, and
/// the termination took the fast lane ahead of the create's replay: the
/// account the app holds is found, linked and deactivated, not left active.
#[test]
fn a_leaver_whose_link_was_lost_has_the_account_found_and_deactivated() {
    let leaver = ada(4, Deprovisioned, true, &[], None);
    assert!(needs_search(&leaver, None));
    let hired = ada(3, Active, true, &[], None);
    let mut account = hired.user.clone();
    account["id"] = json!("u-9");
    account["active"] = json!(true);
    let steps = decide(&leaver, None, Some(&account));
    assert_eq!(
        steps[..2],
        [
            Step::Link {
                scim_id: "u-9".into()
            },
            Step::Deactivate
        ]
    );
    assert!(
        matches!(steps.last(), Some(Step::Record { .. })),
        "{steps:?}"
    );
}

#[test]
fn a_rehire_reactivates_the_account_and_rejoins_groups() {
    let leaver = ada(2, Deprovisioned, true, &["Everyone"], Some("Agent"));
    let link = applied(&leaver, "u-1");
    assert!(!link.active && link.groups.is_empty());
    let rehire = ada(3, Active, true, &["Everyone"], Some("Agent"));
    assert_eq!(
        decide(&rehire, Some(&link), None),
        [
            Step::Reactivate,
            Step::Groups {
                join: strings(&["Everyone"]),
                leave: vec![],
            },
            Step::Record {
                groups: strings(&["Everyone"])
            },
        ]
    );
}

#[test]
fn a_leave_of_absence_deactivates_but_keeps_the_account_and_groups() {
    let before = ada(1, Active, true, &["Everyone"], Some("Agent"));
    let link = applied(&before, "u-1");
    let away = ada(2, Suspended, true, &["Everyone"], Some("Agent"));
    assert!(away.wanted && !away.active);
    assert_eq!(
        decide(&away, Some(&link), None),
        [
            Step::Deactivate,
            Step::Record {
                groups: strings(&["Everyone"])
            },
        ]
    );
    // Back from leave: reactivated, nothing else.
    let back = ada(3, Active, true, &["Everyone"], Some("Agent"));
    assert_eq!(
        decide(&back, Some(&applied(&away, "u-1")), None),
        [
            Step::Reactivate,
            Step::Record {
                groups: strings(&["Everyone"])
            },
        ]
    );
}

#[test]
fn a_pending_hire_gets_an_inactive_account() {
    let pending = ada(1, Pending, true, &[], Some("Agent"));
    assert!(pending.wanted && !pending.active);
    assert_eq!(
        decide(&pending, None, None),
        [Step::Create, Step::Record { groups: vec![] }]
    );
}

#[test]
fn an_account_in_sync_gets_nothing_but_the_version_and_a_stale_change_nothing() {
    let before = ada(1, Active, true, &["Everyone"], Some("Agent"));
    let link = applied(&before, "u-1");
    let again = ada(2, Active, true, &["Everyone"], Some("Agent"));
    assert_eq!(
        decide(&again, Some(&link), None),
        [Step::Record {
            groups: strings(&["Everyone"])
        }]
    );
    assert_eq!(decide(&before, Some(&link), None), [Step::Stale]);
    assert!(is_stale(Some(&link), 1) && !is_stale(Some(&link), 2));
}

#[test]
fn a_group_renamed_in_the_rules_is_renamed_in_place() {
    let before = ada(1, Active, true, &["Everyone", "Support"], None);
    let link = applied(&before, "u-1");
    let after = ada(2, Active, true, &["Customer Care", "Everyone"], None);
    let managed = managed();
    let renames = HashMap::from([("Customer Care".to_owned(), strings(&["Support"]))]);
    assert_eq!(
        plan(&after, Some(&link), None, rules(&managed, &renames)),
        [
            Step::RenameGroup {
                from: "Support".into(),
                to: "Customer Care".into(),
            },
            Step::Record {
                groups: strings(&["Customer Care", "Everyone"])
            },
        ]
    );
}

#[test]
fn without_group_push_the_groups_recorded_stay_as_they_were() {
    let before = ada(1, Active, true, &["Everyone"], None);
    let mut link = applied(&before, "u-1");
    link.groups = strings(&["Old"]);
    let after = ada(2, Active, true, &["Sales"], None);
    let (managed, renames) = (managed(), HashMap::new());
    let rules = Rules {
        push_groups: false,
        ..rules(&managed, &renames)
    };
    assert_eq!(
        plan(&after, Some(&link), None, rules),
        [Step::Record {
            groups: strings(&["Old"])
        }]
    );
}
