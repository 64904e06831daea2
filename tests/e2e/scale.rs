//! Many provisioner processes on one broker and one PostgreSQL store: three
//! share the work by partition; one is killed (SIGKILL, not restarted)
//! while a snapshot of hires and a second of moves and immediate
//! terminations are applied, so priority and main records of the same
//! persons are in flight in different processes. The apps must end as an
//! uninterrupted run leaves them: every account once, the newest title,
//! and no leaver's account active (the fast-lane guarantee, held across
//! processes by the persons' leases in the store).

use std::time::{Duration, Instant};

use crate::load::Load;
use crate::stack::{eventually_every, Processes, ScimApps, Stores};

const LOAD: Load = Load::new(3_000);

/// The SCIM operations process `i` applied successfully, from its metrics.
async fn applied(stack: &Processes, i: usize) -> anyhow::Result<f64> {
    let metrics = stack.metrics(i).await?;
    Ok(metrics
        .lines()
        .filter(|l| {
            l.starts_with("hrsync_provisioner_operations_total{")
                && l.contains("outcome=\"SUCCESS\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::test(flavor = "multi_thread")]
async fn three_provisioners_share_the_work_and_one_killed_loses_and_doubles_nothing(
) -> anyhow::Result<()> {
    let apps = ScimApps::local(&["slack", "zendesk"])
        .await?
        .without_groups();
    let roles = [
        "ingest",
        "projector",
        "provisioner",
        "provisioner",
        "provisioner",
    ];
    let stack = Processes::start_on(&apps, &roles, Stores::Postgres).await?;
    let started = Instant::now();
    stack.import(&LOAD.hires())?;
    LOAD.until_created(&apps, 0.2, Duration::from_secs(300))
        .await?;
    // Moves and immediate terminations, of people provisioned and of
    // people whose hires still wait.
    stack.import(&LOAD.changes())?;

    // The work is shared: each process applies some of it.
    eventually_every(
        "each provisioner applies changes",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            let mut each = Vec::new();
            for i in 2..5 {
                each.push(applied(&stack, i).await?);
            }
            Ok(each.iter().all(|n| *n > 0.0))
        },
    )
    .await?;
    LOAD.until_created(&apps, 0.5, Duration::from_secs(300))
        .await?;
    stack.kill(4)?;
    println!(
        "{:?}: one provisioner killed with {:?}",
        started.elapsed(),
        apps.counts().await?
    );

    LOAD.settled_in(&apps, &stack, roles.len(), Duration::from_secs(240))
        .await?;
    println!(
        "{} workers and their changes in place after {:?}",
        LOAD.workers,
        started.elapsed()
    );
    // The two left go on: a termination pushed now reaches both apps.
    stack.termination_reaches_every_app(&apps, "W00002").await?;
    stack.check_logs_hold_no_secret(&apps)
}
