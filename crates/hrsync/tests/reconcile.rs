//! `hrsync provisioner reconcile APP` through the binary: the summary table,
//! the JSON report (a file, or stdout with `--json`), a dry run that changes
//! nothing, and a fix run. The app is the local SCIM app served by the test;
//! the link store SQLite; audit records go to a real tansu broker.

use std::process::{Command, Output};
use std::time::Duration;

use hrsync_domain::LifecycleState::Active;
use hrsync_provisioner::config::{AppConfig, ProvisionerConfig};
use hrsync_provisioner::run::Provisioner;
use hrsync_provisioner::scim::{PatchOp, ScimClient, USER_SCHEMA};
use hrsync_tests::{directory_change, Broker, SqliteFile};
use serde_json::{json, Value};

const TOKEN: &str = "reconcile-cli-token";

fn hrsync(config: &std::path::Path, args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_hrsync"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("ZENDESK_TOKEN", TOKEN)
        .output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The finding of the account (or missing person) `user_name`.
fn finding<'a>(report: &'a Value, user_name: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["user_name"] == user_name))
        .unwrap_or_else(|| panic!("no finding for {user_name}: {report:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_prints_a_summary_and_writes_the_report() -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let store = SqliteFile::new()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = hrsync_scim_app::router(hrsync_scim_app::AppState::new(TOKEN));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let client =
        ScimClient::new(&base, TOKEN, Duration::from_secs(10)).map_err(anyhow::Error::msg)?;

    // Ada and Bob provisioned; Bob's title then set by hand in the app. Eve
    // seen by the provisioner but not yet in the app; one account no HR
    // person matches.
    let db = hrsync_store::Db::connect(&store.url(), 2).await?;
    db.migrate().await?;
    let app = AppConfig {
        push_groups: false,
        ..AppConfig::new("zendesk", &base, hrsync_config::Secret::inline(TOKEN))
    };
    let with_app = ProvisionerConfig {
        apps: vec![app],
        ..ProvisionerConfig::default()
    };
    let provisioner = Provisioner::new(db.clone(), &with_app, None).await?;
    for (e, name) in [("E1", "Ada Tester"), ("E2", "Bob Tester")] {
        let results = provisioner
            .apply(
                &directory_change(e, name, 1, Active, &["zendesk"], &[]),
                None,
            )
            .await;
        anyhow::ensure!(results[0].result.is_ok(), "{:?}", results[0].result);
    }
    let seen_only = Provisioner::new(db.clone(), &ProvisionerConfig::default(), None).await?;
    seen_only
        .apply(
            &directory_change("E5", "Eve Tester", 1, Active, &["zendesk"], &[]),
            None,
        )
        .await;
    let bob = client
        .find_user("userName", "bob@example.com")
        .await?
        .expect("Bob's account");
    let bob = bob["id"].as_str().unwrap_or_default().to_owned();
    client
        .patch(
            "Users",
            &bob,
            &[PatchOp::replace("title", json!("Set by hand"))],
        )
        .await?;
    let root = client
        .create(
            "Users",
            &json!({"schemas": [USER_SCHEMA], "userName": "root@example.com", "active": true}),
        )
        .await?;
    let root = root["id"].as_str().unwrap_or_default().to_owned();
    drop(provisioner);
    drop(seen_only);

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("hrsync.toml");
    std::fs::write(
        &config,
        format!(
            r#"{kafka}
[telemetry]
log_format = "human"
log_filter = "warn"

[provisioner]
database_url = "{store}"

[[provisioner.apps]]
name = "zendesk"
base_url = "{base}"
token = {{ env = "ZENDESK_TOKEN" }}
push_groups = false
orphans = "report"
"#,
            kafka = broker.kafka_toml(),
            store = store.url(),
        ),
    )?;

    // The dry run: the summary, and the report in the file asked for.
    let file = dir.path().join("zendesk.json");
    let out = hrsync(
        &config,
        &[
            "provisioner",
            "reconcile",
            "zendesk",
            "--dry-run",
            "--report",
            file.to_str().unwrap_or_default(),
        ],
    )?;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for line in [
        "reconciliation of zendesk (dry run: nothing changed): 3 account(s) read, 3 person(s) known"
            .to_owned(),
        row("in sync", 1, "nothing to do 1"),
        row("drifted", 1, "would re-apply 1"),
        row("unlinked match", 0, "-"),
        row("missing", 1, "would create 1"),
        row("orphan", 1, "reported only 1"),
        "orphans = \"report\": orphans are reported, not deactivated".to_owned(),
    ] {
        assert!(stdout.contains(&line), "{line:?} not in:\n{stdout}");
    }
    assert!(
        stdout.contains(&format!("report: {}", file.display())),
        "{stdout}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["counts"]["drifted"], 1);
    let f = finding(&report, "bob@example.com");
    assert_eq!(f["class"], "drifted");
    assert_eq!(f["account_id"], bob.as_str());
    assert_eq!(f["person_id"], "p-E2");
    assert_eq!(f["employee_id"], "E2");
    assert_eq!(f["differences"], json!(["title"]));
    assert_eq!(f["action"], "reapply");
    assert_eq!(f["result"], Value::Null);
    let f = finding(&report, "eve@example.com");
    assert_eq!(
        (&f["class"], &f["action"]),
        (&json!("missing"), &json!("create"))
    );
    assert_eq!(f["account_id"], Value::Null);
    let f = finding(&report, "root@example.com");
    assert_eq!(
        (&f["class"], &f["action"]),
        (&json!("orphan"), &json!("report"))
    );
    assert_eq!(f["account_id"], root.as_str());
    assert_eq!(f["person_id"], Value::Null);
    assert_eq!(
        client.get("Users", &bob).await?.expect("Bob's")["title"],
        "Set by hand",
        "the dry run changed the app"
    );
    assert_eq!(client.list("Users", None, 100).await?.len(), 3);

    // The fix run, its report on stdout.
    let out = hrsync(&config, &["provisioner", "reconcile", "zendesk", "--json"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&row("drifted", 1, "re-applied 1")),
        "{}",
        text(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["dry_run"], false);
    assert_eq!(
        finding(&report, "bob@example.com")["result"]["status"],
        "done"
    );
    let eve = finding(&report, "eve@example.com");
    assert_eq!(eve["result"]["status"], "done");
    assert!(
        eve["result"]["operations"][0]
            .as_str()
            .is_some_and(|o| o.starts_with("created ")),
        "{eve}"
    );
    assert_eq!(finding(&report, "root@example.com")["result"], Value::Null);
    let bob_now = client.get("Users", &bob).await?.expect("Bob's");
    assert!(bob_now.get("title").is_none(), "{bob_now}");
    assert!(client
        .find_user("userName", "eve@example.com")
        .await?
        .is_some());
    assert_eq!(
        client.get("Users", &root).await?.expect("root")["active"],
        true
    );

    // An unknown app is refused by name.
    let out = hrsync(&config, &["provisioner", "reconcile", "nope", "--dry-run"])?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no app named \"nope\""),
        "{}",
        text(&out.stderr)
    );
    server.abort();
    Ok(())
}

/// A line of the summary table.
fn row(class: &str, count: usize, action: &str) -> String {
    format!("{class:<16} {count:>7}  {action}\n")
}
