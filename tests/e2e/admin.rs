//! The admin API of `hrsync run --role all`, behind a real OAuth 2.0
//! issuer (`tests/oidc-provider/issuer.mjs`): a pushed hire is seen in full
//! with a reader's token; no token, another audience and a token without
//! the read scope are refused with problem details; the OpenAPI document
//! is served as committed. A termination held by the deprovision guard is
//! released by an admin (and refused to a reader), provision-now runs, and
//! each action is recorded with the token's subject; the audit is searched
//! and paged.

use hrsync_tests::{Issuer, HRSYNC_AUDIENCE};
use serde_json::{json, Value};

use crate::stack::{eventually, Processes, ScimApps};

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_sees_a_hired_person_in_full_and_others_are_refused() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?;
    let stack = Processes::start_admin(&apps, &["all"], issuer.issuer(), "").await?;
    let http = reqwest::Client::new();
    let person = format!("{}/api/v1/persons/E7", stack.admin);

    // Pushed as part of the HR system's trace.
    let trace = "5f1e0c8a9b7d4e3f8a2b1c0d9e8f7a6b";
    stack
        .push_traced(
            json!({
            "type": "hire", "employee_id": "E7", "time_zone": "Europe/London",
            "attributes": {"given_name": "Lucy", "family_name": "Gray",
                "work_email": "lucy@example.com", "employment_type": "employee",
                "department": "Customer Support", "title": "Support Agent"}}),
            Some(&format!("00-{trace}-1a2b3c4d5e6f7081-01")),
        )
        .await?;
    let reader = issuer
        .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    let read = || async {
        let answer = http.get(&person).bearer_auth(&reader).send().await?;
        anyhow::Ok(if answer.status() == 200 {
            answer.json::<Value>().await?
        } else {
            Value::Null
        })
    };
    eventually("the hire seen through the admin API", || async {
        Ok(read().await?["apps"] == json!(["slack"]))
    })
    .await?;
    let seen = read().await?;
    assert_eq!(seen["employee_id"], "E7");
    assert_eq!(seen["lifecycle"], "ACTIVE");
    assert_eq!(seen["groups"], json!(["Customer Support", "Everyone"]));
    let department = seen["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == "department"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        department,
        json!({"name": "department", "value": "Customer Support", "source": "push"})
    );
    assert_eq!(seen["events"][0]["kind"], "hire", "{seen}");
    // The event leads to its trace, and says when hrsync recorded it.
    assert_eq!(seen["events"][0]["trace_id"], trace, "{seen}");
    let recorded = seen["events"][0]["recorded_at"]
        .as_str()
        .unwrap_or_default();
    let recorded = chrono::DateTime::parse_from_rfc3339(recorded)?;
    assert!(recorded <= chrono::Utc::now(), "{seen}");

    // Why: the group by its rule and the value the rule read; the app by
    // the groups granting it.
    let why = |group: &str| {
        seen["why"]["groups"]
            .as_array()
            .and_then(|groups| groups.iter().find(|g| g["group"] == group))
            .cloned()
            .unwrap_or_default()
    };
    let support = why("Customer Support");
    assert_eq!(support["rule"], "person.department == \"Customer Support\"");
    assert_eq!(support["member"], true);
    assert_eq!(
        support["inputs"],
        json!([{"name": "person.department", "value": "Customer Support"}])
    );
    assert_eq!(why("People Managers")["member"], false, "{seen}");
    let slack = &seen["why"]["apps"][0];
    assert_eq!(slack["app"], "slack");
    assert_eq!(slack["granted_by"], json!(["Customer Support", "Everyone"]));

    // A pre-hire's view says when they start.
    let start = (chrono::Utc::now() + chrono::Duration::days(5)).to_rfc3339();
    stack
        .push(json!({
            "type": "hire", "employee_id": "E9", "time_zone": "Europe/London",
            "effective_at": start,
            "attributes": {"given_name": "Tom", "family_name": "Lee",
                "work_email": "tom@example.com", "employment_type": "employee"}}))
        .await?;
    let tom = format!("{}/api/v1/persons/E9", stack.admin);
    eventually("the pre-hire seen", || async {
        let answer = http.get(&tom).bearer_auth(&reader).send().await?;
        Ok(answer.status() == 200)
    })
    .await?;
    let tom: Value = http
        .get(&tom)
        .bearer_auth(&reader)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(tom["lifecycle"], "PENDING");
    assert_eq!(tom["upcoming"][0]["transition"], "start", "{tom}");
    assert!(tom["events"][0]["occurred_at"].is_string());

    // Refusals: problem details, with the challenge RFC 6750 asks for.
    let answer = http.get(&person).send().await?;
    assert_eq!(answer.status(), 401);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
    let pusher = issuer
        .token("pusher", "hrsync:events.write", HRSYNC_AUDIENCE)
        .await?;
    let answer = http.get(&person).bearer_auth(&pusher).send().await?;
    assert_eq!(answer.status(), 403);
    assert!(answer.headers()["www-authenticate"]
        .to_str()?
        .contains("scope=\"hrsync:read\""));
    let elsewhere = issuer
        .token("viewer", "hrsync:read", "https://other.test/")
        .await?;
    let answer = http.get(&person).bearer_auth(&elsewhere).send().await?;
    assert_eq!(answer.status(), 401);

    // Nobody by that id; no such endpoint.
    let answer = http
        .get(format!("{}/api/v1/persons/E404", stack.admin))
        .bearer_auth(&reader)
        .send()
        .await?;
    assert_eq!(answer.status(), 404);
    let problem: Value = answer.json().await?;
    assert!(problem["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("E404"));
    let answer = http
        .get(format!("{}/api/v1/nothing", stack.admin))
        .bearer_auth(&reader)
        .send()
        .await?;
    assert_eq!(answer.status(), 404);

    // The document is served without a token, as committed.
    let served: Value = http
        .get(format!("{}/api/v1/openapi.json", stack.admin))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        served,
        serde_json::from_str::<Value>(hrsync_admin::OPENAPI)?
    );
    Ok(())
}

