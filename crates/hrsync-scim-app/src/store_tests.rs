//! Tests of `store.rs`.

use serde_json::json;

use super::*;
use crate::resource::normalize_body;

fn attrs(kind: Kind, body: Value) -> Map<String, Value> {
    normalize_body(kind, body).expect("valid body")
}

fn user(store: &Store, name: &str) -> Snapshot {
    store
        .create(Kind::User, attrs(Kind::User, json!({"userName": name})))
        .expect("create")
}

fn query(
    store: &Store,
    kind: Kind,
    filter: Option<&str>,
    start: usize,
    count: usize,
) -> (usize, Vec<String>) {
    let filter = filter.map(|f| {
        filter::resolve_filter(kind, &filter::parse_filter(f).expect("parse")).expect("resolve")
    });
    let page = store.search(&[(kind, filter)], start, count);
    let names = page
        .items
        .iter()
        .map(|s| {
            s.resource.attrs[kind.name_attribute()]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    (page.total, names)
}

#[test]
fn user_names_are_unique_whatever_their_case() {
    let store = Store::default();
    let first = user(&store, "BJensen");
    let error = store
        .create(
            Kind::User,
            attrs(Kind::User, json!({"userName": "bjensen"})),
        )
        .expect_err("taken");
    assert_eq!(error.scim_type(), Some("uniqueness"));
    let other = user(&store, "other");
    let error = store
        .replace(
            Kind::User,
            &other.resource.id,
            attrs(Kind::User, json!({"userName": "BJENSEN"})),
            None,
        )
        .expect_err("taken");
    assert_eq!(error.scim_type(), Some("uniqueness"));
    // Renaming oneself in another case is fine.
    store
        .replace(
            Kind::User,
            &first.resource.id,
            attrs(Kind::User, json!({"userName": "bjensen"})),
            None,
        )
        .expect("own name");
    let (_, found) = query(&store, Kind::User, Some(r#"userName eq "BJENSEN""#), 1, 10);
    assert_eq!(found, ["bjensen"]);
}

#[test]
fn a_store_allowing_duplicate_user_names_keeps_both_and_finds_both() {
    let store = Store::new(false, true);
    user(&store, "bjensen");
    user(&store, "BJensen");
    let (total, found) = query(&store, Kind::User, Some(r#"userName eq "bjensen""#), 1, 10);
    assert_eq!((total, found.len()), (2, 2));
}

#[test]
fn pages_in_creation_order() {
    let store = Store::default();
    for i in 0..25 {
        user(&store, &format!("user{i:02}"));
    }
    let (total, page) = query(&store, Kind::User, None, 1, 10);
    assert_eq!((total, page.len(), page[0].as_str()), (25, 10, "user00"));
    let (total, page) = query(&store, Kind::User, None, 21, 10);
    assert_eq!(
        (total, page),
        (
            25,
            vec![
                "user20".to_owned(),
                "user21".to_owned(),
                "user22".to_owned(),
                "user23".to_owned(),
                "user24".to_owned()
            ]
        )
    );
    let (total, page) = query(&store, Kind::User, None, 30, 10);
    assert_eq!((total, page.len()), (25, 0));
    let (total, page) = query(&store, Kind::User, Some(r#"userName sw "user1""#), 3, 4);
    assert_eq!(total, 10);
    assert_eq!(page, ["user12", "user13", "user14", "user15"]);
    let (total, page) = query(&store, Kind::User, Some(r#"userName sw "user1""#), 1, 0);
    assert_eq!((total, page.len()), (10, 0));
    let (total, _) = query(
        &store,
        Kind::User,
        Some(r#"userName eq "user03" or userName eq "user04""#),
        1,
        10,
    );
    assert_eq!(total, 2);
}

#[test]
fn indexes_follow_writes() {
    let store = Store::default();
    let u = user(&store, "a");
    store
        .patch(
            Kind::User,
            &u.resource.id,
            json!({"Operations": [{"op": "replace", "value": {"userName": "b", "externalId": "x1"}}]}),
            None,
        )
        .expect("patch");
    assert_eq!(
        query(&store, Kind::User, Some(r#"userName eq "a""#), 1, 10).0,
        0
    );
    assert_eq!(
        query(&store, Kind::User, Some(r#"userName eq "b""#), 1, 10).0,
        1
    );
    assert_eq!(
        query(
            &store,
            Kind::User,
            Some(r#"externalId eq "x1" and userName eq "b""#),
            1,
            10
        )
        .0,
        1
    );
    assert_eq!(
        query(&store, Kind::User, Some(r#"externalId eq "X1""#), 1, 10).0,
        0
    );
    assert_eq!(
        query(
            &store,
            Kind::User,
            Some(&format!("id eq \"{}\"", u.resource.id)),
            1,
            10
        )
        .0,
        1
    );
    store
        .delete(Kind::User, &u.resource.id, None)
        .expect("delete");
    assert_eq!(
        query(&store, Kind::User, Some(r#"userName eq "b""#), 1, 10).0,
        0
    );
    assert_eq!(store.len(Kind::User), 0);
}

#[test]
fn versions_change_only_with_the_resource() {
    let store = Store::default();
    let u = user(&store, "a");
    let etag = u.resource.etag();
    let same = store
        .patch(
            Kind::User,
            &u.resource.id,
            json!({"Operations": [{"op": "add", "path": "userName", "value": "a"}]}),
            Some(&etag),
        )
        .expect("patch");
    assert_eq!(same.resource.etag(), etag, "a no-op keeps the version");
    let changed = store
        .patch(
            Kind::User,
            &u.resource.id,
            json!({"Operations": [{"op": "add", "path": "title", "value": "t"}]}),
            Some(&etag),
        )
        .expect("patch");
    assert_ne!(changed.resource.etag(), etag);
    let error = store
        .delete(Kind::User, &u.resource.id, Some(&etag))
        .expect_err("stale");
    assert_eq!(
        error.to_string(),
        format!(
            "412 Precondition Failed: the resource changed: its version is now {}",
            changed.resource.etag()
        )
    );
    store
        .delete(Kind::User, &u.resource.id, Some("*"))
        .expect("any version");
}

#[test]
fn groups_know_their_members_and_users_their_groups() {
    let store = Store::default();
    let a = user(&store, "a");
    let b = user(&store, "b");
    let error = store
        .create(
            Kind::Group,
            attrs(
                Kind::Group,
                json!({"displayName": "G", "members": [{"value": "nobody"}]}),
            ),
        )
        .expect_err("unknown member");
    assert_eq!(error.scim_type(), Some("invalidValue"));
    let g = store
        .create(
            Kind::Group,
            attrs(Kind::Group, json!({"displayName": "Sales", "members": [{"value": a.resource.id}, {"value": a.resource.id}]})),
        )
        .expect("create");
    assert_eq!(
        g.resource.attrs["members"],
        json!([{"value": a.resource.id, "type": "User", "display": "a"}])
    );
    let groups = store.get(Kind::User, &a.resource.id).expect("a").groups;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].display.as_deref(), Some("Sales"));
    let add_b = json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": b.resource.id}]}]});
    store
        .patch(Kind::Group, &g.resource.id, add_b, None)
        .expect("add b");
    assert_eq!(
        store
            .get(Kind::User, &b.resource.id)
            .expect("b")
            .groups
            .len(),
        1
    );

    // A deleted user leaves its groups.
    store
        .delete(Kind::User, &a.resource.id, None)
        .expect("delete a");
    let g_now = store.get(Kind::Group, &g.resource.id).expect("group");
    assert_eq!(
        g_now.resource.attrs["members"].as_array().map(Vec::len),
        Some(1)
    );
    assert_ne!(g_now.resource.etag(), g.resource.etag());

    // A deleted group leaves its members.
    store
        .delete(Kind::Group, &g.resource.id, None)
        .expect("delete group");
    assert!(store
        .get(Kind::User, &b.resource.id)
        .expect("b")
        .groups
        .is_empty());
    let (_, found) = query(
        &store,
        Kind::Group,
        Some(r#"displayName eq "sales""#),
        1,
        10,
    );
    assert!(found.is_empty());
}

#[test]
fn put_keeps_the_password_it_is_not_sent() {
    let store = Store::default();
    let u = store
        .create(
            Kind::User,
            attrs(Kind::User, json!({"userName": "a", "password": "s3cret"})),
        )
        .expect("create");
    let replaced = store
        .replace(
            Kind::User,
            &u.resource.id,
            attrs(Kind::User, json!({"userName": "a", "title": "t"})),
            None,
        )
        .expect("replace");
    assert_eq!(replaced.resource.attrs["password"], "s3cret");
    assert!(store.get(Kind::User, "nope").is_none());
    let error = store
        .replace(Kind::User, "nope", Map::new(), None)
        .expect_err("missing");
    assert!(error.to_string().starts_with("404"));
}
