use std::time::Duration;

use serde_json::{json, Value};

use super::client::Answer;
use super::*;

fn decode_reason(error: ScimError) -> String {
    match error {
        ScimError::Decode { reason, .. } => reason,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn a_failure_carries_the_scim_error_and_retry_after() {
    let error = read_answer(
        "POST",
        "/Users",
        409,
        None,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"409","scimType":"uniqueness","detail":"taken"}"#,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "POST /Users: HTTP 409 (uniqueness): taken"
    );
    assert!(!error.is_retryable());

    let error = read_answer("GET", "/Users", 429, Some("7"), "<html>slow down</html>").unwrap_err();
    assert_eq!(error.to_string(), "GET /Users: HTTP 429");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    assert!(error.is_retryable());

    // A day is more than a change may wait for one app: cut to the ceiling.
    let error = read_answer("GET", "/Users", 503, Some("86400"), "").unwrap_err();
    assert_eq!(error.retry_after(), Some(MAX_RETRY_AFTER));
}

#[test]
fn server_errors_are_retried_except_501() {
    for (status, retryable) in [
        (500, true),
        (501, false),
        (502, true),
        (503, true),
        (408, true),
        (400, false),
    ] {
        let error = read_answer("PATCH", "/Users/1", status, None, "").unwrap_err();
        assert_eq!(error.is_retryable(), retryable, "HTTP {status}");
    }
}

#[test]
fn a_success_that_is_not_json_is_a_decode_error_naming_the_request() {
    let error = read_answer("GET", "/Users/u1", 200, None, "<html>login</html>").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("GET /Users/u1: unreadable answer: expected value at line 1"),
        "{error}"
    );
    assert_eq!(
        read_answer("PATCH", "/Users/u1", 204, None, " \n").unwrap(),
        None
    );
}

#[test]
fn capabilities_are_read_as_unsupported_unless_marked_so() {
    let config: Value = serde_json::from_str(
        r#"{"patch":{"supported":true},"filter":{"supported":"yes"},"etag":{"supported":"True"},"bulk":{"supported":true}}"#,
    )
    .unwrap();
    assert_eq!(
        read_capabilities(Some(&config)),
        Capabilities {
            patch: true,
            filter: false,
            etag: true,
        }
    );
    let none = Capabilities {
        patch: false,
        filter: false,
        etag: false,
    };
    assert_eq!(read_capabilities(None), none);
    assert_eq!(read_capabilities(Some(&json!([1, 2]))), none);
}

#[test]
fn a_list_page_gives_total_and_resources() {
    let page = read_page(
        "GET",
        "/Users",
        Some(json!({"totalResults": 3, "Resources": [{"id": "u1", "userName": "ada"}]})),
    )
    .unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(page.resources, vec![json!({"id": "u1", "userName": "ada"})]);
    // Nothing matched: Resources may be left out, or the body empty.
    let empty = Page {
        total: 0,
        resources: Vec::new(),
    };
    assert_eq!(
        read_page("GET", "/Users", Some(json!({"totalResults": 0}))).unwrap(),
        empty
    );
    assert_eq!(read_page("GET", "/Users", None).unwrap(), empty);
}

/// A listed resource without a usable id used to be linked with an
/// empty SCIM id (and a group without one created again); a list that
/// is not an array read as "no match", so the user was created again.
#[test]
fn a_list_page_with_a_resource_without_id_or_no_array_is_rejected() {
    for (answer, reason) in [
        (
            json!({"totalResults": 2, "Resources": [{"id": "u1"}, {"userName": "ada"}]}),
            "Resources[1]: no id",
        ),
        (
            json!({"totalResults": 1, "Resources": [{"id": ""}]}),
            "Resources[0]: id is empty",
        ),
        (
            json!({"totalResults": 1, "Resources": [{"id": 17}]}),
            "Resources[0]: id is not a string",
        ),
        (
            json!({"totalResults": 1, "Resources": ["u1"]}),
            "Resources[0]: not a JSON object",
        ),
        (
            json!({"totalResults": 1, "Resources": {"id": "u1"}}),
            "Resources is not an array",
        ),
        (
            json!([{"id": "u1"}]),
            "the list answer is not a JSON object",
        ),
    ] {
        let error = read_page("GET", "/Groups", Some(answer)).unwrap_err();
        assert_eq!(error.request(), Some(("GET", "/Groups")));
        assert_eq!(decode_reason(error), reason);
    }
}

/// A `200 OK` with an empty body to a GET used to read as "no such
/// account", so the account was created again.
#[test]
fn a_resource_answer_needs_a_body_with_an_id() {
    let user = json!({"id": "u1", "active": false});
    assert_eq!(
        read_resource("GET", "/Users/u1", Some(user.clone())).unwrap(),
        user
    );
    for (answer, reason) in [
        (None, "the answer has no body"),
        (Some(json!({"userName": "ada"})), "no id"),
        (Some(json!({"id": null})), "no id"),
        (Some(json!("u1")), "not a JSON object"),
    ] {
        let error = read_resource("GET", "/Users/u1", answer).unwrap_err();
        assert_eq!(error.request(), Some(("GET", "/Users/u1")));
        assert_eq!(decode_reason(error), reason);
    }
}

