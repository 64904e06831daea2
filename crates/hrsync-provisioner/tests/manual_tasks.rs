//! Manual-task apps through the provisioner over PostgreSQL and SQLite:
//! each change a person's account needs becomes one task, a replayed
//! change asks nothing twice, a newer task takes over the open ones it
//! makes moot, closing is recorded in the audit, and the termination is
//! complete only once the disable task is closed.

use hrsync_domain::LifecycleState::{self, Active, Deprovisioned, Pending, Suspended};
use hrsync_domain::{DirectoryChange, Timestamp};
use hrsync_provisioner::config::{ManualAppConfig, ProvisionerConfig};
use hrsync_provisioner::manual::plan::Action;
use hrsync_provisioner::manual::CloseError;
use hrsync_provisioner::reconcile::Operation;
use hrsync_provisioner::run::Provisioner;
use hrsync_provisioner::store::people::{self, Newest};
use hrsync_provisioner::store::tasks::{self, Task, TaskFilter};
use hrsync_provisioner::terminations::{latest, Status};
use hrsync_store::Db;
use hrsync_tests::{directory_change, PgDatabase, SqliteFile};
use serde_json::{json, Value};

fn change(version: u64, state: LifecycleState, title: Option<&str>) -> DirectoryChange {
    let mut change = directory_change(
        "E1",
        "Ada Lovelace",
        version,
        state,
        &["payroll"],
        &["Payroll users"],
    );
    change.profile.attributes.title = title.map(str::to_owned);
    if state == Deprovisioned {
        change.profile.terminate_at = Some(Timestamp::from_millis(1_700_000_000_000).unwrap());
    }
    change
}

/// What applying `change` did in payroll.
async fn apply(provisioner: &Provisioner, change: &DirectoryChange) -> Vec<Operation> {
    let results = provisioner.apply(change, None).await;
    assert_eq!(results.len(), 1, "{results:?}");
    results[0].result.as_ref().expect("applied").clone()
}

async fn all_tasks(db: &Db) -> Vec<Task> {
    let mut found = tasks::list(
        db,
        &TaskFilter {
            limit: 100,
            ..TaskFilter::default()
        },
    )
    .await
    .unwrap();
    found.reverse();
    found
}

fn summary(tasks: &[Task]) -> Vec<(Action, &str, Option<i64>)> {
    tasks
        .iter()
        .map(|t| (t.action, t.status.as_str(), t.superseded_by))
        .collect()
}

fn changed(task: &Task) -> Vec<(&str, &Value, &Value)> {
    task.changes
        .iter()
        .map(|c| (c.field.as_str(), &c.from, &c.to))
        .collect()
}

async fn scenario(url: &str) -> anyhow::Result<()> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    let config = ProvisionerConfig {
        manual_apps: vec![ManualAppConfig {
            name: "payroll".to_owned(),
            instructions: None,
            attributes: [(
                "title".to_owned(),
                "person.title == \"\" ? null : person.title".to_owned(),
            )]
            .into_iter()
            .collect(),
        }],
        ..ProvisionerConfig::default()
    };
    let provisioner = Provisioner::new(db.clone(), &config, None).await?;

    // Hired before the start date: a create, disabled; the change replayed
    // (a crash before its offset was committed) asks nothing again.
    let hired = change(1, Pending, None);
    let ops = apply(&provisioner, &hired).await;
    let [Operation::Task {
        task_id: first,
        action: Action::Create,
    }] = ops.as_slice()
    else {
        panic!("{ops:?}");
    };
    assert_eq!(apply(&provisioner, &hired).await, [Operation::Stale]);
    let created = tasks::get(&db, *first).await?.unwrap();
    assert_eq!(created.fields["enabled"], json!(false));
    assert_eq!(created.fields["emails[work]"], json!("ada@example.com"));
    assert!(created.reason.starts_with("hired"), "{}", created.reason);

    // The start date before anyone made it: one create, enabled.
    apply(&provisioner, &change(2, Active, None)).await;
    let now = all_tasks(&db).await;
    assert_eq!(
        summary(&now),
        [
            (Action::Create, "superseded", Some(now[1].task_id)),
            (Action::Create, "open", None)
        ]
    );
    assert_eq!(now[1].fields["enabled"], json!(true));
    provisioner
        .close_task(now[1].task_id, "alice", Some("made"))
        .await?;

    // A move, then the move undone before the update was done: the update
    // is no longer needed.
    apply(&provisioner, &change(3, Active, Some("Engineer"))).await;
    let update = all_tasks(&db).await.pop().unwrap();
    assert_eq!(update.action, Action::Update);
    assert_eq!(
        changed(&update),
        [("title", &Value::Null, &json!("Engineer"))]
    );
    assert_eq!(
        apply(&provisioner, &change(4, Active, None)).await,
        [Operation::Unchanged]
    );
    let now = all_tasks(&db).await;
    assert_eq!(summary(&now)[2], (Action::Update, "superseded", None));
    assert_eq!(now.len(), 3, "no task for a move undone");

    // A leave: a disable on the fast lane; the termination during it asks
    // nothing more, but is not complete until the disable is done.
    apply(&provisioner, &change(5, Suspended, None)).await;
    let disable = all_tasks(&db).await.pop().unwrap();
    assert_eq!((disable.action, disable.priority), (Action::Disable, true));
    assert_eq!(
        changed(&disable),
        [("enabled", &json!(true), &json!(false))]
    );
    let left = change(6, Deprovisioned, None);
    assert_eq!(apply(&provisioner, &left).await, [Operation::Unchanged]);
    people::remember(
        &db,
        &[Newest {
            person_id: "p-E1".to_owned(),
            employee_id: "E1".to_owned(),
            manager_id: None,
            version: 6,
            payload: hrsync_schema::encode_directory_change(&left)?,
            seen_at_ms: 1_700_000_000_100,
        }],
    )
    .await?;
    let page = latest(&db, &["payroll"], None, 10).await?;
    let termination = &page.items[0];
    assert_eq!(termination.apps[0].status, Status::Task);
    assert_eq!(termination.apps[0].task_id, Some(disable.task_id));
    assert!(!termination.is_complete());
    let counts = tasks::open_counts(&db).await?;
    assert_eq!(counts.len(), 1);
    assert_eq!((counts[0].action.as_str(), counts[0].open), ("disable", 1));

    let closed = provisioner.close_task(disable.task_id, "bob", None).await?;
    assert_eq!(closed.closed_by.as_deref(), Some("bob"));
    provisioner.close().await;
    let page = latest(&db, &["payroll"], None, 10).await?;
    let termination = &page.items[0];
    assert_eq!(
        termination.apps[0].status,
        Status::Deactivated,
        "{termination:?}"
    );
    assert!(termination.is_complete());
    assert!(tasks::open_counts(&db).await?.is_empty());
    assert!(matches!(
        provisioner.close_task(disable.task_id, "bob", None).await,
        Err(CloseError::NotOpen { .. })
    ));
    assert!(matches!(
        provisioner.close_task(9_999, "bob", None).await,
        Err(CloseError::NotFound(9_999))
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_tasks_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    scenario(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_tasks_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    scenario(&file.url()).await
}
