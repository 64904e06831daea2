//! Faults of the parts around hrsync, under load: the Kafka broker killed
//! and started again, a SCIM app down for a while, and the network to an
//! app dropping connections. In each, `hrsync run --role all` (PostgreSQL;
//! the broker and app faults also over SQLite) provisions a snapshot of `WORKERS` hires and a second snapshot of moves
//! and immediate terminations into two local apps, and must recover by
//! itself (the test restarts no hrsync process): in the end every app holds
//! exactly the desired accounts ([`Load::differences`]), a termination
//! pushed afterwards still reaches every app, and no log line holds a
//! secret.
//!
//! `HRSYNC_FAULT_OUTAGE_SECS` sets how long the app stays down (30 s
//! unless set).

use std::time::{Duration, Instant};

use hrsync_tests::Fault;

use crate::load::Load;
use crate::stack::{eventually_every, Processes, ScimApps, Stores};

const WORKERS: usize = 3_000;
const LOAD: Load = Load::new(WORKERS);

/// How long an app stays down: `HRSYNC_FAULT_OUTAGE_SECS`, else 30 s.
fn outage() -> anyhow::Result<Duration> {
    match std::env::var("HRSYNC_FAULT_OUTAGE_SECS") {
        Ok(secs) => secs
            .trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| {
                anyhow::anyhow!("HRSYNC_FAULT_OUTAGE_SECS={secs:?} is not a number of seconds: {e}")
            }),
        Err(_) => Ok(Duration::from_secs(30)),
    }
}

/// A termination pushed now reaches every app: the pipeline goes on.
async fn goes_on(stack: &Processes, apps: &ScimApps) -> anyhow::Result<()> {
    stack.termination_reaches_every_app(apps, "W00002").await
}

