//! `hrsync user show`'s view of a person: the recent events come from the
//! event log (they are not kept in the person's state row), newest first in
//! the fold's order, at most twenty, whatever order they arrived in. On real
//! PostgreSQL and SQLite.

use hrsync_domain::{
    Attribute, AttributeChange, EmployeeId, EmploymentType, Hire, LifecycleEvent, LifecyclePayload,
    Move, SourceSystem, TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_projector::config::ProjectorConfig;
use hrsync_projector::project::{Incoming, Projector};
use hrsync_tests::{PgDatabase, SqliteFile};

const T0: i64 = 1_790_000_000_000;
const HOUR: i64 = 3_600_000;

fn event(
    source: &str,
    effective: i64,
    payload: LifecyclePayload,
) -> anyhow::Result<LifecycleEvent> {
    Ok(LifecycleEvent::new(
        SourceSystem::new(source)?,
        EmployeeId::new("E1")?,
        Timestamp::from_millis(effective)?,
        Timestamp::from_millis(effective)?,
        TimeZone::new("UTC")?,
        payload,
    )?)
}

async fn recent_events_newest_first(url: &str) -> anyhow::Result<()> {
    let db = hrsync_store::Db::connect(url, 2).await?;
    db.migrate().await?;
    let projector = Projector::new(db, ProjectorConfig::default())?;
    let mut events = vec![event(
        "workday",
        T0,
        LifecyclePayload::Hire(Hire {
            attributes: WorkerAttributes::new("Ada", "Byron", EmploymentType::Employee),
        }),
    )?];
    for i in 1..=24 {
        events.push(event(
            "directory",
            T0 + i * HOUR,
            LifecyclePayload::Move(Move {
                changes: vec![AttributeChange::set(Attribute::Title, format!("Title {i}"))],
            }),
        )?);
    }
    // Newest first on the wire, in two batches: the older ones arrive late.
    let payloads: Vec<Vec<u8>> = events
        .iter()
        .map(hrsync_schema::encode_lifecycle)
        .collect::<Result<_, _>>()?;
    let incoming: Vec<Incoming<'_>> = events
        .iter()
        .zip(&payloads)
        .rev()
        .map(|(event, payload)| Incoming {
            event: event.clone(),
            payload,
            traceparent: None,
        })
        .collect();
    for batch in incoming.chunks(13) {
        projector.apply_batch(batch, &[], T0 + 25 * HOUR).await?;
    }

    let view = projector.person("E1").await?.expect("E1 is stored");
    assert_eq!(view.recent.len(), 20);
    assert_eq!(view.recent[0].event_id, events[24].event_id.to_string());
    assert_eq!(view.recent[0].kind, "move");
    assert_eq!(view.recent[0].source, "directory");
    assert_eq!(view.recent[0].effective_ms, T0 + 24 * HOUR);
    let last = &view.recent[19];
    assert_eq!(last.event_id, events[5].event_id.to_string());
    assert_eq!(last.effective_ms, T0 + 5 * HOUR);
    assert!(view
        .recent
        .windows(2)
        .all(|w| w[0].effective_ms > w[1].effective_ms));
    assert_eq!(
        view.state
            .attributes
            .as_ref()
            .and_then(|a| a.title.as_deref()),
        Some("Title 24")
    );
    assert!(projector.person("NOPE").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn recent_events_newest_first_on_postgres() -> anyhow::Result<()> {
    let pg = PgDatabase::fresh().await?;
    recent_events_newest_first(pg.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn recent_events_newest_first_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    recent_events_newest_first(&file.url()).await
}
