use std::collections::BTreeSet;
use std::time::Duration;

use hrsync_domain::LifecycleState::{self, Active, Deprovisioned, Suspended};
use hrsync_tests::directory_change;
use serde_json::{json, Value};

use super::classify::*;
use super::inputs::*;
use super::report::*;
use super::*;
use crate::scim::{ScimClient, ENTERPRISE_SCHEMA};

fn app() -> App {
    let client =
        ScimClient::new("http://127.0.0.1:9", "t", Duration::from_secs(1)).expect("a client");
    App {
        push_groups: true,
        ..App::new("zendesk", client)
    }
}

/// `employee`'s person ("Ada Tester" is `ada@example.com`), with `groups`
/// granting the app when `assigned`.
fn person(employee: &str, name: &str, state: LifecycleState, assigned: bool) -> Person {
    let apps: &[&str] = if assigned { &["zendesk"] } else { &[] };
    Person::new(
        &app(),
        directory_change(employee, name, 3, state, apps, &["Everyone"]),
        None,
    )
}

/// The account the app would hold for `person` as desired, with id `id`.
fn account_of(person: &Person, id: &str) -> Value {
    let mut account = person.desired.clone();
    account["id"] = json!(id);
    account["meta"] = json!({"resourceType": "User"});
    // Servers add what they derive.
    account["name"]["formatted"] = json!("Formatted By The Server");
    account
}

fn link(person: &Person, id: &str) -> (String, String) {
    (person.change.person_id.as_str().to_owned(), id.to_owned())
}

fn everyone(ids: &[&str]) -> Option<Memberships> {
    Some(Memberships {
        groups: 1,
        pending: 0,
        of: ids
            .iter()
            .map(|id| ((*id).to_owned(), BTreeSet::from(["Everyone".to_owned()])))
            .collect(),
    })
}

fn find<'a>(findings: &'a [Finding], account: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.account_id.as_deref() == Some(account))
        .unwrap_or_else(|| panic!("no finding for {account}: {findings:#?}"))
}

#[test]
fn differences_follow_scim_case_rules_and_only_managed_attributes() {
    let app = app();
    let ada = person("E1", "Ada Tester", Active, true);
    let managed = app.mapping.managed();
    let mut account = account_of(&ada, "u1");
    // Case differences in case-insensitive attributes are no drift; an
    // attribute the mapping does not manage is ignored.
    account["userName"] = json!("ADA@Example.com");
    account["emails"] =
        json!([{"value": "Ada@EXAMPLE.com", "type": "work", "primary": "True", "display": "x"}]);
    account["preferredLanguage"] = json!("de");
    assert_eq!(
        differences(&ada.desired, &account, &managed, &[]),
        Vec::<String>::new()
    );
    // externalId is compared exactly; sub-attributes and extension
    // attributes are named by their path; a managed attribute the desired
    // user leaves out (no title in HR) is drift when the account has it.
    account["externalId"] = json!("P-E1");
    account["name"]["givenName"] = json!("Adah");
    account[ENTERPRISE_SCHEMA]["employeeNumber"] = json!("E9");
    account["title"] = json!("Hacker");
    assert_eq!(
        differences(&ada.desired, &account, &managed, &[]),
        vec![
            "externalId".to_owned(),
            "name.givenName".to_owned(),
            "title".to_owned(),
            format!("{ENTERPRISE_SCHEMA}:employeeNumber"),
        ]
    );
    // ... unless its mapping failed for the person (left as it is).
    let mut found = differences(&ada.desired, &account, &managed, &[]);
    found.sort();
    assert_eq!(found.len(), 4);
    assert!(
        !differences(&ada.desired, &account, &managed, &["title".to_owned()])
            .contains(&"title".to_owned())
    );
    // A multi-valued attribute with one value more is drift.
    let mut account = account_of(&ada, "u1");
    account["emails"]
        .as_array_mut()
        .unwrap()
        .push(json!({"value": "old@example.com", "type": "home"}));
    assert_eq!(
        differences(&ada.desired, &account, &managed, &[]),
        vec!["emails".to_owned()]
    );
}