/// GET `url` with `token`, expecting 200; the JSON body.
async fn get(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
    let answer = http.get(url).bearer_auth(token).send().await?;
    let status = answer.status();
    let body: Value = answer.json().await?;
    anyhow::ensure!(status == 200, "GET {url}: {status} {body}");
    Ok(body)
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_actions_are_scoped_and_recorded_with_their_subject() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?;
    // Every deactivation of slack is held by its guard.
    let guard = "guard_max_deactivations = 0\nguard_immediate_allowance = 0";
    let stack = Processes::start_admin(&apps, &["all"], issuer.issuer(), guard).await?;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", stack.admin);
    let reader = issuer
        .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    let admin = issuer
        .token("admin", "hrsync:read hrsync:admin", HRSYNC_AUDIENCE)
        .await?;

    stack.push(crate::stack::lucys_hire()).await?;
    eventually("hired: a slack account", || async {
        Ok(apps.account("lucy@example.com").await?[0].1.is_some())
    })
    .await?;
    stack
        .push(json!({"type": "terminate", "employee_id": "E7",
            "time_zone": "Europe/London", "immediate": true}))
        .await?;
    eventually("the deactivation held by the guard", || async {
        let health = get(&http, &api("/apps/slack"), &reader).await?;
        Ok(health["guard_tripped"] == true && health["held_by_guard"] == 1)
    })
    .await?;
    assert_eq!(
        apps.account("lucy@example.com").await?[0]
            .1
            .as_ref()
            .map(|a| a.0),
        Some(true),
        "still active while held"
    );
    let listed = get(&http, &api("/apps"), &reader).await?;
    assert_eq!(listed[0]["name"], "slack");
    assert_eq!(listed[0]["guard_tripped"], true);

    // A reader may not release; an admin may.
    let release = api("/apps/slack/guard/release");
    let answer = http.post(&release).bearer_auth(&reader).send().await?;
    assert_eq!(answer.status(), 403);
    assert!(answer.headers()["www-authenticate"]
        .to_str()?
        .contains("scope=\"hrsync:admin\""));
    let answer = http.post(&release).bearer_auth(&admin).send().await?;
    assert_eq!(answer.status(), 200);
    let released: Value = answer.json().await?;
    assert_eq!(released["released"][0]["ok"], true, "{released}");
    assert_eq!(released["released"][0]["operations"][0], "deactivated");
    assert_eq!(
        apps.account("lucy@example.com").await?[0]
            .1
            .as_ref()
            .map(|a| a.0),
        Some(false),
        "deactivated once released"
    );
    // Nothing is held any more: releasing again is a conflict.
    let answer = http.post(&release).bearer_auth(&admin).send().await?;
    assert_eq!(answer.status(), 409);

    // Provision-now, for one app, and for an app that does not exist.
    let provision = api("/persons/E7/provision");
    let answer = http
        .post(&provision)
        .bearer_auth(&admin)
        .json(&json!({"app": "slack"}))
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    let provisioned: Value = answer.json().await?;
    assert_eq!(provisioned["lifecycle"], "DEPROVISIONED", "{provisioned}");
    assert_eq!(provisioned["apps"][0]["app"], "slack");
    let answer = http
        .post(&provision)
        .bearer_auth(&admin)
        .json(&json!({"app": "nope"}))
        .send()
        .await?;
    assert_eq!(answer.status(), 422);

    // Reconciliation: not for readers; a dry run by default, changing
    // nothing and recording no action; a fix is an action.
    let reconcile = api("/apps/slack/reconcile");
    let answer = http.post(&reconcile).bearer_auth(&reader).send().await?;
    assert_eq!(answer.status(), 403);
    let answer = http.post(&reconcile).bearer_auth(&admin).send().await?;
    assert_eq!(answer.status(), 200);
    let report: Value = answer.json().await?;
    assert_eq!(
        (report["app"].as_str(), report["dry_run"].as_bool()),
        (Some("slack"), Some(true))
    );
    assert_eq!(report["accounts_read"], 1, "{report}");
    let answer = http
        .post(&reconcile)
        .bearer_auth(&admin)
        .json(&json!({"dry_run": false}))
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    let health = get(&http, &api("/apps/slack"), &reader).await?;
    let modes: Vec<&str> = health["reconcile_runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["mode"].as_str())
        .collect();
    assert_eq!(modes, ["fix", "report"], "{health}");

    // Each action is recorded with who ran it, newest first.
    let actions = get(&http, &api("/actions"), &reader).await?;
    let summary: Vec<(String, String, String, String)> = actions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let field = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (
                field("action"),
                field("target"),
                field("subject"),
                field("outcome"),
            )
        })
        .collect();
    let row = |action: &str, outcome: &str| {
        (
            action.to_owned(),
            if action == "guard.release" {
                "slack"
            } else {
                "E7"
            }
            .to_owned(),
            "admin".to_owned(),
            outcome.to_owned(),
        )
    };
    assert_eq!(
        summary,
        vec![
            (
                "reconcile".to_owned(),
                "slack".to_owned(),
                "admin".to_owned(),
                "ok".to_owned()
            ),
            row("provision_now", "failed"),
            row("provision_now", "ok"),
            row("guard.release", "ok"),
        ]
    );
    assert_eq!(actions["items"][0]["client_id"], "admin");
    assert_eq!(actions["items"][0]["via"], "api");

    // The audit, searched by person and app, newest first, paged.
    let audit = get(&http, &api("/audit?person=E7&app=slack&limit=1"), &reader).await?;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));
    // Each record names the person by employee id too (the console links it).
    assert_eq!(audit["items"][0]["employee_id"], "E7", "{audit}");
    let cursor = audit["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let next = get(
        &http,
        &api(&format!(
            "/audit?person=E7&app=slack&limit=1&cursor={cursor}"
        )),
        &reader,
    )
    .await?;
    assert_ne!(next["items"][0]["audit_id"], audit["items"][0]["audit_id"]);
    assert!(next["items"][0]["at"].as_str() <= audit["items"][0]["at"].as_str());
    let creates = get(&http, &api("/audit?person=E7&operation=CREATE"), &reader).await?;
    assert_eq!(
        creates["items"].as_array().map(Vec::len),
        Some(1),
        "{creates}"
    );
    assert_eq!(creates["items"][0]["outcome"], "SUCCESS");
    let answer = http
        .get(api("/audit?operation=EXPLODE"))
        .bearer_auth(&reader)
        .send()
        .await?;
    assert_eq!(answer.status(), 400);

    // The person's view shows the account and its last operations.
    let person = get(&http, &api("/persons/E7"), &reader).await?;
    let account = &person["accounts"][0];
    assert_eq!(account["app"], "slack");
    assert_eq!(account["active"], false);
    assert!(
        account["last_operations"]
            .as_array()
            .is_some_and(|ops| !ops.is_empty()),
        "{person}"
    );
    Ok(())
}

