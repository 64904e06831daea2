//! The app over HTTP, served in-process: authentication, errors, the
//! requests hrsync's provisioner makes, filters, paging, PATCH paths,
//! versions and limits.

use hrsync_scim_app::{router, AppState, Options};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const TOKEN: &str = "test-token";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

struct App {
    base: String,
    http: reqwest::Client,
    state: AppState,
}

impl App {
    async fn start() -> Self {
        Self::with_options(Options::default()).await
    }

    async fn with_options(options: Options) -> Self {
        let state = AppState::with_options(TOKEN, options);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        App {
            base,
            http: reqwest::Client::new(),
            state,
        }
    }

    /// A request with the token; answers status, headers and JSON body.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        self.send(
            self.http
                .request(method, format!("{}{path}", self.base))
                .bearer_auth(TOKEN),
            body,
        )
        .await
    }

    async fn send(&self, request: reqwest::RequestBuilder, body: Option<Value>) -> Response {
        let request = match body {
            Some(body) => request
                .header("content-type", "application/scim+json")
                .body(body.to_string()),
            None => request,
        };
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

    async fn create_user(&self, body: Value) -> Value {
        let created = self.call(Method::POST, "/Users", Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        created.body
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

#[derive(Debug)]
struct Response {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a SCIM error of `status` (and `scim_type`).
    fn assert_error(&self, status: StatusCode, scim_type: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["schemas"], json!([ERROR]));
        assert_eq!(self.body["status"], status.as_str());
        assert_eq!(self.body["scimType"].as_str(), scim_type, "{}", self.body);
        assert!(self.body["detail"].is_string());
        assert_eq!(self.header("content-type"), Some("application/scim+json"));
    }
}

fn user(name: &str) -> Value {
    json!({"schemas": [USER], "userName": name})
}

#[tokio::test]
async fn every_endpoint_but_health_needs_the_token() {
    let app = App::start().await;
    for path in [
        "/ServiceProviderConfig",
        "/Schemas",
        "/ResourceTypes",
        "/Users",
        "/Groups/x",
        "/nowhere",
        "/",
    ] {
        let url = format!("{}{path}", app.base);
        let anonymous = app.send(app.http.get(&url), None).await;
        anonymous.assert_error(StatusCode::UNAUTHORIZED, None);
        assert_eq!(
            anonymous.header("www-authenticate"),
            Some("Bearer realm=\"hrsync-scim-app\"")
        );
        let wrong = app
            .send(app.http.get(&url).bearer_auth("test-tokem"), None)
            .await;
        wrong.assert_error(StatusCode::UNAUTHORIZED, None);
        let basic = app
            .send(app.http.get(&url).basic_auth("u", Some(TOKEN)), None)
            .await;
        basic.assert_error(StatusCode::UNAUTHORIZED, None);
    }
    let lower_case_scheme = app
        .send(
            app.http
                .get(format!("{}/Users", app.base))
                .header("authorization", format!("bearer {TOKEN}")),
            None,
        )
        .await;
    assert_eq!(lower_case_scheme.status, StatusCode::OK);
    let health = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), StatusCode::OK);
    assert!(!format!("{:?}", app.state).contains(TOKEN));
}

