//! The hooks' store on both backends: what each change owes is recorded
//! once, sent in order per endpoint and person (a termination on its own
//! lane), and dead deliveries come back with a redrive.

use hrsync_domain::DirectoryChange;
use hrsync_hooks::store::{self, Attempted};
use hrsync_hooks::{Hooks, HooksConfig};
use hrsync_store::Db;
use hrsync_tests::{PgDatabase, SqliteFile};
use serde_json::json;

/// Ada's change `version`, in `state`, with `title`.
fn change(version: u64, state: &str, title: &str) -> anyhow::Result<DirectoryChange> {
    let mut attributes = serde_json::to_value(hrsync_domain::WorkerAttributes::new(
        "Ada",
        "Lovelace",
        hrsync_domain::EmploymentType::Employee,
    ))?;
    attributes["title"] = json!(title);
    Ok(serde_json::from_value(json!({
        "person_id": "p-ada", "employee_id": "E1", "version": version,
        "lifecycle_state": state,
        "profile": {"attributes": attributes, "time_zone": "UTC",
            "start_at": null, "terminate_at": null},
        "groups": [], "apps": [], "caused_by": [], "priority": state != "ACTIVE",
        "changed_at": "2023-11-14T22:13:20Z",
    }))?)
}

/// Both endpoints of [`hooks`].
const ALL: &[&str] = &["all", "leavers"];

fn hooks(db: Db) -> anyhow::Result<Hooks> {
    let config: HooksConfig = toml::from_str(
        r#"
        [[endpoints]]
        name = "all"
        url = "http://127.0.0.1:9/all"
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

        [[endpoints]]
        name = "leavers"
        url = "http://127.0.0.1:9/leavers"
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        events = ["person.left"]
        "#,
    )?;
    Ok(Hooks::new(db, &config)?)
}

async fn deliveries_are_owed_once_in_order_and_redriven(db: Db) -> anyhow::Result<()> {
    db.migrate().await?;
    let hooks = hooks(db.clone())?;
    assert_eq!(
        hooks
            .record(&change(1, "ACTIVE", "Engineer")?, None)
            .await?,
        1
    );
    assert_eq!(
        hooks
            .record(&change(1, "ACTIVE", "Engineer")?, None)
            .await?,
        0,
        "read again"
    );
    assert_eq!(
        hooks.record(&change(2, "ACTIVE", "Chief")?, None).await?,
        1,
        "a move"
    );
    assert_eq!(
        hooks.record(&change(3, "ACTIVE", "Chief")?, None).await?,
        0,
        "nothing moved"
    );
    assert_eq!(
        hooks
            .record(&change(4, "DEPROVISIONED", "Chief")?, None)
            .await?,
        2
    );
    assert_eq!(
        hooks.record(&change(2, "ACTIVE", "Old")?, None).await?,
        0,
        "stale"
    );

    // The main lane sends the joiner first; the mover waits behind it.
    let main = store::due(&db, false, ALL, 10).await?;
    let kinds: Vec<(&str, &str)> = main
        .iter()
        .map(|d| (d.hook.as_str(), d.event_type.as_str()))
        .collect();
    assert_eq!(kinds, [("all", "person.joined")]);
    // The termination does not wait: one per endpoint.
    let priority = store::due(&db, true, ALL, 10).await?;
    let mut kinds: Vec<(&str, &str)> = priority
        .iter()
        .map(|d| (d.hook.as_str(), d.event_type.as_str()))
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, [("all", "person.left"), ("leavers", "person.left")]);
    assert_ne!(priority[0].delivery_id, priority[1].delivery_id);
    // What is owed to an endpoint no longer configured takes no room.
    let leavers_only = store::due(&db, true, &["leavers"], 1).await?;
    assert_eq!(leavers_only.len(), 1);
    assert_eq!(leavers_only[0].hook, "leavers");
    assert!(store::due(&db, false, &["leavers"], 10).await?.is_empty());

    store::attempted(&db, main[0].seq, &Attempted::Delivered { http_status: 204 }).await?;
    let main = store::due(&db, false, ALL, 10).await?;
    assert_eq!(main.len(), 1);
    assert_eq!(main[0].event_type, "person.moved");
    assert!(
        main[0].body.contains("\"title\":\"Chief\""),
        "{}",
        main[0].body
    );

    // A failure waits for its time; out of attempts, it is dead.
    let later = store::now_ms() + 60_000;
    let failed = Attempted::Failed {
        http_status: Some(500),
        error: "500".into(),
        next_at_ms: Some(later),
    };
    store::attempted(&db, main[0].seq, &failed).await?;
    assert!(
        store::due(&db, false, ALL, 10).await?.is_empty(),
        "not due yet"
    );
    let dead = Attempted::Failed {
        http_status: Some(500),
        error: "500".into(),
        next_at_ms: None,
    };
    store::attempted(&db, main[0].seq, &dead).await?;
    let counts = store::counts(&db).await?;
    assert!(
        counts.contains(&("all".to_owned(), "dead".to_owned(), 1)),
        "{counts:?}"
    );
    assert_eq!(store::redrive(&db, Some("leavers")).await?, 0);
    assert_eq!(store::redrive(&db, None).await?, 1);
    let main = store::due(&db, false, ALL, 10).await?;
    assert_eq!(
        (main[0].event_type.as_str(), main[0].attempts),
        ("person.moved", 0)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_on_postgres() -> anyhow::Result<()> {
    let pg = PgDatabase::fresh().await?;
    deliveries_are_owed_once_in_order_and_redriven(Db::connect(pg.url(), 4).await?).await
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    deliveries_are_owed_once_in_order_and_redriven(Db::connect(&file.url(), 4).await?).await
}
