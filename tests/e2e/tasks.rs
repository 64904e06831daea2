//! Manual-task apps over the real pipeline: an app without SCIM gets a
//! task for each account change a joiner, mover and leaver need; people
//! list and close them through the admin API; a termination is complete
//! only once the manual app's disable task is closed.

use std::time::Duration;

use serde_json::{json, Value};

use hrsync_tests::{Issuer, HRSYNC_AUDIENCE};

use crate::stack::{eventually_within, lucys_hire, Processes, ScimApps};

/// `payroll`: a manual-task app granted to Customer Support.
const PAYROLL: &str = r#"
[[provisioner.manual_apps]]
name = "payroll"
instructions = "Payroll > Settings > Users"

[[projector.rules.groups]]
name = "Payroll users"
rule = 'person.department == "Customer Support"'
apps = ["payroll"]
"#;

/// The admin API as one token holder sees it.
struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = answer.status().as_u16();
        Ok((status, answer.json().await.unwrap_or(Value::Null)))
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let answer = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = answer.status().as_u16();
        Ok((status, answer.json().await.unwrap_or(Value::Null)))
    }

    async fn close(&self, task_id: &Value, note: &str) -> anyhow::Result<(u16, Value)> {
        self.post(
            &format!("/api/v1/tasks/{task_id}/close"),
            &json!({ "note": note }),
        )
        .await
    }

    /// Lucy's payroll tasks, newest first.
    async fn tasks(&self) -> anyhow::Result<Vec<Value>> {
        let (status, page) = self.get("/api/v1/tasks?app=payroll&employee_id=E7").await?;
        anyhow::ensure!(status == 200, "{status}: {page}");
        Ok(page["items"].as_array().cloned().unwrap_or_default())
    }

    /// Lucy's termination as the list of terminations shows it.
    async fn termination(&self) -> anyhow::Result<Option<Value>> {
        let (status, page) = self.get("/api/v1/terminations").await?;
        anyhow::ensure!(status == 200, "{status}: {page}");
        Ok(page["items"]
            .as_array()
            .and_then(|items| items.iter().find(|t| t["employee_id"] == "E7"))
            .cloned())
    }
}

/// What `check` finds, once it finds something (within a minute).
async fn found<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The open task of Lucy's with `action`, once there is one.
async fn open_task(admin: &Admin, action: &str, stack: &Processes) -> anyhow::Result<Value> {
    found(&format!("an open {action} task"), || async {
        Ok(admin
            .tasks()
            .await?
            .into_iter()
            .find(|t| t["action"] == action && t["status"] == "open"))
    })
    .await
    .map_err(|e| e.context(stack.log_tail(2)))
}

