use std::collections::BTreeMap;

use hrsync_domain::{
    AppAssignment, DirectoryChange, EmployeeId, EmploymentType, LifecycleState, PersonId, Profile,
    TimeZone, Timestamp, WorkerAttributes,
};
use serde_json::json;

use super::*;

fn change() -> DirectoryChange {
    let mut attributes = WorkerAttributes::new("Lucy", "Gray", EmploymentType::Employee);
    attributes.work_email = Some("lucy@example.com".into());
    attributes.title = Some("Support Agent".into());
    attributes.department = Some("Customer Support".into());
    attributes.custom.insert("badge".into(), "B-7".into());
    DirectoryChange {
        person_id: PersonId::new("p-lucy").unwrap(),
        employee_id: EmployeeId::new("E7").unwrap(),
        version: 3,
        lifecycle_state: LifecycleState::Active,
        profile: Profile {
            attributes,
            time_zone: TimeZone::new("Europe/London").unwrap(),
            start_at: None,
            terminate_at: None,
        },
        groups: vec!["Customer Support".into(), "Everyone".into()],
        apps: vec![AppAssignment {
            app: "zendesk".into(),
            groups: vec!["Customer Support".into()],
        }],
        caused_by: vec![],
        priority: false,
        changed_at: Timestamp::from_millis(1_790_000_000_000).unwrap(),
    }
}

fn mapping(pairs: &[(&str, &str)]) -> Result<Mapping, CompileError> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Mapping::compile(&map)
}

#[test]
fn the_default_mapping_fills_core_and_enterprise_attributes() {
    let (user, errors) = Mapping::default().user(&change(), "zendesk", true, Some("mgr-1"));
    assert!(errors.is_empty());
    assert_eq!(user["userName"], "lucy@example.com");
    assert_eq!(user["externalId"], "p-lucy");
    assert_eq!(user["active"], true);
    assert_eq!(user["title"], "Support Agent");
    let enterprise = &user[ENTERPRISE_SCHEMA];
    assert_eq!(enterprise["employeeNumber"], "E7");
    assert_eq!(enterprise["department"], "Customer Support");
    assert_eq!(enterprise["manager"], json!({"value": "mgr-1"}));
    let (user, _) = Mapping::default().user(&change(), "zendesk", false, None);
    assert!(user[ENTERPRISE_SCHEMA].get("manager").is_none());
    assert_eq!(user["active"], false);
}

#[test]
fn expressions_override_extend_and_remove_attributes() {
    let custom = "urn:example:params:scim:schemas:extension:acme:2.0:User";
    let m = mapping(&[
        ("userName", r#"employee_id.lowerAscii() + "@corp.example""#),
        ("title", "null"),
        (
            "name.formatted",
            r#"person.given_name + " " + person.family_name"#,
        ),
        (&format!("{custom}:badge"), r#"person.custom["badge"]"#),
        (
            &format!("{ENTERPRISE_SCHEMA}:division"),
            r#"groups.exists(g, g == "Customer Support") ? "Support" : null"#,
        ),
        ("nickName", "app + '-' + state"),
    ])
    .unwrap();
    let (user, errors) = m.user(&change(), "zendesk", true, None);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(user["userName"], "e7@corp.example");
    assert!(user.get("title").is_none(), "null leaves it out");
    assert_eq!(user["name"]["formatted"], "Lucy Gray");
    assert_eq!(user["name"]["givenName"], "Lucy", "siblings are kept");
    assert_eq!(user[custom]["badge"], "B-7");
    assert!(user["schemas"].as_array().unwrap().contains(&json!(custom)));
    assert_eq!(user[ENTERPRISE_SCHEMA]["division"], "Support");
    assert_eq!(user["nickName"], "zendesk-ACTIVE");
    assert!(m.managed().contains(custom));
}

#[test]
fn an_extension_left_empty_goes_with_its_urn() {
    let custom = "urn:example:params:scim:schemas:extension:acme:2.0:User";
    let m = mapping(&[(&format!("{custom}:badge"), "null")]).unwrap();
    let (user, _) = m.user(&change(), "zendesk", true, None);
    assert!(user.get(custom).is_none());
    assert!(!user["schemas"].as_array().unwrap().contains(&json!(custom)));
}

#[test]
fn a_failing_expression_is_reported_without_the_value_and_left_out() {
    let m = mapping(&[
        ("title", r#"person.custom["missing"]"#),
        ("name.formatted", "person.given_name / 2"),
    ])
    .unwrap();
    let (user, errors) = m.user(&change(), "zendesk", true, None);
    let failed: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.attribute.as_str(), e.top_key.as_str()))
        .collect();
    assert_eq!(failed, [("name.formatted", "name"), ("title", "title")]);
    assert!(
        errors.iter().all(|e| !e.reason.contains("Lucy")),
        "{errors:?}"
    );
    // Left out whole, so the app keeps what it has (not the default value).
    assert!(user.get("title").is_none());
    assert!(user.get("name").is_none());
    assert_eq!(user["userName"], "lucy@example.com", "the rest is mapped");
}

#[test]
fn bad_mappings_are_rejected_at_start_up_with_the_key() {
    let cases = [
        (("active", "true"), "active is not mapped"),
        (("externalId", "employee_id"), "externalId is not mapped"),
        (
            ("title", "person.titel"),
            "unknown attribute `person.titel`",
        ),
        (("title", "manager"), "unknown variable `manager`"),
        (("title", "person.title +"), "not valid CEL"),
        (("na me", "''"), "not a SCIM attribute path"),
        (("urn:x", "''"), "URN:attribute"),
    ];
    for ((key, expression), expected) in cases {
        let error = mapping(&[(key, expression)]).unwrap_err().to_string();
        assert!(
            error.contains(expected) && error.contains(key),
            "{key} = {expression}: {error}"
        );
    }
}
