//! The quirk modes over HTTP: each test shows the quirky behaviour with the
//! quirk on and the conformant behaviour with it off; and the command line
//! that switches them on.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use hrsync_scim_app::{router, AppState, Options, Quirk};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const TOKEN: &str = "test-token";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct App {
    base: String,
    http: reqwest::Client,
}

#[derive(Debug)]
struct Response {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl App {
    /// The app with `quirks` on (none: conformant).
    async fn with(quirks: &[Quirk]) -> Self {
        Self::with_options(Options {
            quirks: quirks.iter().copied().collect(),
            ..Options::default()
        })
        .await
    }

    async fn with_options(options: Options) -> Self {
        let state = AppState::with_options(TOKEN, options);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        App {
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        call(&self.http, &self.base, method, path, body).await
    }

    async fn create(&self, path: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Creates a resource, which must succeed; answers its id.
    async fn created(&self, path: &str, body: Value) -> String {
        let created = self.create(path, body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        created.body["id"].as_str().expect("id").to_owned()
    }

    async fn get(&self, path: &str) -> Value {
        let read = self.call(Method::GET, path, None).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.body);
        read.body
    }

    async fn patch(&self, path: &str, operations: Value) -> Response {
        self.call(
            Method::PATCH,
            path,
            Some(json!({"schemas": [PATCH_OP], "Operations": operations})),
        )
        .await
    }
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Response {
    let mut request = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/scim+json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    Response {
        status,
        headers,
        body,
    }
}

fn user(name: &str) -> Value {
    json!({"schemas": [USER], "userName": name})
}

fn group(name: &str) -> Value {
    json!({"schemas": [GROUP], "displayName": name})
}

fn user_names(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .filter_map(|r| r["userName"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn case_sensitive_filter_finds_nothing_yet_the_create_conflicts() {
    for quirk in [false, true] {
        let quirks: &[Quirk] = if quirk {
            &[Quirk::CaseSensitiveFilter]
        } else {
            &[]
        };
        let app = App::with(quirks).await;
        app.created("/Users", user("BJensen")).await;
        let found = app.get("/Users?filter=userName%20eq%20%22bjensen%22").await;
        let prefix = app.get("/Users?filter=userName%20sw%20%22bjen%22").await;
        // Exactly as stored, it is found either way.
        let exact = app.get("/Users?filter=userName%20eq%20%22BJensen%22").await;
        assert_eq!(user_names(&exact), ["BJensen"], "quirk {quirk}");
        if quirk {
            assert_eq!(found["totalResults"], 0, "{found}");
            assert_eq!(user_names(&found), Vec::<String>::new());
            assert_eq!(prefix["totalResults"], 0, "{prefix}");
        } else {
            assert_eq!(user_names(&found), ["BJensen"]);
            assert_eq!(user_names(&prefix), ["BJensen"]);
        }
        // The trap: whatever the filter found, the name is taken.
        let conflict = app.create("/Users", user("bjensen")).await;
        assert_eq!(conflict.status, StatusCode::CONFLICT, "{}", conflict.body);
        assert_eq!(conflict.body["scimType"], "uniqueness");
    }
}

#[tokio::test]
async fn unique_group_names_refuses_a_second_group_of_a_name() {
    // Conformant (RFC 7643 gives displayName no uniqueness): two groups.
    let app = App::with(&[]).await;
    let first = app.created("/Groups", group("Sales")).await;
    let second = app.created("/Groups", group("sales")).await;
    assert_ne!(first, second);
    let both = app
        .get("/Groups?filter=displayName%20eq%20%22Sales%22")
        .await;
    assert_eq!(both["totalResults"], 2, "{both}");

    let app = App::with(&[Quirk::UniqueGroupNames]).await;
    let sales = app.created("/Groups", group("Sales")).await;
    let conflict = app.create("/Groups", group("sales")).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT, "{}", conflict.body);
    assert_eq!(conflict.body["scimType"], "uniqueness");
    // Renaming another group onto the name is refused too; renaming the
    // group itself in another case is not.
    let other = app.created("/Groups", group("Marketing")).await;
    let renamed = app
        .patch(
            &format!("/Groups/{other}"),
            json!([{"op": "replace", "path": "displayName", "value": "SALES"}]),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::CONFLICT, "{}", renamed.body);
    let own = app
        .patch(
            &format!("/Groups/{sales}"),
            json!([{"op": "replace", "path": "displayName", "value": "SALES"}]),
        )
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
}

/// Two PATCHes adding one member each to one group, sent at once.
async fn concurrent_member_adds(quirks: &[Quirk]) -> Vec<String> {
    let app = App::with_options(Options {
        quirks: quirks.iter().copied().collect(),
        patch_delay: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let alice = app.created("/Users", user("alice")).await;
    let bob = app.created("/Users", user("bob")).await;
    let team = app.created("/Groups", group("Team")).await;
    let path = format!("/Groups/{team}");
    let add = |id: String| {
        app.patch(
            &path,
            json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
        )
    };
    let (a, b) = tokio::join!(add(alice), add(bob));
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);
    let read = app.get(&path).await;
    let mut members: Vec<String> = read["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["display"].as_str().map(str::to_owned))
        .collect();
    members.sort();
    members
}

#[tokio::test]
async fn read_change_write_patch_loses_a_concurrent_change() {
    assert_eq!(concurrent_member_adds(&[]).await, ["alice", "bob"]);
    let kept = concurrent_member_adds(&[Quirk::ReadChangeWritePatch]).await;
    assert_eq!(kept.len(), 1, "last writer wins: {kept:?}");
    assert!(kept[0] == "alice" || kept[0] == "bob", "{kept:?}");
}

#[tokio::test]
async fn read_change_write_patch_waits_the_delay_and_still_checks_versions() {
    let app = App::with_options(Options {
        quirks: [Quirk::ReadChangeWritePatch].into(),
        patch_delay: Duration::from_millis(400),
        ..Options::default()
    })
    .await;
    let id = app.created("/Users", user("carol")).await;
    let started = std::time::Instant::now();
    let patched = app
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "displayName", "value": "Carol"}]),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(patched.body["displayName"], "Carol");
    let stale = app
        .http
        .patch(format!("{}/Users/{id}", app.base))
        .bearer_auth(TOKEN)
        .header("if-match", "W/\"1\"")
        .header("content-type", "application/scim+json")
        .body(
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "displayName", "value": "C"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn paging_restarts_answers_the_first_page_past_the_end() {
    for quirk in [false, true] {
        let quirks: &[Quirk] = if quirk { &[Quirk::PagingRestarts] } else { &[] };
        let app = App::with(quirks).await;
        for name in ["u1", "u2", "u3"] {
            app.created("/Users", user(name)).await;
        }
        let inside = app.get("/Users?startIndex=3&count=2").await;
        assert_eq!(user_names(&inside), ["u3"], "quirk {quirk}");
        let past = app.get("/Users?startIndex=4&count=2").await;
        assert_eq!(past["totalResults"], 3, "{past}");
        assert_eq!(past["startIndex"], 4, "{past}");
        let filtered = app
            .get("/Users?filter=userName%20sw%20%22u%22&startIndex=10&count=2")
            .await;
        assert_eq!(filtered["totalResults"], 3, "{filtered}");
        let none = app.get("/Groups?startIndex=5").await;
        assert_eq!(
            (&none["totalResults"], &none["itemsPerPage"]),
            (&json!(0), &json!(0))
        );
        if quirk {
            assert_eq!(user_names(&past), ["u1", "u2"]);
            assert_eq!(past["itemsPerPage"], 2);
            assert_eq!(user_names(&filtered), ["u1", "u2"]);
        } else {
            assert_eq!(user_names(&past), Vec::<String>::new());
            assert_eq!(past["itemsPerPage"], 0);
            assert_eq!(user_names(&filtered), Vec::<String>::new());
        }
    }
}

#[tokio::test]
async fn patch_204_answers_no_content() {
    for quirk in [false, true] {
        let quirks: &[Quirk] = if quirk { &[Quirk::Patch204] } else { &[] };
        let app = App::with(quirks).await;
        let id = app.created("/Users", user("dave")).await;
        let patched = app
            .patch(
                &format!("/Users/{id}"),
                json!([{"op": "replace", "path": "displayName", "value": "Dave"}]),
            )
            .await;
        assert!(patched.headers.contains_key("etag"), "quirk {quirk}");
        if quirk {
            assert_eq!(patched.status, StatusCode::NO_CONTENT);
            assert_eq!(patched.body, Value::Null);
        } else {
            assert_eq!(patched.status, StatusCode::OK);
            assert_eq!(patched.body["displayName"], "Dave", "{}", patched.body);
        }
        // Applied either way.
        let read = app.get(&format!("/Users/{id}")).await;
        assert_eq!(read["displayName"], "Dave");
    }
}

#[tokio::test]
async fn string_booleans_in_every_returned_resource() {
    for quirk in [false, true] {
        let quirks: &[Quirk] = if quirk { &[Quirk::StringBooleans] } else { &[] };
        let app = App::with(quirks).await;
        let mut body = user("erin");
        body["active"] = json!(false);
        body["emails"] = json!([{"value": "erin@example.com", "primary": true}]);
        let created = app.create("/Users", body).await;
        let id = created.body["id"].as_str().expect("id").to_owned();
        let read = app.get(&format!("/Users/{id}")).await;
        let listed = app.get("/Users?filter=active%20eq%20false").await;
        let listed = &listed["Resources"][0];
        let (active, primary) = if quirk {
            (json!("False"), json!("True"))
        } else {
            (json!(false), json!(true))
        };
        for rendered in [&created.body, &read, listed] {
            assert_eq!(rendered["active"], active, "quirk {quirk}: {rendered}");
            assert_eq!(rendered["emails"][0]["primary"], primary, "{rendered}");
        }
    }
}

#[tokio::test]
async fn no_location_leaves_the_header_out() {
    for quirk in [false, true] {
        let quirks: &[Quirk] = if quirk { &[Quirk::NoLocation] } else { &[] };
        let app = App::with(quirks).await;
        for (path, body) in [("/Users", user("frank")), ("/Groups", group("Ops"))] {
            let created = app.create(path, body).await;
            assert_eq!(created.status, StatusCode::CREATED);
            let location = created.headers.get("location");
            if quirk {
                assert!(location.is_none(), "{location:?}");
            } else {
                let id = created.body["id"].as_str().expect("id");
                let expected = format!("{}{path}/{id}", app.base);
                assert_eq!(location.and_then(|l| l.to_str().ok()), Some(&*expected));
            }
        }
    }
}

#[tokio::test]
async fn no_schemas_leaves_schemas_out_of_resources_and_lists() {
    for quirk in [false, true] {
        let quirks: &[Quirk] = if quirk { &[Quirk::NoSchemas] } else { &[] };
        let app = App::with(quirks).await;
        let created = app.create("/Users", user("grace")).await;
        let id = created.body["id"].as_str().expect("id").to_owned();
        let read = app.get(&format!("/Users/{id}")).await;
        let list = app.get("/Users").await;
        let rendered = [&created.body, &read, &list, &list["Resources"][0]];
        for body in rendered {
            assert_eq!(body.get("schemas").is_none(), quirk, "{body}");
        }
        assert_eq!(read["userName"], "grace");
    }
}

#[test]
fn the_command_line_refuses_an_unknown_quirk_naming_the_known() {
    let output = Command::new(env!("CARGO_BIN_EXE_hrsync-scim-app"))
        .args(["--listen", "127.0.0.1:0", "--token", "t"])
        .args(["--quirk", "patch-204", "--quirks", "no-location,sloppy"])
        .env_remove("HRSYNC_SCIM_APP_QUIRKS")
        .output()
        .expect("run hrsync-scim-app");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sloppy"), "{stderr}");
    for quirk in Quirk::ALL {
        assert!(stderr.contains(quirk.name()), "{stderr}");
    }
}

#[tokio::test]
async fn the_command_line_switches_quirks_on() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hrsync-scim-app"))
        .args(["--listen", "127.0.0.1:0", "--token", TOKEN])
        .args(["--quirk", "no-location", "--quirks", "patch-204,no-schemas"])
        .env_remove("HRSYNC_SCIM_APP_QUIRKS")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hrsync-scim-app");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("did not start: {line:?}"))
        .to_owned();
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let created = call(&http, &base, Method::POST, "/Users", Some(user("heidi"))).await;
    let id = created.body["id"].as_str().expect("id").to_owned();
    let patched = call(
        &http,
        &base,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "active", "value": false}]})),
    )
    .await;
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(created.status, StatusCode::CREATED);
    assert!(!created.headers.contains_key("location"));
    assert!(created.body.get("schemas").is_none(), "{}", created.body);
    assert_eq!(patched.status, StatusCode::NO_CONTENT);
}