/// Waits up to `limit` until app `i` holds more than `before` accounts.
async fn grows(
    apps: &ScimApps,
    i: usize,
    before: usize,
    what: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    eventually_every(what, limit, Duration::from_millis(200), || async {
        Ok(apps.all()[i].count().await? > before)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_killed_under_load_and_started_again_hrsync_recovers_by_itself(
) -> anyhow::Result<()> {
    broker_killed_under_load(Stores::Postgres).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_killed_under_load_over_sqlite_stores_hrsync_recovers_by_itself(
) -> anyhow::Result<()> {
    broker_killed_under_load(Stores::Sqlite).await
}

/// The broker killed mid-load and started again, the roles' state in
/// `stores`.
async fn broker_killed_under_load(stores: Stores) -> anyhow::Result<()> {
    let apps = ScimApps::local(&["slack", "zendesk"])
        .await?
        .without_groups();
    let mut stack = Processes::start_durable(&apps, &["all"], stores).await?;
    let started = Instant::now();
    stack.import(&LOAD.hires())?;
    LOAD.until_created(&apps, 0.15, Duration::from_secs(120))
        .await?;
    stack.import(&LOAD.changes())?;
    LOAD.until_created(&apps, 0.35, Duration::from_secs(120))
        .await?;

    // SIGKILL, a few seconds down, then back on the same port with its log.
    stack.kill_broker();
    let counts = apps.counts().await?;
    println!("{:?}: broker killed with {counts:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(5)).await;
    stack.start_broker_again()?;
    let back = Instant::now();
    let before = apps.all()[0].count().await?;
    println!(
        "{:?}: broker started again with {before} accounts in slack",
        started.elapsed()
    );
    anyhow::ensure!(
        before < WORKERS,
        "slack held all {WORKERS} accounts before the broker came back: nothing was left to recover"
    );
    grows(
        &apps,
        0,
        before,
        "provisioning goes on after the broker came back",
        Duration::from_secs(60),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", stack.log_tail(0), stack.broker_log_tail()))?;
    println!(
        "going on again {:?} after the broker came back",
        back.elapsed()
    );

    LOAD.settled(&apps, &stack, Duration::from_secs(180))
        .await?;
    println!(
        "{WORKERS} workers and their changes in place after {:?}",
        started.elapsed()
    );
    goes_on(&stack, &apps).await?;
    stack.check_logs_hold_no_secret(&apps)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_down_under_load_catches_up_when_it_returns_and_the_other_goes_on(
) -> anyhow::Result<()> {
    app_down_under_load(Stores::Postgres).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_down_under_load_over_sqlite_stores_catches_up_when_it_returns() -> anyhow::Result<()>
{
    app_down_under_load(Stores::Sqlite).await
}

/// zendesk down mid-load and back, slack going on meanwhile, the roles'
/// state in `stores`.
async fn app_down_under_load(stores: Stores) -> anyhow::Result<()> {
    let outage = outage()?;
    let apps = ScimApps::local_behind_proxies(&["slack", "zendesk"])
        .await?
        .without_groups();
    let stack = Processes::start_on(&apps, &["all"], stores).await?;
    let started = Instant::now();
    stack.import(&LOAD.hires())?;
    LOAD.until_created(&apps, 0.1, Duration::from_secs(120))
        .await?;

    // zendesk goes down: first every request answered 503, then every
    // connection refused.
    let (slack, zendesk) = (apps.get("slack"), apps.get("zendesk"));
    zendesk.proxy().fail_share(
        Fault::Status {
            status: 503,
            retry_after: Some(1),
        },
        1.0,
    );
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (slack_before, zendesk_before) = (slack.count().await?, zendesk.count().await?);
    println!(
        "{:?}: zendesk down for {outage:?} with {zendesk_before} accounts, slack {slack_before}",
        started.elapsed()
    );
    // The moves and terminations arrive while it is down.
    stack.import(&LOAD.changes())?;
    tokio::time::sleep((outage / 2).saturating_sub(down.elapsed())).await;
    zendesk.proxy().refuse_connections();
    zendesk.proxy().clear_shares();
    tokio::time::sleep(outage.saturating_sub(down.elapsed())).await;

    // The outage was real, and slack went on meanwhile.
    let (slack_after, zendesk_after) = (slack.count().await?, zendesk.count().await?);
    println!(
        "{:?}: zendesk back with {zendesk_after} accounts, slack {slack_after}",
        started.elapsed()
    );
    assert_eq!(
        zendesk_after, zendesk_before,
        "zendesk took accounts while down"
    );
    assert!(
        slack_after > slack_before,
        "slack made no progress while zendesk was down ({slack_before} accounts)"
    );
    zendesk.proxy().listen_again().await?;
    let back = Instant::now();
    grows(
        &apps,
        1,
        zendesk_after,
        "zendesk takes accounts again",
        Duration::from_secs(60),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", stack.log_tail(0)))?;
    println!("zendesk going on {:?} after it came back", back.elapsed());

    LOAD.settled(&apps, &stack, Duration::from_secs(180))
        .await?;
    println!(
        "{WORKERS} workers and their changes in place {:?} after zendesk came back",
        back.elapsed()
    );
    goes_on(&stack, &apps).await?;
    stack.check_logs_hold_no_secret(&apps)
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_to_an_app_dropped_under_load_no_duplicate_and_nothing_lost(
) -> anyhow::Result<()> {
    let apps = ScimApps::local_behind_proxies(&["slack", "zendesk"])
        .await?
        .without_groups();
    let stack = Processes::start(&apps, &["all"]).await?;
    // The network loses requests: three in ten to zendesk (half never
    // reach it, half are applied and their answer lost), and the answers of
    // two in ten to slack. At that rate a change now and then fails five
    // times running while the app answers others: that person's changes
    // wait for the probe, and must then get through the same losses.
    let zendesk = apps.get("zendesk");
    zendesk.proxy().fail_share(Fault::Drop, 0.15);
    zendesk.proxy().fail_share(Fault::LoseResponse, 0.15);
    apps.get("slack")
        .proxy()
        .fail_share(Fault::LoseResponse, 0.2);
    let started = Instant::now();
    stack.import(&LOAD.hires())?;
    LOAD.until_created(&apps, 0.3, Duration::from_secs(120))
        .await?;
    stack.import(&LOAD.changes())?;
    LOAD.settled(&apps, &stack, Duration::from_secs(180))
        .await?;
    println!(
        "{WORKERS} workers and their changes in place after {:?}",
        started.elapsed()
    );

    // The faults hit what matters: creates applied whose answer was lost
    // (the request that, retried blindly, duplicates an account), and
    // updates and deactivations.
    let applied = zendesk.proxy().applied();
    let lost_creates = applied
        .iter()
        .filter(|(r, f)| r == "POST /Users" && *f == Fault::LoseResponse)
        .count();
    let dropped_changes = applied
        .iter()
        .filter(|(r, _)| r.starts_with("PATCH ") || r.starts_with("PUT "))
        .count();
    println!(
        "{} faults: {lost_creates} creates' answers lost, {dropped_changes} updates failed",
        applied.len()
    );
    assert!(
        lost_creates > 0 && dropped_changes > 0,
        "too few faults to test anything: {applied:?}"
    );
    // Still losing requests, and now the only change in flight: if it runs
    // out of attempts, nothing else answered meanwhile and the app is
    // quarantined; the termination is parked until a probe gets through,
    // and a probe that got nothing through waits up to a minute.
    stack
        .termination_reaches_every_app_within(&apps, "W00002", Duration::from_secs(150))
        .await?;
    stack.check_logs_hold_no_secret(&apps)
}
