//! Tests of `schema.rs`.

use super::*;

#[test]
fn lookups_ignore_case() {
    assert_eq!(
        USER_SCHEMA.attribute("USERNAME").map(|a| a.name),
        Some("userName")
    );
    let emails = USER_SCHEMA.attribute("emails").expect("emails");
    assert_eq!(emails.sub("VALUE").map(|a| a.name), Some("value"));
    assert!(Kind::User
        .extension(&ENTERPRISE_USER.to_uppercase())
        .is_some());
    assert!(Kind::Group.extension(ENTERPRISE_USER).is_none());
}

#[test]
fn external_id_is_not_published() {
    let user = USER_SCHEMA.to_json("http://x");
    let names: Vec<&str> = user["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(!names.contains(&"externalId"));
    assert!(names.contains(&"userName"));
    assert_eq!(user["attributes"][0]["uniqueness"], "server");
}

#[test]
fn every_schema_is_served_once() {
    let mut ids: Vec<&str> = all_schemas().map(|s| s.id).collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count);
    assert_eq!(count, 6);
}
