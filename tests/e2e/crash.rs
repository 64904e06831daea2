//! Crashes under load: `hrsync run` killed with SIGKILL while a 10,000-worker
//! snapshot and a second snapshot of moves and immediate terminations are
//! being provisioned, restarted at once and again after more than the
//! consumer session timeout. The apps must end exactly as an uninterrupted
//! run leaves them: every worker's account once, with the newest title,
//! active unless terminated (a leaver whose account did not exist yet gets
//! none), and nothing logged that holds a secret.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::stack::{eventually, eventually_every, Processes, ScimApps, Stores};

const WORKERS: usize = 10_000;
const HEADER: &str = "employee_id,given_name,family_name,title,department,employment_type,status,hire_date,time_zone,termination_date,termination_immediate\n";

/// The first snapshot: everyone hired as a support agent.
fn hires() -> String {
    let mut csv = String::from(HEADER);
    for i in 1..=WORKERS {
        csv.push_str(&row(i, "Support Agent", false));
    }
    csv
}

fn row(i: usize, title: &str, terminated: bool) -> String {
    let (status, date, immediate) = if terminated {
        ("terminated", "2026-01-31", "true")
    } else {
        ("active", "", "")
    };
    format!(
        "W{i:05},Given{i},Family{i},{title},Customer Support,employee,{status},2021-03-01,Europe/Paris,{date},{immediate}\n"
    )
}

/// Who the second snapshot promotes, and who it terminates at once.
fn promoted(i: usize) -> bool {
    i % 20 == 3
}

fn terminated(i: usize) -> bool {
    i % 100 == 7
}

/// The second snapshot: every 20th worker promoted, every 100th terminated
/// immediately.
fn changes() -> String {
    let mut csv = String::from(HEADER);
    for i in 1..=WORKERS {
        let title = if promoted(i) {
            "Support Lead"
        } else {
            "Support Agent"
        };
        csv.push_str(&row(i, title, terminated(i)));
    }
    csv
}

/// What each account must be in the end: `userName` → (title, active). A
/// worker terminated before their account was created gets none (nothing is
/// created for a leaver), so for them no account is as good as an inactive
/// one.
fn desired() -> BTreeMap<String, (String, bool)> {
    (1..=WORKERS)
        .map(|i| {
            let title = if promoted(i) {
                "Support Lead"
            } else {
                "Support Agent"
            };
            (format!("W{i:05}"), (title.to_owned(), !terminated(i)))
        })
        .collect()
}

/// Per app, how the accounts differ from [`desired`]: duplicates, missing,
/// unexpected, and wrong title or `active` (the first few of each).
async fn differences(apps: &ScimApps) -> anyhow::Result<Vec<String>> {
    let want = desired();
    let mut problems = Vec::new();
    for app in apps.all() {
        let users = app.users().await?;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut wrong = Vec::new();
        for user in &users {
            let name = user["userName"].as_str().unwrap_or_default().to_owned();
            *seen.entry(name.clone()).or_default() += 1;
            let title = user["title"].as_str().unwrap_or_default();
            let active = active(user);
            match want.get(&name) {
                Some((t, a)) if t == title && *a == active => {}
                Some(w) => wrong.push(format!("{name}: ({title}, {active}) not {w:?}")),
                None => wrong.push(format!("{name}: not an HR worker")),
            }
        }
        let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, (_, active))| *active && !seen.contains_key(*k))
            .map(|(k, _)| k)
            .collect();
        if !duplicates.is_empty() || !missing.is_empty() || !wrong.is_empty() {
            problems.push(format!(
                "{}: {} accounts, {} duplicated (e.g. {:?}), {} missing (e.g. {:?}), {} wrong (e.g. {:?})",
                app.name,
                users.len(),
                duplicates.len(),
                duplicates.iter().take(3).collect::<Vec<_>>(),
                missing.len(),
                missing.iter().take(3).collect::<Vec<_>>(),
                wrong.len(),
                wrong.iter().take(3).collect::<Vec<_>>(),
            ));
        }
    }
    Ok(problems)
}

/// `active` as the app answers it (a boolean; absent means active).
fn active(user: &Value) -> bool {
    user["active"].as_bool().unwrap_or(true)
}

/// Waits until the first app holds at least `share` of the workers.
async fn until_created(apps: &ScimApps, share: f64, limit: Duration) -> anyhow::Result<()> {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let target = (WORKERS as f64 * share) as usize;
    eventually_every(
        &format!("{target} accounts created"),
        limit,
        Duration::from_millis(200),
        || async { Ok(apps.all()[0].count().await? >= target) },
    )
    .await
}

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
    stack.import(&hires())?;
    until_created(&apps, 0.15, Duration::from_secs(300)).await?;
    // Moves and immediate terminations of people whose hires are still
    // queued behind the backlog, and of people already provisioned.
    stack.import(&changes())?;

    for kill in kills {
        until_created(&apps, kill.share, Duration::from_secs(300)).await?;
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
        eventually_every(
            "provisioning goes on within 30 s of the restart",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || async { Ok(apps.all()[0].count().await? > before) },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", stack.log_tail(kill.process)))?;
        println!("going on again {:?} after the restart", restarted.elapsed());
    }

    let settled = eventually_every(
        "every account as desired in both apps",
        Duration::from_secs(600),
        Duration::from_secs(2),
        || async { Ok(differences(&apps).await?.is_empty()) },
    )
    .await;
    if let Err(error) = settled {
        let logs: Vec<String> = (0..roles.len()).map(|i| stack.log_tail(i)).collect();
        anyhow::bail!(
            "{error}\n{:#?}\n{}",
            differences(&apps).await?,
            logs.join("\n")
        );
    }
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
    for (i, role) in roles.iter().enumerate() {
        let log = stack.log(i);
        for secret in stack.secrets(&apps) {
            assert!(!log.contains(secret), "a log line of {role} holds a secret");
        }
    }
    Ok(())
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
/// timeout, and again at once.
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

    let log = stack.log(0);
    for secret in stack.secrets(&apps) {
        assert!(!log.contains(secret), "a log line of ingest holds a secret");
    }
    Ok(())
}
