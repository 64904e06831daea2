//! The push API's shared rate of acceptance (`IngestStore::take_push_rate`)
//! on PostgreSQL and SQLite: a client's events per minute are counted in
//! the store, so every push API process on it refuses the same excess.

use hrsync_ingest::store::IngestStore;
use hrsync_store::Db;
use hrsync_tests::{PgDatabase, SqliteFile};

/// The start of a minute, in ms since the epoch.
const MINUTE: i64 = 1_790_000_000_000 - 1_790_000_000_000 % 60_000;

async fn rate(url: &str) -> anyhow::Result<IngestStore> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    let store = IngestStore::new(db);
    let at = MINUTE + 5_000;

    // Three per minute: the fourth of the minute is refused, and refusing
    // it counts nothing.
    for n in 0..3 {
        assert!(
            store.take_push_rate("workday", 3, at + n).await?,
            "event {n}"
        );
    }
    assert!(!store.take_push_rate("workday", 3, at + 10).await?);
    assert!(!store.take_push_rate("workday", 3, MINUTE + 59_999).await?);
    // Another client has its own count.
    assert!(store.take_push_rate("successfactors", 3, at).await?);
    // The next minute starts afresh and drops the client's past minutes.
    assert!(store.take_push_rate("workday", 3, MINUTE + 60_000).await?);
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT subject, window_start_ms, accepted FROM ingest_push_rate ORDER BY subject",
    )
    .fetch_all(store.db().pool())
    .await?;
    assert_eq!(
        rows,
        [
            ("successfactors".to_owned(), MINUTE, 1),
            ("workday".to_owned(), MINUTE + 60_000, 1)
        ]
    );
    // The new minute counts on.
    assert!(store.take_push_rate("workday", 3, MINUTE + 60_001).await?);
    Ok(store)
}

#[tokio::test(flavor = "multi_thread")]
async fn push_rate_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    let store = rate(db.url()).await?;
    // Many requests at once (as from several processes): exactly the limit
    // is accepted, never one more.
    let at = MINUTE + 120_000;
    let takes = (0..24).map(|_| store.take_push_rate("burst", 5, at));
    let accepted = futures::future::try_join_all(takes)
        .await?
        .into_iter()
        .filter(|taken| *taken)
        .count();
    assert_eq!(accepted, 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn push_rate_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    rate(&file.url()).await?;
    Ok(())
}