#[test]
fn an_accounts_active_flag_is_read_as_a_boolean_or_a_string() {
    assert!(active_of(&json!({"active": true})));
    assert!(!active_of(&json!({"active": false})));
    assert!(!active_of(&json!({"active": "False"})));
    assert!(active_of(&json!({"active": "True"})));
    assert!(active_of(&json!({"userName": "no flag"})));
}

#[test]
fn every_account_and_missing_person_is_classified() {
    let app = app();
    let in_sync = person("E1", "Ada Tester", Active, true);
    let drifted = person("E2", "Bob Tester", Active, true);
    let inactive = person("E3", "Cy Tester", Active, true);
    let grouped = person("E4", "Dee Tester", Active, true);
    let unlinked = person("E5", "Eve Tester", Active, true);
    let missing = person("E6", "Fay Tester", Active, true);
    let deleted = person("E7", "Gus Tester", Active, true);
    let leaver = person("E8", "Hal Tester", Deprovisioned, false);
    let on_leave = person("E9", "Ivy Tester", Suspended, true);
    let unassigned = person("E10", "Jo Tester", Active, false);
    let mut accounts = vec![
        account_of(&in_sync, "u1"),
        account_of(&drifted, "u2"),
        account_of(&inactive, "u3"),
        account_of(&grouped, "u4"),
        account_of(&unlinked, "u5"),
        account_of(&leaver, "u8"),
        account_of(&on_leave, "u9"),
        json!({"id": "o1", "userName": "root@example.com", "active": true}),
        json!({"id": "o2", "userName": "old@example.com", "active": "False"}),
        json!({"id": "x1", "userName": "no-change@example.com"}),
    ];
    accounts[1]["title"] = json!("Changed in the app");
    accounts[2]["active"] = json!(false);
    accounts[4]["userName"] = json!("EVE@example.COM");
    accounts[5]["active"] = json!(true); // the leaver's, never deactivated
    accounts[6]["active"] = json!(false); // suspended: inactive as desired
    let inputs = Inputs {
        accounts,
        links: vec![
            link(&in_sync, "u1"),
            link(&drifted, "u2"),
            link(&inactive, "u3"),
            link(&grouped, "u4"),
            link(&deleted, "gone"),
            link(&on_leave, "u9"),
            ("p-unknown".to_owned(), "x1".to_owned()),
        ],
        persons: vec![
            in_sync, drifted, inactive, grouped, unlinked, missing, deleted, leaver, on_leave,
            unassigned,
        ],
        // u4 is not in Everyone; o1 is (memberships of orphans are not
        // checked).
        memberships: everyone(&["u1", "u2", "u3", "u9", "o1"]),
    };
    let findings = classify(&app, &inputs, OrphanPolicy::Report);

    let f = find(&findings, "u1");
    assert_eq!((f.class, f.action), (Class::InSync, Action::None), "{f:?}");
    assert_eq!(f.employee_id.as_deref(), Some("E1"));
    let f = find(&findings, "u2");
    assert_eq!((f.class, f.action), (Class::Drifted, Action::Reapply));
    assert_eq!(f.differences, ["title"]);
    let f = find(&findings, "u3");
    assert_eq!((f.class, f.action), (Class::Drifted, Action::Reapply));
    assert_eq!(f.differences, ["active"]);
    let f = find(&findings, "u4");
    assert_eq!((f.class, f.action), (Class::Drifted, Action::Memberships));
    assert_eq!(f.differences, ["groups"]);
    assert_eq!(f.groups_to_join, ["Everyone"]);
    let f = find(&findings, "u5");
    assert_eq!((f.class, f.action), (Class::UnlinkedMatch, Action::Link));
    assert_eq!(f.person_id.as_deref(), Some("p-E5"));
    assert_eq!(f.user_name.as_deref(), Some("EVE@example.COM"));
    assert!(f.differences.is_empty(), "{f:?}");
    assert_eq!(f.groups_to_join, ["Everyone"]);
    // The leaver's active account: no account wanted, so linking it would
    // deactivate it; under orphans = "report" it is left alone.
    let f = find(&findings, "u8");
    assert_eq!((f.class, f.action), (Class::UnlinkedMatch, Action::Report));
    assert!(
        f.note.as_deref().unwrap().contains("DEPROVISIONED"),
        "{f:?}"
    );
    let f = find(&findings, "u9");
    assert_eq!((f.class, f.action), (Class::InSync, Action::None), "{f:?}");
    let f = find(&findings, "o1");
    assert_eq!((f.class, f.action), (Class::Orphan, Action::Report));
    assert!(f.person_id.is_none());
    let f = find(&findings, "o2");
    assert_eq!((f.class, f.action), (Class::Orphan, Action::None));
    assert_eq!(f.active, Some(false));
    let f = find(&findings, "x1");
    assert_eq!(
        (f.class, f.person_id.as_deref()),
        (Class::Unknown, Some("p-unknown"))
    );

    let missing: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.class == Class::Missing)
        .collect();
    assert_eq!(missing.len(), 2, "{missing:#?}");
    assert_eq!(missing[0].employee_id.as_deref(), Some("E6"));
    assert_eq!(missing[0].user_name.as_deref(), Some("fay@example.com"));
    assert_eq!(missing[0].action, Action::Create);
    assert_eq!(missing[1].employee_id.as_deref(), Some("E7"));
    assert_eq!(missing[1].previous_account_id.as_deref(), Some("gone"));
    // 10 accounts and 2 missing persons; the unassigned person has none
    // and wants none.
    assert_eq!(findings.len(), 12);

    // Under orphans = "deactivate": the active orphan is deactivated, and
    // the leaver's account linked (and so deactivated).
    let findings = classify(&app, &inputs, OrphanPolicy::Deactivate);
    assert_eq!(find(&findings, "o1").action, Action::Deactivate);
    assert_eq!(find(&findings, "o2").action, Action::None);
    assert_eq!(find(&findings, "u8").action, Action::Link);
    assert_eq!(find(&findings, "u8").differences, ["active"]);
}