/// schemathesis (PyPI) generates requests from the served OpenAPI document
/// to every operation, with an admin's token, and checks each answer: no
/// 5xx, and status, content type, headers and body as documented.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_as_its_openapi_document_says() -> anyhow::Result<()> {
    let schemathesis = hrsync_tests::tools_dir().join("venv/bin/schemathesis");
    anyhow::ensure!(
        schemathesis.is_file(),
        "{} is missing: scripts/test installs it (pip install schemathesis into the venv)",
        schemathesis.display()
    );
    let issuer = Issuer::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?;
    let stack = Processes::start_admin(&apps, &["all"], issuer.issuer(), "").await?;
    stack
        .push(json!({
            "type": "hire", "employee_id": "E7", "time_zone": "Europe/London",
            "attributes": {"given_name": "Lucy", "family_name": "Gray",
                "work_email": "lucy@example.com", "employment_type": "employee"}}))
        .await?;
    let admin = issuer
        .token("admin", "hrsync:read hrsync:admin", HRSYNC_AUDIENCE)
        .await?;
    // The token works and the example person exists, so the generated
    // requests reach real data, not only refusals.
    let http = reqwest::Client::new();
    eventually("E7 seen through the admin API", || async {
        let person = format!("{}/api/v1/persons/E7", stack.admin);
        Ok(http.get(person).bearer_auth(&admin).send().await?.status() == 200)
    })
    .await?;
    // A termination and an import, so that their lists answer with items.
    eventually("E7's slack account", || async {
        Ok(apps.account("lucy@example.com").await?[0].1.is_some())
    })
    .await?;
    stack
        .push(json!({"type": "terminate", "employee_id": "E7",
            "time_zone": "Europe/London", "immediate": true}))
        .await?;
    stack.import(
        "employee_id,given_name,family_name,employment_type,status,hire_date,time_zone\n\
         W1,Ada,Gray,employee,active,2021-03-01,Europe/Paris\n",
    )?;
    eventually("E7's termination listed", || async {
        let list = format!("{}/api/v1/terminations", stack.admin);
        let page: Value = http
            .get(list)
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        Ok(page["items"][0]["apps"][0]["status"] == "deactivated")
    })
    .await?;
    // Its cache of found failures goes to a directory of its own.
    let workdir = tempfile::tempdir()?;
    let output = tokio::process::Command::new(&schemathesis)
        .current_dir(workdir.path())
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", stack.admin))
        .args(["--url", &stack.admin])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "30", "--workers", "1", "--seed", "1"])
        .args(["--header", &format!("Authorization: Bearer {admin}")])
        .env("NO_COLOR", "1")
        .output()
        .await?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rules_preview_reports_exactly_who_moves_and_changes_nothing() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::third_party(&["slack"]).await?;
    let stack = Processes::start_admin(&apps, &["all"], issuer.issuer(), "").await?;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", stack.admin);
    let reader = issuer
        .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    for (id, name, department) in [
        ("E7", "lucy", "Customer Support"),
        ("E8", "tom", "Engineering"),
    ] {
        stack
            .push(json!({
                "type": "hire", "employee_id": id, "time_zone": "Europe/London",
                "attributes": {"given_name": name, "family_name": "Gray",
                    "work_email": format!("{name}@example.com"), "employment_type": "employee",
                    "department": department}}))
            .await?;
    }
    eventually("both hired into slack", || async {
        Ok(apps.get("slack").count().await? == 2)
    })
    .await?;
    // Person search: by text in any case, group, app and lifecycle, paged.
    let found = |query: &'static str| {
        let http = http.clone();
        let url = api(&format!("/persons?{query}"));
        let reader = reader.clone();
        async move {
            let page = get(&http, &url, &reader).await?;
            let ids: Vec<String> = page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p["employee_id"].as_str().unwrap_or_default().to_owned())
                .collect();
            anyhow::Ok((ids, page["next_cursor"].clone()))
        }
    };
    assert_eq!(found("q=GRAY").await?.0, ["E7", "E8"]);
    assert_eq!(found("q=tom%40example").await?.0, ["E8"]);
    assert_eq!(found("q=e7").await?.0, ["E7"]);
    assert_eq!(found("q=100%25").await?.0, Vec::<String>::new());
    assert_eq!(found("group=Customer%20Support").await?.0, ["E7"]);
    assert_eq!(found("app=slack&lifecycle=ACTIVE").await?.0, ["E7", "E8"]);
    let (first, cursor) = found("limit=1").await?;
    assert_eq!(first, ["E7"]);
    assert_eq!(cursor, "E7");
    assert_eq!(found("limit=1&cursor=E7").await?.0, ["E8"]);
    let lucy = get(&http, &api("/persons?q=lucy"), &reader).await?;
    assert_eq!(lucy["items"][0]["name"], "lucy Gray");
    assert_eq!(lucy["items"][0]["work_email"], "lucy@example.com");

    let before = get(&http, &api("/persons/E7"), &reader).await?;
    let current = get(&http, &api("/rules"), &reader).await?;
    assert_eq!(current["groups"][0]["name"], "Everyone");

    // Only engineers keep slack; Customer Support and People Managers go.
    let proposed = json!({"groups": [
        {"name": "Everyone", "rule": "person.department == \"Engineering\"", "apps": ["slack"]}
    ]});
    let answer = http
        .post(api("/rules/preview"))
        .bearer_auth(&reader)
        .json(&proposed)
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    let preview: Value = answer.json().await?;
    assert_eq!(preview["persons"], 2, "{preview}");
    assert_eq!(preview["persons_changed"], 1);
    assert_eq!(
        preview["changes"],
        json!([{"employee_id": "E7",
                "groups_gained": [], "groups_lost": ["Customer Support", "Everyone"],
                "apps_gained": [], "apps_lost": ["slack"]}])
    );
    assert_eq!(preview["apps"]["slack"], json!({"gaining": 0, "losing": 1}));
    assert_eq!(
        preview["groups"]["Customer Support"],
        json!({"gaining": 0, "losing": 1})
    );

    // Nothing was applied: the person and the app are as before.
    let after = get(&http, &api("/persons/E7"), &reader).await?;
    assert_eq!(after["groups"], before["groups"]);
    assert_eq!(after["version"], before["version"]);
    assert_eq!(
        apps.account("lucy@example.com").await?[0]
            .1
            .as_ref()
            .map(|a| a.0),
        Some(true)
    );

    // A rule that does not compile, and an app nobody declared: 422, naming where.
    for (rules, path) in [
        (
            json!({"groups": [{"name": "Broken", "rule": "person.nope == 1", "apps": []}]}),
            "$.groups[0].rule",
        ),
        (
            json!({"groups": [{"name": "X", "rule": "true", "apps": ["nope"]}]}),
            "$.groups[0].apps",
        ),
    ] {
        let answer = http
            .post(api("/rules/preview"))
            .bearer_auth(&reader)
            .json(&rules)
            .send()
            .await?;
        assert_eq!(answer.status(), 422);
        let problem: Value = answer.json().await?;
        assert_eq!(problem["path"], path, "{problem}");
    }
    Ok(())
}
