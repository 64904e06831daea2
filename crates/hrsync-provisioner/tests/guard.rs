//! The deprovision guard against the real third-party `scim2-server` (PyPI),
//! with the link store on PostgreSQL and SQLite: a small app's first
//! leaver is not held by the share limit, and a flood of terminations trips
//! the guard, lets the immediate allowance through, holds the rest durably,
//! and `release` applies them; the allowance renews with the window.

use std::time::Duration;

use hrsync_domain::DirectoryChange;
use hrsync_domain::LifecycleState::{self, Active, Deprovisioned, Suspended};
use hrsync_provisioner::config::{AppConfig, ProvisionerConfig};
use hrsync_provisioner::reconcile::{guard_tripped, held, HoldReason, Operation};
use hrsync_provisioner::run::Provisioner;
use hrsync_provisioner::scim::ScimClient;
use hrsync_store::Db;
use hrsync_tests::{directory_change, PgDatabase, ScimServer, SqliteFile};

/// Worker `i`'s change (`w{i}@example.com` in the app).
fn worker(i: usize, version: u64, state: LifecycleState) -> DirectoryChange {
    let apps: &[&str] = if state == Deprovisioned {
        &[]
    } else {
        &["zendesk"]
    };
    directory_change(
        &format!("E{i}"),
        &format!("W{i} Tester"),
        version,
        state,
        apps,
        &[],
    )
}

async fn provisioner(db_url: &str, guarded: AppConfig) -> anyhow::Result<(Db, Provisioner)> {
    let db = Db::connect(db_url, 4).await?;
    db.migrate().await?;
    let config = ProvisionerConfig {
        apps: vec![AppConfig {
            push_groups: false,
            ..guarded
        }],
        ..ProvisionerConfig::default()
    };
    config.validate().map_err(anyhow::Error::msg)?;
    let provisioner = Provisioner::new(db.clone(), &config, None).await?;
    Ok((db, provisioner))
}

fn app(server: &ScimServer) -> AppConfig {
    AppConfig::new(
        "zendesk",
        &server.base_url(),
        hrsync_config::Secret::inline(server.token()),
    )
}

/// What `change` did in the one app.
async fn apply(provisioner: &Provisioner, change: &DirectoryChange) -> anyhow::Result<Operation> {
    let results = provisioner.apply(change, None).await;
    let ops = results[0]
        .result
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(ops.len() == 1, "one operation expected: {ops:?}");
    Ok(ops[0].clone())
}

/// Whether worker `i`'s account is active in the app.
async fn active(client: &ScimClient, i: usize) -> anyhow::Result<bool> {
    let user = client
        .find_user("userName", &format!("w{i}@example.com"))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no account for w{i}"))?;
    user["active"]
        .as_bool()
        .ok_or_else(|| anyhow::anyhow!("w{i}: no active flag"))
}

async fn audited(db: &Db, operation: &str, outcome: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM provisioner_audit WHERE app = 'zendesk' AND operation = $1 \
         AND outcome = $2",
    )
    .bind(operation)
    .bind(outcome)
    .fetch_one(db.pool())
    .await?)
}

