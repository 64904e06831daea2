use hrsync_domain::{AppAssignment, EmployeeId, EmploymentType, LifecycleState, WorkerAttributes};
use serde_json::{json, Value};

use super::{explain_apps, explain_groups, GroupExplanation};
use crate::rules::{GroupConfig, RuleSet, RulesConfig, Subject};

fn rules(groups: &[(&str, &str, &[&str])]) -> RuleSet {
    let groups = groups
        .iter()
        .map(|(name, rule, apps)| GroupConfig {
            name: (*name).to_owned(),
            rule: (*rule).to_owned(),
            apps: apps.iter().map(|a| (*a).to_owned()).collect(),
            description: None,
            previous_names: Vec::new(),
        })
        .collect();
    RuleSet::compile(&RulesConfig { groups }).expect("rules compile")
}

/// Lucy, a support agent with a badge, below E2 and E1, with two reports.
struct Fake {
    attributes: WorkerAttributes,
    chain: Vec<String>,
    state: LifecycleState,
    reports: usize,
}

impl Fake {
    fn lucy() -> Self {
        let mut attributes = WorkerAttributes::new("Lucy", "Lee", EmploymentType::Employee);
        attributes.department = Some("Customer Support".to_owned());
        attributes.title = Some("Support Lead".to_owned());
        attributes.manager_id = Some(EmployeeId::new("E2").unwrap());
        attributes.custom.insert("badge".into(), "B-1".into());
        Fake {
            attributes,
            chain: vec!["E2".to_owned(), "E1".to_owned()],
            state: LifecycleState::Active,
            reports: 2,
        }
    }

    fn subject(&self) -> Subject<'_> {
        Subject {
            employee_id: "E7",
            attributes: &self.attributes,
            lifecycle_state: self.state,
            manager_chain: &self.chain,
            direct_reports: self.reports,
        }
    }
}

/// The one group of a one-rule set, explained for `fake` as a member
/// exactly when the rule holds.
fn explain_one(rule: &str, fake: &Fake) -> GroupExplanation {
    let rules = rules(&[("G", rule, &["app"])]);
    let subject = fake.subject();
    let evaluation = rules.evaluate(&subject);
    let mut groups = explain_groups(&rules, Some((&subject, &evaluation)), &evaluation.groups);
    assert_eq!(groups.len(), 1);
    groups.remove(0)
}

/// The inputs shown, as (name, value) pairs.
fn inputs(explained: &GroupExplanation) -> Vec<(&str, Value)> {
    explained
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), i.value.clone()))
        .collect()
}

#[test]
fn a_department_rule_shows_the_department_and_nothing_else() {
    let rule = r#"person.department == "Customer Support""#;
    let explained = explain_one(rule, &Fake::lucy());
    assert_eq!(explained.rule, rule);
    assert_eq!(
        (explained.rule_result, explained.member),
        (Some(true), true)
    );
    assert_eq!(explained.error, None);
    assert_eq!(
        inputs(&explained),
        [("person.department", json!("Customer Support"))]
    );

    let mut sales = Fake::lucy();
    sales.attributes.department = Some("Sales".to_owned());
    let explained = explain_one(rule, &sales);
    assert_eq!(
        (explained.rule_result, explained.member),
        (Some(false), false)
    );
    assert_eq!(inputs(&explained), [("person.department", json!("Sales"))]);
}

