//! The admin API's history endpoints in `hrsync run --role all`, behind a
//! real OAuth 2.0 issuer: the latest terminations, each with when every
//! app deactivated the account and how long after the HR event (as the
//! audit recorded it), newest first and paged; a termination the
//! deprovision guard holds listed as held until released; the snapshot
//! imports, newest first, by source and paged; and the provisioner's
//! dead letters, listed and redriven.

use chrono::DateTime;
use hrsync_tests::{Fault, Issuer, HRSYNC_AUDIENCE};
use serde_json::{json, Value};

use crate::stack::{eventually, Processes, ScimApps, Stores};

/// GET `url` with `token`, expecting 200; the JSON body.
async fn get(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
    let answer = http.get(url).bearer_auth(token).send().await?;
    let status = answer.status();
    let body: Value = answer.json().await?;
    anyhow::ensure!(status == 200, "GET {url}: {status} {body}");
    Ok(body)
}

/// GET `url` with `token`; the status.
async fn status(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<u16> {
    Ok(http
        .get(url)
        .bearer_auth(token)
        .send()
        .await?
        .status()
        .as_u16())
}

/// An RFC 3339 time of the API, as ms since the epoch.
fn ms(time: &Value) -> anyhow::Result<i64> {
    let text = time
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("not a time: {time}"))?;
    Ok(DateTime::parse_from_rfc3339(text)?.timestamp_millis())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Hires `id` (`name`@example.com) through the push API.
async fn hire(stack: &Processes, id: &str, name: &str) -> anyhow::Result<()> {
    stack
        .push(json!({
            "type": "hire", "employee_id": id, "time_zone": "Europe/London",
            "attributes": {"given_name": name, "family_name": "Gray",
                "work_email": format!("{name}@example.com"), "employment_type": "employee"}}))
        .await?;
    Ok(())
}

/// Terminates `id` immediately through the push API.
async fn terminate(stack: &Processes, id: &str) -> anyhow::Result<()> {
    stack
        .push(json!({"type": "terminate", "employee_id": id,
            "time_zone": "Europe/London", "immediate": true}))
        .await?;
    Ok(())
}

/// Whether `user`'s slack account is there and as `active`.
pub(crate) async fn slack_active(
    apps: &ScimApps,
    user: &str,
    active: bool,
) -> anyhow::Result<bool> {
    Ok(apps
        .account(user)
        .await?
        .first()
        .and_then(|(_, account)| account.as_ref())
        .is_some_and(|(is, _)| *is == active))
}

/// The employee ids a page of terminations lists, in order.
fn listed(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["employee_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn terminations_list_each_apps_deactivation_and_its_latency_after_the_hr_event(
) -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?;
    let stack = Processes::start_admin(&apps, &["all"], issuer.issuer(), "").await?;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", stack.admin);
    let reader = issuer
        .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;

    let none = get(&http, &api("/terminations"), &reader).await?;
    assert_eq!(none, json!({"items": [], "next_cursor": null}));

    for (id, name) in [("E7", "lucy"), ("E8", "tom"), ("E9", "ann")] {
        hire(&stack, id, name).await?;
    }
    eventually("three slack accounts", || async {
        Ok(slack_active(&apps, "lucy@example.com", true).await?
            && slack_active(&apps, "tom@example.com", true).await?
            && slack_active(&apps, "ann@example.com", true).await?)
    })
    .await?;

    // Lucy is terminated, then Tom; Ann stays.
    let pushed_ms = now_ms();
    terminate(&stack, "E7").await?;
    eventually("lucy deactivated in slack", || async {
        slack_active(&apps, "lucy@example.com", false).await
    })
    .await?;
    let seen_ms = now_ms();
    terminate(&stack, "E8").await?;
    eventually("tom deactivated in slack", || async {
        slack_active(&apps, "tom@example.com", false).await
    })
    .await?;
    // The audit is written behind the apps' answers: wait for both.
    let deactivated = |page: &Value| {
        page["items"].as_array().is_some_and(|items| {
            items.len() == 2
                && items
                    .iter()
                    .all(|t| t["apps"][0]["status"] == "deactivated")
        })
    };
    eventually("both terminations listed as deactivated", || async {
        Ok(deactivated(
            &get(&http, &api("/terminations"), &reader).await?,
        ))
    })
    .await?;
    let page = get(&http, &api("/terminations"), &reader).await?;
    assert_eq!(listed(&page), ["E8", "E7"], "newest first: {page}");
    assert_eq!(page["next_cursor"], Value::Null);

    let lucy = &page["items"][1];
    assert!(lucy["person_id"].as_str().is_some_and(|id| !id.is_empty()));
    let terminated = ms(&lucy["terminated_at"])?;
    assert!(
        (pushed_ms - 1_000..=seen_ms).contains(&terminated),
        "the HR event time is when the termination was pushed: {lucy}"
    );
    assert_eq!(lucy["apps"].as_array().map(Vec::len), Some(1), "{lucy}");
    let slack = &lucy["apps"][0];
    assert_eq!(slack["app"], "slack");
    let latency = slack["latency_ms"].as_i64().expect("a latency");
    assert!((0..60_000).contains(&latency), "{slack}");
    let deactivated_at = ms(&slack["deactivated_at"])?;
    assert_eq!(deactivated_at - terminated, latency);
    assert!(deactivated_at <= now_ms(), "{slack}");
    assert_eq!(slack["error"], Value::Null);

    // The same deactivation as the audit records it.
    let audit = get(
        &http,
        &api("/audit?person=E7&app=slack&operation=DEACTIVATE&outcome=SUCCESS"),
        &reader,
    )
    .await?;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1), "{audit}");
    assert_eq!(audit["items"][0]["at"], slack["deactivated_at"]);
    assert_eq!(audit["items"][0]["trace_id"], slack["trace_id"]);

    // Paged: one at a time, newest first.
    let first = get(&http, &api("/terminations?limit=1"), &reader).await?;
    assert_eq!(listed(&first), ["E8"]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = get(
        &http,
        &api(&format!("/terminations?limit=1&cursor={cursor}")),
        &reader,
    )
    .await?;
    assert_eq!(listed(&second), ["E7"]);
    assert_eq!(second["items"][0], lucy.clone());

    // Every change read: nothing waits for the provisioner, on either lane
    // (the terminations went by the priority topic).
    eventually("no change waiting", || async {
        let apps = get(&http, &api("/apps"), &reader).await?;
        Ok(apps[0]["changes_waiting"] == 0)
    })
    .await?;
    let apps = get(&http, &api("/apps"), &reader).await?;
    assert_eq!(apps[0]["quarantined"], false, "{apps}");

    // Bad paging is refused; no token, no list.
    for bad in ["/terminations?cursor=nonsense", "/terminations?limit=0"] {
        assert_eq!(status(&http, &api(bad), &reader).await?, 400, "{bad}");
    }
    let answer = http.get(api("/terminations")).send().await?;
    assert_eq!(answer.status(), 401);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_termination_the_guard_holds_is_listed_as_held_until_released() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?;
    // Every deactivation of slack is held by its guard.
    let guard = "guard_max_deactivations = 0\nguard_immediate_allowance = 0";
    let stack = Processes::start_admin(&apps, &["all"], issuer.issuer(), guard).await?;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", stack.admin);
    let admin = issuer
        .token("admin", "hrsync:read hrsync:admin", HRSYNC_AUDIENCE)
        .await?;

    hire(&stack, "E7", "lucy").await?;
    eventually("a slack account", || async {
        slack_active(&apps, "lucy@example.com", true).await
    })
    .await?;
    terminate(&stack, "E7").await?;
    let app_of = |page: &Value| page["items"][0]["apps"][0].clone();
    eventually("the termination listed as held", || async {
        let page = get(&http, &api("/terminations"), &admin).await?;
        Ok(app_of(&page)["status"] == "held")
    })
    .await?;
    let held = app_of(&get(&http, &api("/terminations"), &admin).await?);
    assert_eq!(held["deactivated_at"], Value::Null, "{held}");
    assert_eq!(held["latency_ms"], Value::Null, "{held}");
    assert!(slack_active(&apps, "lucy@example.com", true).await?);

    // Released: deactivated, the hold counted in its latency.
    let held_ms = now_ms();
    let answer = http
        .post(api("/apps/slack/guard/release"))
        .bearer_auth(&admin)
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    eventually("the termination listed as deactivated", || async {
        let page = get(&http, &api("/terminations"), &admin).await?;
        Ok(app_of(&page)["status"] == "deactivated")
    })
    .await?;
    let page = get(&http, &api("/terminations"), &admin).await?;
    let done = app_of(&page);
    let terminated = ms(&page["items"][0]["terminated_at"])?;
    assert!(ms(&done["deactivated_at"])? >= held_ms - 1_000, "{done}");
    assert_eq!(
        done["latency_ms"].as_i64(),
        Some(ms(&done["deactivated_at"])? - terminated)
    );
    Ok(())
}

