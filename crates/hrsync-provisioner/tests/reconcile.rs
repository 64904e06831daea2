//! Reconciling accounts against the real third-party `scim2-server` (PyPI),
//! with the link store on PostgreSQL and SQLite.

use std::time::Duration;

use hrsync_domain::{
    AppAssignment, DirectoryChange, EmployeeId, EmploymentType, LifecycleState, PersonId, Profile,
    TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_provisioner::reconcile::{reconcile, App, Operation};
use hrsync_provisioner::scim::{ScimClient, ENTERPRISE_SCHEMA, USER_SCHEMA};
use hrsync_store::Db;
use hrsync_tests::{PgDatabase, ScimServer, SqliteFile};
use serde_json::json;

fn change(version: u64, state: LifecycleState, title: &str, apps: &[&str]) -> DirectoryChange {
    let mut attributes = WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee);
    attributes.work_email = Some("ada@example.com".into());
    attributes.title = Some(title.into());
    attributes.department = Some("Customer Support".into());
    DirectoryChange {
        person_id: PersonId::new("p-ada").unwrap(),
        employee_id: EmployeeId::new("E1").unwrap(),
        version,
        lifecycle_state: state,
        profile: Profile {
            attributes,
            time_zone: TimeZone::new("Europe/London").unwrap(),
            start_at: None,
            terminate_at: None,
        },
        groups: vec![],
        apps: apps
            .iter()
            .map(|a| AppAssignment {
                app: (*a).to_owned(),
                groups: vec![],
            })
            .collect(),
        caused_by: vec![],
        priority: false,
        changed_at: Timestamp::from_millis(1_790_000_000_000).unwrap(),
    }
}

/// `change` with `groups` granting its apps.
fn grouped(mut change: DirectoryChange, groups: &[&str]) -> DirectoryChange {
    for app in &mut change.apps {
        app.groups = groups.iter().map(|g| (*g).to_owned()).collect();
    }
    change
}

