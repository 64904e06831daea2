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

use crate::stack::{eventually, eventually_every, Processes, ScimApps};

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

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_load_and_restarted_it_ends_as_an_uninterrupted_run() -> anyhow::Result<()> {
    let apps = ScimApps::local(&["slack", "zendesk"])
        .await?
        .without_groups();
    let mut stack = Processes::start(&apps, &["all"]).await?;
    let started = Instant::now();
    stack.import(&hires())?;
    until_created(&apps, 0.15, Duration::from_secs(300)).await?;
    // Moves and immediate terminations of people whose hires are still
    // queued behind the backlog, and of people already provisioned.
    stack.import(&changes())?;

    // Killed, and started again at once: inside the session timeout, its
    // old self still a member of each consumer group.
    until_created(&apps, 0.35, Duration::from_secs(300)).await?;
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
    until_created(&apps, 0.65, Duration::from_secs(300)).await?;
    stack.kill(0)?;
    println!(
        "{:?}: killed with {:?}; restarting in 12 s",
        started.elapsed(),
        apps.counts().await?
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    stack.restart(0).await?;

    let settled = eventually_every(
        "every account as desired in both apps",
        Duration::from_secs(600),
        Duration::from_secs(2),
        || async { Ok(differences(&apps).await?.is_empty()) },
    )
    .await;
    if let Err(error) = settled {
        anyhow::bail!(
            "{error}\n{:#?}\n{}",
            differences(&apps).await?,
            stack.log_tail(0)
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
    let log = stack.log(0);
    for secret in stack.secrets(&apps) {
        assert!(!log.contains(secret), "a log line holds a secret");
    }
    Ok(())
}
