//! A fresh PostgreSQL database per test, dropped afterwards.

use anyhow::Context;
use sqlx::Connection;

/// Server URL the harness uses to create and drop databases. Overridden by
/// `IT_PG_ADMIN_URL` (not `HRSYNC_*`: those are hrsync's own config keys).
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Prefix of every database the harness creates; `scripts/test` drops
/// leftovers of killed runs.
pub const DATABASE_PREFIX: &str = "hrsync_it_";

/// A database created for one test and dropped (with its connections) when
/// the handle is dropped.
#[derive(Debug)]
pub struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// Creates a new, empty database.
    pub async fn fresh() -> anyhow::Result<Self> {
        let admin_url =
            std::env::var("IT_PG_ADMIN_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        // Named after this process too: `scripts/test` drops databases left
        // behind by killed runs, but not those of a process still running
        // (a test suite running beside it).
        let name =
            crate::unique(&format!("{DATABASE_PREFIX}{}", std::process::id())).replace('-', "_");
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .with_context(|| {
                format!(
                    "PostgreSQL is not reachable at {admin_url}. Start it (on this machine: \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`) \
                 or set IT_PG_ADMIN_URL"
                )
            })?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        conn.close().await?;
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => anyhow::bail!("IT_PG_ADMIN_URL has no database part: {admin_url}"),
        };
        Ok(PgDatabase {
            admin_url,
            name,
            url,
        })
    }

    /// Connection URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Terminates the server connections holding advisory locks in `db`'s
/// database (the claims of `hrsync_store::Db::try_claim`), as a broken
/// connection would end them, and waits (up to 10 s each) until they are
/// gone: a terminated backend releases its locks only as it exits, which
/// under load can be well after the signal. Returns how many were
/// terminated.
///
/// # Errors
/// The database is not reachable.
pub async fn break_claims(db: &hrsync_store::Db) -> anyhow::Result<usize> {
    let holders: Vec<i64> = sqlx::query_scalar(
        "SELECT CAST(pid AS BIGINT) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(db.pool())
    .await?;
    let mut terminated = 0;
    for pid in holders {
        let done: bool =
            sqlx::query_scalar("SELECT pg_terminate_backend(CAST($1 AS INTEGER), 10000)")
                .bind(pid)
                .fetch_one(db.pool())
                .await?;
        terminated += usize::from(done);
    }
    Ok(terminated)
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop may run inside a tokio runtime, which cannot be blocked on;
        // a plain thread with its own small runtime can.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::query(&statement).execute(&mut conn).await?;
                conn.close().await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: test database {} was not dropped", self.name);
        }
    }
}
