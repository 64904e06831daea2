//! Crashes under load: `hrsync run` killed with SIGKILL while a 10,000-worker
//! snapshot and a second snapshot of moves and immediate terminations are
//! being provisioned, restarted at once and again after more than the
//! consumer session timeout. The apps must end exactly as an uninterrupted
//! run leaves them: every worker's account once, with the newest title,
//! active unless terminated (a leaver whose account did not exist yet gets
//! none), and nothing logged that holds a secret.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::load::Load;
use crate::stack::{eventually, eventually_every, Processes, ScimApps};

const WORKERS: usize = 10_000;
const LOAD: Load = Load::new(WORKERS);

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_load_and_restarted_it_ends_as_an_uninterrupted_run() -> anyhow::Result<()> {
    let apps = ScimApps::local(&["slack", "zendesk"])
        .await?
        .without_groups();
    let mut stack = Processes::start(&apps, &["all"]).await?;
    let started = Instant::now();
    stack.import(&LOAD.hires())?;
    LOAD.until_created(&apps, 0.15, Duration::from_secs(300))
        .await?;
    // Moves and immediate terminations of people whose hires are still
    // queued behind the backlog, and of people already provisioned.
    stack.import(&LOAD.changes())?;

    // Killed, and started again at once: inside the session timeout, its
    // old self still a member of each consumer group.
    LOAD.until_created(&apps, 0.35, Duration::from_secs(300))
        .await?;
    stack.kill(0)?;
    let counts = apps.counts().await?;
    println!(
        "{:?}: killed with {counts:?}; restarting at once",
        started.elapsed()
    );
    stack.restart(0).await?;
    let restarted = Instant::now();
    let before = apps.all()[0].count().await?;
    eventually_every(
        "provisioning goes on within 30 s of the restart",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { Ok(apps.all()[0].count().await? > before) },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", stack.log_tail(0)))?;
    println!("going on again {:?} after the restart", restarted.elapsed());

    // Killed again, and started after longer than the session timeout.
    LOAD.until_created(&apps, 0.65, Duration::from_secs(300))
        .await?;
    stack.kill(0)?;
    println!(
        "{:?}: killed with {:?}; restarting in 12 s",
        started.elapsed(),
        apps.counts().await?
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    stack.restart(0).await?;

    LOAD.settled(&apps, &stack, Duration::from_secs(600))
        .await?;
    println!(
        "{WORKERS} workers and their changes in place after {:?}",
        started.elapsed()
    );

    // And it goes on: a termination pushed now reaches both apps.
    stack
        .push(json!({"type": "terminate", "employee_id": "W00002",
            "time_zone": "Europe/Paris", "immediate": true}))
        .await?;
    eventually("the termination after the restarts", || async {
        Ok(apps
            .account("W00002")
            .await?
            .iter()
            .all(|(_, a)| a.as_ref().is_some_and(|(active, _)| !*active)))
    })
    .await?;

    // Nothing the processes logged holds a secret.
    stack.check_logs_hold_no_secret(&apps)
}
