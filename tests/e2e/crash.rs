//! Crashes under load: `hrsync run` killed with SIGKILL while a 10,000-worker
//! snapshot and a second snapshot of moves and immediate terminations are
//! being provisioned, restarted at once and again after more than the
//! consumer session timeout. The apps must end exactly as an uninterrupted
//! run leaves them: every worker's account once, with the newest title,
//! active unless terminated (a leaver whose account did not exist yet gets
//! none), and nothing logged that holds a secret.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::load::{active, Load};
use crate::stack::{eventually_every, Processes, ScimApps, Stores};

const LOAD: Load = Load::new(10_000);

/// One crash: at `share` of the load, process `process` is killed with
/// SIGKILL and started again after `pause` (zero: at once).
struct Kill {
    share: f64,
    process: usize,
    pause: Duration,
}

/// The load, with `kills` along the way, through `roles` over `stores`;
/// then checks that the apps end as an uninterrupted run leaves them.
async fn killed_under_load(roles: &[&str], stores: Stores, kills: &[Kill]) -> anyhow::Result<()> {
    let apps = ScimApps::local(&["slack", "zendesk"])
        .await?
        .without_groups();
    let stack = Processes::start_on(&apps, roles, stores).await?;
    let started = Instant::now();
    stack.import(&LOAD.hires())?;
    LOAD.until_created(&apps, 0.15, Duration::from_secs(300))
        .await?;
    // Moves and immediate terminations of people whose hires are still
    // queued behind the backlog, and of people already provisioned.
    stack.import(&LOAD.changes())?;

    for kill in kills {
        LOAD.until_created(&apps, kill.share, Duration::from_secs(300))
            .await?;
        stack.kill(kill.process)?;
        println!(
            "{:?}: {} killed with {:?}; restarting after {:?}",
            started.elapsed(),
            roles[kill.process],
            apps.counts().await?,
            kill.pause
        );
        tokio::time::sleep(kill.pause).await;
        stack.restart(kill.process).await?;
        let restarted = Instant::now();
        let before = apps.all()[0].count().await?;
        // Going on: accounts are still being created, or the work was all
        // done already (the projector may have emitted everything before it
        // was killed, and the provisioner applied it meanwhile).
        eventually_every(
            "provisioning goes on within 30 s of the restart",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || async {
                Ok(apps.all()[0].count().await? > before
                    || LOAD.differences(&apps).await?.is_empty())
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", stack.log_tail(kill.process)))?;
        println!("going on again {:?} after the restart", restarted.elapsed());
    }

    LOAD.settled_in(&apps, &stack, roles.len(), Duration::from_secs(600))
        .await?;
    println!(
        "{} workers and their changes in place after {:?}",
        LOAD.workers,
        started.elapsed()
    );

    // And it goes on: a termination pushed now reaches both apps.
    stack.termination_reaches_every_app(&apps, "W00002").await?;

    // Nothing the processes logged holds a secret.
    stack.check_logs_hold_no_secret(&apps)
}

/// All roles in one process over PostgreSQL: killed inside the consumer
/// session timeout (its old self still a member of each group) and again
/// after it.
#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_load_and_restarted_it_ends_as_an_uninterrupted_run() -> anyhow::Result<()> {
    killed_under_load(
        &["all"],
        Stores::Postgres,
        &[
            Kill {
                share: 0.35,
                process: 0,
                pause: Duration::ZERO,
            },
            Kill {
                share: 0.65,
                process: 0,
                pause: Duration::from_secs(12),
            },
        ],
    )
    .await
}

/// One process per role over SQLite: the projector killed and restarted at
/// once, then the provisioner killed and restarted after the session
/// timeout, and again at once, then the projector again after a pause.
#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_load_role_by_role_on_sqlite_it_ends_as_an_uninterrupted_run(
) -> anyhow::Result<()> {
    killed_under_load(
        &["ingest", "projector", "provisioner"],
        Stores::Sqlite,
        &[
            Kill {
                share: 0.3,
                process: 1,
                pause: Duration::ZERO,
            },
            Kill {
                share: 0.5,
                process: 2,
                pause: Duration::from_secs(12),
            },
            Kill {
                share: 0.7,
                process: 2,
                pause: Duration::ZERO,
            },
            Kill {
                share: 0.85,
                process: 1,
                pause: Duration::from_secs(12),
            },
        ],
    )
    .await
}