/// A snapshot of `workers` (employee id, given name).
fn snapshot(workers: &[(&str, &str)]) -> String {
    let mut csv = String::from(
        "employee_id,given_name,family_name,title,department,employment_type,status,hire_date,time_zone\n",
    );
    for (id, name) in workers {
        csv.push_str(&format!(
            "{id},{name},Gray,Agent,Customer Support,employee,active,2021-03-01,Europe/Paris\n"
        ));
    }
    csv
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_are_listed_newest_first_by_source_and_paged() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?;
    let stack = Processes::start_admin(&apps, &["all"], issuer.issuer(), "").await?;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", stack.admin);
    let reader = issuer
        .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;

    let none = get(&http, &api("/imports"), &reader).await?;
    assert_eq!(none, json!({"items": [], "next_cursor": null}));

    let started_ms = now_ms();
    stack.import(&snapshot(&[("W1", "Ada")]))?;
    stack.import(&snapshot(&[("W1", "Ada"), ("W2", "Bob"), ("W3", "Cy")]))?;
    let done_ms = now_ms();

    let page = get(&http, &api("/imports"), &reader).await?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{page}");
    assert_eq!(page["next_cursor"], Value::Null);
    let (newest, oldest) = (&items[0], &items[1]);
    // The second import is the baseline now, the first accepted before it;
    // each implied its hires.
    assert_eq!(newest["state"], "baseline", "{page}");
    assert_eq!(oldest["state"], "accepted", "{page}");
    assert_eq!(newest["event_count"], 2);
    assert_eq!(oldest["event_count"], 1);
    for import in &items {
        assert_eq!(import["source"], "hris");
        assert!(import["file_digest"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));
        let created = ms(&import["created_at"])?;
        let accepted = ms(&import["accepted_at"])?;
        assert!((started_ms..=done_ms).contains(&created), "{import}");
        assert!((created..=done_ms).contains(&accepted), "{import}");
    }
    assert!(ms(&newest["created_at"])? >= ms(&oldest["created_at"])?);
    assert_ne!(newest["import_id"], oldest["import_id"]);
    assert_ne!(newest["file_digest"], oldest["file_digest"]);

    // A dry run of an uploaded export: the events it would publish, by
    // kind, against the baseline; nothing is published or recorded.
    let dry_run = api("/imports/hris/dry-run");
    let upload = snapshot(&[("W1", "Ada"), ("W2", "Bob"), ("W3", "Cy"), ("W4", "Dee")]);
    let answer = http
        .post(&dry_run)
        .bearer_auth(&reader)
        .header("content-type", "text/csv")
        .body(upload)
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    let plan: Value = answer.json().await?;
    assert_eq!(plan["summary"]["hires"], 1, "{plan}");
    assert_eq!(plan["summary"]["workers"], 4);
    assert_eq!(plan["events"]["hire"][0]["employee_id"], "W4");
    assert_eq!(plan["events"]["hire"][0]["name"], "Dee Gray", "{plan}");
    assert_eq!(plan["refused_without_force"], json!([]));
    let malformed = http
        .post(&dry_run)
        .bearer_auth(&reader)
        .header("content-type", "text/csv")
        .body("employee_id,given_name\nW9\n")
        .send()
        .await?;
    assert_eq!(malformed.status(), 422);
    let problem: Value = malformed.json().await?;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("upload.csv")),
        "{problem}"
    );
    let unknown = http
        .post(api("/imports/nope/dry-run"))
        .bearer_auth(&reader)
        .body("employee_id\n")
        .send()
        .await?;
    assert_eq!(unknown.status(), 404);
    let after = get(&http, &api("/imports"), &reader).await?;
    assert_eq!(after["items"], page["items"], "a dry run records no import");

    // By source: hris has both, another source none.
    let hris = get(&http, &api("/imports?source=hris"), &reader).await?;
    assert_eq!(hris["items"], page["items"]);
    let other = get(&http, &api("/imports?source=workday"), &reader).await?;
    assert_eq!(other["items"], json!([]));

    // Paged: one at a time, newest first, then nothing.
    let first = get(&http, &api("/imports?limit=1"), &reader).await?;
    assert_eq!(first["items"], json!([newest]));
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = get(
        &http,
        &api(&format!("/imports?limit=1&cursor={cursor}")),
        &reader,
    )
    .await?;
    assert_eq!(second["items"], json!([oldest]));
    let cursor = second["next_cursor"]
        .as_str()
        .expect("a full page has a cursor");
    let third = get(
        &http,
        &api(&format!("/imports?limit=1&cursor={cursor}")),
        &reader,
    )
    .await?;
    assert_eq!(third, json!({"items": [], "next_cursor": null}));

    assert_eq!(
        status(&http, &api("/imports?cursor=7"), &reader).await?,
        400
    );
    assert_eq!(status(&http, &api("/imports?nope=1"), &reader).await?, 400);
    Ok(())
}