#[test]
fn each_variable_read_is_shown_with_the_value_evaluated() {
    let rule = r#"is_manager && direct_reports > 1 && "E1" in manager_chain
        && state == "ACTIVE" && employee_id.startsWith("E")
        && person.title.contains("Lead") && person.location == """#;
    let explained = explain_one(rule, &Fake::lucy());
    assert_eq!(explained.rule_result, Some(true));
    assert_eq!(
        inputs(&explained),
        [
            ("person.title", json!("Support Lead")),
            ("person.location", json!("")),
            ("employee_id", json!("E7")),
            ("state", json!("ACTIVE")),
            ("manager_chain", json!(["E2", "E1"])),
            ("direct_reports", json!(2)),
            ("is_manager", json!(true)),
        ]
    );
    let mut alone = Fake::lucy();
    alone.reports = 0;
    let explained = explain_one("is_manager", &alone);
    assert_eq!(explained.rule_result, Some(false));
    assert_eq!(inputs(&explained), [("is_manager", json!(false))]);
}

#[test]
fn custom_keys_are_shown_by_name_and_a_missing_one_is_null() {
    let rule = r#""badge" in person.custom && person.custom.badge.startsWith("B-")"#;
    let explained = explain_one(rule, &Fake::lucy());
    assert_eq!(explained.rule_result, Some(true));
    assert_eq!(inputs(&explained), [("person.custom.badge", json!("B-1"))]);

    let mut without = Fake::lucy();
    without.attributes.custom.clear();
    let explained = explain_one(rule, &without);
    assert_eq!(explained.rule_result, Some(false));
    assert_eq!(inputs(&explained), [("person.custom.badge", Value::Null)]);

    let explained = explain_one("size(person.custom) == 1", &Fake::lucy());
    assert_eq!(
        inputs(&explained),
        [("person.custom", json!({"badge": "B-1"}))]
    );
}

#[test]
fn a_rule_reading_the_whole_person_shows_every_attribute() {
    let explained = explain_one(r#"person.exists(k, k == "title")"#, &Fake::lucy());
    assert_eq!(explained.rule_result, Some(true));
    let names: Vec<&str> = explained.inputs.iter().map(|i| i.name.as_str()).collect();
    let mut expected: Vec<String> = hrsync_expr::PERSON_ATTRIBUTES
        .iter()
        .map(|a| format!("person.{a}"))
        .collect();
    expected.push("person.custom".to_owned());
    assert_eq!(names, expected);
}

#[test]
fn a_failing_rule_gives_its_error_and_no_result() {
    let explained = explain_one(r#"person.custom.missing == "x""#, &Fake::lucy());
    assert_eq!((explained.rule_result, explained.member), (None, false));
    let error = explained.error.clone().expect("the rule failed");
    assert!(error.contains("missing"), "{error}");
    assert_eq!(inputs(&explained), [("person.custom.missing", Value::Null)]);
}

#[test]
fn membership_is_what_the_person_is_given_not_only_what_the_rule_says() {
    // A deprovisioned person: the rule holds, but they are given nothing.
    let rules = rules(&[(
        "Support",
        r#"person.department == "Customer Support""#,
        &["zendesk"],
    )]);
    let mut gone = Fake::lucy();
    gone.state = LifecycleState::Deprovisioned;
    let subject = gone.subject();
    let evaluation = rules.evaluate(&subject);
    let groups = explain_groups(&rules, Some((&subject, &evaluation)), &[]);
    assert_eq!(
        (groups[0].rule_result, groups[0].member),
        (Some(true), false)
    );
    let apps = explain_apps(&groups, &[], |_| None);
    assert_eq!(apps.len(), 1);
    assert!(!apps[0].assigned && apps[0].granted_by.is_empty());
    assert_eq!(apps[0].granting_groups, ["Support"]);

    // Not evaluated at all (no hire known): nothing read, no result.
    let groups = explain_groups(&rules, None, &[]);
    assert_eq!(groups[0].rule_result, None);
    assert!(groups[0].inputs.is_empty() && !groups[0].member);
}

#[test]
fn apps_name_the_member_groups_granting_them() {
    let rules = rules(&[
        (
            "Support",
            r#"person.department == "Customer Support""#,
            &["zendesk", "slack"],
        ),
        ("Everyone", "true", &["slack"]),
        (
            "Sales",
            r#"person.department == "Sales""#,
            &["salesforce", "slack"],
        ),
    ]);
    let fake = Fake::lucy();
    let subject = fake.subject();
    let evaluation = rules.evaluate(&subject);
    let groups = explain_groups(&rules, Some((&subject, &evaluation)), &evaluation.groups);
    // Before the start, slack's window is open and zendesk's is not.
    let assigned: Vec<AppAssignment> = evaluation
        .apps
        .iter()
        .filter(|a| a.app == "slack")
        .cloned()
        .collect();
    let apps = explain_apps(&groups, &assigned, |app| (app == "zendesk").then_some(42));
    let by_app = |name: &str| apps.iter().find(|a| a.app == name).unwrap().clone();
    let slack = by_app("slack");
    assert!(slack.assigned);
    assert_eq!(slack.granted_by, ["Everyone", "Support"]);
    assert_eq!(slack.granting_groups, ["Everyone", "Sales", "Support"]);
    assert_eq!(slack.prehire_window_opens_ms, None);
    let zendesk = by_app("zendesk");
    assert!(!zendesk.assigned);
    assert_eq!(zendesk.granted_by, ["Support"]);
    assert_eq!(zendesk.prehire_window_opens_ms, Some(42));
    let salesforce = by_app("salesforce");
    assert!(!salesforce.assigned && salesforce.granted_by.is_empty());
    assert_eq!(salesforce.prehire_window_opens_ms, None);
    let names: Vec<&str> = apps.iter().map(|a| a.app.as_str()).collect();
    assert_eq!(names, ["salesforce", "slack", "zendesk"]);
}

#[test]
fn explanations_serialize_as_plain_json() {
    let explained = explain_one(r#"person.department == "Customer Support""#, &Fake::lucy());
    let json = serde_json::to_value(&explained).unwrap();
    assert_eq!(json["group"], "G");
    assert_eq!(json["member"], true);
    assert_eq!(json["rule_result"], true);
    assert_eq!(json["error"], Value::Null);
    assert_eq!(
        json["inputs"],
        json!([{"name": "person.department", "value": "Customer Support"}])
    );
}