#[tokio::test]
async fn discovery_describes_the_app() {
    let app = App::start().await;
    let config = app.call(Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(config.status, StatusCode::OK);
    assert_eq!(config.header("content-type"), Some("application/scim+json"));
    assert_eq!(config.body["patch"]["supported"], true);
    assert_eq!(
        config.body["filter"],
        json!({"supported": true, "maxResults": 1000})
    );
    assert_eq!(config.body["etag"]["supported"], true);
    assert_eq!(config.body["bulk"]["supported"], false);
    assert_eq!(
        config.body["authenticationSchemes"][0]["type"],
        "oauthbearertoken"
    );

    let types = app.call(Method::GET, "/ResourceTypes", None).await;
    assert_eq!(types.body["totalResults"], 2);
    assert_eq!(
        types.body["Resources"][0]["schemaExtensions"][0]["schema"],
        ENTERPRISE
    );
    let group = app.call(Method::GET, "/ResourceTypes/Group", None).await;
    assert_eq!(group.body["endpoint"], "/Groups");
    app.call(Method::GET, "/ResourceTypes/Nope", None)
        .await
        .assert_error(StatusCode::NOT_FOUND, None);

    let schemas = app.call(Method::GET, "/Schemas", None).await;
    let ids: Vec<&str> = schemas.body["Resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(ids.contains(&USER) && ids.contains(&ENTERPRISE) && ids.contains(&GROUP));
    let user_schema = app
        .call(Method::GET, &format!("/Schemas/{USER}"), None)
        .await;
    assert_eq!(user_schema.body["attributes"][0]["name"], "userName");

    let refused = app
        .call(Method::POST, "/ServiceProviderConfig", Some(json!({})))
        .await;
    refused.assert_error(StatusCode::METHOD_NOT_ALLOWED, None);
    assert_eq!(refused.header("allow"), Some("GET"));
    app.call(Method::GET, "/Users/", None)
        .await
        .assert_error(StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn creates_reads_and_deletes_users() {
    let app = App::start().await;
    let created = app
        .call(
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": [USER, ENTERPRISE],
                "userName": "bjensen@example.com",
                "externalId": "E-1",
                "name": {"givenName": "Barbara", "familyName": "Jensen"},
                "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
                "active": true,
                "password": "t1meMa$heen",
                ENTERPRISE: {"employeeNumber": "701984", "department": "Sales"},
            })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let body = &created.body;
    let id = body["id"].as_str().expect("id");
    let location = format!("{}/Users/{id}", app.base);
    assert_eq!(created.header("location"), Some(location.as_str()));
    assert_eq!(body["meta"]["location"], location);
    assert_eq!(created.header("etag"), body["meta"]["version"].as_str());
    assert_eq!(body["meta"]["resourceType"], "User");
    assert_eq!(body["meta"]["created"], body["meta"]["lastModified"]);
    assert_eq!(body["schemas"], json!([USER, ENTERPRISE]));
    assert!(
        body.get("password").is_none(),
        "the password is never returned"
    );
    assert_eq!(body[ENTERPRISE]["department"], "Sales");

    let read = app.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(&read.body, body);

    let again = app
        .call(Method::POST, "/Users", Some(user("BJENSEN@example.com")))
        .await;
    again.assert_error(StatusCode::CONFLICT, Some("uniqueness"));

    app.call(Method::POST, "/Users", Some(json!({"schemas": [USER]})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    app.call(
        Method::POST,
        "/Users",
        Some(json!({"schemas": [USER], "userName": "x", "shoe": 1})),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"));
    let garbage = app
        .send(
            app.http
                .post(format!("{}/Users", app.base))
                .bearer_auth(TOKEN)
                .body("{not json"),
            None,
        )
        .await;
    garbage.assert_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"));

    let deleted = app
        .call(Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.call(Method::GET, &format!("/Users/{id}"), None)
        .await
        .assert_error(StatusCode::NOT_FOUND, None);
    app.call(Method::DELETE, &format!("/Users/{id}"), None)
        .await
        .assert_error(StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn filters_like_provisioning_clients_do() {
    let app = App::start().await;
    app.create_user(json!({
        "schemas": [USER], "userName": "Alice@Example.com", "externalId": "E-1",
        "emails": [{"value": "alice@work.example", "type": "work"}, {"value": "alice@home.example", "type": "home"}],
    }))
    .await;
    app.create_user(json!({"schemas": [USER], "userName": "bob@example.com", "active": false}))
        .await;

    let find = |filter: &'static str| {
        let app = &app;
        async move {
            let response = app
                .send(
                    app.http
                        .get(format!("{}/Users", app.base))
                        .query(&[("filter", filter), ("startIndex", "1"), ("count", "100")])
                        .bearer_auth(TOKEN),
                    None,
                )
                .await;
            assert_eq!(
                response.status,
                StatusCode::OK,
                "{filter}: {}",
                response.body
            );
            response.body["Resources"]
                .as_array()
                .expect("resources")
                .iter()
                .filter_map(|r| r["userName"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        find(r#"userName eq "alice@example.com""#).await,
        ["Alice@Example.com"]
    );
    assert_eq!(
        find(r#"USERNAME Eq "ALICE@EXAMPLE.COM""#).await,
        ["Alice@Example.com"]
    );
    assert!(find(r#"userName eq "nobody""#).await.is_empty());
    assert_eq!(find(r#"externalId eq "E-1""#).await, ["Alice@Example.com"]);
    assert_eq!(
        find(r#"emails.value eq "alice@home.example""#).await,
        ["Alice@Example.com"]
    );
    assert_eq!(
        find(r#"emails[type eq "work" and value sw "alice@"]"#).await,
        ["Alice@Example.com"]
    );
    assert!(
        find(r#"emails[type eq "home" and value ew "work.example"]"#)
            .await
            .is_empty()
    );
    assert_eq!(find("active eq false").await, ["bob@example.com"]);
    assert_eq!(
        find(r#"userName eq "bob@example.com" or externalId eq "E-1""#).await,
        ["Alice@Example.com", "bob@example.com"]
    );
    assert_eq!(
        find(r#"not (userName sw "alice")"#).await,
        ["bob@example.com"]
    );

    for bad in [r#"userName eq"#, r#"nope eq "x""#, r#"active gt true"#] {
        app.send(
            app.http
                .get(format!("{}/Users", app.base))
                .query(&[("filter", bad)])
                .bearer_auth(TOKEN),
            None,
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("invalidFilter"));
    }

    // The same through POST /.search, and over every type at the root.
    let searched = app
        .call(
            Method::POST,
            "/Users/.search",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": "userName sw \"alice\"",
                "attributes": ["userName"],
            })),
        )
        .await;
    assert_eq!(searched.body["totalResults"], 1);
    let alice = &searched.body["Resources"][0];
    assert_eq!(alice["userName"], "Alice@Example.com");
    assert!(
        alice.get("emails").is_none() && alice.get("meta").is_none() && alice["id"].is_string()
    );

    let group = app
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "Sales"})),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED);
    let everything = app.call(Method::GET, "/", None).await;
    assert_eq!(everything.body["totalResults"], 3);
    let root = app
        .call(
            Method::POST,
            "/.search",
            Some(json!({"filter": "displayName eq \"sales\" or userName eq \"bob@example.com\""})),
        )
        .await;
    assert_eq!(root.body["totalResults"], 2, "{}", root.body);
}

#[tokio::test]
async fn pages_through_lists() {
    let app = App::with_options(Options {
        max_results: 5,
        ..Options::default()
    })
    .await;
    for i in 0..7 {
        app.create_user(user(&format!("user{i}"))).await;
    }
    let page = |query: &'static str| {
        let app = &app;
        async move {
            app.call(Method::GET, &format!("/Users?{query}"), None)
                .await
                .body
        }
    };
    let names = |body: &Value| -> Vec<String> {
        body["Resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(|r| r["userName"].as_str().map(str::to_owned))
            .collect()
    };
    let second = page("startIndex=4&count=3").await;
    assert_eq!(
        (
            second["totalResults"].clone(),
            second["startIndex"].clone(),
            second["itemsPerPage"].clone()
        ),
        (json!(7), json!(4), json!(3))
    );
    assert_eq!(names(&second), ["user3", "user4", "user5"]);
    // No count: the server's maximum; a count beyond it is capped.
    assert_eq!(page("").await["itemsPerPage"], 5);
    assert_eq!(page("count=50").await["itemsPerPage"], 5);
    let last = page("startIndex=6&count=5").await;
    assert_eq!(names(&last), ["user5", "user6"]);
    let counted = page("count=0").await;
    assert_eq!(
        (
            counted["totalResults"].clone(),
            counted["itemsPerPage"].clone()
        ),
        (json!(7), json!(0))
    );
    assert_eq!(page("startIndex=0&count=1").await["startIndex"], 1);
    assert_eq!(page("startIndex=99").await["itemsPerPage"], 0);
    app.call(Method::GET, "/Users?count=many", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    let filtered = page("filter=userName%20sw%20%22user%22&startIndex=7&count=2").await;
    assert_eq!(
        (filtered["totalResults"].clone(), names(&filtered)),
        (json!(7), vec!["user6".to_owned()])
    );
}

#[tokio::test]
async fn patches_users_like_provisioning_clients_do() {
    let app = App::start().await;
    let created = app
        .create_user(json!({
            "schemas": [USER], "userName": "carol",
            "emails": [{"value": "carol@work.example", "type": "work", "primary": true}],
        }))
        .await;
    let path = format!("/Users/{}", created["id"].as_str().expect("id"));

    // hrsync's deactivation, and Entra ID's (capitalized op, string boolean).
    let off = app
        .patch(
            &path,
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK);
    assert_eq!(off.body["active"], false);
    assert_eq!(off.header("etag"), off.body["meta"]["version"].as_str());
    let on = app
        .patch(
            &path,
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        )
        .await;
    assert_eq!(on.body["active"], true);

    let updated = app
        .patch(
            &path,
            json!([
                {"op": "Add", "path": "name.givenName", "value": "Carol"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "carol@new.example"},
                {"op": "add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Ops"},
                {"op": "add", "value": {"title": "Engineer", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter": "42"}},
            ]),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let body = &updated.body;
    assert_eq!(body["name"], json!({"givenName": "Carol"}));
    assert_eq!(
        body["emails"],
        json!([{"value": "carol@new.example", "type": "work", "primary": true}])
    );
    assert_eq!(
        body["phoneNumbers"],
        json!([{"type": "mobile", "value": "+1 555 0100"}])
    );
    assert_eq!(
        body[ENTERPRISE],
        json!({"department": "Ops", "costCenter": "42"})
    );
    assert_eq!(body["title"], "Engineer");
    assert_eq!(body["schemas"], json!([USER, ENTERPRISE]));

    let removed = app
        .patch(&path, json!([{"op": "remove", "path": "emails[type eq \"work\"]"}, {"op": "remove", "path": ENTERPRISE}]))
        .await;
    assert!(removed.body.get("emails").is_none());
    assert_eq!(removed.body["schemas"], json!([USER]));

    // Errors leave the user untouched.
    let before = app.call(Method::GET, &path, None).await.body;
    app.patch(&path, json!([{"op": "replace", "path": "title", "value": "x"}, {"op": "remove", "path": "userName"}]))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    app.patch(
        &path,
        json!([{"op": "replace", "path": "meta", "value": {}}]),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, Some("mutability"));
    app.patch(
        &path,
        json!([{"op": "replace", "path": "emails[type eq", "value": 1}]),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, Some("invalidPath"));
    app.call(Method::PATCH, &path, Some(json!({"schemas": [PATCH_OP]})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("invalidSyntax"));
    assert_eq!(app.call(Method::GET, &path, None).await.body, before);
    app.patch("/Users/nobody", json!([{"op": "remove", "path": "title"}]))
        .await
        .assert_error(StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn groups_hold_members_and_users_list_their_groups() {
    let app = App::start().await;
    let dave = app.create_user(user("dave")).await;
    let erin = app
        .create_user(json!({"schemas": [USER], "userName": "erin", "displayName": "Erin E."}))
        .await;
    let dave_id = dave["id"].as_str().expect("id");
    let erin_id = erin["id"].as_str().expect("id");

    // What hrsync's provisioner sends.
    let group = app
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "Engineering", "members": []})),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.body);
    let path = format!("/Groups/{}", group.body["id"].as_str().expect("id"));
    let added = app
        .patch(&path, json!([{"op": "add", "path": "members", "value": [{"value": dave_id}, {"value": erin_id}]}]))
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert_eq!(
        added.body["members"],
        json!([
            {"value": dave_id, "type": "User", "display": "dave", "$ref": format!("{}/Users/{dave_id}", app.base)},
            {"value": erin_id, "type": "User", "display": "Erin E.", "$ref": format!("{}/Users/{erin_id}", app.base)},
        ])
    );
    let dave_now = app
        .call(Method::GET, &format!("/Users/{dave_id}"), None)
        .await;
    assert_eq!(dave_now.body["groups"][0]["display"], "Engineering");
    assert_eq!(dave_now.body["groups"][0]["type"], "direct");

    let found = app
        .send(
            app.http
                .get(format!("{}/Groups", app.base))
                .query(&[("filter", r#"displayName eq "engineering""#)])
                .bearer_auth(TOKEN),
            None,
        )
        .await;
    assert_eq!(found.body["totalResults"], 1);

    let left = app
        .patch(
            &path,
            json!([{"op": "remove", "path": format!("members[value eq \"{dave_id}\"]")}]),
        )
        .await;
    assert_eq!(left.body["members"].as_array().map(Vec::len), Some(1));
    let dave_now = app
        .call(Method::GET, &format!("/Users/{dave_id}"), None)
        .await;
    assert!(dave_now.body.get("groups").is_none());

    app.patch(
        &path,
        json!([{"op": "add", "path": "members", "value": [{"value": "ghost"}]}]),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, Some("invalidValue"));
    app.call(Method::POST, "/Groups", Some(json!({"schemas": [GROUP]})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("invalidValue"));

    // Deleting a member takes it out of the group.
    app.call(Method::DELETE, &format!("/Users/{erin_id}"), None)
        .await;
    let emptied = app.call(Method::GET, &path, None).await;
    assert!(emptied.body.get("members").is_none(), "{}", emptied.body);
}

#[tokio::test]
async fn put_replaces_and_versions_guard_writes() {
    let app = App::start().await;
    let created = app
        .create_user(
            json!({"schemas": [USER], "userName": "frank", "title": "Intern", "password": "pw"}),
        )
        .await;
    let path = format!("/Users/{}", created["id"].as_str().expect("id"));
    let first = created["meta"]["version"]
        .as_str()
        .expect("version")
        .to_owned();

    // A GET of an unchanged version is 304.
    let unchanged = app
        .send(
            app.http
                .get(format!("{}{path}", app.base))
                .bearer_auth(TOKEN)
                .header("if-none-match", &first),
            None,
        )
        .await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);

    // PUT replaces: what it leaves out is gone (but not the password).
    let mut replacement = created.clone();
    replacement["title"] = Value::Null;
    replacement["active"] = json!(false);
    let replaced = app
        .send(
            app.http
                .put(format!("{}{path}", app.base))
                .bearer_auth(TOKEN)
                .header("if-match", &first),
            Some(replacement.clone()),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert!(replaced.body.get("title").is_none());
    assert_eq!(replaced.body["active"], false);
    assert_eq!(replaced.body["id"], created["id"]);
    assert_eq!(replaced.body["meta"]["created"], created["meta"]["created"]);
    assert_ne!(
        replaced.body["meta"]["version"].as_str(),
        Some(first.as_str())
    );

    // The old version no longer matches.
    let stale = app
        .send(
            app.http
                .put(format!("{}{path}", app.base))
                .bearer_auth(TOKEN)
                .header("if-match", &first),
            Some(replacement),
        )
        .await;
    stale.assert_error(StatusCode::PRECONDITION_FAILED, None);
    let stale_delete = app
        .send(
            app.http
                .delete(format!("{}{path}", app.base))
                .bearer_auth(TOKEN)
                .header("if-match", &first),
            None,
        )
        .await;
    stale_delete.assert_error(StatusCode::PRECONDITION_FAILED, None);

    app.call(Method::PUT, "/Users/nobody", Some(user("x")))
        .await
        .assert_error(StatusCode::NOT_FOUND, None);
    let other = app.create_user(user("grace")).await;
    app.call(
        Method::PUT,
        &format!("/Users/{}", other["id"].as_str().expect("id")),
        Some(user("FRANK")),
    )
    .await
    .assert_error(StatusCode::CONFLICT, Some("uniqueness"));
}

#[tokio::test]
async fn refuses_bodies_over_the_limit() {
    let app = App::with_options(Options {
        max_body_bytes: 1024,
        ..Options::default()
    })
    .await;
    let big = json!({"schemas": [USER], "userName": "x".repeat(2048)});
    app.call(Method::POST, "/Users", Some(big))
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, None);
    app.create_user(user("small")).await;
    assert_eq!(app.state.user_count(), 1);
}
