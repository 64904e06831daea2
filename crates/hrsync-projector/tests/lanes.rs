//! The priority lane and the main lane store the same event at the same
//! time (an immediate termination arrives on both topics): the second is a
//! no-op, not a failed batch (at worst a conflict the lane retries at once).
//! On real PostgreSQL.

use std::time::Duration;

use hrsync_domain::{
    EmployeeId, EmploymentType, Hire, LifecycleEvent, LifecyclePayload, SourceSystem, TimeZone,
    Timestamp, WorkerAttributes,
};
use hrsync_projector::config::ProjectorConfig;
use hrsync_projector::project::{BatchOutcome, Incoming, ProjectError, Projector};
use hrsync_tests::PgDatabase;

/// A fresh, migrated PostgreSQL store and a projector over it.
async fn store() -> anyhow::Result<(PgDatabase, hrsync_store::Db, Projector)> {
    let pg = PgDatabase::fresh().await?;
    let db = hrsync_store::Db::connect(pg.url(), 4).await?;
    db.migrate().await?;
    let projector = Projector::new(db.clone(), ProjectorConfig::default())?;
    Ok((pg, db, projector))
}

/// E1's hire at `now`, and its encoding.
fn hire_e1(now: Timestamp) -> anyhow::Result<(LifecycleEvent, Vec<u8>)> {
    let event = LifecycleEvent::new(
        SourceSystem::new("hris")?,
        EmployeeId::new("E1")?,
        now,
        now,
        TimeZone::new("UTC")?,
        LifecyclePayload::Hire(Hire {
            attributes: WorkerAttributes::new("Ada", "Byron", EmploymentType::Employee),
        }),
    )?;
    let payload = hrsync_schema::encode_lifecycle(&event)?;
    Ok((event, payload))
}

/// Applies `event` (encoded as `payload`) alone, with no positions.
async fn apply_one(
    projector: &Projector,
    event: LifecycleEvent,
    payload: &[u8],
    now: Timestamp,
) -> Result<BatchOutcome, ProjectError> {
    projector
        .apply_batch(
            &[Incoming {
                event,
                payload,
                traceparent: None,
            }],
            &[],
            now.as_millis(),
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_stored_meanwhile_by_the_other_lane_is_a_duplicate() -> anyhow::Result<()> {
    let (_pg, db, projector) = store().await?;
    let now = Timestamp::from_millis(1_790_000_000_000)?;
    let (event, payload) = hire_e1(now)?;

    // The other lane has stored the event and not committed yet.
    let mut other = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO projector_event (event_id, employee_id, effective_at_ms, payload, received_at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.event_id.to_string())
    .bind("E1")
    .bind(now.as_millis())
    .bind(payload.clone())
    .bind(now.as_millis())
    .execute(&mut *other)
    .await?;

    let apply = {
        let projector = projector.clone();
        let event = event.clone();
        move || {
            let projector = projector.clone();
            let event = event.clone();
            let payload = payload.clone();
            async move { apply_one(&projector, event, &payload, now).await }
        }
    };
    let batch = tokio::spawn(apply());
    // The batch now waits on the event's key; the other lane commits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    other.commit().await?;
    let outcome = match batch.await? {
        Ok(outcome) => outcome,
        // A serializable transaction may lose instead: the lane retries it
        // at once (run.rs), and then it is a no-op.
        Err(error) if error.is_conflict() => apply().await?,
        Err(error) => return Err(error.into()),
    };
    assert_eq!((outcome.applied, outcome.duplicates), (0, 1));
    Ok(())
}

/// An outbox pack (see the projector's `store::outbox`) holding one change
/// for the main topic, without a trace.
fn pack_of_one(person_id: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let len = |n: usize| u32::try_from(n).expect("short").to_le_bytes();
    body.extend(len(1));
    body.push(0);
    body.extend(len(person_id.len()));
    body.extend(person_id.as_bytes());
    body.extend(len(payload.len()));
    body.extend(payload);
    body.extend(len(0));
    let mut pack = vec![2];
    pack.extend(lz4_flex::block::compress_prepend_size(&body));
    pack
}

/// A batch that took its outbox sequence numbers first can commit after
/// another batch's rows were read and published: deleting the published
/// rows must not take its rows with them (they were never published).
#[tokio::test(flavor = "multi_thread")]
async fn rows_committed_after_the_publisher_read_are_not_deleted() -> anyhow::Result<()> {
    let (_pg, db, projector) = store().await?;
    let now = Timestamp::from_millis(1_790_000_000_000)?;

    // The slower batch: its outbox row is numbered, not yet committed.
    let mut slower = db.pool().begin().await?;
    let early: i64 = sqlx::query_scalar(
        "INSERT INTO projector_outbox (payload, priority, created_at_ms, changes) \
         VALUES ($1, 0, $2, 1) RETURNING seq",
    )
    .bind(pack_of_one("P-slow", b"change"))
    .bind(now.as_millis())
    .fetch_one(&mut *slower)
    .await?;

    // The faster batch commits a change with a higher number.
    let (event, payload) = hire_e1(now)?;
    let outcome = apply_one(&projector, event, &payload, now).await?;
    assert_eq!(outcome.changes, 1);

    // The publisher reads and publishes what is visible: only the later row.
    let read = projector.outbox(100).await?;
    let seqs: Vec<i64> = read.iter().map(|r| r.seq).collect();
    assert_eq!(seqs.len(), 1);
    assert!(seqs[0] > early, "{seqs:?} vs {early}");
    // The slower batch commits before the publisher deletes what it sent.
    slower.commit().await?;
    projector.delete_outbox(&seqs).await?;

    let left: Vec<i64> = projector.outbox(100).await?.iter().map(|r| r.seq).collect();
    assert_eq!(left, [early], "the unpublished row is still there");
    Ok(())
}
