//! The persons' leases (`provisioner_lease`) that let many provisioner
//! processes share one PostgreSQL store: one holder at a time, renewed by
//! its holder, taken over once expired, given up only by the token that
//! took it; many at once per statement (a process batches its tasks'). A
//! process that finds a lease lost repairs the person's accounts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hrsync_domain::LifecycleState::{Active, Deprovisioned};
use hrsync_provisioner::config::{AppConfig, ProvisionerConfig};
use hrsync_provisioner::reconcile::Operation;
use hrsync_provisioner::run::Provisioner;
use hrsync_provisioner::scim::ScimClient;
use hrsync_provisioner::store::lease::{give_up_all, renew_all, take_all};
use hrsync_store::Db;
use hrsync_tests::{directory_change, Fault, FaultProxy, PgDatabase, ScimServer};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn set(items: &[&str]) -> HashSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_on_postgres() -> anyhow::Result<()> {
    let pg = PgDatabase::fresh().await?;
    let db = Db::connect(pg.url(), 4).await?;
    db.migrate().await?;
    let take = |process: &'static str, persons: &[&str], tokens: &[&str], ttl_ms: i64| {
        let (db, persons, tokens) = (db.clone(), strings(persons), strings(tokens));
        async move { take_all(&db, process, &persons, &tokens, ttl_ms).await }
    };
    let minute = 60_000;

    // Free: taken, several at once.
    let taken = take("a", &["p-1", "p-2"], &["a:1", "a:2"], minute).await?;
    assert_eq!(taken, set(&["p-1", "p-2"]));
    // Held by a: refused to b, which gets the free one of its batch.
    let taken = take("b", &["p-1", "p-3"], &["b:1", "b:2"], minute).await?;
    assert_eq!(taken, set(&["p-3"]));
    // a's own tasks take a person one at a time: a newer token of a takes
    // over its older one (whose give-up may still be on its way).
    assert_eq!(take("a", &["p-1"], &["a:3"], minute).await?, set(&["p-1"]));
    // A late give-up of a token no longer holding the lease changes nothing.
    // The holder's process learns it did not hold it any more.
    assert!(give_up_all(&db, &strings(&["p-1"]), &strings(&["a:1"]))
        .await?
        .is_empty());
    assert!(give_up_all(&db, &strings(&["p-1"]), &strings(&["b:1"]))
        .await?
        .is_empty());
    assert!(take("b", &["p-1"], &["b:3"], minute).await?.is_empty());
    // Given up by its holder: taken.
    assert_eq!(
        give_up_all(&db, &strings(&["p-1"]), &strings(&["a:3"])).await?,
        set(&["p-1"])
    );
    assert_eq!(take("b", &["p-1"], &["b:4"], minute).await?, set(&["p-1"]));

    // Renewed only under the token holding it.
    let (persons, tokens) = (strings(&["p-2", "p-1"]), strings(&["a:2", "a:3"]));
    assert_eq!(
        renew_all(&db, &persons, &tokens, minute).await?,
        set(&["p-2"])
    );

    // A holder that died: its lease (expired at once here) is taken over,
    // and its renewal finds it lost.
    assert_eq!(
        take("dead", &["p-4"], &["dead:1"], -1).await?,
        set(&["p-4"])
    );
    assert_eq!(take("b", &["p-4"], &["b:5"], minute).await?, set(&["p-4"]));
    assert!(
        renew_all(&db, &strings(&["p-4"]), &strings(&["dead:1"]), minute)
            .await?
            .is_empty()
    );
    assert!(take("dead", &["p-4"], &["dead:2"], minute)
        .await?
        .is_empty());
    Ok(())
}

/// A process that stalls past a person's lease while creating their
/// account (its POST held by the app here; the lease's expiry forced in the
/// store) finds the lease lost, at renewal or when giving it up, after a
/// second process has applied the person's termination meanwhile. Its late
/// create left a leaver with an active account; it reads the account again
/// and applies the newest change: deactivated.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_finished_after_its_lease_was_lost_is_repaired() -> anyhow::Result<()> {
    let two = TwoProcesses::start().await?;
    let stop = CancellationToken::new();
    let repairs = two.stalling.spawn_repairs(stop.clone());
    // The POST held 2 s: the loss is most likely found when the lease is
    // given up; held 7 s: at a renewal (every 5 s) while the call waits.
    for (i, held) in [(1, 2), (2, 7)] {
        let email = two.create_late_for_a_leaver(i, held).await?;
        // ...until the repair deactivates it.
        wait_for(|| async { Ok(two.active(&email).await? == Some(false)) })
            .await
            .map_err(|e| anyhow::anyhow!("{email} still active: {e}"))?;
    }
    stop.cancel();
    repairs.await?;
    Ok(())
}

