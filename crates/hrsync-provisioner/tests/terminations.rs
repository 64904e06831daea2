//! The list of terminations (`terminations::latest`) over a link store on
//! PostgreSQL and SQLite: only persons whose newest change deprovisions
//! them, newest first, keyset-paged also past a long run of other persons;
//! per configured app with an account the deactivation since the HR event
//! time and its latency, or that it is inactive, pending, held, parked or
//! failed.

use hrsync_domain::LifecycleState::{self, Active, Deprovisioned};
use hrsync_domain::{DirectoryChange, Timestamp};
use hrsync_provisioner::store::held::{self, Held};
use hrsync_provisioner::store::links::{self, Link, Owner};
use hrsync_provisioner::store::people::{self, Newest};
use hrsync_provisioner::terminations::{latest, AppTermination, Status, Terminations};
use hrsync_store::Db;
use hrsync_tests::{directory_change, PgDatabase, SqliteFile};

/// The HR event time of E2's termination.
const T: i64 = 1_800_000_000_000;
const APPS: [&str; 4] = ["github", "lattice", "slack", "zendesk"];

fn change(employee: &str, state: LifecycleState, terminate_at: Option<i64>) -> DirectoryChange {
    let mut change = directory_change(employee, "Ada Lovelace", 4, state, &[], &[]);
    change.profile.terminate_at = terminate_at.map(|ms| Timestamp::from_millis(ms).unwrap());
    change
}

fn newest(change: &DirectoryChange, seen_at_ms: i64) -> Newest {
    Newest {
        person_id: change.person_id.as_str().to_owned(),
        employee_id: change.employee_id.as_str().to_owned(),
        manager_id: None,
        version: 4,
        payload: hrsync_schema::encode_directory_change(change).unwrap(),
        seen_at_ms,
    }
}

async fn account(db: &Db, person: &str, app: &str, scim_id: &str, active: bool) {
    let owner = Owner {
        person_id: person,
        employee_id: "",
        app,
    };
    let link = Link {
        scim_id: scim_id.to_owned(),
        applied_version: 4,
        applied: serde_json::Value::Null,
        active,
        groups: vec![],
        etag: None,
    };
    links::save(db, owner, &link).await.unwrap();
}

