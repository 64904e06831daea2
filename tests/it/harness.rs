//! The harness's own parts answer for real.

use hrsync_tests::{Broker, PgDatabase, PgServer, ScimServer, SqliteFile, StopMode};
use sqlx::Connection;

#[tokio::test]
async fn postgres_database_is_fresh_and_dropped() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    let name = db.name().to_owned();
    let mut conn = sqlx::PgConnection::connect(db.url()).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut conn)
    .await?;
    assert_eq!(tables, 0, "a fresh database has no tables");
    conn.close().await?;
    drop(db);

    let mut admin =
        sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut admin)
        .await?;
    assert_eq!(left, 0, "database {name} was dropped");
    Ok(())
}

#[tokio::test]
async fn private_postgres_server_keeps_committed_data_across_a_crash_and_a_stop(
) -> anyhow::Result<()> {
    let mut server = PgServer::start()?;
    let url = server.url("postgres");
    let mut conn = sqlx::PgConnection::connect(&url).await?;
    sqlx::query("CREATE TABLE kept (n BIGINT)")
        .execute(&mut conn)
        .await?;
    sqlx::query("INSERT INTO kept VALUES (1)")
        .execute(&mut conn)
        .await?;

    server.stop(StopMode::Immediate)?;
    assert!(
        sqlx::query("SELECT 1").execute(&mut conn).await.is_err(),
        "a connection survived the crash"
    );
    assert!(
        sqlx::PgConnection::connect(&url).await.is_err(),
        "a stopped server accepted a connection"
    );
    for mode in [StopMode::Fast, StopMode::Immediate] {
        server.start_again()?;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        let n: i64 = sqlx::query_scalar("SELECT SUM(n)::BIGINT FROM kept")
            .fetch_one(&mut conn)
            .await?;
        assert_eq!(n, 1, "the committed row after a restart");
        conn.close().await?;
        server.stop(mode)?;
    }
    server.start_again()?;
    let port = server.port();
    drop(server);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still listens after its handle was dropped"
    );
    Ok(())
}

#[tokio::test]
async fn sqlite_file_is_created_on_connect() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    let mut conn = sqlx::SqliteConnection::connect(&file.url()).await?;
    sqlx::query("CREATE TABLE t (x INTEGER)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    assert!(file.path().is_file());
    Ok(())
}

#[tokio::test]
async fn scim_server_requires_its_bearer_token() -> anyhow::Result<()> {
    let scim = ScimServer::start()?;
    let client = reqwest::Client::new();
    let url = format!("{}/Users", scim.base_url());
    let denied = client.get(&url).send().await?;
    assert_eq!(denied.status(), 401);
    let allowed = client.get(&url).bearer_auth(scim.token()).send().await?;
    assert_eq!(allowed.status(), 200);
    let body: serde_json::Value = allowed.json().await?;
    assert_eq!(body["totalResults"], 0);
    Ok(())
}

#[test]
fn broker_accepts_kafka_clients() -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let broker = Broker::start()?;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()?;
    let metadata = consumer.fetch_metadata(None, std::time::Duration::from_secs(10))?;
    assert_eq!(metadata.brokers().len(), 1, "{}", broker.log_tail());
    Ok(())
}