/// The ingest role killed while HR pushes hires to it: each webhook retries
/// its event with the same `Idempotency-Key` until it is accepted, as HR
/// systems do. Every worker ends with one active account in each app, and
/// a key retried after the restart answers the event id it answered before.
#[tokio::test(flavor = "multi_thread")]
async fn the_push_api_killed_while_hr_pushes_loses_and_doubles_nothing() -> anyhow::Result<()> {
    const PUSHED: usize = 600;
    const SENDERS: usize = 8;
    let apps = ScimApps::local(&["slack", "zendesk"])
        .await?
        .without_groups();
    let stack = Processes::start_on(
        &apps,
        &["ingest", "projector", "provisioner"],
        Stores::Postgres,
    )
    .await?;
    let hire = |i: usize| {
        json!({"type": "hire", "employee_id": format!("P{i:04}"), "time_zone": "Europe/Paris",
            "effective_at": "2021-03-01T00:00:00Z",
            "attributes": {"given_name": format!("Given{i}"), "family_name": format!("Family{i}"),
                "employment_type": "employee", "department": "Customer Support", "title": "Support Agent"}})
    };
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stack_ref = &stack;
    let senders = (0..SENDERS).map(|s| {
        let accepted = accepted.clone();
        async move {
            let mut answers = Vec::new();
            for i in (s..PUSHED).step_by(SENDERS) {
                let (answer, attempts) = stack_ref
                    .push_until_accepted(&format!("hr-{i}"), &hire(i), Duration::from_secs(120))
                    .await?;
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                answers.push((i, answer["event_id"].clone(), attempts));
            }
            anyhow::Ok(answers)
        }
    });
    let pushing = futures::future::try_join_all(senders);
    let killing = async {
        for (at, pause) in [
            (PUSHED / 3, Duration::ZERO),
            (PUSHED * 2 / 3, Duration::from_secs(3)),
        ] {
            while accepted.load(std::sync::atomic::Ordering::SeqCst) < at {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stack_ref.kill(0)?;
            println!("ingest killed with {at} hires accepted; restarting after {pause:?}");
            tokio::time::sleep(pause).await;
            stack_ref.restart(0).await?;
        }
        anyhow::Ok(())
    };
    let (answers, ()) = tokio::try_join!(pushing, killing)?;
    let answers: Vec<_> = answers.into_iter().flatten().collect();
    let retried = answers
        .iter()
        .filter(|(_, _, attempts)| *attempts > 1)
        .count();
    println!("{PUSHED} hires accepted; {retried} of them after retries");
    anyhow::ensure!(
        retried > 0,
        "no push was refused: the kills did not land mid-push"
    );

    // A key retried now answers the event id it answered before.
    for (i, event_id, _) in answers.iter().take(20) {
        let (again, _) = stack
            .push_until_accepted(&format!("hr-{i}"), &hire(*i), Duration::from_secs(30))
            .await?;
        assert_eq!(&again["event_id"], event_id, "hr-{i}");
    }

    let settled = eventually_every(
        "one active account per pushed worker in both apps",
        Duration::from_secs(120),
        Duration::from_secs(1),
        || async {
            for app in apps.all() {
                let users = app.users().await?;
                let mut names: Vec<&str> = users
                    .iter()
                    .filter(|u| active(u))
                    .filter_map(|u| u["userName"].as_str())
                    .collect();
                names.sort_unstable();
                let before = names.len();
                names.dedup();
                anyhow::ensure!(before == names.len(), "{}: duplicate accounts", app.name);
                if users.len() != PUSHED || names.len() != PUSHED {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await;
    if let Err(error) = settled {
        let users = apps.all()[0].users().await?;
        let missing: Vec<String> = (0..PUSHED)
            .map(|i| format!("P{i:04}"))
            .filter(|name| !users.iter().any(|u| u["userName"] == name.as_str()))
            .collect();
        anyhow::bail!(
            "{error}\n{:?}; missing in {}: {missing:?}\n{}\n{}\n{}",
            apps.counts().await?,
            apps.all()[0].name,
            stack.log_tail(0),
            stack.log_tail(1),
            stack.log_tail(2)
        );
    }

    stack.check_logs_hold_no_secret(&apps)
}
