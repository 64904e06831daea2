//! PostgreSQL restarted under load: `hrsync run --role all`, every store on
//! a private PostgreSQL server, provisions a snapshot load into two local
//! apps while the server is crashed (`pg_ctl stop -m immediate`), kept down
//! for 8 s and started again. Nobody restarts hrsync: it must go on by
//! itself, and the apps must end as an uninterrupted run leaves them. An
//! import running when the server goes down, and one started while it is
//! down, must fail cleanly (or wait); running the import again finishes it
//! with nothing doubled. A push with an idempotency key while it is down is
//! accepted once the store is back, or refused with 503 and accepted when
//! retried, as the same event. Every account's creation must be in the audit
//! table. Then the server is crashed again while the pipeline is idle (the
//! pools' connections break unnoticed): a termination pushed afterwards
//! reaches both apps, audited once, with each failed attempt audited too.

use std::process::{Child, Output};
use std::time::{Duration, Instant};

use hrsync_tests::{PgServer, StopMode};
use serde_json::json;

use crate::load::Load;
use crate::stack::{eventually, eventually_every, Processes, ScimApps, Stores};

const LOAD: Load = Load { workers: 3_000 };

/// How long the server stays down.
const DOWN: Duration = Duration::from_secs(8);

/// Waits up to `limit` for `child` to exit; kills it and fails if it has
/// not (an import that hangs on a dead database).
fn wait_bounded(what: &str, mut child: Child, limit: Duration) -> anyhow::Result<Output> {
    let deadline = Instant::now() + limit;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output()?;
            anyhow::bail!(
                "{what}: still running {limit:?} later\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(child.wait_with_output()?)
}

/// An import that ran into the database outage either finished (it waited)
/// or failed with an error naming the store, exit code 1, no panic.
fn failed_cleanly_or_finished(what: &str, output: &Output) -> anyhow::Result<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(!stderr.contains("panicked"), "{what}: panicked\n{stderr}");
    match output.status.code() {
        Some(0) => Ok("finished".to_owned()),
        Some(1) => {
            let Some(error) = stderr.lines().find(|l| l.starts_with("Error: ")) else {
                anyhow::bail!("{what}: failed without saying why\n{stderr}");
            };
            anyhow::ensure!(
                error.contains("store"),
                "{what}: the error does not say the store failed: {error}"
            );
            // Failed on the way, the import says that running it again
            // finishes it.
            anyhow::ensure!(
                !error.starts_with("Error: ingest store:")
                    || error.contains("run the same import again"),
                "{what}: the error does not say what to do: {error}"
            );
            Ok(format!("failed cleanly: {error}"))
        }
        other => anyhow::bail!("{what}: exit {other:?}\n{stderr}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_crashed_under_load_and_started_again_it_ends_as_an_uninterrupted_run(
) -> anyhow::Result<()> {
    let mut server = PgServer::start()?;
    let apps = ScimApps::local(&["slack", "zendesk"])
        .await?
        .without_groups();
    let stack =
        Processes::start_on(&apps, &["all"], Stores::PostgresAt(server.url("postgres"))).await?;
    let started = Instant::now();
    stack.import(&LOAD.hires())?;
    LOAD.until_created(&apps, 0.2, Duration::from_secs(120))
        .await?;

    // The second snapshot's import is under way when the server crashes.
    let during = stack.import_command(&LOAD.changes())?.output_piped()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop(StopMode::Immediate)?;
    let down = Instant::now();
    println!(
        "{:?}: PostgreSQL crashed with {:?}",
        started.elapsed(),
        apps.counts().await?
    );
    // And an import started while it is down, and a push of the
    // termination that snapshot also holds, with an idempotency key.
    let while_down = stack.import_command(&LOAD.changes())?.output_piped()?;
    let leaver = json!({"type": "terminate", "employee_id": "W00007",
        "time_zone": "Europe/Paris", "immediate": true});
    tokio::time::sleep(DOWN.saturating_sub(down.elapsed()) / 2).await;
    anyhow::ensure!(
        stack.exited(0)?.is_none(),
        "hrsync run exited while PostgreSQL was down\n{}",
        stack.log_tail(0)
    );
    // (The push waits for the store, or answers 503.)
    let (pushed, started_again) = tokio::join!(
        tokio::time::timeout(
            Duration::from_secs(60),
            stack.push_keyed(&leaver, "e2e-db-restart-1"),
        ),
        async {
            tokio::time::sleep(DOWN.saturating_sub(down.elapsed())).await;
            server.start_again()
        }
    );
    started_again?;
    println!(
        "{:?}: PostgreSQL started again after {:?}",
        started.elapsed(),
        down.elapsed()
    );

    for (what, child) in [
        ("the import running at the crash", during),
        ("the import started while down", while_down),
    ] {
        let output = wait_bounded(what, child, Duration::from_secs(90))?;
        println!("{what}: {}", failed_cleanly_or_finished(what, &output)?);
    }

    // The push during the outage was accepted once the store was back, or
    // refused with 503 and accepted when retried; a retry afterwards
    // answers the same event.
    let (status, body) = pushed.map_err(|_| anyhow::anyhow!("the push hung"))??;
    println!("the push while down: {status} {body}");
    let (status, first) = match status {
        202 => (status, body),
        503 => stack.push_keyed(&leaver, "e2e-db-restart-1").await?,
        other => anyhow::bail!("the push while down answered {other} {body}"),
    };
    anyhow::ensure!(status == 202, "the push after the outage: {status} {first}");
    let (status, again) = stack.push_keyed(&leaver, "e2e-db-restart-1").await?;
    anyhow::ensure!(
        status == 202 && again["event_id"] == first["event_id"] && again["replayed"] == true,
        "the push retried under its key is not the same event: {status} {again} vs {first}"
    );

    // The pipeline goes on by itself: provisioning resumes.
    let before = apps.all()[0].count().await?;
    eventually_every(
        "provisioning goes on within 60 s of the database's return",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async { Ok(apps.all()[0].count().await? > before) },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", stack.log_tail(0)))?;

    // Running the import again finishes it; once more publishes nothing.
    stack.import(&LOAD.changes())?;
    let again = stack.import_command(&LOAD.changes())?.output()?;
    let stdout = String::from_utf8_lossy(&again.stdout);
    anyhow::ensure!(
        again.status.success() && stdout.contains("nothing published"),
        "the third import of the same snapshot published something: {stdout}{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let settled = eventually_every(
        "every account as desired in both apps",
        Duration::from_secs(180),
        Duration::from_secs(1),
        || async { Ok(LOAD.differences(&apps).await?.is_empty()) },
    )
    .await;
    if let Err(error) = settled {
        anyhow::bail!(
            "{error}\n{:#?}\n{}\nPostgreSQL:\n{}",
            LOAD.differences(&apps).await?,
            stack.log_tail(0),
            server.log_tail()
        );
    }
    println!(
        "{} workers and their changes in place after {:?}",
        LOAD.workers,
        started.elapsed()
    );

    // Every account's creation is in the audit table: the records the
    // provisioner was writing when the database went away were stored
    // once it came back.
    for app in apps.all() {
        let accounts: Vec<String> = app
            .users()
            .await?
            .iter()
            .filter_map(|u| u["id"].as_str().map(str::to_owned))
            .collect();
        let unaudited = || async {
            let audited = stack.audited_accounts(&app.name).await?;
            anyhow::Ok(accounts.iter().filter(|id| !audited.contains(*id)).count())
        };
        let all_audited = eventually_every(
            &format!("every {} account's creation audited", app.name),
            Duration::from_secs(30),
            Duration::from_millis(500),
            || async { Ok(unaudited().await? == 0) },
        )
        .await;
        if let Err(error) = all_audited {
            anyhow::bail!(
                "{error}: {} of {} accounts have no audit record\n{}",
                unaudited().await?,
                accounts.len(),
                stack.log_tail(0)
            );
        }
    }

    // Restarted again while the pipeline is idle: the connections the
    // pools keep broke without anyone noticing. The same process goes on: a
    // termination pushed now reaches both apps, and each deactivation is
    // audited once.
    server.stop(StopMode::Immediate)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.start_again()?;
    let mut deactivations = Vec::new();
    for app in apps.all() {
        deactivations.push(stack.audit_count(&app.name, "DEACTIVATE").await?);
    }
    anyhow::ensure!(stack.exited(0)?.is_none(), "hrsync run exited");
    stack.termination_reaches_every_app(&apps, "W00002").await?;
    for (app, before) in apps.all().iter().zip(deactivations) {
        let audited = || stack.audit_count(&app.name, "DEACTIVATE");
        let once = eventually("the deactivation audited", || async {
            Ok(audited().await? > before)
        })
        .await;
        if let Err(error) = once {
            anyhow::bail!("{}: {error}\n{}", app.name, stack.log_tail(0));
        }
        assert_eq!(audited().await?, before + 1, "{}: audited twice", app.name);
    }
    // Every attempt is audited: the attempts that met a connection broken
    // by the restart as failed, then the one that succeeded.
    for app in apps.all() {
        let attempts = stack
            .audited_attempts(&app.name, "W00002", "DEACTIVATE")
            .await?;
        let Some((succeeded_at, failed)) = attempts else {
            anyhow::bail!("{}: the deactivation's audit record is gone", app.name);
        };
        println!(
            "{}: deactivated at attempt {succeeded_at}, {failed} failed attempts audited",
            app.name
        );
        anyhow::ensure!(
            failed >= succeeded_at - 1,
            "{}: deactivated at attempt {succeeded_at}, but only {failed} failed attempts \
             audited\n{}",
            app.name,
            stack.log_tail(0)
        );
    }

    // Nothing the process logged holds a secret.
    let log = stack.log(0);
    for secret in stack.secrets(&apps) {
        assert!(!log.contains(secret), "a log line holds a secret");
    }
    Ok(())
}

/// Spawning a command with its output captured.
trait OutputPiped {
    fn output_piped(&mut self) -> anyhow::Result<Child>;
}

impl OutputPiped for std::process::Command {
    fn output_piped(&mut self) -> anyhow::Result<Child> {
        Ok(self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?)
    }
}
