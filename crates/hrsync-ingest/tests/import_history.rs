//! The history of imports (`IngestStore::imports`), on PostgreSQL and
//! SQLite: newest first (ties by id), by source, keyset-paged, each import
//! with its state, event count and times.

use hrsync_ingest::snapshot::Snapshot;
use hrsync_ingest::store::{ImportFilter, ImportRecord, IngestStore, OutboxEvent};
use hrsync_store::Db;
use hrsync_tests::{PgDatabase, SqliteFile};

fn ids(records: &[ImportRecord]) -> Vec<&str> {
    records.iter().map(|r| r.import_id.as_str()).collect()
}

async fn history(url: &str) -> anyhow::Result<()> {
    let db = Db::connect(url, 2).await?;
    db.migrate().await?;
    let store = IngestStore::new(db);
    let empty = Snapshot::default();
    let event = OutboxEvent {
        seq: 0,
        event_id: "ev-1".into(),
        key: "E1".into(),
        payload: vec![1, 2, 3],
        priority: false,
    };
    // hris: a, accepted at 1,100; then b, still publishing its one event.
    // workday: c, recorded when b was.
    store
        .record_import("hris", "imp-a", "sha-a", 1_000, &[], &empty)
        .await?;
    assert!(store.accept("hris", "imp-a", 1_100).await?);
    store
        .record_import("hris", "imp-b", "sha-b", 2_000, &[event], &empty)
        .await?;
    store
        .record_import("workday", "imp-c", "sha-c", 2_000, &[], &empty)
        .await?;
    let list = |source: Option<&str>, before: Option<(i64, &str)>, limit| ImportFilter {
        source: source.map(str::to_owned),
        before: before.map(|(at, id)| (at, id.to_owned())),
        limit,
    };

    let all = store.imports(&list(None, None, 10)).await?;
    assert_eq!(ids(&all), ["imp-c", "imp-b", "imp-a"]);
    assert_eq!(
        all[2],
        ImportRecord {
            import_id: "imp-a".into(),
            source: "hris".into(),
            file_digest: "sha-a".into(),
            state: "baseline".into(),
            event_count: 0,
            created_at_ms: 1_000,
            accepted_at_ms: Some(1_100),
        }
    );
    assert_eq!(
        (
            all[1].state.as_str(),
            all[1].event_count,
            all[1].accepted_at_ms
        ),
        ("publishing", 1, None)
    );

    let hris = store.imports(&list(Some("hris"), None, 10)).await?;
    assert_eq!(ids(&hris), ["imp-b", "imp-a"]);
    let nobody = store.imports(&list(Some("bamboo"), None, 10)).await?;
    assert!(nobody.is_empty());

    // Keyset paging: after (2000, imp-c) come b and a; after b, a.
    let first = store.imports(&list(None, None, 1)).await?;
    assert_eq!(ids(&first), ["imp-c"]);
    let next = store
        .imports(&list(None, Some((2_000, "imp-c")), 10))
        .await?;
    assert_eq!(ids(&next), ["imp-b", "imp-a"]);
    let last = store
        .imports(&list(Some("hris"), Some((2_000, "imp-b")), 10))
        .await?;
    assert_eq!(ids(&last), ["imp-a"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn import_history_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    history(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn import_history_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    history(&file.url()).await
}
