//! The provisioner against SCIM servers that bend RFC 7644 as real apps
//! do: the local SCIM app (`hrsync-scim-app`) served in-process with its
//! quirk modes switched on, every request it receives recorded. Link store
//! on PostgreSQL and SQLite.
//!
//! - A case-sensitive filter misses an account whose `userName` differs
//!   only in case; the create's 409 turns into a link, never a duplicate.
//! - A conflict that nothing matches fails once, naming the attribute.
//! - Paging that answers the first page again past the end.
//! - `active` as `"True"`/`"False"`; PATCH answered 204 or 200 with the
//!   resource; no `Location`; no `schemas`.
//! - ETags: writes carry `If-Match`; an account changed in the app
//!   meanwhile (412) is read again and the change applied to it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::{self, Next};
use hrsync_config::Secret;
use hrsync_domain::DirectoryChange;
use hrsync_domain::LifecycleState::{Active, Deprovisioned, Suspended};
use hrsync_provisioner::config::{AppConfig, ProvisionerConfig};
use hrsync_provisioner::reconcile::{link, Operation};
use hrsync_provisioner::run::Provisioner;
use hrsync_provisioner::scim::{meta_version, ScimClient, USER_SCHEMA};
use hrsync_scim_app::{AppState, Options, Quirk};
use hrsync_store::Db;
use hrsync_tests::{directory_change, PgDatabase, SqliteFile};
use serde_json::{json, Value};

const TOKEN: &str = "quirks-token";
/// Marks the requests a test makes itself (an admin changing the app), so
/// that they are told apart from hrsync's.
const OUT_OF_BAND: &str = "x-test-out-of-band";

/// One request the app received, and its answer's status.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    if_match: Option<String>,
    status: u16,
    out_of_band: bool,
}

/// Runs before the app answers one of hrsync's requests: (method, path,
/// query).
type Hook =
    Arc<dyn Fn(String, String, String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The local SCIM app, in-process, recording every request.
struct QuirkApp {
    state: AppState,
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for QuirkApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl QuirkApp {
    async fn start(quirks: &[Quirk]) -> anyhow::Result<Self> {
        Self::with(
            Options {
                quirks: quirks.iter().copied().collect(),
                ..Options::default()
            },
            |_| None,
        )
        .await
    }

    /// The app with `options`; `hook(base)` may give a [`Hook`].
    async fn with(
        options: Options,
        hook: impl FnOnce(String) -> Option<Hook>,
    ) -> anyhow::Result<Self> {
        let state = AppState::with_options(TOKEN, options);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let hook = hook(base.clone());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let recorder = seen.clone();
        let router = hrsync_scim_app::router(state.clone()).layer(middleware::from_fn(
            move |request: Request, next: Next| {
                let recorder = recorder.clone();
                let hook = hook.clone();
                async move {
                    let mut seen = {
                        let header = |name: &str| {
                            request
                                .headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        Seen {
                            method: request.method().to_string(),
                            path: request.uri().path().to_owned(),
                            query: request.uri().query().unwrap_or_default().to_owned(),
                            if_match: header("if-match"),
                            status: 0,
                            out_of_band: header(OUT_OF_BAND).is_some(),
                        }
                    };
                    if let (Some(hook), false) = (&hook, seen.out_of_band) {
                        hook(seen.method.clone(), seen.path.clone(), seen.query.clone()).await;
                    }
                    let response = next.run(request).await;
                    seen.status = response.status().as_u16();
                    recorder.lock().expect("recorder").push(seen);
                    response
                }
            },
        ));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(QuirkApp {
            state,
            base,
            seen,
            task,
        })
    }

    /// hrsync's requests so far.
    fn requests(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("recorder")
            .iter()
            .filter(|s| !s.out_of_band)
            .cloned()
            .collect()
    }

    /// The app as hrsync is configured with it, group push off.
    fn config(&self) -> AppConfig {
        AppConfig {
            push_groups: false,
            ..AppConfig::new("app", &self.base, Secret::inline(TOKEN))
        }
    }

    fn admin(&self) -> Admin {
        Admin {
            http: reqwest::Client::new(),
            base: self.base.clone(),
        }
    }
}

/// Changes made in the app by someone else, as an app admin would.
#[derive(Clone)]
struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .header(OUT_OF_BAND, "1");
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a user; returns its id.
    async fn create(&self, user: Value) -> anyhow::Result<String> {
        let created = self
            .send(reqwest::Method::POST, "/Users", Some(user))
            .await?;
        Ok(created["id"].as_str().unwrap_or_default().to_owned())
    }

    async fn replace(&self, id: &str, attribute: &str, value: Value) -> anyhow::Result<()> {
        let ops = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": attribute, "value": value}],
        });
        self.send(reqwest::Method::PATCH, &format!("/Users/{id}"), Some(ops))
            .await?;
        Ok(())
    }

    async fn delete(&self, id: &str) -> anyhow::Result<()> {
        self.send(reqwest::Method::DELETE, &format!("/Users/{id}"), None)
            .await?;
        Ok(())
    }
}

