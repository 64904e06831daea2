//! The projector's store on both backends, driven through its library API
//! (`Projector::apply_batch`) without Kafka.

use std::time::Duration;

use hrsync_domain::{
    EmployeeId, EmploymentType, Hire, LifecycleEvent, LifecyclePayload, SourceSystem, Terminate,
    TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_projector::config::ProjectorConfig;
use hrsync_projector::project::{Incoming, Projector};
use hrsync_projector::rules::{GroupConfig, RulesConfig};
use hrsync_store::Db;
use hrsync_tests::SqliteFile;

const DAY: i64 = 86_400_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn event(employee: &str, effective: i64, payload: LifecyclePayload) -> LifecycleEvent {
    LifecycleEvent::new(
        SourceSystem::new("workday").unwrap(),
        EmployeeId::new(employee).unwrap(),
        Timestamp::from_millis(now_ms()).unwrap(),
        Timestamp::from_millis(effective).unwrap(),
        TimeZone::new("Europe/Berlin").unwrap(),
        payload,
    )
    .unwrap()
}

fn hire(employee: &str, manager: Option<&str>) -> LifecycleEvent {
    let mut attributes = WorkerAttributes::new("Given", "Family", EmploymentType::Employee);
    attributes.department = Some("Sales".to_owned());
    attributes.manager_id = manager.map(|m| EmployeeId::new(m).unwrap());
    event(
        employee,
        now_ms() - DAY,
        LifecyclePayload::Hire(Hire { attributes }),
    )
}

fn terminate_now(employee: &str) -> LifecycleEvent {
    event(
        employee,
        now_ms(),
        LifecyclePayload::Terminate(Terminate {
            immediate: true,
            last_day_worked: None,
            reason: None,
        }),
    )
}

/// A projector over a migrated store with these `(group, rule)`s, each
/// granting an app of the group's name.
async fn projector(url: &str, rules: &[(&str, &str)]) -> anyhow::Result<Projector> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    let config = ProjectorConfig {
        rules: RulesConfig {
            groups: rules
                .iter()
                .map(|(name, rule)| GroupConfig {
                    name: (*name).to_owned(),
                    rule: (*rule).to_owned(),
                    apps: vec![name.to_lowercase()],
                    description: None,
                    previous_names: Vec::new(),
                })
                .collect(),
        },
        ..ProjectorConfig::default()
    };
    Ok(Projector::new(db, config)?)
}

/// Applies `events` as one batch.
async fn apply(projector: &Projector, events: &[LifecycleEvent]) -> anyhow::Result<()> {
    let payloads: Vec<Vec<u8>> = events
        .iter()
        .map(hrsync_schema::encode_lifecycle)
        .collect::<Result<_, _>>()?;
    let incoming: Vec<Incoming<'_>> = events
        .iter()
        .zip(&payloads)
        .map(|(event, payload)| Incoming {
            event: event.clone(),
            payload,
        })
        .collect();
    projector.apply_batch(&incoming, &[], now_ms()).await?;
    Ok(())
}

const EVERYONE: &[(&str, &str)] = &[("Everyone", "true")];

/// SQLite has one writer. A batch that starts while another connection
/// holds the write lock waits for it (`busy_timeout`) and then succeeds at
/// the first attempt. (With a deferred `BEGIN`, the batch read first and
/// failed at its first write with `SQLITE_BUSY` or `SQLITE_BUSY_SNAPSHOT`,
/// "database is locked": a retry with back-off, which is how an immediate
/// termination once took 22.8 s behind the main lane.)
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_batch_waits_for_the_writer_instead_of_failing() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    let projector = projector(&file.url(), EVERYONE).await?;
    apply(&projector, &[hire("E1", None)]).await?;

    // Another writer (the main lane's batch, the outbox publisher, another
    // process) holds the lock for a while, then commits.
    let other = Db::connect(&file.url(), 1).await?;
    let mut holding = other.begin_write().await?;
    sqlx::query("INSERT INTO projector_meta (name, value) VALUES ('other writer', 'x')")
        .execute(&mut *holding)
        .await?;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        holding.commit().await
    });

    let outcome = apply(&projector, &[terminate_now("E1")]).await;
    release.await??;
    outcome.expect("the termination is applied at the first attempt");
    let person = projector.person("E1").await?.expect("stored");
    assert_eq!(person.lifecycle.as_deref(), Some("DEPROVISIONED"));
    Ok(())
}