/// POSTs to `url` with `token`; the status and the JSON body.
async fn post(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<(u16, Value)> {
    let answer = http.post(url).bearer_auth(token).send().await?;
    let status = answer.status().as_u16();
    Ok((status, answer.json().await.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_lettered_change_is_listed_and_an_admin_redrives_it() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?.without_groups();
    let stack = Processes::start_admin(&apps, &["all"], issuer.issuer(), "").await?;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", stack.admin);
    let reader = issuer
        .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    let admin = issuer
        .token("admin", "hrsync:read hrsync:admin", HRSYNC_AUDIENCE)
        .await?;
    let empty = get(&http, &api("/dlq/provisioner"), &reader).await?;
    assert_eq!(
        (&empty["items"], &empty["pending"], &empty["topic"]),
        (&json!([]), &json!(0), &json!("hrsync.provisioner.dlq")),
        "{empty}"
    );

    // Slack refuses Lucy's and Tom's creates once (400, not retried): both
    // dead-lettered.
    for _ in 0..2 {
        apps.get("slack").proxy().inject(
            Some("POST"),
            Fault::Status {
                status: 400,
                retry_after: None,
            },
        );
    }
    hire(&stack, "E7", "lucy").await?;
    hire(&stack, "E8", "tom").await?;
    eventually("both creates dead-lettered", || async {
        Ok(get(&http, &api("/dlq/provisioner"), &reader).await?["pending"] == 2)
    })
    .await?;
    // Paged one at a time.
    let first = get(&http, &api("/dlq/provisioner?limit=1"), &reader).await?;
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = get(
        &http,
        &api(&format!("/dlq/provisioner?limit=1&cursor={cursor}")),
        &reader,
    )
    .await?;
    assert_eq!(second["next_cursor"], Value::Null, "{second}");
    let mut keyed: Vec<Value> = [&first, &second]
        .into_iter()
        .map(|p| p["items"][0]["summary"]["employee_id"].clone())
        .collect();
    keyed.sort_by_key(Value::to_string);
    assert_eq!(keyed, [json!("E7"), json!("E8")]);
    let page = get(&http, &api("/dlq/provisioner"), &reader).await?;
    let letter = page["items"]
        .as_array()
        .and_then(|items| items.iter().find(|l| l["summary"]["employee_id"] == "E7"))
        .cloned()
        .unwrap_or_default();
    let letter = &letter;
    assert_eq!(letter["replayed"], false, "{page}");
    assert_eq!(letter["stage"], "provisioner");
    let error = letter["error"].as_str().unwrap_or_default();
    assert!(error.contains("slack") && error.contains("400"), "{page}");
    assert!(letter["from"]
        .as_str()
        .is_some_and(|f| f.starts_with("directory.changes")));
    assert_eq!(letter["summary"]["kind"], "directory_change", "{page}");
    assert_eq!(letter["summary"]["apps"], json!(["slack"]));
    assert_eq!(page["next_cursor"], Value::Null);
    assert!(apps.account("lucy@example.com").await?[0].1.is_none());

    // Redriving is an admin action: a reader is refused.
    let redrive = api("/dlq/provisioner/redrive");
    assert_eq!(post(&http, &redrive, &reader).await?.0, 403);
    let (code, redriven) = post(&http, &redrive, &admin).await?;
    assert_eq!(code, 200, "{redriven}");
    assert_eq!(
        (&redriven["replayed"], &redriven["pending"]),
        (&json!(2), &json!(0)),
        "{redriven}"
    );
    assert!(slack_active(&apps, "lucy@example.com", true).await?);
    assert!(slack_active(&apps, "tom@example.com", true).await?);

    // Nothing pending; the letter is still listed, as replayed.
    let pending = get(&http, &api("/dlq/provisioner"), &reader).await?;
    assert_eq!(pending["items"], json!([]), "{pending}");
    let all = get(&http, &api("/dlq/provisioner?state=all"), &reader).await?;
    assert_eq!(all["items"][0]["replayed"], true, "{all}");
    assert_eq!(all["items"][1]["replayed"], true, "{all}");
    assert_eq!((&all["stored"], &all["pending"]), (&json!(2), &json!(0)));

    // The redrive is recorded with who ran it.
    let actions = get(&http, &api("/actions?action=dlq.redrive"), &reader).await?;
    let action = &actions["items"][0];
    assert_eq!(
        (&action["subject"], &action["target"], &action["outcome"]),
        (
            &json!("admin"),
            &json!("hrsync.provisioner.dlq"),
            &json!("ok")
        ),
        "{actions}"
    );
    assert_eq!(action["action_id"], redriven["action_id"]);
    assert_eq!(action["detail"], json!({"replayed": 2}));

    // The other stages' topics are listed too; anything else is refused.
    let projector = get(&http, &api("/dlq/projector"), &reader).await?;
    assert_eq!(projector["topic"], "hrsync.projector.dlq");
    assert_eq!(status(&http, &api("/dlq/billing"), &reader).await?, 404);
    assert_eq!(
        status(&http, &api("/dlq/provisioner?state=some"), &reader).await?,
        400
    );
    assert_eq!(
        status(&http, &api("/dlq/provisioner?cursor=0~x"), &reader).await?,
        400
    );
    Ok(())
}

/// Each role keeps its own SQLite store here: `import --force` is recorded
/// in the ingest store, and listed among the admin actions with those the
/// provisioner's store holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_forced_import_is_listed_among_the_admin_actions() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?.without_groups();
    let stack = Processes::start_admin_on(&apps, &["all"], Stores::Sqlite, issuer.issuer()).await?;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", stack.admin);
    let reader = issuer
        .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    let admin = issuer
        .token("admin", "hrsync:read hrsync:admin", HRSYNC_AUDIENCE)
        .await?;
    hire(&stack, "E7", "lucy").await?;
    eventually("lucy in slack", || async {
        slack_active(&apps, "lucy@example.com", true).await
    })
    .await?;
    let (code, _) = post(&http, &api("/persons/E7/provision"), &admin).await?;
    assert_eq!(code, 200);
    let output = stack
        .import_command(&snapshot(&[("W1", "Ada")]))?
        .arg("--force")
        .env("USER", "ops-alice")
        .output()?;
    assert!(output.status.success(), "{output:?}");

    let actions = get(&http, &api("/actions"), &reader).await?;
    let listed: Vec<(&str, &str, &str)> = actions["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let field = |k: &str| a[k].as_str().unwrap_or_default();
            (field("action"), field("subject"), field("via"))
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("import.force", "ops-alice", "cli"),
            ("provision_now", "admin", "api")
        ],
        "newest first, from both stores: {actions}"
    );
    // Paged across both stores.
    let first = get(&http, &api("/actions?limit=1"), &reader).await?;
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = get(
        &http,
        &api(&format!("/actions?limit=1&cursor={cursor}")),
        &reader,
    )
    .await?;
    assert_eq!(second["items"][0]["action"], "provision_now", "{second}");
    Ok(())
}