/// A one-shot command (`provision-now`, `release`, `reconcile`) runs no
/// repair task: the persons it lost are repaired when it closes, before
/// it exits.
#[tokio::test(flavor = "multi_thread")]
async fn a_one_shot_repairs_the_persons_it_lost_when_it_closes() -> anyhow::Result<()> {
    let two = TwoProcesses::start().await?;
    let email = two.create_late_for_a_leaver(1, 2).await?;
    two.stalling.close().await;
    assert_eq!(
        two.active(&email).await?,
        Some(false),
        "{email} after the one-shot closed"
    );
    Ok(())
}

/// Two provisioner processes on one store and one app: `stalling` reaches
/// the app through a proxy that can hold its calls, `other` directly.
struct TwoProcesses {
    // Dropped in this order: the processes before their app and store.
    stalling: Arc<Provisioner>,
    other: Provisioner,
    client: ScimClient,
    proxy: FaultProxy,
    _server: ScimServer,
    pg: PgDatabase,
}

impl TwoProcesses {
    async fn start() -> anyhow::Result<Self> {
        let pg = PgDatabase::fresh().await?;
        let server = ScimServer::start()?;
        let proxy = FaultProxy::start(&server.base_url()).await?;
        Ok(TwoProcesses {
            stalling: Arc::new(provisioner(pg.url(), &proxy.url(), server.token()).await?),
            other: provisioner(pg.url(), &server.base_url(), server.token()).await?,
            client: ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
                .map_err(anyhow::Error::msg)?,
            pg,
            proxy,
            _server: server,
        })
    }

    /// Whether the account named `email` is active in the app, if it
    /// exists.
    async fn active(&self, email: &str) -> anyhow::Result<Option<bool>> {
        let user = self.client.find_user("userName", email).await?;
        Ok(user.map(|u| u["active"] == serde_json::json!(true)))
    }

    /// `stalling` creates the account of hire `L{i}`, its POST held `held`
    /// seconds; meanwhile its lease expires and `other` applies their
    /// termination (no account yet: nothing to do). The late create lands:
    /// the leaver has an active account. Returns its `userName`.
    async fn create_late_for_a_leaver(&self, i: u32, held: u64) -> anyhow::Result<String> {
        let person = |version, state, apps: &[&str]| {
            directory_change(
                &format!("L{i}"),
                &format!("Lee{i} Leaver"),
                version,
                state,
                apps,
                &[],
            )
        };
        let (hire, leave) = (person(1, Active, &["app"]), person(2, Deprovisioned, &[]));
        self.proxy
            .inject(Some("POST"), Fault::Delay(Duration::from_secs(held)));
        let posts = || {
            self.proxy
                .seen()
                .iter()
                .filter(|s| s.starts_with("POST"))
                .count()
        };
        let before = posts();
        let late = tokio::spawn({
            let (stalling, hire) = (self.stalling.clone(), hire.clone());
            async move { stalling.apply(&hire, None).await }
        });
        wait_for(|| async { Ok(posts() > before) }).await?;
        sqlx::query("UPDATE provisioner_lease SET expires_at_ms = 0 WHERE person_id = $1")
            .bind(hire.person_id.as_str())
            .execute(&PgPool::connect(self.pg.url()).await?)
            .await?;
        let results = self.other.apply(&leave, None).await;
        assert!(results[0].result.is_ok(), "{results:?}");
        let created = late.await?;
        assert!(
            matches!(
                created[0].result.as_deref(),
                Ok([Operation::Created { .. }])
            ),
            "{created:?}"
        );
        Ok(format!("lee{i}@example.com"))
    }
}

async fn provisioner(db_url: &str, base_url: &str, token: &str) -> anyhow::Result<Provisioner> {
    let db = Db::connect(db_url, 4).await?;
    db.migrate().await?;
    let config = ProvisionerConfig {
        apps: vec![AppConfig {
            push_groups: false,
            ..AppConfig::new("app", base_url, hrsync_config::Secret::inline(token))
        }],
        ..ProvisionerConfig::default()
    };
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(Provisioner::new(db, &config, None).await?)
}

/// Polls `check` every 100 ms for up to 30 s.
async fn wait_for<F, Fut>(mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "not within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