/// An app of 10 accounts with `guard_max_share = 0.05`: its first leaver
/// (1/10 of the app) is deactivated, and so is a second person going on
/// leave; the guard does not trip (the share is taken of at least
/// `guard_min_accounts`, 50 by default).
async fn small_app_story(db_url: &str) -> anyhow::Result<()> {
    let server = ScimServer::start()?;
    let (db, provisioner) = provisioner(
        db_url,
        AppConfig {
            guard_max_share: Some(0.05),
            ..app(&server)
        },
    )
    .await?;
    let client = ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;
    for i in 0..10 {
        let op = apply(&provisioner, &worker(i, 1, Active)).await?;
        anyhow::ensure!(matches!(op, Operation::Created { .. }), "{op:?}");
    }
    // The leaver, as the projector sends a termination (fast lane).
    let leaver = worker(0, 2, Deprovisioned);
    assert!(leaver.priority);
    assert_eq!(apply(&provisioner, &leaver).await?, Operation::Deactivated);
    // A leave of absence: an ordinary deactivation, which no immediate
    // allowance could let through.
    assert_eq!(
        apply(&provisioner, &worker(1, 2, Suspended)).await?,
        Operation::Deactivated
    );
    assert!(!active(&client, 0).await? && !active(&client, 1).await?);
    assert!(active(&client, 2).await?);
    assert!(!guard_tripped(&db, "zendesk").await?, "the guard tripped");
    assert!(held(&db, "zendesk", HoldReason::Guard).await?.is_empty());
    assert_eq!(audited(&db, "GUARD_HOLD", "HELD").await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_apps_first_leaver_is_deactivated_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    small_app_story(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_apps_first_leaver_is_deactivated_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    small_app_story(&file.url()).await
}

/// 20 accounts, at most 4 deactivations an hour, 3 immediate terminations
/// allowed past that. 10 terminations pushed at once (all immediate), then
/// 2 leaves: 4 pass within the limit, the 5th trips the guard and passes
/// with the next 2 under the allowance, the other 3 terminations and both
/// leaves are held, and `release` applies every held one.
async fn flood_story(db_url: &str) -> anyhow::Result<()> {
    let server = ScimServer::start()?;
    let (db, provisioner) = provisioner(
        db_url,
        AppConfig {
            guard_max_deactivations: Some(4),
            guard_immediate_allowance: 3,
            ..app(&server)
        },
    )
    .await?;
    let client = ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;
    for i in 0..20 {
        let op = apply(&provisioner, &worker(i, 1, Active)).await?;
        anyhow::ensure!(matches!(op, Operation::Created { .. }), "{op:?}");
    }

    // The flood, all at once: the guard decides while earlier
    // deactivations are still in flight.
    let flood: Vec<DirectoryChange> = (0..10).map(|i| worker(i, 2, Deprovisioned)).collect();
    let outcomes = futures::future::join_all(flood.iter().map(|c| apply(&provisioner, c))).await;
    let mut passed = Vec::new();
    let mut held_now = Vec::new();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome? {
            Operation::Deactivated => passed.push(i),
            Operation::Held => held_now.push(i),
            other => anyhow::bail!("worker {i}: {other:?}"),
        }
    }
    assert_eq!(passed.len(), 4 + 3, "passed {passed:?}, held {held_now:?}");
    assert_eq!(held_now.len(), 3, "passed {passed:?}, held {held_now:?}");
    assert!(guard_tripped(&db, "zendesk").await?);
    // Ordinary deactivations are held while the guard is tripped.
    for i in [10, 11] {
        assert_eq!(
            apply(&provisioner, &worker(i, 2, Suspended)).await?,
            Operation::Held
        );
    }
    // The same termination again (its main-topic copy): held once, and the
    // allowance is not spent on it; a passed one is stale.
    assert_eq!(
        apply(&provisioner, &flood[held_now[0]]).await?,
        Operation::Held
    );
    assert_eq!(
        apply(&provisioner, &flood[passed[0]]).await?,
        Operation::Stale
    );
    for &i in &passed {
        assert!(!active(&client, i).await?, "w{i} passed but is active");
    }
    for &i in held_now.iter().chain(&[10, 11]) {
        assert!(active(&client, i).await?, "w{i} held but deactivated");
    }
    assert_eq!(held(&db, "zendesk", HoldReason::Guard).await?.len(), 5);
    assert_eq!(audited(&db, "DEACTIVATE", "SUCCESS").await?, 7);
    assert_eq!(audited(&db, "GUARD_HOLD", "HELD").await?, 6);

    // Released: every held deactivation is applied, nothing is left held,
    // the guard is untripped, and nobody else was touched.
    let released = provisioner
        .release("zendesk")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(released.len(), 5);
    for (change, result) in &released {
        let ops = result.result.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(ops, &[Operation::Deactivated], "{}", change.person_id);
    }
    for i in 0..12 {
        assert!(!active(&client, i).await?, "w{i} still active");
    }
    for i in 12..20 {
        assert!(active(&client, i).await?, "w{i} deactivated");
    }
    assert!(held(&db, "zendesk", HoldReason::Guard).await?.is_empty());
    assert!(!guard_tripped(&db, "zendesk").await?);
    assert_eq!(audited(&db, "DEACTIVATE", "SUCCESS").await?, 12);
    // What the admin released does not count towards the next trip: a
    // leave now passes.
    assert_eq!(
        apply(&provisioner, &worker(12, 2, Suspended)).await?,
        Operation::Deactivated
    );
    assert!(!guard_tripped(&db, "zendesk").await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_terminations_trips_the_guard_past_the_allowance_on_postgres(
) -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    flood_story(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_terminations_trips_the_guard_past_the_allowance_on_sqlite() -> anyhow::Result<()>
{
    let file = SqliteFile::new()?;
    flood_story(&file.url()).await
}

/// The allowance is per window: with a guard tripped and its allowance
/// spent, an immediate termination is held; once the window has moved on,
/// the next one passes again, while the guard stays tripped for the rest.
async fn allowance_window_story(db_url: &str) -> anyhow::Result<()> {
    let server = ScimServer::start()?;
    let (db, provisioner) = provisioner(
        db_url,
        AppConfig {
            guard_max_deactivations: Some(1),
            guard_immediate_allowance: 1,
            ..app(&server)
        },
    )
    .await?;
    for i in 0..5 {
        let op = apply(&provisioner, &worker(i, 1, Active)).await?;
        anyhow::ensure!(matches!(op, Operation::Created { .. }), "{op:?}");
    }
    let terminate = |i| worker(i, 2, Deprovisioned);
    // Within the limit; the one that trips it, under the allowance; then
    // held.
    assert_eq!(
        apply(&provisioner, &terminate(0)).await?,
        Operation::Deactivated
    );
    assert_eq!(
        apply(&provisioner, &terminate(1)).await?,
        Operation::Deactivated
    );
    assert_eq!(apply(&provisioner, &terminate(2)).await?, Operation::Held);
    assert!(guard_tripped(&db, "zendesk").await?);
    // An hour (the window) passes: the window's deactivations are dated
    // an hour and a second earlier in the store.
    sqlx::query(
        "UPDATE provisioner_deactivation SET at_ms = at_ms - 3601000 WHERE app = 'zendesk'",
    )
    .execute(db.pool())
    .await?;
    // A new window: one more immediate termination passes, the guard stays
    // tripped, and a leave is still held.
    assert_eq!(
        apply(&provisioner, &terminate(3)).await?,
        Operation::Deactivated
    );
    assert_eq!(
        apply(&provisioner, &worker(4, 2, Suspended)).await?,
        Operation::Held
    );
    assert!(guard_tripped(&db, "zendesk").await?);
    assert_eq!(held(&db, "zendesk", HoldReason::Guard).await?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_immediate_allowance_renews_each_window_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    allowance_window_story(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_immediate_allowance_renews_each_window_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    allowance_window_story(&file.url()).await
}

/// Two provisioner processes on one PostgreSQL store (two provisioners,
/// each with its own locks and leases, as two processes have), a flood of
/// leaves split between them while every request to the app takes 300 ms:
/// the guard decides across both, so exactly its limit passes, whichever
/// process decided, and the rest is held.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_split_over_two_processes_passes_the_limit_once() -> anyhow::Result<()> {
    let pg = PgDatabase::fresh().await?;
    let server = ScimServer::start()?;
    let proxy = hrsync_tests::FaultProxy::start(&server.base_url()).await?;
    let guarded = || AppConfig {
        guard_max_deactivations: Some(4),
        ..AppConfig::new(
            "zendesk",
            &proxy.url(),
            hrsync_config::Secret::inline(server.token()),
        )
    };
    let (db, first) = provisioner(pg.url(), guarded()).await?;
    let (_, second) = provisioner(pg.url(), guarded()).await?;
    for i in 0..12 {
        let op = apply(&first, &worker(i, 1, Active)).await?;
        anyhow::ensure!(matches!(op, Operation::Created { .. }), "{op:?}");
    }

    // Every deactivation is still in flight while the others are decided.
    proxy.fail_share(hrsync_tests::Fault::Delay(Duration::from_millis(300)), 1.0);
    let leaves: Vec<DirectoryChange> = (0..12).map(|i| worker(i, 2, Suspended)).collect();
    let outcomes = futures::future::join_all(leaves.iter().enumerate().map(|(i, change)| {
        let process = if i % 2 == 0 { &first } else { &second };
        apply(process, change)
    }))
    .await;
    proxy.clear_shares();
    let mut passed = Vec::new();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome? {
            Operation::Deactivated => passed.push(i),
            Operation::Held => {}
            other => anyhow::bail!("worker {i}: {other:?}"),
        }
    }
    assert_eq!(passed.len(), 4, "passed: {passed:?}");
    assert!(guard_tripped(&db, "zendesk").await?);
    assert_eq!(held(&db, "zendesk", HoldReason::Guard).await?.len(), 8);
    assert_eq!(audited(&db, "DEACTIVATE", "SUCCESS").await?, 4);
    // The window holds the four, each done.
    let done: Vec<(i64,)> =
        sqlx::query_as("SELECT done FROM provisioner_deactivation WHERE app = 'zendesk'")
            .fetch_all(db.pool())
            .await?;
    assert_eq!(done, vec![(1,); 4]);
    Ok(())
}

/// A deactivation the guard admitted that then fails is taken out of the
/// window: it does not count towards tripping the guard.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_deactivation_does_not_count_in_the_window() -> anyhow::Result<()> {
    let pg = PgDatabase::fresh().await?;
    let server = ScimServer::start()?;
    let proxy = hrsync_tests::FaultProxy::start(&server.base_url()).await?;
    let (db, provisioner) = provisioner(
        pg.url(),
        AppConfig {
            guard_max_deactivations: Some(1),
            ..AppConfig::new(
                "zendesk",
                &proxy.url(),
                hrsync_config::Secret::inline(server.token()),
            )
        },
    )
    .await?;
    for i in 0..2 {
        apply(&provisioner, &worker(i, 1, Active)).await?;
    }
    // The deactivation call itself fails, after the guard admitted it.
    proxy.inject(
        Some("PATCH"),
        hrsync_tests::Fault::Status {
            status: 400,
            retry_after: None,
        },
    );
    assert!(apply(&provisioner, &worker(0, 2, Suspended)).await.is_err());
    assert_eq!(proxy.applied().len(), 1, "{:?}", proxy.applied());
    let counted = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM provisioner_deactivation")
            .fetch_one(db.pool())
            .await
    };
    // (Taken out in the background, right after the failure.)
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while counted().await? > 0 {
        anyhow::ensure!(std::time::Instant::now() < deadline, "still counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        apply(&provisioner, &worker(1, 2, Suspended)).await?,
        Operation::Deactivated
    );
    assert!(!guard_tripped(&db, "zendesk").await?);
    Ok(())
}