/// Each app's status in a termination, by app.
fn statuses(termination: Option<&Value>) -> Vec<(&str, &str)> {
    termination
        .and_then(|t| t["apps"].as_array())
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["app"].as_str().unwrap_or_default(),
                a["status"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}

fn field_changes(task: &Value) -> Vec<(String, Value, Value)> {
    task["changes"]
        .as_array()
        .map(|changes| {
            changes
                .iter()
                .map(|c| {
                    (
                        c["field"].as_str().unwrap_or_default().to_owned(),
                        c["from"].clone(),
                        c["to"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_app_gets_a_task_per_account_change_and_a_termination_completes_when_its_task_is_closed(
) -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::local(&["slack"]).await?;
    let mut stack = Processes::start_admin(&apps, &[], issuer.issuer(), "").await?;
    stack.add_config(PAYROLL)?;
    let mut provisioner = 0;
    for role in ["ingest", "projector", "provisioner", "admin"] {
        let i = stack.start_another(role)?;
        stack.wait_ready(i).await?;
        if role == "provisioner" {
            provisioner = i;
        }
    }
    let admin = Admin {
        http: reqwest::Client::new(),
        base: stack.admin.clone(),
        token: issuer
            .token("admin", "hrsync:read hrsync:admin", HRSYNC_AUDIENCE)
            .await?,
    };
    let reader = Admin {
        token: issuer
            .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
            .await?,
        ..Admin {
            http: admin.http.clone(),
            base: admin.base.clone(),
            token: String::new(),
        }
    };

    // Joiner: one create task with every field, the app's instructions.
    stack.push(lucys_hire()).await?;
    let create = open_task(&admin, "create", &stack).await?;
    assert_eq!(create["fields"]["userName"], "lucy@example.com", "{create}");
    assert_eq!(create["fields"]["name.givenName"], "Lucy", "{create}");
    assert_eq!(create["fields"]["enabled"], true, "{create}");
    assert_eq!(
        create["fields"]["groups"],
        json!(["Payroll users"]),
        "{create}"
    );
    assert_eq!(create["instructions"], "Payroll > Settings > Users");
    assert_eq!(create["priority"], false);
    // A reader may list tasks but not close them.
    let (status, _) = reader.close(&create["task_id"], "done").await?;
    assert_eq!(status, 403);
    let (status, closed) = admin.close(&create["task_id"], "made in Payroll").await?;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["status"], "done");
    assert_eq!(closed["closed_by"], "admin", "the token's subject");
    assert_eq!(closed["note"], "made in Payroll");
    let (_, lucy) = admin.get("/api/v1/persons/E7").await?;
    assert_eq!(
        lucy["manual_accounts"],
        json!([{"app": "payroll", "asked": true, "active": true}]),
        "{lucy}"
    );
    let (status, again) = admin.close(&create["task_id"], "twice").await?;
    assert_eq!(status, 409, "a closed task cannot be closed again: {again}");
    // Provision-now does not drive a manual app, and says where its
    // accounts are changed.
    let (status, refused) = admin
        .post("/api/v1/persons/E7/provision", &json!({ "app": "payroll" }))
        .await?;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("manual-task app") && d.contains("tasks?app=payroll")),
        "{refused}"
    );

    // Mover: an update of what changed only.
    stack
        .push(
            json!({"type": "move", "employee_id": "E7", "time_zone": "Europe/London",
            "changes": {"title": "Support Lead"}}),
        )
        .await?;
    let update = open_task(&admin, "update", &stack).await?;
    assert_eq!(
        field_changes(&update),
        [("title".to_owned(), Value::Null, json!("Support Lead"))],
        "{update}"
    );

    // Leaver: a disable on the fast lane takes over the open update; the
    // termination is not complete while it is open.
    stack
        .push(json!({"type": "terminate", "employee_id": "E7",
            "time_zone": "Europe/London", "immediate": true}))
        .await?;
    let disable = open_task(&admin, "disable", &stack).await?;
    assert_eq!(disable["priority"], true);
    assert!(
        disable["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("terminated")),
        "{disable}"
    );
    let (_, taken_over) = admin
        .get(&format!("/api/v1/tasks/{}", update["task_id"]))
        .await?;
    assert_eq!(taken_over["status"], "superseded", "{taken_over}");
    assert_eq!(taken_over["superseded_by"], disable["task_id"]);
    let open = found("slack deactivated, payroll's task open", || async {
        let termination = admin.termination().await?;
        let expected = [("payroll", "task_open"), ("slack", "deactivated")];
        Ok(termination.filter(|t| statuses(Some(t)) == expected))
    })
    .await?;
    assert_eq!(open["complete"], false, "{open}");
    assert_eq!(open["apps"][0]["task_id"], disable["task_id"], "{open}");
    // The app's open tasks, counted: the disable, and how long it waits.
    let (status, manual) = admin.get("/api/v1/manual-apps").await?;
    assert_eq!(status, 200, "{manual}");
    assert_eq!(manual[0]["name"], "payroll", "{manual}");
    assert_eq!(
        manual[0]["open"],
        json!({"create": 0, "update": 0, "disable": 1, "reactivate": 0}),
        "{manual}"
    );
    assert!(manual[0]["oldest_disable_age_ms"].is_i64(), "{manual}");
    // The open disable is a metric, with its age.
    eventually_within(
        "the open disable task counted",
        Duration::from_secs(40),
        || async {
            let metrics = stack.metrics(provisioner).await?;
            Ok(metrics.lines().any(|l| {
                l.starts_with("hrsync_manual_tasks_open{")
                    && l.contains("app=\"payroll\"")
                    && l.contains("action=\"disable\"")
                    && l.ends_with(" 1")
            }))
        },
    )
    .await?;

    let (status, closed) = admin
        .close(&disable["task_id"], "disabled in Payroll")
        .await?;
    assert_eq!(status, 200, "{closed}");
    let done = admin.termination().await?.unwrap_or_default();
    assert_eq!(done["complete"], true, "{done}");
    assert_eq!(done["apps"][0]["status"], "deactivated", "{done}");
    assert!(done["apps"][0]["latency_ms"].is_i64(), "{done}");
    let (_, manual) = admin.get("/api/v1/manual-apps").await?;
    assert_eq!(manual[0]["oldest_disable_age_ms"], Value::Null, "{manual}");
    assert_eq!(manual[0]["oldest_open_at"], Value::Null, "{manual}");

    // The audit holds each task as handed out and as done; the actions
    // name who closed them.
    let (_, audit) = admin.get("/api/v1/audit?app=payroll&limit=50").await?;
    let mut seen: Vec<(String, String)> = audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["operation"].as_str().unwrap_or_default().to_owned(),
                i["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .filter(|(_, outcome)| outcome != "SKIPPED")
        .collect();
    seen.sort();
    let expected: Vec<(String, String)> = [
        ("CREATE", "SUCCESS"),
        ("CREATE", "TASK"),
        ("DEACTIVATE", "SUCCESS"),
        ("DEACTIVATE", "TASK"),
        ("UPDATE", "TASK"),
    ]
    .into_iter()
    .map(|(o, r)| (o.to_owned(), r.to_owned()))
    .collect();
    assert_eq!(seen, expected, "{audit}");
    let (_, actions) = admin.get("/api/v1/actions?action=task.close").await?;
    let subjects: Vec<&Value> = actions["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| &a["subject"])
        .collect();
    assert_eq!(subjects, [&json!("admin"), &json!("admin")], "{actions}");
    Ok(())
}
