//! Tests of `patch.rs`.

use serde_json::json;

use super::*;
use crate::schema::ENTERPRISE_USER;

fn attrs(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("object"),
    }
}

fn patch(kind: Kind, start: Value, operations: Value) -> Result<Value, ScimError> {
    let mut current = attrs(start);
    apply(
        kind,
        &mut current,
        json!({"schemas": [schema::PATCH_OP], "Operations": operations}),
    )?;
    Ok(Value::Object(current))
}

fn user(operations: Value) -> Result<Value, ScimError> {
    patch(
        Kind::User,
        json!({
            "userName": "bjensen",
            "active": true,
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ]
        }),
        operations,
    )
}

#[test]
fn deactivates_without_a_path_in_any_case() {
    let out = user(json!([{"op": "Replace", "value": {"active": "False"}}])).expect("patch");
    assert_eq!(out["active"], false);
    let out = user(json!([{"OP": "replace", "PATH": "Active", "VALUE": false}])).expect("patch");
    assert_eq!(out["active"], false);
}

#[test]
fn replaces_and_adds_simple_and_sub_attributes() {
    let out = user(json!([
        {"op": "replace", "path": "displayName", "value": "Babs"},
        {"op": "add", "path": "name.middleName", "value": "J"},
        {"op": "replace", "path": "name", "value": {"givenName": "Barb"}},
    ]))
    .expect("patch");
    assert_eq!(out["displayName"], "Babs");
    assert_eq!(
        out["name"],
        json!({"givenName": "Barb", "familyName": "Jensen", "middleName": "J"})
    );
}

#[test]
fn path_less_values_may_name_paths_and_extensions() {
    let out = user(json!([{"op": "add", "value": {
        "name.honorificPrefix": "Ms.",
        ENTERPRISE_USER: {"department": "Sales"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter": "42",
        "id": "ignored", "groups": [{"value": "ignored"}],
    }}]))
    .expect("patch");
    assert_eq!(out["name"]["honorificPrefix"], "Ms.");
    assert_eq!(
        out[ENTERPRISE_USER],
        json!({"department": "Sales", "costCenter": "42"})
    );
    assert!(out.get("groups").is_none());
}

#[test]
fn value_filters_select_values() {
    let out = user(json!([
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "barbara@example.com"},
    ]))
    .expect("patch");
    assert_eq!(out["emails"][0]["value"], "barbara@example.com");
    assert_eq!(out["emails"][1]["value"], "babs@jensen.org");

    let out = user(json!([{"op": "remove", "path": "emails[type eq \"home\"]"}])).expect("patch");
    assert_eq!(out["emails"].as_array().map(Vec::len), Some(1));

    let out = user(
        json!([{"op": "replace", "path": "emails[TYPE EQ \"home\"]", "value": {"primary": true}}]),
    )
    .expect("patch");
    assert_eq!(
        out["emails"][1],
        json!({"value": "babs@jensen.org", "type": "home", "primary": true})
    );
    assert_eq!(
        out["emails"][0]["primary"], false,
        "the old primary is demoted"
    );
}

#[test]
fn an_equality_filter_matching_nothing_creates_the_value() {
    let out = user(json!([
        {"op": "replace", "path": "phoneNumbers[type eq \"Work\"].value", "value": "+1 555"},
    ]))
    .expect("patch");
    assert_eq!(
        out["phoneNumbers"],
        json!([{"type": "Work", "value": "+1 555"}]),
        "created as written"
    );
    let error = user(json!([
        {"op": "replace", "path": "emails[value co \"nowhere\"].type", "value": "other"},
    ]))
    .expect_err("no target");
    assert_eq!(error.scim_type(), Some("noTarget"));
}

fn group(operations: Value) -> Result<Value, ScimError> {
    patch(
        Kind::Group,
        json!({"displayName": "Sales", "members": [{"value": "u1", "type": "User"}, {"value": "u2"}]}),
        operations,
    )
}

