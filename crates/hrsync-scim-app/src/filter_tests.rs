//! Tests of `filter.rs`.

use serde_json::json;

use super::*;
use crate::schema::ENTERPRISE_USER;
use crate::store::Resource;

fn path(name: &str) -> RawPath {
    split_path(name).expect("valid path")
}

fn cmp(name: &str, op: Op, value: Value) -> Expr<RawPath> {
    Expr::Compare(path(name), op, value)
}

#[test]
fn parses_a_comparison() {
    assert_eq!(
        parse_filter(r#"userName eq "bjensen""#).expect("parse"),
        cmp("userName", Op::Eq, json!("bjensen"))
    );
    assert_eq!(
        parse_filter(r#"  userName   EQ   "b j"  "#).expect("parse"),
        cmp("userName", Op::Eq, json!("b j"))
    );
}

#[test]
fn parses_values_of_every_kind() {
    assert_eq!(
        parse_filter("active eq true").expect("parse"),
        cmp("active", Op::Eq, json!(true))
    );
    assert_eq!(
        parse_filter("x ge -1.5e2").expect("parse"),
        cmp("x", Op::Ge, json!(-150.0))
    );
    assert_eq!(
        parse_filter("x eq null").expect("parse"),
        cmp("x", Op::Eq, Value::Null)
    );
    assert_eq!(
        parse_filter(r#"x eq "a \"quoted\" \\ \u00e9""#).expect("parse"),
        cmp("x", Op::Eq, json!("a \"quoted\" \\ é"))
    );
    assert_eq!(
        parse_filter("title pr").expect("parse"),
        Expr::Present(path("title"))
    );
}

#[test]
fn and_binds_tighter_than_or() {
    let parsed = parse_filter(r#"a eq "1" or b eq "2" and c eq "3""#).expect("parse");
    assert_eq!(
        parsed,
        Expr::Or(
            Box::new(cmp("a", Op::Eq, json!("1"))),
            Box::new(Expr::And(
                Box::new(cmp("b", Op::Eq, json!("2"))),
                Box::new(cmp("c", Op::Eq, json!("3")))
            ))
        )
    );
    let grouped = parse_filter(r#"(a eq "1" or b eq "2") and not (c pr)"#).expect("parse");
    assert_eq!(
        grouped,
        Expr::And(
            Box::new(Expr::Or(
                Box::new(cmp("a", Op::Eq, json!("1"))),
                Box::new(cmp("b", Op::Eq, json!("2")))
            )),
            Box::new(Expr::Not(Box::new(Expr::Present(path("c")))))
        )
    );
}

#[test]
fn parses_urns_and_value_paths() {
    let parsed =
        parse_filter(&format!(r#"{ENTERPRISE_USER}:manager.value eq "42""#)).expect("parse");
    assert_eq!(
        parsed,
        Expr::Compare(
            RawPath {
                urn: Some(ENTERPRISE_USER.to_owned()),
                name: "manager".to_owned(),
                sub: Some("value".to_owned())
            },
            Op::Eq,
            json!("42")
        )
    );
    let parsed =
        parse_filter(r#"emails[type eq "work" and value co "@example.com"]"#).expect("parse");
    assert!(matches!(parsed, Expr::ValuePath(ref p, _) if p.name == "emails"));
}

#[test]
fn refuses_malformed_filters() {
    for bad in [
        "",
        "userName",
        "userName eq",
        r#"userName eq "unterminated"#,
        r#"userName like "x""#,
        r#"(userName eq "x""#,
        r#"userName eq "x" and"#,
        r#"emails[type eq "work""#,
        r#"userName eq "x" trailing"#,
        "userName eq bareword",
    ] {
        let error = parse_filter(bad).expect_err(bad);
        assert_eq!(error.scim_type(), Some("invalidFilter"), "{bad}");
    }
    let deep = format!("{}a pr{}", "(".repeat(100), ")".repeat(100));
    assert!(parse_filter(&deep).is_err());
}

#[test]
fn parses_patch_paths() {
    let p = parse_patch_path(r#"members[value eq "2819c223"]"#).expect("parse");
    assert_eq!(p.attr.name, "members");
    assert_eq!(p.filter, Some(cmp("value", Op::Eq, json!("2819c223"))));
    assert_eq!(p.sub, None);

    let p = parse_patch_path(r#"emails[type eq "work"].value"#).expect("parse");
    assert_eq!(p.attr.name, "emails");
    assert_eq!(p.sub.as_deref(), Some("value"));

    let p = parse_patch_path("name.givenName").expect("parse");
    assert_eq!(p.attr.sub.as_deref(), Some("givenName"));

    let p = parse_patch_path(ENTERPRISE_USER).expect("parse");
    assert_eq!(
        p.attr.urn.as_deref(),
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0")
    );
    assert!(matches!(
        resolve(Kind::User, &p.attr),
        Ok(Target::Extension(0))
    ));

    for bad in [
        "",
        "emails[type eq \"work\"",
        "emails[type eq \"work\"].",
        "a b",
    ] {
        assert!(parse_patch_path(bad).is_err(), "{bad}");
    }
}

#[test]
fn resolves_names_case_insensitively() {
    let Ok(Target::Attr(a)) = resolve(Kind::User, &path("USERNAME")) else {
        panic!("userName")
    };
    assert_eq!((a.container, a.attr.name), (Container::Core, "userName"));
    let Ok(Target::Attr(a)) = resolve(
        Kind::User,
        &path("urn:ietf:params:scim:schemas:core:2.0:User:Name.GivenName"),
    ) else {
        panic!("name.givenName")
    };
    assert_eq!(a.leaf().name, "givenName");
    let Ok(Target::Attr(a)) = resolve(Kind::User, &path("department")) else {
        panic!("department")
    };
    assert_eq!(a.container, Container::Ext(0));
    assert!(resolve(Kind::User, &path("nope")).is_err());
    assert!(resolve(Kind::Group, &path("userName")).is_err());
}

#[test]
fn refuses_operators_unfit_for_the_type() {
    for bad in [
        "active gt true",
        "active co \"t\"",
        "userName gt null",
        "name eq \"x\"",
    ] {
        let parsed = parse_filter(bad).expect(bad);
        assert!(resolve_filter(Kind::User, &parsed).is_err(), "{bad}");
    }
    let parsed = parse_filter("emails eq \"a@b.c\"").expect("parse");
    let Expr::Compare(attr, ..) = resolve_filter(Kind::User, &parsed).expect("resolve") else {
        panic!("compare")
    };
    assert_eq!(attr.leaf().name, "value");
}

fn user(attrs: Value) -> Resource {
    let Value::Object(attrs) = attrs else {
        panic!("object")
    };
    Resource::for_tests("id-1", attrs)
}

fn check(filter: &str, subject: &Resource) -> bool {
    let parsed = parse_filter(filter).expect(filter);
    let resolved = resolve_filter(Kind::User, &parsed).expect(filter);
    matches(&resolved, Subject::Resource(Kind::User, subject))
}

#[test]
fn evaluates_filters() {
    let u = user(json!({
        "userName": "BJensen@Example.com",
        "externalId": "E-1",
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "name": {"givenName": "Barbara"},
        ENTERPRISE_USER: {"department": "Sales", "manager": {"value": "m-1"}}
    }));
    // userName is case-insensitive; externalId and id are case-exact.
    assert!(check(r#"userName eq "bjensen@example.com""#, &u));
    assert!(check(r#"externalId eq "E-1""#, &u));
    assert!(!check(r#"externalId eq "e-1""#, &u));
    assert!(check(r#"id eq "id-1""#, &u));
    assert!(check(r#"userName sw "bjen" and userName ew ".COM""#, &u));
    assert!(check(r#"name.givenName co "arb""#, &u));
    assert!(check("active eq true", &u));
    assert!(check(r#"active eq "True""#, &u));
    assert!(!check("active ne true", &u));
    assert!(check(r#"emails.value eq "babs@jensen.org""#, &u));
    assert!(check(r#"emails eq "babs@jensen.org""#, &u));
    assert!(check(
        r#"emails[type eq "work" and value ew "example.com"]"#,
        &u
    ));
    assert!(!check(
        r#"emails[type eq "home" and value ew "example.com"]"#,
        &u
    ));
    assert!(check(r#"emails[type eq "work"] and not (title pr)"#, &u));
    assert!(check(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales""#,
        &u
    ));
    assert!(check(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m-1""#,
        &u
    ));
    assert!(check(r#"title eq null"#, &u));
    assert!(check(r#"meta.resourceType eq "User""#, &u));
    assert!(check(r#"meta.created gt "2000-01-01T00:00:00Z""#, &u));
    assert!(!check(r#"userName eq "x" or displayName pr"#, &u));
}

#[test]
fn compares_case_insensitively_with_or_without_ascii() {
    let u = user(json!({"userName": "Ünïcode.User@Example.COM", "displayName": "Plain Ascii"}));
    assert!(check(r#"userName eq "üNÏCODE.user@example.com""#, &u));
    assert!(check(
        r#"userName sw "ÜN" and userName ew ".com" and userName co "E.U""#,
        &u
    ));
    assert!(check(
        r#"displayName co "N ASC" and displayName sw "plain" and displayName ew "CII""#,
        &u
    ));
    assert!(check(
        r#"displayName co "" and displayName gt "PLAIN" and displayName lt "Q""#,
        &u
    ));
    assert!(!check(
        r#"displayName co "ascii plain" or displayName sw "Plain Ascii!""#,
        &u
    ));
    assert!(!check(r#"displayName eq "plain ascii ""#, &u));
    assert!(!check(r#"displayName eq "Pläin Ascii""#, &u));
}

#[test]
fn a_lenient_filter_takes_unknown_attributes_as_unassigned() {
    let u = user(json!({"userName": "bjensen"}));
    let check = |filter: &str| {
        let parsed = parse_filter(filter).expect(filter);
        assert!(resolve_filter(Kind::User, &parsed).is_err(), "{filter}");
        let resolved = resolve_filter_as(Kind::User, &parsed, true, false).expect(filter);
        matches(&resolved, Subject::Resource(Kind::User, &u))
    };
    assert!(check(r#"members.value eq "x" or userName eq "bjensen""#));
    assert!(!check(r#"members.value eq "x""#));
    assert!(check(r#"not (members.value eq "x")"#));
    assert!(check(r#"members eq null"#));
    assert!(!check(r#"members pr"#));
    assert!(!check(r#"members[value eq "x"]"#));
}