/// The user ids in group `name`, once `app`'s group writer has applied what
/// was requested.
async fn members(db: &Db, app: &App, name: &str) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(
        app.flush_groups(db).await?,
        "group writer claimed elsewhere"
    );
    let client = &app.client;
    let groups = client.find("Groups", "displayName", name).await?;
    anyhow::ensure!(groups.len() == 1, "group {name}: {groups:?}");
    let id = groups[0]["id"].as_str().unwrap_or_default();
    let group = client.get("Groups", id).await?.unwrap_or_default();
    Ok(group["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|v| v["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

async fn story(db_url: &str) -> anyhow::Result<()> {
    let server = ScimServer::start()?;
    let db = hrsync_store::Db::connect(db_url, 2).await?;
    db.migrate().await?;
    let client = ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;
    let app = App {
        patch: client.capabilities().await?.patch,
        ..App::new("zendesk", client.clone())
    };
    use LifecycleState::*;
    let support = ["Customer Support"];
    let managers = ["Customer Support", "People Managers"];

    // Create, with the group that grants the app.
    let ops = reconcile(
        &db,
        &app,
        &grouped(change(1, Active, "Agent", &["zendesk"]), &support),
    )
    .await?;
    let Operation::Created { scim_id } = &ops[0] else {
        panic!("{ops:?}")
    };
    let id = scim_id.clone();
    assert_eq!(
        ops[1],
        Operation::Groups {
            added: vec!["Customer Support".into()],
            removed: vec![]
        }
    );
    assert_eq!(
        members(&db, &app, "Customer Support").await?,
        vec![id.clone()]
    );
    let user = client.get("Users", &id).await?.unwrap();
    assert_eq!(user["userName"], "ada@example.com");
    assert_eq!(user["externalId"], "p-ada");
    assert_eq!(user["active"], true);
    assert_eq!(user[ENTERPRISE_SCHEMA]["department"], "Customer Support");

    // The same state again (a new version): nothing sent.
    let modified = user["meta"]["lastModified"].clone();
    let ops = reconcile(
        &db,
        &app,
        &grouped(change(2, Active, "Agent", &["zendesk"]), &support),
    )
    .await?;
    assert_eq!(ops, [Operation::Unchanged]);
    assert_eq!(
        client.get("Users", &id).await?.unwrap()["meta"]["lastModified"],
        modified
    );

    // Promotion: only the title is sent; the new group is joined.
    let ops = reconcile(
        &db,
        &app,
        &grouped(
            change(3, Active, "Support Manager", &["zendesk"]),
            &managers,
        ),
    )
    .await?;
    assert_eq!(
        ops,
        [
            Operation::Updated {
                attributes: vec!["title".into()]
            },
            Operation::Groups {
                added: vec!["People Managers".into()],
                removed: vec![]
            },
        ]
    );
    assert_eq!(
        client.get("Users", &id).await?.unwrap()["title"],
        "Support Manager"
    );
    assert_eq!(
        members(&db, &app, "People Managers").await?,
        vec![id.clone()]
    );

    // A stale change is dropped.
    let ops = reconcile(
        &db,
        &app,
        &grouped(change(2, Active, "Agent", &["zendesk"]), &support),
    )
    .await?;
    assert_eq!(ops, [Operation::Stale]);
    assert_eq!(
        client.get("Users", &id).await?.unwrap()["title"],
        "Support Manager"
    );

    // Leave: deactivated, kept, still in its groups.
    let ops = reconcile(
        &db,
        &app,
        &grouped(
            change(4, Suspended, "Support Manager", &["zendesk"]),
            &managers,
        ),
    )
    .await?;
    assert_eq!(ops, [Operation::Deactivated]);
    assert_eq!(client.get("Users", &id).await?.unwrap()["active"], false);
    // Return: reactivated.
    let ops = reconcile(
        &db,
        &app,
        &grouped(
            change(5, Active, "Support Manager", &["zendesk"]),
            &managers,
        ),
    )
    .await?;
    assert_eq!(ops, [Operation::Reactivated]);
    assert_eq!(client.get("Users", &id).await?.unwrap()["active"], true);
    // App removed: deactivated and out of the groups.
    let ops = reconcile(&db, &app, &change(6, Active, "Support Manager", &[])).await?;
    assert_eq!(
        ops,
        [
            Operation::Deactivated,
            Operation::Groups {
                added: vec![],
                removed: vec!["Customer Support".into(), "People Managers".into()]
            },
        ]
    );
    assert!(members(&db, &app, "Customer Support").await?.is_empty());
    assert!(members(&db, &app, "People Managers").await?.is_empty());
    // Deprovisioned at 7; an older change cannot reactivate.
    let ops = reconcile(&db, &app, &change(7, Deprovisioned, "Support Manager", &[])).await?;
    assert_eq!(ops, [Operation::Unchanged]);
    let ops = reconcile(
        &db,
        &app,
        &change(6, Active, "Support Manager", &["zendesk"]),
    )
    .await?;
    assert_eq!(ops, [Operation::Stale]);
    assert_eq!(client.get("Users", &id).await?.unwrap()["active"], false);
    // Rehire (a newer version): reactivated, same account, groups back.
    let ops = reconcile(
        &db,
        &app,
        &grouped(change(8, Active, "Support Manager", &["zendesk"]), &support),
    )
    .await?;
    assert_eq!(ops[0], Operation::Reactivated);
    assert_eq!(
        client
            .find("Users", "userName", "ada@example.com")
            .await?
            .len(),
        1
    );
    assert_eq!(
        members(&db, &app, "Customer Support").await?,
        vec![id.clone()]
    );

    // Link: an account that already exists in another app is adopted, not
    // duplicated.
    let other = App {
        name: "jira".into(),
        ..app.clone()
    };
    let existing = client
        .create(
            "Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "grace@example.com", "active": true,
                    "name": {"givenName": "Grace", "familyName": "Hopper"}}),
        )
        .await?;
    let mut grace = change(1, Active, "Engineer", &["jira"]);
    grace.person_id = PersonId::new("p-grace").unwrap();
    grace.employee_id = EmployeeId::new("E2").unwrap();
    grace.profile.attributes.work_email = Some("grace@example.com".into());
    grace.profile.attributes.given_name = "Grace".into();
    grace.profile.attributes.family_name = "Hopper".into();
    let ops = reconcile(&db, &other, &grace).await?;
    assert_eq!(
        ops[0],
        Operation::Linked {
            scim_id: existing["id"].as_str().unwrap().to_owned()
        }
    );
    assert!(matches!(&ops[1], Operation::Updated { .. }), "{ops:?}");
    let linked = client
        .get("Users", existing["id"].as_str().unwrap())
        .await?
        .unwrap();
    assert_eq!(linked["externalId"], "p-grace");
    assert_eq!(linked["title"], "Engineer");
    assert_eq!(
        client
            .find("Users", "userName", "grace@example.com")
            .await?
            .len(),
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn account_story_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    story(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn account_story_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    story(&file.url()).await
}

/// A deprovisioning that overtakes the creates queued before it: the older
/// changes arriving later create nothing.
#[tokio::test(flavor = "multi_thread")]
async fn nothing_older_than_a_deprovisioning_creates_an_account() -> anyhow::Result<()> {
    let server = ScimServer::start()?;
    let file = SqliteFile::new()?;
    let db = hrsync_store::Db::connect(&file.url(), 2).await?;
    db.migrate().await?;
    let client = ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;
    let app = App {
        push_groups: false,
        ..App::new("zendesk", client.clone())
    };
    use LifecycleState::*;
    assert_eq!(
        reconcile(&db, &app, &change(3, Deprovisioned, "Agent", &[])).await?,
        [Operation::Unchanged]
    );
    assert_eq!(
        reconcile(&db, &app, &change(1, Active, "Agent", &["zendesk"])).await?,
        [Operation::Stale]
    );
    assert_eq!(
        reconcile(&db, &app, &change(2, Active, "Lead", &["zendesk"])).await?,
        [Operation::Stale]
    );
    assert!(client
        .find("Users", "userName", "ada@example.com")
        .await?
        .is_empty());
    // A rehire (newer) creates the account.
    let ops = reconcile(&db, &app, &change(4, Active, "Agent", &["zendesk"])).await?;
    assert!(matches!(ops[0], Operation::Created { .. }), "{ops:?}");
    Ok(())
}

/// A hire's create reached the app, then a crash lost its link (the link
/// store here is a second one, which never saw it), and the termination
/// took the fast lane ahead of the create's replay: the account is found,
/// linked and deactivated, not left active for a leaver.
#[tokio::test(flavor = "multi_thread")]
async fn a_leaver_whose_link_was_lost_is_deactivated_all_the_same() -> anyhow::Result<()> {
    let server = ScimServer::start()?;
    let (before, after) = (SqliteFile::new()?, SqliteFile::new()?);
    let client = ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;
    let app = App {
        push_groups: false,
        ..App::new("zendesk", client.clone())
    };
    use LifecycleState::*;
    let crashed = hrsync_store::Db::connect(&before.url(), 2).await?;
    crashed.migrate().await?;
    let ops = reconcile(&crashed, &app, &change(1, Active, "Agent", &["zendesk"])).await?;
    assert!(matches!(ops[0], Operation::Created { .. }), "{ops:?}");

    let restarted = hrsync_store::Db::connect(&after.url(), 2).await?;
    restarted.migrate().await?;
    let ops = reconcile(&restarted, &app, &change(2, Deprovisioned, "Agent", &[])).await?;
    assert!(matches!(ops[0], Operation::Linked { .. }), "{ops:?}");
    assert!(ops.contains(&Operation::Deactivated), "{ops:?}");
    let accounts = client.find("Users", "userName", "ada@example.com").await?;
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(accounts[0]["active"], json!(false), "{accounts:?}");
    // The create, replayed now, is stale: the account stays inactive.
    assert_eq!(
        reconcile(&restarted, &app, &change(1, Active, "Agent", &["zendesk"])).await?,
        [Operation::Stale]
    );
    Ok(())
}

/// More deactivations than the guard allows: the rest are held durably, the
/// accounts stay active, and `release` lets them through.
#[tokio::test(flavor = "multi_thread")]
async fn the_deprovision_guard_holds_and_releases() -> anyhow::Result<()> {
    use hrsync_provisioner::config::{AppConfig, ProvisionerConfig};
    use hrsync_provisioner::run::Provisioner;
    use LifecycleState::*;

    let server = ScimServer::start()?;
    let file = SqliteFile::new()?;
    let db = hrsync_store::Db::connect(&file.url(), 2).await?;
    db.migrate().await?;
    let config = ProvisionerConfig {
        apps: vec![AppConfig {
            push_groups: false,
            guard_max_deactivations: Some(2),
            ..AppConfig::new(
                "zendesk",
                &server.base_url(),
                hrsync_config::Secret::inline(server.token()),
            )
        }],
        ..ProvisionerConfig::default()
    };
    let provisioner = Provisioner::new(db.clone(), &config, None).await?;
    let person = |i: usize, version: u64, state: LifecycleState, apps: &[&str]| {
        let mut c = change(version, state, "Agent", apps);
        c.person_id = PersonId::new(format!("p-{i}")).unwrap();
        c.employee_id = EmployeeId::new(format!("E{i}")).unwrap();
        c.profile.attributes.work_email = Some(format!("u{i}@example.com"));
        c
    };
    for i in 0..5 {
        let results = provisioner
            .apply(&person(i, 1, Active, &["zendesk"]), None)
            .await;
        assert!(matches!(
            results[0].result.as_ref().map(|o| &o[0]),
            Ok(Operation::Created { .. })
        ));
    }
    let mut outcomes = Vec::new();
    for i in 0..4 {
        let results = provisioner
            .apply(&person(i, 2, Deprovisioned, &[]), None)
            .await;
        outcomes.push(
            results[0]
                .result
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .clone(),
        );
    }
    assert_eq!(
        outcomes,
        [
            vec![Operation::Deactivated],
            vec![Operation::Deactivated],
            vec![Operation::Held],
            vec![Operation::Held],
        ]
    );
    let client = ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;
    let active = |i: usize| {
        let client = client.clone();
        async move {
            let user = client
                .find_user("userName", &format!("u{i}@example.com"))
                .await?
                .unwrap();
            anyhow::Ok(user["active"].as_bool().unwrap())
        }
    };
    assert!(active(2).await? && active(3).await?, "held: still active");
    assert_eq!(
        hrsync_provisioner::reconcile::held(
            &db,
            "zendesk",
            hrsync_provisioner::reconcile::HoldReason::Guard
        )
        .await?
        .len(),
        2
    );

    // The same change arriving again (its other lane's copy) while an admin
    // releases the guard (untripped, its changes not yet applied) stays
    // held, counted once: it does not trip the guard again.
    hrsync_provisioner::reconcile::untrip(&db, "zendesk").await?;
    let again = provisioner
        .apply(&person(2, 2, Deprovisioned, &[]), None)
        .await;
    assert_eq!(
        again[0]
            .result
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        &vec![Operation::Held]
    );
    assert!(!hrsync_provisioner::guard::guard_tripped(&db, "zendesk").await?);

    // Released: the held deactivations go through, nothing is left held.
    let released = provisioner
        .release("zendesk")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(released.len(), 2);
    assert!(!active(2).await? && !active(3).await?);
    assert!(active(4).await?, "untouched");
    assert!(hrsync_provisioner::reconcile::held(
        &db,
        "zendesk",
        hrsync_provisioner::reconcile::HoldReason::Guard
    )
    .await?
    .is_empty());
    // Every operation is in the audit table too.
    let count = |operation: &'static str, outcome: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM provisioner_audit WHERE app = 'zendesk' AND operation = $1 AND outcome = $2",
            )
            .bind(operation)
            .bind(outcome)
            .fetch_one(db.pool())
            .await
        }
    };
    assert_eq!(count("CREATE", "SUCCESS").await?, 5);
    // Two holds, and the copy that found its change held already.
    assert_eq!(count("GUARD_HOLD", "HELD").await?, 3);
    assert_eq!(count("DEACTIVATE", "SUCCESS").await?, 4);
    Ok(())
}
