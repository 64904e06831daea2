//! End to end: the `hrsync` binary's three roles against the real broker
//! (tansu), PostgreSQL and SCIM apps, driven from the HR side.
//!
//! - `the_story_through_three_role_processes`: ingest, projector and
//!   provisioner as three processes (`hrsync run --role ...`), two apps on
//!   the third-party `scim2-server`; each app's accounts are checked after
//!   every HR step.
//! - `a_snapshot_of_10000_workers_and_a_termination_that_overtakes_it`: one
//!   `hrsync run --role all` process, two local SCIM apps; a 10,000-worker
//!   snapshot is provisioned fully into both, and an immediate termination
//!   pushed while that backlog is in flight reaches both apps first. Then
//!   SIGTERM stops the process cleanly.
//!
//! - `crash::killed_mid_load_and_restarted_it_ends_as_an_uninterrupted_run`:
//!   SIGKILL under load, restarted at once and after a pause.
//! - `faults::*`: the broker killed and started again, a SCIM app down, and
//!   the network to an app dropping connections, each under load; hrsync
//!   recovers by itself with nothing lost or doubled.
//! - `db_restart::postgres_crashed_under_load_and_started_again_it_ends_as_an_uninterrupted_run`:
//!   the stores' PostgreSQL crashed under load and started again, and again
//!   while idle, hrsync left running.
//!
//! - `push_scale::*`: two push API processes on one store share
//!   idempotency keys.
//! - `scale::*`: three provisioner processes share the work; one killed
//!   under load, the apps still end right.
//! - `traces::*`: a pushed hire's spans from every stage in one trace, at
//!   a real OTLP receiver.
//! - `standby::*`: a second projector on the same store waits unready and
//!   takes over when the first is killed.
//! - `admin::*`: the admin API behind a real OAuth 2.0 issuer.
//! - `admin_history::*`: its terminations (with each app's deactivation
//!   and latency) and snapshot imports.
//! - `tasks::*`: a manual-task app (no SCIM) in the joiner, mover, leaver
//!   story: tasks listed and closed through the admin API, the termination
//!   complete only once its task is closed.
//!
//! Registered as a test of the `hrsync` package (it runs that binary).

mod admin;
mod admin_history;
mod console;
mod crash;
mod db_restart;
mod faults;
mod hooks;
mod load;
mod push_scale;
mod scale;
mod stack;
mod standby;
mod tasks;
mod traces;

use std::time::{Duration, Instant};

use serde_json::json;
use stack::{eventually, eventually_every, eventually_within, Processes, ScimApps};

