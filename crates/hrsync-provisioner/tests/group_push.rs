//! Group push through one writer per (app, group): persons provisioned
//! concurrently into apps that allow duplicate group names and apply PATCH
//! as read, change, write (the local SCIM app's quirk modes, and the
//! third-party `scim2-server`, which allows duplicate names) end with one
//! group per name holding every member; requests survive a restart; a
//! member the app refuses does not hold back the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hrsync_config::Secret;
use hrsync_domain::LifecycleState::{Active, Deprovisioned};
use hrsync_provisioner::config::{AppConfig, ProvisionerConfig};
use hrsync_provisioner::groups::{self, Membership};
use hrsync_provisioner::reconcile::{App, Operation};
use hrsync_provisioner::run::Provisioner;
use hrsync_provisioner::scim::ScimClient;
use hrsync_scim_app::{AppState, Options, Quirk};
use hrsync_store::Db;
use hrsync_tests::{directory_change, PgDatabase, ScimServer, SqliteFile};
use serde_json::Value;

/// A local SCIM app with `quirks`, counting the group PATCH requests it
/// serves.
struct LocalApp {
    base_url: String,
    group_patches: Arc<AtomicU64>,
}

const TOKEN: &str = "group-push-token";

async fn local_app(quirks: &[Quirk]) -> anyhow::Result<LocalApp> {
    let state = AppState::with_options(
        TOKEN,
        Options {
            quirks: quirks.iter().copied().collect(),
            patch_delay: Duration::from_millis(20),
            ..Options::default()
        },
    );
    let group_patches = Arc::new(AtomicU64::new(0));
    let counting = {
        let count = group_patches.clone();
        axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                if request.method() == "PATCH" && request.uri().path().contains("/Groups/") {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                next.run(request)
            },
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let router = hrsync_scim_app::router(state).layer(counting);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(LocalApp {
        base_url,
        group_patches,
    })
}

/// The provisioner's config of one app, "zendesk", whose group writer
/// waits `linger` for fuller batches.
fn config(base_url: &str, token: &str, linger: Duration) -> ProvisionerConfig {
    ProvisionerConfig {
        apps: vec![AppConfig {
            group_linger_ms: u64::try_from(linger.as_millis()).unwrap_or(u64::MAX),
            // A local app: no request rate limit.
            rate_limit: 0.0,
            ..AppConfig::new("zendesk", base_url, Secret::inline(token))
        }],
        ..ProvisionerConfig::default()
    }
}

async fn store(url: &str) -> anyhow::Result<Db> {
    let db = Db::connect(url, 8).await?;
    db.migrate().await?;
    Ok(db)
}

fn client(base_url: &str, token: &str) -> anyhow::Result<ScimClient> {
    ScimClient::new(base_url, token, Duration::from_secs(10)).map_err(anyhow::Error::msg)
}

/// Every group of the app: display name and member ids.
async fn groups_of(client: &ScimClient) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut found = Vec::new();
    for name in ["Everyone", "Department 0", "Department 1", "Department 2"] {
        for group in client.find("Groups", "displayName", name).await? {
            let id = group["id"].as_str().unwrap_or_default();
            let full = client.get("Groups", id).await?.unwrap_or(Value::Null);
            let members = full["members"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|v| v["value"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            found.push((name.to_owned(), members));
        }
    }
    Ok(found)
}

/// Waits until no membership of `app` is pending.
async fn settled(db: &Db, app: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while groups::pending(db, app).await? > 0 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "memberships still pending after 60 s: {}",
            groups::pending(db, app).await?
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// `people` hired at once into app "zendesk" (16 at a time, as the
/// provisioner's consumers apply them), everyone in `Everyone` and in one of
/// three department groups. Returns the provisioner.
async fn hire_concurrently(
    db: &Db,
    base_url: &str,
    token: &str,
    people: usize,
    linger: Duration,
) -> anyhow::Result<Provisioner> {
    let provisioner = Provisioner::new(db.clone(), &config(base_url, token, linger), None).await?;
    let changes: Vec<_> = (0..people)
        .map(|i| {
            let department = format!("Department {}", i % 3);
            directory_change(
                &format!("E{i}"),
                &format!("Given{i} Family{i}"),
                1,
                Active,
                &["zendesk"],
                &["Everyone", &department],
            )
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(&changes)
        .map(|change| provisioner.apply(change, None))
        .buffer_unordered(16)
        .collect()
        .await;
    for result in results.iter().flatten() {
        let ops = result.result.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            matches!(ops.first(), Some(Operation::Created { .. })),
            "{ops:?}"
        );
    }
    Ok(provisioner)
}

/// Each group once, each holding exactly its members.
fn check_groups(found: &[(String, Vec<String>)], people: usize) -> anyhow::Result<()> {
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["Everyone", "Department 0", "Department 1", "Department 2"],
        "one group per name"
    );
    for (name, members) in found {
        let want = if name == "Everyone" {
            people
        } else {
            let d: usize = name.trim_start_matches("Department ").parse()?;
            (0..people).filter(|i| i % 3 == d).count()
        };
        let distinct: std::collections::HashSet<&String> = members.iter().collect();
        assert_eq!(
            distinct.len(),
            members.len(),
            "{name}: a member listed twice"
        );
        assert_eq!(members.len(), want, "{name}: members");
    }
    Ok(())
}

async fn read_change_write_app_keeps_every_member(db_url: &str) -> anyhow::Result<()> {
    let people = 300;
    // Duplicate group names are allowed (the default); PATCH reads the
    // group, waits 20 ms and writes it back.
    let app = local_app(&[Quirk::ReadChangeWritePatch]).await?;
    let db = store(db_url).await?;
    let _provisioner =
        hire_concurrently(&db, &app.base_url, TOKEN, people, Duration::from_secs(2)).await?;
    settled(&db, "zendesk").await?;
    check_groups(&groups_of(&client(&app.base_url, TOKEN)?).await?, people)?;
    // 600 members added in batches: far fewer requests than members.
    let patches = app.group_patches.load(Ordering::Relaxed);
    assert!(
        patches * 20 <= 2 * people as u64,
        "{patches} group PATCH requests for {} members added",
        2 * people
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_change_write_app_keeps_every_member_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    read_change_write_app_keeps_every_member(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_change_write_app_keeps_every_member_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    read_change_write_app_keeps_every_member(&file.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_third_party_app_with_duplicate_names_gets_each_group_once() -> anyhow::Result<()> {
    let server = ScimServer::start()?;
    let db = PgDatabase::fresh().await?;
    let db = store(db.url()).await?;
    let people = 120;
    let _provisioner = hire_concurrently(
        &db,
        &server.base_url(),
        server.token(),
        people,
        Duration::from_millis(200),
    )
    .await?;
    settled(&db, "zendesk").await?;
    check_groups(
        &groups_of(&client(&server.base_url(), server.token())?).await?,
        people,
    )
}

/// Memberships requested by a process that died before applying them are
/// applied by the next one from its start; leaves too.
#[tokio::test(flavor = "multi_thread")]
async fn requests_left_by_a_crash_are_applied_at_the_next_start() -> anyhow::Result<()> {
    let app = local_app(&[]).await?;
    let db = PgDatabase::fresh().await?;
    let db = store(db.url()).await?;
    let scim = client(&app.base_url, TOKEN)?;
    let mut ids = Vec::new();
    for i in 0..5 {
        let user = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("u{i}@example.com"),
        });
        ids.push(
            scim.create("Users", &user).await?["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let join = |id: &String, member| Membership {
        group: "Everyone".into(),
        person_id: format!("p-{id}"),
        member_id: id.clone(),
        member,
    };
    // Requested, never applied (no writer ran).
    let joins: Vec<_> = ids.iter().map(|id| join(id, true)).collect();
    groups::request(&db, "zendesk", &joins).await?;
    assert_eq!(groups::pending(&db, "zendesk").await?, 5);
    assert!(scim
        .find("Groups", "displayName", "Everyone")
        .await?
        .is_empty());

    let provisioner = Provisioner::new(
        db.clone(),
        &config(&app.base_url, TOKEN, Duration::ZERO),
        None,
    )
    .await?;
    provisioner.start_group_writers();
    settled(&db, "zendesk").await?;
    let found = groups_of(&scim).await?;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1.len(), 5);

    // The newest request wins: a leave after a join, both unapplied.
    drop(provisioner);
    groups::request(&db, "zendesk", &[join(&ids[0], true)]).await?;
    groups::request(&db, "zendesk", &[join(&ids[0], false)]).await?;
    let provisioner = Provisioner::new(
        db.clone(),
        &config(&app.base_url, TOKEN, Duration::ZERO),
        None,
    )
    .await?;
    provisioner.start_group_writers();
    settled(&db, "zendesk").await?;
    let found = groups_of(&scim).await?;
    assert_eq!(found[0].1.len(), 4);
    assert!(!found[0].1.contains(&ids[0]));
    Ok(())
}

/// A member the app refuses (an id it does not know) is kept as refused
/// with the app's error; the others of its batch are applied.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_member_does_not_hold_back_the_others() -> anyhow::Result<()> {
    let app = local_app(&[]).await?;
    let file = SqliteFile::new()?;
    let db = store(&file.url()).await?;
    let scim = client(&app.base_url, TOKEN)?;
    let mut memberships = Vec::new();
    for i in 0..3 {
        let user = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("u{i}@example.com"),
        });
        let id = scim.create("Users", &user).await?["id"]
            .as_str()
            .unwrap()
            .to_owned();
        memberships.push(Membership {
            group: "Everyone".into(),
            person_id: format!("p-{i}"),
            member_id: id,
            member: true,
        });
    }
    memberships.insert(
        1,
        Membership {
            group: "Everyone".into(),
            person_id: "p-gone".into(),
            member_id: "no-such-user".into(),
            member: true,
        },
    );
    groups::request(&db, "zendesk", &memberships).await?;
    let zendesk = App::new("zendesk", scim.clone());
    assert!(zendesk.flush_groups(&db).await?);
    let found = groups_of(&scim).await?;
    assert_eq!(found[0].1.len(), 3, "{found:?}");
    let refused = groups::refused(&db, "zendesk").await?;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].1, "no-such-user");
    assert!(refused[0].2.contains("400"), "{}", refused[0].2);
    assert_eq!(groups::pending(&db, "zendesk").await?, 0);
    Ok(())
}

/// A deprovisioning deactivates at once and requests the leaves; the
/// writer applies them.
#[tokio::test(flavor = "multi_thread")]
async fn a_leaver_is_deactivated_and_leaves_every_group() -> anyhow::Result<()> {
    let app = local_app(&[]).await?;
    let file = SqliteFile::new()?;
    let db = store(&file.url()).await?;
    let provisioner = hire_concurrently(&db, &app.base_url, TOKEN, 6, Duration::ZERO).await?;
    settled(&db, "zendesk").await?;
    let leaver = directory_change("E0", "Given0 Family0", 2, Deprovisioned, &[], &[]);
    let results = provisioner.apply(&leaver, None).await;
    let ops = results[0]
        .result
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(ops[0], Operation::Deactivated);
    assert!(
        matches!(&ops[1], Operation::Groups { added, removed } if added.is_empty() && removed.len() == 2)
    );
    settled(&db, "zendesk").await?;
    let scim = client(&app.base_url, TOKEN)?;
    let found = groups_of(&scim).await?;
    let everyone = &found.iter().find(|(n, _)| n == "Everyone").unwrap().1;
    assert_eq!(everyone.len(), 5);
    let department = &found.iter().find(|(n, _)| n == "Department 0").unwrap().1;
    assert_eq!(department.len(), 1);
    Ok(())
}
