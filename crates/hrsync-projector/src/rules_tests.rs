use std::collections::{BTreeMap, BTreeSet};

use hrsync_domain::{AppAssignment, EmployeeId, EmploymentType, LifecycleState, WorkerAttributes};

use super::{GroupConfig, RuleError, RuleSet, RulesConfig, Subject};

fn group(name: &str, rule: &str, apps: &[&str]) -> GroupConfig {
    GroupConfig {
        name: name.to_owned(),
        rule: rule.to_owned(),
        apps: apps.iter().map(|app| (*app).to_owned()).collect(),
        description: None,
        previous_names: Vec::new(),
    }
}

fn compile(groups: Vec<GroupConfig>) -> RuleSet {
    RuleSet::compile(&RulesConfig { groups }).expect("rules compile")
}

fn compile_err(groups: Vec<GroupConfig>) -> RuleError {
    RuleSet::compile(&RulesConfig { groups }).expect_err("rules must not compile")
}

/// A support agent reporting to E0002, who reports to E0001.
fn agent() -> WorkerAttributes {
    let mut attributes = WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee);
    attributes.title = Some("Support Agent".to_owned());
    attributes.department = Some("Customer Support".to_owned());
    attributes.manager_id = Some(EmployeeId::new("E0002").unwrap());
    attributes.work_email = Some("ada@example.com".to_owned());
    attributes
}

struct Person {
    employee_id: String,
    attributes: WorkerAttributes,
    state: LifecycleState,
    chain: Vec<String>,
    direct_reports: usize,
}

impl Person {
    fn new(attributes: WorkerAttributes) -> Self {
        Self {
            employee_id: "E0100".to_owned(),
            attributes,
            state: LifecycleState::Active,
            chain: vec!["E0002".to_owned(), "E0001".to_owned()],
            direct_reports: 0,
        }
    }

    fn subject(&self) -> Subject<'_> {
        Subject {
            employee_id: &self.employee_id,
            attributes: &self.attributes,
            lifecycle_state: self.state,
            manager_chain: &self.chain,
            direct_reports: self.direct_reports,
        }
    }
}

/// Whether the single rule `rule` holds for `person`, failing the test if it
/// errors.
fn holds(rule: &str, person: &Person) -> bool {
    let rules = compile(vec![group("G", rule, &[])]);
    let evaluation = rules.evaluate(&person.subject());
    assert_eq!(evaluation.errors, vec![], "rule {rule:?}");
    evaluation.groups == ["G"]
}

#[test]
fn department_rule() {
    let rule = r#"person.department == "Customer Support""#;
    let mut person = Person::new(agent());
    assert!(holds(rule, &person));
    person.attributes.department = Some("Sales".to_owned());
    assert!(!holds(rule, &person));
    person.attributes.department = None;
    assert!(!holds(rule, &person));
}

#[test]
fn manager_rule_by_title_or_reports() {
    let rule = r#"person.title.contains("Manager") || is_manager"#;
    let mut person = Person::new(agent());
    assert!(!holds(rule, &person));

    person.attributes.title = Some("Support Manager".to_owned());
    assert!(holds(rule, &person));

    person.attributes.title = Some("Team Lead".to_owned());
    person.direct_reports = 3;
    assert!(holds(rule, &person));

    // No title at all is "", not an error.
    person.attributes.title = None;
    person.direct_reports = 0;
    assert!(!holds(rule, &person));
}

#[test]
fn direct_reports_is_an_int() {
    let mut person = Person::new(agent());
    person.direct_reports = 12;
    assert!(holds("direct_reports >= 10", &person));
    person.direct_reports = 9;
    assert!(!holds("direct_reports >= 10", &person));
}

#[test]
fn manager_chain_rule() {
    let rule = r#""E0001" in manager_chain"#;
    let mut person = Person::new(agent());
    assert!(holds(rule, &person));
    assert!(holds("manager_chain[0] == person.manager_id", &person));
    assert!(holds(
        r#"manager_chain.exists(m, m.startsWith("E000"))"#,
        &person
    ));
    person.chain = vec!["E0003".to_owned()];
    assert!(!holds(rule, &person));
    person.chain.clear();
    assert!(!holds(rule, &person));
    assert!(holds("size(manager_chain) == 0", &person));
}

