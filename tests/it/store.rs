//! The SQL store on both backends: one scenario, PostgreSQL and SQLite.

use hrsync_store::{Backend, Db};
use hrsync_tests::{PgDatabase, SqliteFile};
use sqlx::Row;

async fn migrations_apply_once_and_portable_sql_runs(db: &Db) -> anyhow::Result<()> {
    db.migrate().await?;
    // A second run (a restart, or a second process) is a no-op.
    db.migrate().await?;

    sqlx::query("INSERT INTO ingest_import (import_id, source, file_digest, state, event_count, created_at_ms) VALUES ($1, $2, $3, 'publishing', $4, $5)")
        .bind("imp-1")
        .bind("workday")
        .bind("sha256:00")
        .bind(2_i64)
        .bind(1_700_000_000_000_i64)
        .execute(db.pool())
        .await?;
    sqlx::query("INSERT INTO ingest_outbox (import_id, seq, event_id, record_key, payload, priority) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind("imp-1")
        .bind(0_i64)
        .bind("e-1")
        .bind("E1")
        .bind(vec![0xC3_u8, 0x01, 0xFF, 0x00])
        .bind(1_i64)
        .execute(db.pool())
        .await?;
    let row = sqlx::query(
        "SELECT payload, priority FROM ingest_outbox WHERE import_id = $1 AND seq = $2",
    )
    .bind("imp-1")
    .bind(0_i64)
    .fetch_one(db.pool())
    .await?;
    let payload: Vec<u8> = row.try_get(0)?;
    let priority: i64 = row.try_get(1)?;
    assert_eq!(payload, [0xC3, 0x01, 0xFF, 0x00], "bytes survive exactly");
    assert_eq!(priority, 1);

    // Referential integrity holds on both backends.
    let orphan = sqlx::query("INSERT INTO ingest_outbox (import_id, seq, event_id, record_key, payload, priority) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind("no-such-import")
        .bind(0_i64)
        .bind("e-2")
        .bind("E2")
        .bind(Vec::<u8>::new())
        .bind(0_i64)
        .execute(db.pool())
        .await;
    assert!(
        orphan.is_err(),
        "foreign keys are enforced on {:?}",
        db.backend()
    );
    Ok(())
}

#[tokio::test]
async fn postgres() -> anyhow::Result<()> {
    let pg = PgDatabase::fresh().await?;
    let db = Db::connect(pg.url(), 4).await?;
    assert_eq!(db.backend(), Backend::Postgres);
    migrations_apply_once_and_portable_sql_runs(&db).await
}

#[tokio::test]
async fn sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    let db = Db::connect(&format!("sqlite://{}", file.path().display()), 4).await?;
    assert_eq!(db.backend(), Backend::Sqlite);
    migrations_apply_once_and_portable_sql_runs(&db).await?;
    assert!(file.path().is_file(), "file created");
    Ok(())
}

/// One holder of a role's claim at a time, across connections (as across
/// processes); another role is independent; a dropped claim is free again.
async fn one_claim_per_role(url: &str) -> anyhow::Result<()> {
    let first = Db::connect(url, 2).await?;
    let second = Db::connect(url, 2).await?;
    let mut held = first.try_claim("projector").await?.expect("free at first");
    assert!(held.holds().await);
    assert!(
        second.try_claim("projector").await?.is_none(),
        "held by the first"
    );
    assert!(
        first.try_claim("projector").await?.is_none(),
        "not twice from one pool either"
    );
    let other = second.try_claim("provisioner").await?;
    assert!(other.is_some(), "another role is not held");
    held.release().await;
    let again = second.try_claim("projector").await?;
    assert!(again.is_some(), "free once released");
    Ok(())
}

#[tokio::test]
async fn one_claim_per_role_on_postgres() -> anyhow::Result<()> {
    let pg = PgDatabase::fresh().await?;
    one_claim_per_role(pg.url()).await
}

#[tokio::test]
async fn one_claim_per_role_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    one_claim_per_role(&file.url()).await
}

/// On PostgreSQL the claim is the connection that took it: once that
/// connection is gone (here: terminated by the server), the claim says so
/// and another holder can take it.
#[tokio::test]
async fn a_claim_whose_connection_broke_no_longer_holds() -> anyhow::Result<()> {
    let pg = PgDatabase::fresh().await?;
    let first = Db::connect(pg.url(), 2).await?;
    let second = Db::connect(pg.url(), 2).await?;
    let mut held = first.try_claim("projector").await?.expect("free at first");
    assert_eq!(hrsync_tests::break_claims(&second).await?, 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while held.holds().await {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the claim still holds after its connection was terminated"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(second.try_claim("projector").await?.is_some());
    Ok(())
}