#[test]
fn duplicates_and_ambiguous_matches_are_reported_not_linked() {
    let app = app();
    let ada = person("E1", "Ada Tester", Active, true);
    let bob = person("E2", "Bob Tester", Active, true);
    // Two HR persons with one e-mail address.
    let bob_twin = person("E3", "Bob Twin", Active, true);
    let cy = person("E4", "Cy Tester", Active, true);
    let inputs = Inputs {
        accounts: vec![
            account_of(&ada, "u1"),
            account_of(&ada, "u1-dup"),
            account_of(&bob, "u2"),
            account_of(&cy, "u4a"),
            account_of(&cy, "u4b"),
        ],
        links: vec![link(&ada, "u1")],
        persons: vec![ada, bob, bob_twin, cy],
        memberships: None,
    };
    let findings = classify(&app, &inputs, OrphanPolicy::Deactivate);
    let f = find(&findings, "u1-dup");
    assert_eq!((f.class, f.action), (Class::UnlinkedMatch, Action::Report));
    assert!(f.note.as_deref().unwrap().contains("account u1"), "{f:?}");
    let f = find(&findings, "u2");
    assert_eq!((f.class, f.action), (Class::UnlinkedMatch, Action::Report));
    assert!(f.note.as_deref().unwrap().contains("E2, E3"), "{f:?}");
    for id in ["u4a", "u4b"] {
        let f = find(&findings, id);
        assert_eq!((f.class, f.action), (Class::UnlinkedMatch, Action::Report));
        assert!(f.note.as_deref().unwrap().starts_with("2 accounts match"));
    }
    // Persons with a reported account are not also missing (creating
    // theirs would link that account).
    assert!(
        findings.iter().all(|f| f.class != Class::Missing),
        "{findings:#?}"
    );
    assert_eq!(findings.len(), 5);
}

