//! The persons' leases (`provisioner_lease`) that let many provisioner
//! processes share one store: one holder at a time, renewed by its holder,
//! taken over once expired, given up only by the holder that took it.

use hrsync_provisioner::store::lease::{give_up, take};
use hrsync_store::Db;
use hrsync_tests::{PgDatabase, SqliteFile};

async fn leases(url: &str) -> anyhow::Result<()> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    assert!(take(&db, "p-1", "a:1", 60_000).await?, "free: taken");
    assert!(
        !take(&db, "p-1", "b:1", 60_000).await?,
        "held by a: refused"
    );
    assert!(
        take(&db, "p-1", "a:1", 60_000).await?,
        "renewed by its holder"
    );
    assert!(
        take(&db, "p-2", "b:1", 60_000).await?,
        "another person's: free"
    );
    // b's late give-up of a lease it does not hold leaves a's.
    give_up(&db, "p-1", "b:1").await?;
    assert!(!take(&db, "p-1", "b:2", 60_000).await?);
    give_up(&db, "p-1", "a:1").await?;
    assert!(take(&db, "p-1", "b:2", 60_000).await?, "given up: taken");
    // A holder that died: its lease (expired at once here) is taken over.
    assert!(take(&db, "p-3", "dead:1", -1).await?);
    assert!(
        take(&db, "p-3", "b:3", 60_000).await?,
        "expired: taken over"
    );
    assert!(!take(&db, "p-3", "dead:1", 60_000).await?, "and not back");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    leases(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    leases(&file.url()).await
}