#[test]
fn employment_type_rule() {
    let rule = r#"person.employment_type == "CONTRACTOR""#;
    let mut person = Person::new(agent());
    assert!(!holds(rule, &person));
    person.attributes.employment_type = EmploymentType::Contractor;
    assert!(holds(rule, &person));
    person.attributes.employment_type = EmploymentType::Intern;
    assert!(holds(r#"person.employment_type == "INTERN""#, &person));
}

#[test]
fn guarded_custom_attribute_rule() {
    let rule = r#""badge" in person.custom && person.custom["badge"].startsWith("B-")"#;
    let mut person = Person::new(agent());
    // Without the key the guard keeps the rule from failing.
    assert!(!holds(rule, &person));
    person
        .attributes
        .custom
        .insert("badge".to_owned(), "B-1234".to_owned());
    assert!(holds(rule, &person));
    assert!(holds(r#"has(person.custom.badge)"#, &person));
    person
        .attributes
        .custom
        .insert("badge".to_owned(), "V-1234".to_owned());
    assert!(!holds(rule, &person));
}

#[test]
fn unguarded_custom_attribute_is_an_error_and_false() {
    let rules = compile(vec![
        group("Badged", r#"person.custom["badge"] == "B-1""#, &["doors"]),
        group("Everyone", "true", &["wiki"]),
    ]);
    let person = Person::new(agent());
    let evaluation = rules.evaluate(&person.subject());
    assert_eq!(evaluation.groups, ["Everyone"]);
    assert_eq!(evaluation.apps.len(), 1);
    assert_eq!(evaluation.errors.len(), 1);
    assert_eq!(evaluation.errors[0].group, "Badged");
    assert!(
        evaluation.errors[0].reason.contains("badge"),
        "{}",
        evaluation.errors[0]
    );
}

#[test]
fn state_rule() {
    let rule = r#"state == "ACTIVE""#;
    let mut person = Person::new(agent());
    assert!(holds(rule, &person));
    for state in [
        LifecycleState::Pending,
        LifecycleState::Suspended,
        LifecycleState::Deprovisioned,
    ] {
        person.state = state;
        assert!(!holds(rule, &person), "{state:?}");
        assert!(holds(&format!("state == {:?}", state.as_str()), &person));
    }
}

#[test]
fn every_attribute_is_visible_and_unset_ones_are_empty() {
    let mut attributes = agent();
    attributes.preferred_name = Some("Ada L".to_owned());
    attributes.display_name = Some("Ada Lovelace".to_owned());
    attributes.personal_email = Some("ada@home.example".to_owned());
    attributes.phone = Some("+44 20 0000".to_owned());
    attributes.location = Some("London".to_owned());
    attributes.cost_center = Some("CC-7".to_owned());
    let person = Person::new(attributes);
    let rule = r#"person.given_name == "Ada" && person.family_name == "Lovelace"
        && person.preferred_name == "Ada L" && person.display_name == "Ada Lovelace"
        && person.work_email == "ada@example.com"
        && person.personal_email == "ada@home.example" && person.phone == "+44 20 0000"
        && person.title == "Support Agent" && person.department == "Customer Support"
        && person.manager_id == "E0002" && person.location == "London"
        && person.cost_center == "CC-7" && person.employment_type == "EMPLOYEE"
        && employee_id == "E0100" && !is_manager && direct_reports == 0
        && size(person.custom) == 0"#;
    assert!(holds(rule, &person));

    let bare = Person::new(WorkerAttributes::new("A", "B", EmploymentType::Intern));
    let rule = r#"[person.preferred_name, person.display_name, person.work_email,
        person.personal_email, person.phone, person.title, person.department,
        person.manager_id, person.location, person.cost_center].all(v, v == "")"#;
    assert!(holds(rule, &bare));
}

#[test]
fn strings_extension_and_regex_are_available() {
    let person = Person::new(agent());
    assert!(holds(
        r#"person.department.lowerAscii() == "customer support""#,
        &person
    ));
    assert!(holds(
        r#"person.work_email.matches("@example\\.com$")"#,
        &person
    ));
}

#[test]
fn apps_are_sorted_and_deduplicated_across_groups() {
    let rules = compile(vec![
        group(
            "Support",
            r#"person.department == "Customer Support""#,
            &["zendesk", "slack"],
        ),
        group("All Staff", "true", &["slack", "wiki", "slack"]),
        group(
            "Sales",
            r#"person.department == "Sales""#,
            &["salesforce", "slack"],
        ),
        group("Active", r#"state == "ACTIVE""#, &["wiki"]),
        group("No Apps", "true", &[]),
    ]);
    let person = Person::new(agent());
    let evaluation = rules.evaluate(&person.subject());
    assert_eq!(evaluation.errors, vec![]);
    assert_eq!(
        evaluation.groups,
        ["Active", "All Staff", "No Apps", "Support"]
    );
    let assignment = |app: &str, groups: &[&str]| AppAssignment {
        app: app.to_owned(),
        groups: groups.iter().map(|group| (*group).to_owned()).collect(),
    };
    assert_eq!(
        evaluation.apps,
        vec![
            assignment("slack", &["All Staff", "Support"]),
            assignment("wiki", &["Active", "All Staff"]),
            assignment("zendesk", &["Support"]),
        ]
    );
}

#[test]
fn no_match_and_empty_rule_set_give_empty_evaluations() {
    let rules = compile(vec![group(
        "Sales",
        r#"person.department == "Sales""#,
        &["crm"],
    )]);
    let person = Person::new(agent());
    let evaluation = rules.evaluate(&person.subject());
    assert_eq!(evaluation, super::Evaluation::default());
    assert!(!rules.is_empty());

    let empty = RuleSet::compile(&RulesConfig::default()).unwrap();
    assert!(empty.is_empty());
    assert_eq!(
        empty.evaluate(&person.subject()),
        super::Evaluation::default()
    );
}

#[test]
fn non_bool_result_is_an_error_and_false() {
    let rules = compile(vec![
        group("Dept", "person.department", &["app"]),
        group("Count", "direct_reports", &[]),
        group("Ok", "true", &[]),
    ]);
    let person = Person::new(agent());
    let evaluation = rules.evaluate(&person.subject());
    assert_eq!(evaluation.groups, ["Ok"]);
    assert_eq!(evaluation.apps, vec![]);
    let failed: Vec<&str> = evaluation
        .errors
        .iter()
        .map(|error| error.group.as_str())
        .collect();
    assert_eq!(failed, ["Dept", "Count"]);
    assert!(
        evaluation.errors[0].reason.contains("not bool"),
        "{}",
        evaluation.errors[0]
    );
    assert!(
        evaluation.errors[1].reason.contains("type int"),
        "{}",
        evaluation.errors[1]
    );
}

#[test]
fn runtime_type_error_is_reported() {
    let rules = compile(vec![group(
        "Bad",
        r#"direct_reports == "3" || person.title > 1"#,
        &[],
    )]);
    let person = Person::new(agent());
    let evaluation = rules.evaluate(&person.subject());
    assert_eq!(evaluation.groups, Vec::<String>::new());
    assert_eq!(evaluation.errors.len(), 1);
    assert_eq!(evaluation.errors[0].group, "Bad");
    assert!(evaluation.errors[0].reason.starts_with("the rule failed: "));
}

#[test]
fn syntax_error_names_the_group() {
    let error = compile_err(vec![
        group("Fine", "true", &[]),
        group("Broken", r#"person.department == "Sales" &&"#, &[]),
    ]);
    assert_eq!(error.group, "Broken");
    assert!(error.reason.contains("not valid CEL"), "{error}");
    let shown = error.to_string();
    assert!(shown.starts_with("group \"Broken\": "), "{shown}");
    // One line, fit for a log.
    assert!(!shown.contains('\n'), "{shown}");

    let error = compile_err(vec![group(
        "Quotes",
        r#"person.title == "unterminated"#,
        &[],
    )]);
    assert_eq!(error.group, "Quotes");
}

#[test]
fn unknown_variable_and_attribute_are_rejected() {
    let error = compile_err(vec![group("Typo", r#"persn.department == "Sales""#, &[])]);
    assert_eq!(error.group, "Typo");
    assert!(error.reason.contains("`persn`"), "{error}");

    let error = compile_err(vec![group("Attr", r#"person.titel == "CEO""#, &[])]);
    assert_eq!(error.group, "Attr");
    assert!(error.reason.contains("`person.titel`"), "{error}");

    let error = compile_err(vec![group("Has", "has(person.nickname)", &[])]);
    assert!(error.reason.contains("`person.nickname`"), "{error}");

    // Outside its macro, a bound variable is unknown again.
    let error = compile_err(vec![group(
        "Scope",
        r#"manager_chain.exists(m, m == "E1") || m == "E2""#,
        &[],
    )]);
    assert!(error.reason.contains("`m`"), "{error}");
}

#[test]
fn macro_variables_and_type_names_are_accepted() {
    let person = Person::new(agent());
    assert!(holds(
        r#"manager_chain.all(id, id.startsWith("E")) && manager_chain.filter(id, id == "E0001").size() == 1"#,
        &person
    ));
    // A macro may reuse a rule variable's name for its own.
    assert!(holds(r#"["x"].exists(person, person == "x")"#, &person));
    assert!(holds("type(direct_reports) == int", &person));
    assert!(holds(r#"{"k": employee_id}["k"] == "E0100""#, &person));
}

#[test]
fn names_are_validated() {
    let error = compile_err(vec![group("", "true", &[])]);
    assert_eq!(error.group, "");
    assert!(error.reason.contains("empty"), "{error}");

    let error = compile_err(vec![group("  ", "true", &[])]);
    assert!(error.reason.contains("empty"), "{error}");

    let error = compile_err(vec![group(" Sales", "true", &[])]);
    assert!(error.reason.contains("whitespace"), "{error}");

    let error = compile_err(vec![
        group("Sales", "true", &[]),
        group("Sales", "false", &[]),
    ]);
    assert_eq!(error.group, "Sales");
    assert!(error.reason.contains("same name"), "{error}");

    let error = compile_err(vec![group("Apps", "true", &["crm", ""])]);
    assert_eq!(error.group, "Apps");
    assert!(error.reason.starts_with("app name is empty"), "{error}");

    let error = compile_err(vec![group("Empty Rule", "  ", &[])]);
    assert_eq!(error.group, "Empty Rule");
    assert!(error.reason.contains("empty"), "{error}");
}

#[test]
fn rule_error_display() {
    let error = RuleError {
        group: "People Managers".to_owned(),
        reason: "the rule is empty".to_owned(),
    };
    assert_eq!(
        error.to_string(),
        r#"group "People Managers": the rule is empty"#
    );
}

#[test]
fn fingerprint_is_stable_and_ignores_what_changes_no_outcome() {
    let base = || {
        vec![
            group(
                "Support",
                r#"person.department == "Customer Support""#,
                &["zendesk", "slack"],
            ),
            group(
                "Contractors",
                r#"person.employment_type == "CONTRACTOR""#,
                &["wiki"],
            ),
        ]
    };
    let fingerprint = compile(base()).fingerprint();
    assert_eq!(fingerprint.len(), 64);
    assert!(fingerprint
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(compile(base()).fingerprint(), fingerprint);

    // Group order, app order, repeated apps and descriptions decide nothing.
    let mut reordered = base();
    reordered.reverse();
    reordered[1].apps = vec!["slack".into(), "zendesk".into(), "slack".into()];
    reordered[0].description = Some("external staff".into());
    assert_eq!(compile(reordered).fingerprint(), fingerprint);

    // The digest of this config, pinned: it is stored and compared across
    // releases, so an accidental change to the encoding must fail here.
    assert_eq!(
        fingerprint,
        "c5dc6a48e3453fe9c4d525265f28e95535514e833ee871dd62cbdaaa89316727"
    );
}

#[test]
fn fingerprint_changes_with_names_rules_and_apps() {
    let base = || {
        vec![
            group(
                "Support",
                r#"person.department == "Customer Support""#,
                &["zendesk"],
            ),
            group(
                "Contractors",
                r#"person.employment_type == "CONTRACTOR""#,
                &["wiki"],
            ),
        ]
    };
    let original = compile(base()).fingerprint();
    let mut seen = vec![original.clone()];
    let mut variant = |change: &dyn Fn(&mut Vec<GroupConfig>)| {
        let mut groups = base();
        change(&mut groups);
        let fingerprint = compile(groups).fingerprint();
        assert!(
            !seen.contains(&fingerprint),
            "collision for a changed config"
        );
        seen.push(fingerprint);
    };
    variant(&|groups| groups[0].name = "Customer Support".into());
    variant(&|groups| groups[0].rule = r#"person.department == "Support""#.into());
    variant(&|groups| groups[0].apps.push("slack".into()));
    variant(&|groups| groups[0].apps.clear());
    variant(&|groups| groups[1].apps = vec!["zendesk".into()]);
    variant(&|groups| {
        groups.pop();
    });
    variant(&|groups| groups.push(group("All", "true", &[])));
    // Moving an app between groups is a change, even though the set of all
    // names, rules and apps stays the same.
    variant(&|groups| {
        groups[0].apps = vec!["wiki".into()];
        groups[1].apps = vec!["zendesk".into()];
    });
    assert_ne!(
        compile(vec![]).fingerprint(),
        original,
        "no rules differ from some rules"
    );
}

#[test]
fn config_from_toml() {
    let config: RulesConfig = toml::from_str(
        r#"
        [[groups]]
        name = "People Managers"
        rule = 'person.title.contains("Manager") || is_manager'
        apps = ["lattice"]
        description = "Everyone who manages people"

        [[groups]]
        name = "Everyone"
        rule = "true"
        "#,
    )
    .unwrap();
    assert_eq!(config.groups.len(), 2);
    assert_eq!(config.groups[0].apps, ["lattice"]);
    assert_eq!(
        config.groups[0].description.as_deref(),
        Some("Everyone who manages people")
    );
    assert_eq!(config.groups[1].apps, Vec::<String>::new());
    assert_eq!(config.groups[1].description, None);
    let rules = RuleSet::compile(&config).unwrap();

    let mut person = Person::new(agent());
    person.direct_reports = 1;
    let evaluation = rules.evaluate(&person.subject());
    assert_eq!(evaluation.groups, ["Everyone", "People Managers"]);

    // Round trip through Serialize.
    let text = toml::to_string(&config).unwrap();
    assert_eq!(toml::from_str::<RulesConfig>(&text).unwrap(), config);

    assert_eq!(
        toml::from_str::<RulesConfig>("").unwrap(),
        RulesConfig::default()
    );
    let unknown = toml::from_str::<RulesConfig>(
        r#"
        [[groups]]
        name = "X"
        rule = "true"
        app = ["typo"]
        "#,
    );
    assert!(unknown.is_err());
    assert!(toml::from_str::<RulesConfig>("group = []").is_err());
}

#[test]
fn rule_set_is_shareable_and_debuggable() {
    let rules = std::sync::Arc::new(compile(vec![group("Everyone", "true", &["wiki"])]));
    let shown = format!("{rules:?}");
    assert!(
        shown.contains("Everyone") && shown.contains("fingerprint"),
        "{shown}"
    );
    let handle = {
        let rules = std::sync::Arc::clone(&rules);
        std::thread::spawn(move || {
            let person = Person::new(agent());
            rules.evaluate(&person.subject()).groups
        })
    };
    assert_eq!(handle.join().unwrap(), ["Everyone"]);
}

#[test]
fn custom_attributes_keep_their_values() {
    let mut attributes = agent();
    attributes.custom = BTreeMap::from([
        ("badge".to_owned(), "B-7".to_owned()),
        ("floor".to_owned(), "3".to_owned()),
    ]);
    let person = Person::new(attributes);
    assert!(holds(
        r#"person.custom.floor == "3" && int(person.custom["floor"]) == 3 && size(person.custom) == 2"#,
        &person
    ));
}

#[test]
fn which_rules_read_the_chain_and_the_reports() {
    let reads = |rule: &str| {
        let rules = compile(vec![group("Everyone", "true", &[]), group("G", rule, &[])]);
        (rules.reads_manager_chain(), rules.reads_direct_reports())
    };
    assert_eq!(reads(r#"person.department == "Sales""#), (false, false));
    assert_eq!(reads(r#""E0001" in manager_chain"#), (true, false));
    assert_eq!(
        reads(r#"manager_chain.exists(m, m == "E0001")"#),
        (true, false)
    );
    assert_eq!(reads("is_manager"), (false, true));
    assert_eq!(reads("direct_reports > 3"), (false, true));
    assert_eq!(
        reads(r#"size(manager_chain) > 1 && is_manager"#),
        (true, true)
    );
    // A comprehension's own variable of that name is not the chain.
    assert_eq!(
        reads(r#"["a"].exists(manager_chain, manager_chain == "a")"#),
        (false, false)
    );
    // Only the names of variables count, not strings that look like them.
    assert_eq!(reads(r#"person.title == "manager_chain""#), (false, false));
    let none = compile(vec![]);
    assert!(!none.reads_manager_chain() && !none.reads_direct_reports());
}

#[test]
fn reads_name_the_inputs_that_decide_a_rule() {
    let reads =
        |rule: &str| super::Reads::of(&compile(vec![group("G", rule, &[])]).groups[0].references);
    let index = |name: &str| {
        hrsync_expr::PERSON_ATTRIBUTES
            .iter()
            .position(|attribute| *attribute == name)
            .unwrap()
    };
    let title = reads(r#"person.title.contains("Manager") && is_manager"#);
    assert_eq!(title.attributes, vec![index("title")]);
    assert!(title.is_manager && !title.direct_reports && !title.custom);
    assert!(!title.manager_chain && !title.employee_id && !title.state);

    let custom = reads(r#"has(person.custom.badge) && person.department == "Sales""#);
    assert_eq!(custom.attributes, vec![index("department")]);
    assert!(custom.custom);

    // `person` read whole: every attribute decides.
    for rule in [
        r#"person.exists(k, person[k] == "Boss")"#,
        "size(person) > 3",
        r#"person["title"] == "Boss""#,
    ] {
        let whole = reads(rule);
        assert_eq!(
            whole.attributes.len(),
            hrsync_expr::PERSON_ATTRIBUTES.len(),
            "{rule}"
        );
        assert!(whole.custom, "{rule}");
    }
    // A macro's own `person` is not the variable.
    let bound = reads(r#"[1, 2].exists(person, person == 2) && person.title == "x""#);
    assert_eq!(bound.attributes, vec![index("title")]);
    assert!(!bound.custom);

    let rest = reads(
        r#"employee_id.startsWith("E1") && state == "ACTIVE" && size(manager_chain) < direct_reports"#,
    );
    assert!(rest.attributes.is_empty() && !rest.custom && !rest.is_manager);
    assert!(rest.employee_id && rest.state && rest.manager_chain && rest.direct_reports);
    assert_eq!(reads("true"), super::Reads::default());
}

/// Persons that agree on some inputs and differ on others, in an order that
/// revisits earlier combinations.
fn varied_persons() -> Vec<Person> {
    let mut persons = Vec::new();
    for round in 0..2 {
        for i in 0..72_usize {
            let mut attributes = agent();
            attributes.department =
                Some(["Sales", "Customer Support", "Engineering"][i % 3].to_owned());
            attributes.title = Some(["Boss", "Support Agent"][(i / 3) % 2].to_owned());
            if i % 4 == 1 {
                attributes
                    .custom
                    .insert("badge".to_owned(), "B1".to_owned());
            } else if i % 4 == 2 {
                attributes
                    .custom
                    .insert("badge".to_owned(), "B2".to_owned());
                attributes.custom.insert("floor".to_owned(), "3".to_owned());
            }
            if (i + round) % 5 == 0 {
                attributes.given_name = "Grace".to_owned();
            }
            let mut person = Person::new(attributes);
            person.employee_id = format!("E{}", 1000 + (i * 7 + round) % 4);
            person.state = [LifecycleState::Active, LifecycleState::Pending][(i / 6) % 2];
            person.chain = match i % 3 {
                0 => vec!["E0001".to_owned()],
                1 => vec!["E0002".to_owned(), "E0001".to_owned()],
                _ => Vec::new(),
            };
            person.direct_reports = [0, 1, 3][(i / 2 + round) % 3];
            persons.push(person);
        }
    }
    persons
}

#[test]
fn outcomes_kept_for_equal_inputs_are_those_of_a_fresh_evaluation() {
    let groups = vec![
        group("Everyone", "true", &["slack"]),
        group("Sales", r#"person.department == "Sales""#, &["crm"]),
        group(
            "Badged",
            r#""badge" in person.custom && person.custom["badge"] == "B1""#,
            &["doors"],
        ),
        group("Floored", "size(person.custom) > 1", &["doors"]),
        group("E1001", r#"employee_id == "E1001""#, &[]),
        group("Active", r#"state == "ACTIVE""#, &[]),
        group("Under E0002", r#""E0002" in manager_chain"#, &["wiki"]),
        group("Big teams", "direct_reports > 2", &[]),
        group(
            "Managers",
            r#"is_manager || person.title == "Boss""#,
            &["lattice"],
        ),
        group(
            "Graces",
            r#"person.exists(k, k == "given_name" && person[k] == "Grace")"#,
            &[],
        ),
        // Fails for everyone without a floor: the failure is kept too.
        group("Third floor", r#"person.custom["floor"] == "3""#, &[]),
    ];
    let shared = compile(groups.clone());
    let persons = varied_persons();
    let mut members = 0;
    for person in &persons {
        let kept = shared.evaluate(&person.subject());
        let fresh = compile(groups.clone()).evaluate(&person.subject());
        assert_eq!(
            kept, fresh,
            "{} {:?}",
            person.employee_id, person.attributes
        );
        members += kept.groups.len();
    }
    // The persons exercise both outcomes of every rule.
    for name in groups
        .iter()
        .map(|g| g.name.as_str())
        .filter(|&n| n != "Everyone")
    {
        let outcomes: BTreeSet<bool> = persons
            .iter()
            .map(|p| {
                compile(groups.clone())
                    .evaluate(&p.subject())
                    .groups
                    .iter()
                    .any(|g| g == name)
            })
            .collect();
        assert_eq!(outcomes.len(), 2, "group {name} is always or never true");
    }
    assert!(members > persons.len());
    // The rules whose inputs repeat kept their outcomes.
    let hits: Vec<usize> = shared
        .groups
        .iter()
        .map(|g| super::lock(&g.memo).hits)
        .collect();
    assert!(hits.iter().all(|&h| h > 0), "{hits:?}");
}

#[test]
fn the_memo_is_bounded_and_gives_up_on_inputs_that_do_not_repeat() {
    let key = |i: usize| i.to_le_bytes();
    // Every input new: full once, then off.
    let mut unique = super::Memo::default();
    for i in 0..=super::MEMO_ENTRIES {
        assert_eq!(unique.get(&key(i)), None);
        unique.insert(&key(i), &Ok(true));
    }
    assert!(unique.off && unique.outcomes.is_empty());
    unique.insert(&key(0), &Ok(true));
    assert_eq!(unique.get(&key(0)), None);

    // Inputs that repeat: it starts over when full and keeps going.
    let mut repeating = super::Memo::default();
    for i in 0..3 * super::MEMO_ENTRIES {
        let k = key(i);
        if repeating.get(&k).is_none() {
            repeating.insert(&k, &Err(super::Failure::Failed("failed".to_owned())));
        }
        assert_eq!(
            repeating.get(&k),
            Some(Err(super::Failure::Failed("failed".to_owned())))
        );
    }
    assert!(!repeating.off);
    assert!(repeating.outcomes.len() <= super::MEMO_ENTRIES);

    // Long keys: bounded by bytes, not only by entries.
    let mut long = super::Memo::default();
    let big = vec![7_u8; super::MEMO_KEY_BYTES / 4];
    for i in 0..8_u8 {
        let mut k = big.clone();
        k.push(i);
        long.insert(&k, &Ok(false));
        assert_eq!(long.get(&k), Some(Ok(false)));
        assert!(long.key_bytes <= super::MEMO_KEY_BYTES);
    }
    assert!(!long.off);
}

#[test]
fn a_rule_whose_memo_gave_up_is_still_evaluated_beside_one_that_keeps_outcomes() {
    let rules = compile(vec![
        group("Sevens", r#"employee_id.endsWith("7")"#, &["vault"]),
        group("Sales", r#"person.department == "Sales""#, &["crm"]),
    ]);
    let mut person = Person::new(agent());
    // Every employee id new: the first rule's memo fills once and gives up.
    for i in 0..3 * super::MEMO_ENTRIES {
        person.employee_id = format!("E{i}");
        person.attributes.department = Some(["Sales", "Support"][i % 2].to_owned());
        let evaluation = rules.evaluate(&person.subject());
        let mut wanted = Vec::new();
        if i % 2 == 0 {
            wanted.push("Sales".to_owned());
        }
        if i % 10 == 7 {
            wanted.push("Sevens".to_owned());
        }
        assert_eq!(evaluation.groups, wanted, "{}", person.employee_id);
    }
    let by_id = super::lock(&rules.groups[0].memo);
    assert!(by_id.off && by_id.outcomes.is_empty());
    let by_department = super::lock(&rules.groups[1].memo);
    assert!(!by_department.off && by_department.outcomes.len() == 2);
}