fn client(base: &str) -> anyhow::Result<ScimClient> {
    ScimClient::new(base, TOKEN, Duration::from_secs(10)).map_err(anyhow::Error::msg)
}

async fn store(url: &str) -> anyhow::Result<Db> {
    let db = Db::connect(url, 2).await?;
    db.migrate().await?;
    Ok(db)
}

async fn provisioner(db: Db, app: AppConfig) -> anyhow::Result<Provisioner> {
    let config = ProvisionerConfig {
        max_attempts: 3,
        max_backoff_ms: 200,
        apps: vec![app],
        ..ProvisionerConfig::default()
    };
    Ok(Provisioner::new(db, &config, None).await?)
}

/// What `change` did in the one app, and the attempts it took.
async fn apply(
    provisioner: &Provisioner,
    change: &DirectoryChange,
) -> (Result<Vec<Operation>, String>, u32) {
    let mut results = provisioner.apply(change, None).await;
    let result = results.remove(0);
    (result.result.map_err(|e| e.to_string()), result.attempts)
}

/// The operations `change` did, which must succeed at the first attempt.
async fn applied(
    provisioner: &Provisioner,
    change: &DirectoryChange,
) -> anyhow::Result<Vec<Operation>> {
    let (result, attempts) = apply(provisioner, change).await;
    let ops = result.map_err(anyhow::Error::msg)?;
    anyhow::ensure!(attempts == 1, "{attempts} attempts: {ops:?}");
    Ok(ops)
}

fn user(user_name: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": user_name, "title": "Old"})
}

/// Worker `employee` (named `name`) in the app, with `title`.
fn worker(
    employee: &str,
    name: &str,
    version: u64,
    state: hrsync_domain::LifecycleState,
    title: &str,
) -> DirectoryChange {
    let mut change = directory_change(employee, name, version, state, &["app"], &[]);
    change.profile.attributes.title = Some(title.into());
    change
}