#[test]
fn the_report_summarises_per_class_and_round_trips_as_json() {
    let mut in_sync = Finding::new(Class::InSync, Action::None);
    in_sync.account_id = Some("u1".into());
    let mut held = Finding::new(Class::Orphan, Action::Deactivate);
    held.result = Some(FixResult::Held {
        operations: Vec::new(),
    });
    let mut done = Finding::new(Class::Orphan, Action::Deactivate);
    done.result = Some(FixResult::Done {
        operations: vec!["deactivated".into()],
    });
    let mut failed = Finding::new(Class::Missing, Action::Create);
    failed.result = Some(FixResult::Failed {
        error: "zendesk: POST /Users: HTTP 500".into(),
    });
    let report = Report {
        app: "zendesk".into(),
        dry_run: false,
        orphans: OrphanPolicy::Deactivate,
        started_at: "2026-01-01T00:00:00.000Z".into(),
        finished_at: "2026-01-01T00:00:01.000Z".into(),
        accounts_read: 3,
        persons: 2,
        groups_read: 0,
        memberships_pending: 0,
        counts: BTreeMap::from([(Class::InSync, 1), (Class::Orphan, 2), (Class::Missing, 1)]),
        findings: vec![in_sync, held, done, failed],
    };
    let summary = report.summary();
    assert!(
        summary.contains(&row("in sync", 1, "nothing to do 1")),
        "{summary}"
    );
    assert!(
        summary.contains(&row(
            "orphan",
            2,
            "held by the deprovision guard 1, deactivated 1"
        )),
        "{summary}"
    );
    assert!(
        summary.contains(&row("missing", 1, "FAILED 1")),
        "{summary}"
    );
    assert!(
        summary.contains("`hrsync provisioner release zendesk`"),
        "{summary}"
    );
    assert!(summary.contains("1 fix(es) failed"), "{summary}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["counts"]["orphan"], 2);
    assert_eq!(json["findings"][1]["result"]["status"], "held");
    assert_eq!(json["findings"][3]["class"], "missing");
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

/// A line of the summary table.
fn row(class: &str, count: usize, action: &str) -> String {
    format!("{class:<16} {count:>7}  {action}\n")
}

#[test]
fn an_account_matches_by_the_first_path_of_the_chain_that_finds_anyone() {
    let chain = crate::matching::MatchChain::parse(&["userName", "emails[type eq \"work\"].value"])
        .expect("a chain");
    let app = App {
        match_chain: std::sync::Arc::new(chain),
        ..app()
    };
    let ada = Person::new(
        &app,
        directory_change("E1", "Ada Tester", 1, Active, &["zendesk"], &[]),
        None,
    );
    let bob = Person::new(
        &app,
        directory_change("E2", "Bob Tester", 1, Active, &["zendesk"], &[]),
        None,
    );
    let inputs = Inputs {
        accounts: vec![
            // Another userName, Ada's work e-mail in another case.
            json!({"id": "a", "userName": "a.tester", "emails": [{"type": "work", "value": "ADA@example.com"}]}),
            // Bob's userName: that path decides, whatever the e-mail says.
            json!({"id": "b", "userName": "Bob@Example.com", "emails": [{"type": "work", "value": "ada@example.com"}]}),
            // A home address is not the work e-mail.
            json!({"id": "c", "userName": "c", "emails": [{"type": "home", "value": "ada@example.com"}]}),
        ],
        links: Vec::new(),
        persons: vec![ada, bob],
        memberships: None,
    };
    let findings = classify(&app, &inputs, OrphanPolicy::Report);
    let f = find(&findings, "a");
    // (Account b names Ada's e-mail too, but it is Bob's by userName.)
    assert_eq!(
        (f.class, f.person_id.as_deref(), f.action),
        (Class::UnlinkedMatch, Some("p-E1"), Action::Link)
    );
    let f = find(&findings, "b");
    assert_eq!(
        (f.class, f.person_id.as_deref(), f.action),
        (Class::UnlinkedMatch, Some("p-E2"), Action::Link)
    );
    assert_eq!(find(&findings, "c").class, Class::Orphan);
}