/// Lucy's account in each app: `(exists, active, groups)`.
async fn lucy(apps: &ScimApps) -> anyhow::Result<Vec<(String, Option<(bool, Vec<String>)>)>> {
    apps.account("lucy@example.com").await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_story_through_three_role_processes() -> anyhow::Result<()> {
    let apps = ScimApps::third_party(&["slack", "lattice"]).await?;
    let stack = Processes::start(&apps, &["ingest", "projector", "provisioner"]).await?;
    let want = |slack: Option<(bool, &[&str])>, lattice: Option<(bool, &[&str])>| {
        let own = |a: Option<(bool, &[&str])>| {
            a.map(|(active, groups)| {
                let mut g: Vec<String> = groups.iter().map(|s| (*s).to_owned()).collect();
                g.sort();
                (active, g)
            })
        };
        vec![
            ("slack".to_owned(), own(slack)),
            ("lattice".to_owned(), own(lattice)),
        ]
    };
    let support: &[&str] = &["Customer Support", "Everyone"];
    let managers: &[&str] = &["People Managers"];

    // 1. Lucy is hired into Customer Support, in the HR system's trace.
    let trace = uuid::Uuid::new_v4().simple().to_string();
    stack
        .push_traced(
            json!({
            "type": "hire", "employee_id": "E7", "time_zone": "Europe/London",
            "attributes": {"given_name": "Lucy", "family_name": "Gray",
                "work_email": "lucy@example.com", "employment_type": "employee",
                "department": "Customer Support", "title": "Support Agent"}}),
            Some(&format!("00-{trace}-00f067aa0ba902b7-01")),
        )
        .await?;
    let expected = want(Some((true, support)), None);
    eventually("hired: a slack account", || async {
        Ok(lucy(&apps).await? == expected)
    })
    .await?;
    // One trace from the HR request to the app: through ingest, projector
    // and provisioner (its audit record) to each SCIM call it made. (The
    // audit record is written after the app answered: wait for it.)
    eventually("the create audited", || async {
        Ok(!stack.audit_traces("slack", "CREATE").await?.is_empty())
    })
    .await?;
    assert_eq!(
        stack.audit_traces("slack", "CREATE").await?,
        vec![trace.clone()]
    );
    // (Besides them, the provisioner's start-up capability probe, in a
    // trace of its own.)
    let calls = apps.traceparents("slack");
    let in_trace = calls
        .iter()
        .filter(|t| t.split('-').nth(1) == Some(trace.as_str()))
        .count();
    assert!(
        in_trace >= 3 && calls.len() - in_trace <= 1,
        "the SCIM calls for the hire were not in the HR trace {trace}: {calls:?}"
    );

    // 2. Promoted to manager: People Managers, and with it lattice.
    stack
        .push(
            json!({"type": "move", "employee_id": "E7", "time_zone": "Europe/London",
            "changes": {"title": "Support Manager"}}),
        )
        .await?;
    let expected = want(Some((true, support)), Some((true, managers)));
    eventually("promoted: a lattice account too", || async {
        Ok(lucy(&apps).await? == expected)
    })
    .await?;
    let slack = apps.get("slack");
    let account = slack.user("lucy@example.com").await?.expect("account");
    assert_eq!(account["title"], "Support Manager");

    // 3. Pre-hire: Tom starts next week; slack (7 pre-hire days) prepares an
    //    inactive account now, lattice nothing.
    let start = (chrono::Utc::now() + chrono::Duration::days(5)).to_rfc3339();
    stack
        .push(json!({
            "type": "hire", "employee_id": "E8", "time_zone": "Europe/London",
            "effective_at": start,
            "attributes": {"given_name": "Tom", "family_name": "Lee",
                "work_email": "tom@example.com", "employment_type": "employee",
                "department": "Engineering", "title": "Engineer"}}))
        .await?;
    eventually("pre-hire: an inactive slack account", || async {
        Ok(apps.account("tom@example.com").await?
            == vec![
                (
                    "slack".to_owned(),
                    Some((false, vec!["Everyone".to_owned()])),
                ),
                ("lattice".to_owned(), None),
            ])
    })
    .await?;

    // 4. Leave, then return.
    stack
        .push(json!({"type": "leave_started", "employee_id": "E7",
            "time_zone": "Europe/London", "leave_type": "parental"}))
        .await?;
    let expected = want(Some((false, support)), Some((false, managers)));
    eventually("on leave: both suspended", || async {
        Ok(lucy(&apps).await? == expected)
    })
    .await?;
    stack
        .push(json!({"type": "leave_ended", "employee_id": "E7",
            "time_zone": "Europe/London"}))
        .await?;
    let expected = want(Some((true, support)), Some((true, managers)));
    eventually("back from leave: both active", || async {
        Ok(lucy(&apps).await? == expected)
    })
    .await?;

    // 5. Terminated immediately: deactivated everywhere, groups left.
    let sent = Instant::now();
    stack
        .push(json!({"type": "terminate", "employee_id": "E7",
            "time_zone": "Europe/London", "immediate": true, "reason": "involuntary"}))
        .await?;
    let expected = want(Some((false, &[])), Some((false, &[])));
    eventually("terminated: both deactivated", || async {
        Ok(lucy(&apps).await? == expected)
    })
    .await?;
    println!("termination reached both apps in {:?}", sent.elapsed());

    // 6. Rehired as an agent: slack active again (same account), lattice
    //    stays deactivated (no longer a manager).
    let before = slack.user("lucy@example.com").await?.expect("account");
    stack
        .push(json!({
            "type": "rehire", "employee_id": "E7", "time_zone": "Europe/London",
            "attributes": {"given_name": "Lucy", "family_name": "Gray",
                "work_email": "lucy@example.com", "employment_type": "employee",
                "department": "Customer Support", "title": "Support Agent"}}))
        .await?;
    let expected = want(Some((true, support)), Some((false, &[])));
    eventually("rehired: slack active again", || async {
        Ok(lucy(&apps).await? == expected)
    })
    .await?;
    let after = slack.user("lucy@example.com").await?.expect("account");
    assert_eq!(before["id"], after["id"], "the same account, reactivated");
    assert_eq!(
        slack.count().await?,
        2,
        "no duplicate accounts (Lucy and Tom)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_of_10000_workers_and_a_termination_that_overtakes_it() -> anyhow::Result<()> {
    const WORKERS: usize = 10_000;
    let apps = ScimApps::local(&["slack", "zendesk"])
        .await?
        .without_groups();
    let stack = Processes::start(&apps, &["all"]).await?;

    let mut csv = String::from(
        "employee_id,given_name,family_name,title,department,employment_type,status,hire_date,time_zone\n",
    );
    for i in 1..=WORKERS {
        csv.push_str(&format!(
            "W{i:05},Given{i},Family{i},Support Agent,Customer Support,employee,active,2021-03-01,Europe/Paris\n"
        ));
    }
    let started = Instant::now();
    stack.import(&csv)?;
    println!("snapshot imported in {:?}", started.elapsed());

    // The first worker's accounts exist while the backlog is still being
    // provisioned; terminate them now.
    let first = "W00001";
    eventually_within("the first accounts", Duration::from_secs(300), || async {
        Ok(apps
            .account(first)
            .await?
            .iter()
            .all(|(_, a)| a.as_ref().is_some_and(|(active, _)| *active)))
    })
    .await?;
    let sent = Instant::now();
    stack
        .push(json!({"type": "terminate", "employee_id": first,
            "time_zone": "Europe/Paris", "immediate": true}))
        .await?;
    eventually("the termination in both apps", || async {
        Ok(apps
            .account(first)
            .await?
            .iter()
            .all(|(_, a)| a.as_ref().is_some_and(|(active, _)| !*active)))
    })
    .await?;
    let took = sent.elapsed();
    let counts = apps.counts().await?;
    println!("termination applied in {took:?} with accounts created so far: {counts:?}");
    assert!(
        counts.iter().any(|(_, n)| *n < WORKERS),
        "the backlog was done before the termination: {counts:?}; it did not overtake anything"
    );

    // The whole snapshot arrives in both apps; the terminated worker stays
    // deactivated.
    eventually_every(
        "every account in both apps",
        Duration::from_secs(600),
        Duration::from_secs(1),
        || async {
            let counts = apps.counts().await?;
            println!("{:?}: {counts:?}", started.elapsed());
            Ok(counts.iter().all(|(_, n)| *n == WORKERS))
        },
    )
    .await?;
    println!(
        "{WORKERS} workers provisioned into 2 apps in {:?}",
        started.elapsed()
    );
    for (app, account) in apps.account(first).await? {
        assert_eq!(account.map(|(active, _)| active), Some(false), "{app}");
    }
    for (app, account) in apps.account("W09999").await? {
        assert_eq!(account.map(|(active, _)| active), Some(true), "{app}");
    }

    // The metrics saw it.
    let metrics = stack.metrics(0).await?;
    for series in [
        "hrsync_termination_latency_seconds_bucket",
        "hrsync_bus_consumer_lag",
        "hrsync_provisioner_scim_request_seconds_bucket",
        "hrsync_provisioner_quarantined",
    ] {
        assert!(metrics.contains(series), "/metrics lacks {series}");
    }

    // SIGTERM: in-flight work finishes, the process exits 0.
    let code = stack.terminate(0, Duration::from_secs(30))?;
    assert_eq!(code, Some(0), "hrsync run did not stop cleanly on SIGTERM");
    Ok(())
}