/// The user with `id`, read with hrsync's client.
async fn account(base: &str, id: &str) -> anyhow::Result<Value> {
    client(base)?
        .get("Users", id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user {id}"))
}

/// A pre-existing account whose `userName` differs from the worker's
/// e-mail only in case, in an app whose filter compares case-sensitively:
/// the filter finds nothing, the create answers 409, and hrsync links the
/// account (found by a case variant, or by reading the app's users), sends
/// what differs, and creates no second account.
async fn case_different_story(db_url: &str) -> anyhow::Result<()> {
    let app = QuirkApp::start(&[Quirk::CaseSensitiveFilter]).await?;
    let admin = app.admin();
    let ada_id = admin.create(user("Ada@Example.com")).await?;
    let grace_id = admin.create(user("grace@example.com")).await?;
    for other in ["bob@example.com", "carol@example.com", "dan@example.com"] {
        admin.create(user(other)).await?;
    }
    let provisioner = provisioner(store(db_url).await?, app.config()).await?;

    // Found by reading the app's users (no case variant of
    // "ada@example.com" is "Ada@Example.com").
    let ada = worker("E1", "Ada Lovelace", 1, Active, "Engineer");
    let ops = applied(&provisioner, &ada).await?;
    assert_eq!(
        ops,
        [
            Operation::Linked {
                scim_id: ada_id.clone()
            },
            Operation::Updated {
                attributes: ops_attributes(&ops)
            }
        ],
        "{ops:?}"
    );
    assert!(ops_attributes(&ops).contains(&"userName".to_owned()));
    assert_eq!(app.state.user_count(), 5, "no second account");
    let linked = account(&app.base, &ada_id).await?;
    assert_eq!(linked["userName"], "ada@example.com");
    assert_eq!(linked["externalId"], "p-E1");
    assert_eq!(linked["title"], "Engineer");
    let requests = app.requests();
    let conflicts = requests
        .iter()
        .filter(|s| s.method == "POST" && s.path == "/Users")
        .map(|s| s.status)
        .collect::<Vec<_>>();
    assert_eq!(conflicts, [409], "one create, refused");
    assert!(
        requests
            .iter()
            .any(|s| s.method == "GET" && s.path == "/Users" && !s.query.contains("filter")),
        "the app's users were read: {requests:?}"
    );

    // Found by the lowercase variant of "Grace@Example.com", without
    // reading the app's users.
    let before = app.requests().len();
    let mut grace = worker("E2", "Grace Hopper", 1, Active, "Admiral");
    grace.profile.attributes.work_email = Some("Grace@Example.com".into());
    let ops = applied(&provisioner, &grace).await?;
    assert_eq!(
        ops[0],
        Operation::Linked {
            scim_id: grace_id.clone()
        }
    );
    assert!(app.requests()[before..]
        .iter()
        .all(|s| !(s.method == "GET" && s.path == "/Users" && !s.query.contains("filter"))));
    assert_eq!(app.state.user_count(), 5);
    assert_eq!(
        account(&app.base, &grace_id).await?["userName"],
        "Grace@Example.com"
    );

    // Linked for good: the next change is an update, with no create.
    let before = app.requests().len();
    let ops = applied(
        &provisioner,
        &worker("E1", "Ada Lovelace", 2, Active, "Principal Engineer"),
    )
    .await?;
    assert_eq!(
        ops,
        [Operation::Updated {
            attributes: vec!["title".into()]
        }]
    );
    assert!(app.requests()[before..].iter().all(|s| s.method != "POST"));
    Ok(())
}

/// The attributes of the `Updated` in `ops`.
fn ops_attributes(ops: &[Operation]) -> Vec<String> {
    ops.iter()
        .find_map(|op| match op {
            Operation::Updated { attributes } => Some(attributes.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_different_account_is_linked_not_duplicated_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    case_different_story(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_different_account_is_linked_not_duplicated_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    case_different_story(&file.url()).await
}

/// A create refused as a conflict with an account no strategy of the chain
/// finds: one clear failure naming the attributes (never the value), not
/// retried, nothing linked.
#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_nothing_matches_fails_once_naming_the_attribute() -> anyhow::Result<()> {
    let app = QuirkApp::start(&[Quirk::CaseSensitiveFilter]).await?;
    let admin = app.admin();
    admin
        .create(json!({"schemas": [USER_SCHEMA], "userName": "ada@example.com", "externalId": "someone-else"}))
        .await?;
    for other in ["bob@example.com", "carol@example.com", "dan@example.com"] {
        admin.create(user(other)).await?;
    }
    let file = SqliteFile::new()?;
    let db = store(&file.url()).await?;
    let provisioner = provisioner(
        db.clone(),
        AppConfig {
            match_attributes: Some(vec!["externalId".into()]),
            match_scan_limit: 3,
            ..app.config()
        },
    )
    .await?;
    let (result, attempts) = apply(
        &provisioner,
        &worker("E1", "Ada Lovelace", 1, Active, "Engineer"),
    )
    .await;
    let error = result.expect_err("nothing to link");
    assert_eq!(attempts, 1, "not retried: {error}");
    assert_eq!(
        error,
        "app: POST /Users: HTTP 409: the app holds an account whose userName conflicts with \
         this user's, but no account matches by externalId even ignoring case (3 accounts \
         searched, the search stopped at the limit); link or correct that account in the app, \
         then re-drive the change"
    );
    let creates = app.requests().iter().filter(|s| s.method == "POST").count();
    assert_eq!(creates, 1, "no create loop");
    assert_eq!(app.state.user_count(), 4);
    assert_eq!(link(&db, "p-E1", "app").await?, None, "nothing linked");
    Ok(())
}

/// A server that answers the first page again past the end, while
/// accounts are removed during the listing: each account is listed once
/// and the listing ends. Without removals, paging stops at `totalResults`
/// without asking past the end.
#[tokio::test(flavor = "multi_thread")]
async fn paging_that_restarts_past_the_end_lists_each_account_once() -> anyhow::Result<()> {
    let removed: Arc<Mutex<Vec<String>>> = Arc::default();
    let to_remove = removed.clone();
    let app = QuirkApp::with(
        Options {
            quirks: [Quirk::PagingRestarts].into_iter().collect(),
            max_results: 2,
            ..Options::default()
        },
        move |base| {
            let admin = Admin {
                http: reqwest::Client::new(),
                base,
            };
            let hook: Hook = Arc::new(move |method, path, query| {
                let admin = admin.clone();
                let to_remove = to_remove.clone();
                Box::pin(async move {
                    // Before the second page: three accounts go.
                    if method == "GET" && path == "/Users" && query.contains("startIndex=3") {
                        let ids: Vec<String> = to_remove.lock().expect("ids").drain(..).collect();
                        for id in ids {
                            admin.delete(&id).await.expect("delete");
                        }
                    }
                })
            });
            Some(hook)
        },
    )
    .await?;
    let admin = app.admin();
    let mut ids = Vec::new();
    for name in ["u1", "u2", "u3", "u4", "u5"] {
        ids.push(admin.create(user(name)).await?);
    }
    let scim = client(&app.base)?;

    // Nothing removed yet (the hook has no ids): stops by totalResults.
    let listed = scim.list("Users", None, 100).await?;
    let listed_ids: Vec<&str> = listed.iter().filter_map(|u| u["id"].as_str()).collect();
    assert_eq!(listed_ids, ids);
    let asked: Vec<String> = app.requests().iter().map(|s| s.query.clone()).collect();
    assert_eq!(asked.len(), 3, "{asked:?}");

    // u3..u5 removed before the second page: that page starts past the
    // new end, and the app answers the first page again.
    removed
        .lock()
        .expect("ids")
        .extend(ids[2..].iter().cloned());
    let listed = scim.list("Users", None, 100).await?;
    let listed_ids: Vec<&str> = listed.iter().filter_map(|u| u["id"].as_str()).collect();
    assert_eq!(listed_ids, ids[..2], "each account once");
    let past = admin
        .send(reqwest::Method::GET, "/Users?startIndex=3&count=2", None)
        .await?;
    assert_eq!(past["totalResults"], 2);
    assert_eq!(
        past["Resources"][0]["id"], ids[0],
        "the app restarts past the end: {past}"
    );
    Ok(())
}

/// `active` as the strings `"True"`/`"False"`: a linked inactive account
/// is reactivated, and an account re-read by provision-now is seen as it
/// is.
#[tokio::test(flavor = "multi_thread")]
async fn string_booleans_are_read_as_booleans() -> anyhow::Result<()> {
    let app = QuirkApp::start(&[Quirk::StringBooleans]).await?;
    let admin = app.admin();
    let id = admin
        .create(json!({"schemas": [USER_SCHEMA], "userName": "ada@example.com", "active": false}))
        .await?;
    let raw = admin
        .send(reqwest::Method::GET, &format!("/Users/{id}"), None)
        .await?;
    assert_eq!(raw["active"], "False", "the quirk is on: {raw}");
    let file = SqliteFile::new()?;
    let provisioner = provisioner(store(&file.url()).await?, app.config()).await?;

    let ada = worker("E1", "Ada Lovelace", 1, Active, "Engineer");
    let ops = applied(&provisioner, &ada).await?;
    assert_eq!(
        ops[0],
        Operation::Linked {
            scim_id: id.clone()
        }
    );
    assert!(ops.contains(&Operation::Reactivated), "{ops:?}");
    assert_eq!(account(&app.base, &id).await?["active"], true);

    // Someone disables it in the app; provision-now reads "False" and
    // reactivates it.
    admin.replace(&id, "active", json!(false)).await?;
    let (_, results) = provisioner
        .provision_now("E1", None)
        .await
        .map_err(anyhow::Error::msg)?;
    let ops = results[0]
        .result
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(ops, &[Operation::Reactivated]);
    assert_eq!(account(&app.base, &id).await?["active"], true);
    Ok(())
}

/// Joiner, promotion, leave, return, leaver and a second joiner whose
/// account exists, against the app with `quirks`, over PATCH or PUT, with
/// the app's ETags in use: each step leaves the account as asked, and no
/// write is refused for a stale version (the version is followed through
/// 200 answers with the resource, 204 answers with only an `ETag`, and
/// creates without `Location`).
async fn lifecycle_story(db_url: &str, quirks: &[Quirk], patch: bool) -> anyhow::Result<()> {
    let app = QuirkApp::start(quirks).await?;
    let provisioner = provisioner(
        store(db_url).await?,
        AppConfig {
            use_patch: Some(patch),
            ..app.config()
        },
    )
    .await?;
    assert!(provisioner.apps()[0].etag, "the app announces ETags");
    let at = format!("{quirks:?}, patch {patch}");

    let ops = applied(
        &provisioner,
        &worker("E1", "Ada Lovelace", 1, Active, "Engineer"),
    )
    .await?;
    let Some(Operation::Created { scim_id: id }) = ops.first().cloned() else {
        panic!("{at}: {ops:?}")
    };
    let created = app
        .seen
        .lock()
        .expect("recorder")
        .iter()
        .any(|s| s.method == "POST" && s.status == 201);
    assert!(created, "{at}");

    let steps = [
        (
            2,
            Active,
            "Principal Engineer",
            vec![Operation::Updated {
                attributes: vec!["title".into()],
            }],
            true,
        ),
        (
            3,
            Suspended,
            "Principal Engineer",
            vec![Operation::Deactivated],
            false,
        ),
        (
            4,
            Active,
            "Principal Engineer",
            vec![Operation::Reactivated],
            true,
        ),
        (
            5,
            Deprovisioned,
            "Principal Engineer",
            vec![Operation::Deactivated],
            false,
        ),
    ];
    for (version, state, title, expected, active) in steps {
        let ops = applied(
            &provisioner,
            &worker("E1", "Ada Lovelace", version, state, title),
        )
        .await?;
        assert_eq!(ops, expected, "{at}: version {version}");
        let now = account(&app.base, &id).await?;
        assert_eq!(now["active"], active, "{at}: version {version}: {now}");
        assert_eq!(now["title"], title, "{at}");
        assert_eq!(now["userName"], "ada@example.com", "{at}");
    }

    // An account that exists is linked, and only what differs is sent.
    let grace_id = app
        .admin()
        .create(json!({"schemas": [USER_SCHEMA], "userName": "grace@example.com", "title": "Admiral", "active": true}))
        .await?;
    let ops = applied(
        &provisioner,
        &worker("E2", "Grace Hopper", 1, Active, "Admiral"),
    )
    .await?;
    assert_eq!(
        ops[0],
        Operation::Linked {
            scim_id: grace_id.clone()
        },
        "{at}"
    );
    assert!(
        !ops_attributes(&ops).contains(&"title".to_owned()),
        "{at}: {ops:?}"
    );
    let grace = account(&app.base, &grace_id).await?;
    assert_eq!(grace["externalId"], "p-E2", "{at}");
    assert_eq!(grace["active"], true, "{at}");

    let requests = app.requests();
    let writes: Vec<&Seen> = requests
        .iter()
        .filter(|s| s.method == "PATCH" || s.method == "PUT")
        .collect();
    assert!(!writes.is_empty(), "{at}");
    assert!(
        writes.iter().all(|s| s.status == 200 || s.status == 204),
        "{at}: no write is refused: {writes:?}"
    );
    assert!(
        writes.iter().all(|s| s.if_match.is_some()),
        "{at}: every write carries If-Match: {writes:?}"
    );
    assert_eq!(app.state.user_count(), 2, "{at}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_answered_200_with_the_resource() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    lifecycle_story(&file.url(), &[], true).await
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_answered_204_without_a_body() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    lifecycle_story(&file.url(), &[Quirk::Patch204], true).await
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_answered_without_location() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    lifecycle_story(&file.url(), &[Quirk::NoLocation], true).await
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_without_schemas() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    lifecycle_story(&file.url(), &[Quirk::NoSchemas], true).await
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_with_string_booleans_over_put() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    lifecycle_story(&file.url(), &[Quirk::StringBooleans], false).await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tolerated_quirk_at_once_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    let quirks = [
        Quirk::CaseSensitiveFilter,
        Quirk::PagingRestarts,
        Quirk::Patch204,
        Quirk::StringBooleans,
        Quirk::NoLocation,
        Quirk::NoSchemas,
    ];
    lifecycle_story(db.url(), &quirks, true).await
}

/// ETags: an account changed in the app between two changes (a managed
/// attribute edited by hand) makes the next write's `If-Match` fail (412);
/// hrsync reads the account again and applies the change to it, repairing
/// the edit too. Without ETags no `If-Match` is sent.
async fn etag_story(db_url: &str) -> anyhow::Result<()> {
    let app = QuirkApp::start(&[]).await?;
    let db = store(db_url).await?;
    let provisioner = provisioner(db.clone(), app.config()).await?;
    assert!(provisioner.apps()[0].etag);
    let ops = applied(
        &provisioner,
        &worker("E1", "Ada Lovelace", 1, Active, "Engineer"),
    )
    .await?;
    let Some(Operation::Created { scim_id: id }) = ops.first().cloned() else {
        panic!("{ops:?}")
    };
    let created = link(&db, "p-E1", "app").await?.and_then(|l| l.etag);
    let in_app = meta_version(&account(&app.base, &id).await?);
    assert!(created.is_some(), "kept from the create");
    assert_eq!(created, in_app);

    app.admin()
        .replace(&id, "displayName", json!("Hacked"))
        .await?;
    let edited = meta_version(&account(&app.base, &id).await?);
    assert_ne!(edited, created);
    let before = app.requests().len();
    let ops = applied(
        &provisioner,
        &worker("E1", "Ada Lovelace", 2, Active, "Manager"),
    )
    .await?;
    let mut attributes = ops_attributes(&ops);
    attributes.sort();
    assert_eq!(attributes, ["displayName", "title"], "{ops:?}");
    // hrsync's requests to the account, taken before the test reads it.
    let path = format!("/Users/{id}");
    let exchange: Vec<(String, u16, Option<String>)> = app.requests()[before..]
        .iter()
        .filter(|s| s.path == path)
        .map(|s| (s.method.clone(), s.status, s.if_match.clone()))
        .collect();
    let now = account(&app.base, &id).await?;
    assert_eq!(now["title"], "Manager");
    assert_eq!(now["displayName"], "Ada Lovelace", "the edit repaired");
    assert_eq!(
        exchange,
        [
            ("PATCH".to_owned(), 412, created),
            ("GET".to_owned(), 200, None),
            ("PATCH".to_owned(), 200, edited),
        ]
    );
    assert_eq!(
        link(&db, "p-E1", "app").await?.and_then(|l| l.etag),
        meta_version(&now),
        "the version the last write answered"
    );

    // Switched off: no If-Match.
    let off = QuirkApp::start(&[]).await?;
    let provisioner = provisioner_without_etags(&off, db_url).await?;
    for (version, state) in [(1, Active), (2, Suspended)] {
        applied(
            &provisioner,
            &worker("E9", "Alan Turing", version, state, "Engineer"),
        )
        .await?;
    }
    let writes: Vec<Seen> = off
        .requests()
        .into_iter()
        .filter(|s| s.method == "PATCH")
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].if_match, None);
    Ok(())
}

async fn provisioner_without_etags(app: &QuirkApp, db_url: &str) -> anyhow::Result<Provisioner> {
    let provisioner = provisioner(
        store(db_url).await?,
        AppConfig {
            use_etag: Some(false),
            ..app.config()
        },
    )
    .await?;
    assert!(!provisioner.apps()[0].etag);
    Ok(provisioner)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_changed_in_the_app_is_read_again_on_412_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    etag_story(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_changed_in_the_app_is_read_again_on_412_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    etag_story(&file.url()).await
}

/// An account that someone changes before every write hrsync makes: the
/// 412s are re-read a bounded number of times, then the change fails
/// (not retried as if the app were down).
#[tokio::test(flavor = "multi_thread")]
async fn an_account_changed_before_every_write_gives_up_after_three_rereads() -> anyhow::Result<()>
{
    let target: Arc<Mutex<Option<String>>> = Arc::default();
    let hooked = target.clone();
    let app = QuirkApp::with(Options::default(), move |base| {
        let admin = Admin {
            http: reqwest::Client::new(),
            base,
        };
        let edits = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let hook: Hook = Arc::new(move |method, path, _| {
            let admin = admin.clone();
            let hooked = hooked.clone();
            let edits = edits.clone();
            Box::pin(async move {
                let id = hooked.lock().expect("id").clone();
                if let Some(id) =
                    id.filter(|id| method == "PATCH" && path == format!("/Users/{id}"))
                {
                    let n = edits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    admin
                        .replace(&id, "nickName", json!(format!("edit {n}")))
                        .await
                        .expect("edit");
                }
            })
        });
        Some(hook)
    })
    .await?;
    let file = SqliteFile::new()?;
    let provisioner = provisioner(store(&file.url()).await?, app.config()).await?;
    let ops = applied(
        &provisioner,
        &worker("E1", "Ada Lovelace", 1, Active, "Engineer"),
    )
    .await?;
    let Some(Operation::Created { scim_id: id }) = ops.first().cloned() else {
        panic!("{ops:?}")
    };
    *target.lock().expect("id") = Some(id.clone());

    let (result, attempts) = apply(
        &provisioner,
        &worker("E1", "Ada Lovelace", 2, Active, "Manager"),
    )
    .await;
    let error = result.expect_err("always changed meanwhile");
    assert!(error.contains("HTTP 412"), "{error}");
    assert_eq!(attempts, 1, "a 412 is not retried as a failure: {error}");
    let patches: Vec<u16> = app
        .requests()
        .iter()
        .filter(|s| s.method == "PATCH")
        .map(|s| s.status)
        .collect();
    assert_eq!(
        patches,
        [412, 412, 412, 412],
        "one try and three after re-reading"
    );
    Ok(())
}

/// The same against the third-party `scim2-server`, which announces ETags
/// and checks `If-Match`: an attribute edited in the app between two
/// changes is repaired with the next change, as only a re-read after its
/// 412 can tell hrsync about it.
#[tokio::test(flavor = "multi_thread")]
async fn a_third_party_server_refusing_a_stale_version_is_read_again() -> anyhow::Result<()> {
    let server = hrsync_tests::ScimServer::start()?;
    let file = SqliteFile::new()?;
    let provisioner = provisioner(
        store(&file.url()).await?,
        AppConfig {
            push_groups: false,
            ..AppConfig::new("app", &server.base_url(), Secret::inline(server.token()))
        },
    )
    .await?;
    assert!(provisioner.apps()[0].etag, "scim2-server announces ETags");
    let scim = ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;
    let ops = applied(
        &provisioner,
        &worker("E1", "Ada Lovelace", 1, Active, "Engineer"),
    )
    .await?;
    let Some(Operation::Created { scim_id: id }) = ops.first().cloned() else {
        panic!("{ops:?}")
    };
    scim.patch(
        "Users",
        &id,
        &[hrsync_provisioner::scim::PatchOp::replace(
            "displayName",
            json!("Hacked"),
        )],
    )
    .await?;
    let ops = applied(
        &provisioner,
        &worker("E1", "Ada Lovelace", 2, Active, "Manager"),
    )
    .await?;
    let mut attributes = ops_attributes(&ops);
    attributes.sort();
    assert_eq!(attributes, ["displayName", "title"], "{ops:?}");
    let now = scim.get("Users", &id).await?.unwrap_or_default();
    assert_eq!(now["displayName"], "Ada Lovelace");
    assert_eq!(now["title"], "Manager");

    // A deactivation after another edit in the app goes through too.
    scim.patch(
        "Users",
        &id,
        &[hrsync_provisioner::scim::PatchOp::replace(
            "nickName",
            json!("ada"),
        )],
    )
    .await?;
    let ops = applied(
        &provisioner,
        &worker("E1", "Ada Lovelace", 3, Deprovisioned, "Manager"),
    )
    .await?;
    assert!(ops.contains(&Operation::Deactivated), "{ops:?}");
    assert_eq!(
        scim.get("Users", &id).await?.unwrap_or_default()["active"],
        false
    );
    Ok(())
}