/// Servers that send booleans as strings (`"True"`): `active` and
/// `primary` are read as booleans wherever they are; other strings
/// are left alone.
#[test]
fn string_booleans_are_read_as_booleans() {
    let answer = read_answer(
        "GET",
        "/Users",
        200,
        None,
        r#"{"totalResults":1,"Resources":[{"id":"u1","active":"False","title":"True",
            "emails":[{"value":"a@example.com","primary":"TRUE"}],"x":{"active":"maybe"}}]}"#,
    )
    .unwrap();
    let page = read_page("GET", "/Users", answer).unwrap();
    assert_eq!(
        page.resources[0],
        json!({"id": "u1", "active": false, "title": "True",
            "emails": [{"value": "a@example.com", "primary": true}], "x": {"active": "maybe"}})
    );
    assert_eq!(read_bool(&json!(" false ")), Some(false));
    assert_eq!(read_bool(&json!(1)), None);
}

fn page(total: usize, ids: &[&str]) -> Page {
    Page {
        total,
        resources: ids.iter().map(|id| json!({ "id": id })).collect(),
    }
}

fn ids(paging: Paging) -> Vec<String> {
    paging
        .into_resources()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Paging stops at `totalResults`, at a page that brings nothing new
/// (the first page answered again past the end, or `startIndex`
/// ignored) and at the limit; nothing is listed twice.
#[test]
fn paging_stops_by_total_by_ids_seen_and_at_the_limit() {
    let mut paging = Paging::new(100);
    assert_eq!(paging.next_start(), Some(1));
    paging.take(page(3, &["a", "b"]));
    assert_eq!(paging.next_start(), Some(3));
    paging.take(page(3, &["c"]));
    assert_eq!(paging.next_start(), None, "past totalResults");
    assert_eq!(ids(paging), ["a", "b", "c"]);

    // No totalResults: a server that answers the first page again past
    // the end stops the paging, its repeats dropped.
    let mut paging = Paging::new(100);
    paging.take(page(0, &["a", "b"]));
    paging.take(page(0, &["c", "a"]));
    assert_eq!(paging.next_start(), Some(5));
    paging.take(page(0, &["a", "b"]));
    assert_eq!(paging.next_start(), None, "nothing new");
    assert_eq!(ids(paging), ["a", "b", "c"]);

    // Accounts removed while paging: the total shrinks, the restarted
    // first page adds nothing twice.
    let mut paging = Paging::new(100);
    paging.take(page(4, &["a", "b"]));
    paging.take(page(2, &["a", "d"]));
    assert_eq!(paging.next_start(), None);
    assert_eq!(ids(paging), ["a", "b", "d"]);

    let mut paging = Paging::new(3);
    paging.take(page(10, &["a", "b"]));
    paging.take(page(10, &["c", "d"]));
    assert_eq!(paging.next_start(), None, "at the limit");
    assert_eq!(ids(paging), ["a", "b", "c"]);
    assert_eq!(Paging::new(0).next_start(), None);

    let mut paging = Paging::new(100);
    paging.take(page(7, &[]));
    assert_eq!(paging.next_start(), None, "an empty page");
}

#[test]
fn a_version_is_the_etag_else_meta_version() {
    let user = json!({"id": "u1", "meta": {"version": "W/\"3\""}});
    let answer = |etag: Option<&str>, body: Option<Value>| Answer {
        body,
        etag: etag.map(str::to_owned),
    };
    assert_eq!(
        answer(Some("W/\"4\""), Some(user.clone()))
            .versioned()
            .version
            .as_deref(),
        Some("W/\"4\"")
    );
    assert_eq!(
        answer(None, Some(user)).versioned().version.as_deref(),
        Some("W/\"3\"")
    );
    assert_eq!(answer(None, None).versioned().version, None);
    assert_eq!(meta_version(&json!({"meta": {"version": ""}})), None);
}

/// The conflict that matches no account names attribute names, never
/// values, and is not retried.
#[test]
fn an_unmatched_conflict_names_the_attributes_and_is_final() {
    let error = ScimError::Unmatched {
        attribute: "userName".into(),
        strategies: "userName, externalId".into(),
        scanned: 20,
        complete: false,
    };
    assert_eq!(
        error.to_string(),
        "POST /Users: HTTP 409: the app holds an account whose userName conflicts with this \
         user's, but no account matches by userName, externalId even ignoring case (20 \
         accounts searched, the search stopped at the limit); link or correct that account \
         in the app, then re-drive the change"
    );
    assert!(!error.is_retryable());
    assert_eq!(error.request(), Some(("POST", "/Users")));
    assert_eq!(error.status(), Some(409));
}

/// An app's resource id is one path segment whatever it holds: characters
/// that would change the request's target are percent-encoded, and an id a
/// URL cannot hold is an error, not a request elsewhere.
#[test]
fn a_resource_id_stays_one_path_segment() {
    use super::client::resource_path;
    let path = |id: &str| resource_path("GET", "Users", id);
    assert_eq!(path("2819c223-7f76").unwrap(), "/Users/2819c223-7f76");
    assert_eq!(path("a.b_c~d").unwrap(), "/Users/a.b_c~d");
    assert_eq!(path("../Groups/7").unwrap(), "/Users/..%2FGroups%2F7");
    assert_eq!(path("x?filter=y#z").unwrap(), "/Users/x%3Ffilter%3Dy%23z");
    assert_eq!(path("Lucy Lee").unwrap(), "/Users/Lucy%20Lee");
    assert_eq!(path("é").unwrap(), "/Users/%C3%A9");
    for id in ["", ".", ".."] {
        let error = path(id).expect_err("cannot be sent");
        assert!(!error.is_retryable(), "{error}");
        assert!(
            error.to_string().contains("cannot name a resource"),
            "{error}"
        );
    }
    assert_eq!(path("...").unwrap(), "/Users/...");
}