#[test]
fn adds_and_removes_members() {
    let out = group(json!([
        {"op": "add", "path": "members", "value": [{"value": "u3"}, {"value": "u1"}]},
    ]))
    .expect("patch");
    assert_eq!(
        out["members"],
        json!([{"value": "u1", "type": "User"}, {"value": "u2"}, {"value": "u3"}]),
        "adding a member twice keeps one"
    );
    let out = group(json!([{"op": "remove", "path": "members[value eq \"u1\"]"}])).expect("patch");
    assert_eq!(out["members"], json!([{"value": "u2"}]));
    let out =
        group(json!([{"op": "remove", "path": "members[value eq \"nobody\"]"}])).expect("patch");
    assert_eq!(out["members"].as_array().map(Vec::len), Some(2));
    let out = group(json!([{"op": "remove", "path": "members", "value": [{"value": "u2"}]}]))
        .expect("patch");
    assert_eq!(out["members"], json!([{"value": "u1", "type": "User"}]));
    let out = group(json!([{"op": "remove", "path": "members"}])).expect("patch");
    assert!(out.get("members").is_none());
    let out = group(json!([{"op": "replace", "path": "members", "value": [{"value": "u9"}]}]))
        .expect("patch");
    assert_eq!(out["members"], json!([{"value": "u9"}]));
}

#[test]
fn removes_attributes_and_extensions() {
    let start = json!({"userName": "a", "title": "t", ENTERPRISE_USER: {"department": "d"}});
    let out = patch(
        Kind::User,
        start.clone(),
        json!([{"op": "remove", "path": "title"}, {"op": "remove", "path": ENTERPRISE_USER}]),
    )
    .expect("patch");
    assert_eq!(out, json!({"userName": "a"}));
    let out = patch(
        Kind::User,
        start,
        json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}]),
    )
    .expect("patch");
    assert_eq!(
        out,
        json!({"userName": "a", "title": "t"}),
        "an emptied extension goes"
    );
}

#[test]
fn refuses_bad_operations() {
    let cases = [
        (json!([{"op": "remove"}]), "noTarget"),
        (json!([{"op": "move", "path": "title"}]), "invalidSyntax"),
        (json!([{"op": "add", "path": "title"}]), "invalidValue"),
        (
            json!([{"op": "add", "path": "shoeSize", "value": 1}]),
            "invalidPath",
        ),
        (
            json!([{"op": "add", "path": "emails[type eq \"work\"", "value": 1}]),
            "invalidPath",
        ),
        (
            json!([{"op": "replace", "path": "id", "value": "x"}]),
            "mutability",
        ),
        (
            json!([{"op": "replace", "path": "groups", "value": []}]),
            "mutability",
        ),
        (
            json!([{"op": "replace", "path": "active", "value": "maybe"}]),
            "invalidValue",
        ),
        (
            json!([{"op": "replace", "path": "title[value eq \"x\"]", "value": "y"}]),
            "invalidPath",
        ),
        (json!({"op": "add"}), "invalidSyntax"),
    ];
    for (operations, scim_type) in cases {
        let error = user(operations.clone()).expect_err(&operations.to_string());
        assert_eq!(error.scim_type(), Some(scim_type), "{operations}");
    }
    let mut current = Map::new();
    let error = apply(
        Kind::User,
        &mut current,
        json!({"schemas": ["urn:wrong"], "Operations": []}),
    )
    .expect_err("wrong schema");
    assert_eq!(error.scim_type(), Some("invalidSyntax"));
}

#[test]
fn all_operations_apply_or_none() {
    let mut current = attrs(json!({"userName": "a"}));
    let result = apply(
        Kind::User,
        &mut current.clone(),
        json!({"Operations": [
            {"op": "add", "path": "title", "value": "t"},
            {"op": "add", "path": "nope", "value": "x"},
        ]}),
    );
    assert!(result.is_err());
    // The caller patches a copy and drops it on error.
    apply(
        Kind::User,
        &mut current,
        json!({"Operations": [{"op": "add", "path": "title", "value": "t"}]}),
    )
    .expect("patch");
    assert_eq!(current.get("title"), Some(&json!("t")));
}