async fn audit(db: &Db, person: &str, app: &str, operation: &str, outcome: &str, at_ms: i64) {
    sqlx::query(
        "INSERT INTO provisioner_audit (audit_id, person_id, app, operation, outcome, \
         latency_ms, attempt, version, error, trace_id, at_ms) \
         VALUES ($1, $2, $3, $4, $5, 5, 1, 4, $6, $7, $8)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(person)
    .bind(app)
    .bind(operation)
    .bind(outcome)
    .bind((outcome == "FAILED").then_some("HTTP 500 from the app"))
    .bind(format!("trace-{at_ms}"))
    .bind(at_ms)
    .execute(db.pool())
    .await
    .unwrap();
}

async fn hold(db: &Db, person: &str, app: &str, reason: &str) {
    let change = change("E0", Deprovisioned, Some(T));
    let payload = hrsync_schema::encode_directory_change(&change).unwrap();
    let held = Held {
        app,
        person_id: person,
        version: 4,
        reason,
    };
    held::keep(db, held, payload).await.unwrap();
}

fn app(status: Status) -> AppTermination {
    AppTermination {
        app: String::new(),
        status,
        deactivated_at_ms: None,
        latency_ms: None,
        trace_id: None,
        error: None,
        task_id: None,
    }
}

fn employees(page: &Terminations) -> Vec<&str> {
    page.items.iter().map(|t| t.employee_id.as_str()).collect()
}

async fn scenario(url: &str) -> anyhow::Result<()> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    people::remember(
        &db,
        &[
            newest(&change("E1", Active, None), T + 50),
            newest(&change("E2", Deprovisioned, Some(T)), T + 10),
            newest(&change("E3", Deprovisioned, Some(T + 100)), T + 200),
        ],
    )
    .await?;
    // E2: slack deactivated 1.5 s after the HR event (and once before,
    // during a leave); the guard holds zendesk's; lattice's failed; an app
    // no longer configured, and one without an account, are left out.
    account(&db, "p-E2", "slack", "s-2", false).await;
    audit(
        &db,
        "p-E2",
        "slack",
        "DEACTIVATE",
        "SUCCESS",
        T - 86_400_000,
    )
    .await;
    audit(&db, "p-E2", "slack", "UPDATE", "SUCCESS", T + 900).await;
    audit(&db, "p-E2", "slack", "DEACTIVATE", "SUCCESS", T + 1_500).await;
    account(&db, "p-E2", "zendesk", "z-2", true).await;
    hold(&db, "p-E2", "zendesk", "guard").await;
    account(&db, "p-E2", "lattice", "l-2", true).await;
    audit(&db, "p-E2", "lattice", "DEACTIVATE", "RETRY", T + 20).await;
    audit(&db, "p-E2", "lattice", "DEACTIVATE", "FAILED", T + 40).await;
    account(&db, "p-E2", "legacy", "x-2", true).await;
    account(&db, "p-E2", "github", "", false).await;
    // E3: slack not deactivated yet, zendesk inactive already, lattice
    // parked while it does not answer.
    account(&db, "p-E3", "slack", "s-3", true).await;
    account(&db, "p-E3", "zendesk", "z-3", false).await;
    account(&db, "p-E3", "lattice", "l-3", true).await;
    hold(&db, "p-E3", "lattice", "quarantine").await;
    // E1 is active: not listed, whatever its accounts.
    account(&db, "p-E1", "slack", "s-1", true).await;

    let page = latest(&db, &APPS, None, 10).await?;
    assert_eq!(employees(&page), ["E3", "E2"]);
    assert_eq!(page.next, None);
    let e2 = &page.items[1];
    assert_eq!(
        (
            e2.person_id.as_str(),
            e2.version,
            e2.hr_event_ms,
            e2.seen_at_ms
        ),
        ("p-E2", 4, Some(T), T + 10)
    );
    let named = |name: &str, a: AppTermination| AppTermination {
        app: name.to_owned(),
        ..a
    };
    assert_eq!(
        e2.apps,
        vec![
            named(
                "lattice",
                AppTermination {
                    trace_id: Some(format!("trace-{}", T + 40)),
                    error: Some("HTTP 500 from the app".into()),
                    ..app(Status::Failed)
                }
            ),
            named(
                "slack",
                AppTermination {
                    deactivated_at_ms: Some(T + 1_500),
                    latency_ms: Some(1_500),
                    trace_id: Some(format!("trace-{}", T + 1_500)),
                    ..app(Status::Deactivated)
                }
            ),
            named("zendesk", app(Status::Held)),
        ]
    );
    assert_eq!(
        page.items[0].apps,
        vec![
            named("lattice", app(Status::Parked)),
            named("slack", app(Status::Pending)),
            named("zendesk", app(Status::Inactive)),
        ]
    );

    // One per page, newest first, then an empty last page.
    let first = latest(&db, &APPS, None, 1).await?;
    assert_eq!(employees(&first), ["E3"]);
    assert_eq!(first.next, Some((T + 200, "p-E3".to_owned())));
    let second = latest(&db, &APPS, first.next, 1).await?;
    assert_eq!(employees(&second), ["E2"]);
    assert_eq!(second.items[0], page.items[1]);
    let third = latest(&db, &APPS, second.next, 1).await?;
    assert!(third.items.is_empty());
    assert_eq!(third.next, None);
    Ok(())
}

/// 6,000 active persons seen after a termination: a call reads a bounded
/// number of them and answers with no termination and a cursor; following
/// the cursors finds it.
async fn past_a_long_run(url: &str) -> anyhow::Result<()> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    let mut rows = vec![newest(&change("E0", Deprovisioned, Some(T)), T)];
    for i in 1..=6_000 {
        rows.push(newest(&change(&format!("A{i}"), Active, None), T + i));
    }
    people::remember(&db, &rows).await?;
    let mut before = None;
    let mut calls = 0;
    let found = loop {
        calls += 1;
        let page = latest(&db, &APPS, before, 50).await?;
        if !page.items.is_empty() {
            assert_eq!(page.next, None);
            break page;
        }
        assert!(page.next.is_some(), "ended without finding E0");
        before = page.next;
    };
    assert_eq!(employees(&found), ["E0"]);
    assert!(calls > 1, "one call read all 6,001 persons");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn terminations_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    scenario(db.url()).await?;
    let db = PgDatabase::fresh().await?;
    past_a_long_run(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn terminations_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    scenario(&file.url()).await?;
    let file = SqliteFile::new()?;
    past_a_long_run(&file.url()).await
}
