//! hrsync's SQL store: one connection type for PostgreSQL (production) and
//! SQLite (the embedded default).
//!
//! Both backends run the same SQL text through sqlx's `Any` driver: queries
//! use `$1`-style placeholders, which SQLite accepts too, and only portable
//! types (integers, text, blobs, booleans as integers). Schema differences
//! live in the two migration directories, `migrations/postgres` and
//! `migrations/sqlite`, which must describe the same tables.

pub mod actions;
mod filter;

pub use filter::Where;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

/// Migrations of every table hrsync keeps, for PostgreSQL.
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");
/// The same tables for SQLite.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// Store errors. [`Error::is_retryable`] tells transient failures from
/// permanent ones.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL names neither PostgreSQL nor SQLite. Only the scheme is shown:
    /// URLs can hold passwords.
    #[error("database URL scheme `{scheme}` is not supported; use postgres:// or sqlite:")]
    UnsupportedUrl {
        /// The scheme found.
        scheme: String,
    },
    /// The database could not be reached or opened.
    #[error("cannot connect to {backend:?}: {source}")]
    Connect {
        /// Backend tried.
        backend: Backend,
        /// Cause.
        source: sqlx::Error,
    },
    /// Migrations failed (schema out of step, or the database refused DDL).
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// The lock file of a claim (SQLite) cannot be opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Claim {
        /// The lock file.
        path: std::path::PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether retrying later may succeed: connection loss, pool exhaustion,
    /// serialization failures, deadlocks and SQLite busy/locked errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            Error::Query(e) => is_retryable_sqlx(e),
            Error::UnsupportedUrl { .. } | Error::Migrate(_) | Error::Claim { .. } => false,
        }
    }
}

/// Retryability of a raw sqlx error (see [`Error::is_retryable`]).
pub fn is_retryable_sqlx(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // PostgreSQL: serialization_failure, deadlock_detected,
            // admin/crash shutdown, cannot_connect_now.
            Some("40001" | "40P01" | "57P01" | "57P02" | "57P03")
            // SQLite: SQLITE_BUSY, SQLITE_LOCKED (primary and extended codes).
            | Some("5" | "6" | "261" | "262" | "517")
        ),
        _ => false,
    }
}

/// Runs `attempt` again while it fails with an error retrying can help
/// ([`is_retryable_sqlx`]: a connection that broke, the database restarting,
/// the pool out of connections), waiting 100 ms, doubling up to 2 s, between
/// tries, until `budget` has passed since the first try. Returns the first
/// success, a permanent error at once, or the last error once the budget is
/// spent.
///
/// For writes that must not be lost to a database restart: a pooled
/// connection that broke fails its next statement once even when the
/// database is back. `attempt` must be safe to repeat (an upsert, an insert
/// that ignores rows already there): a statement whose commit reached the
/// database but whose answer was lost is run again. `what` names the work in
/// the warning logged before each retry.
///
/// # Errors
/// A permanent error, or a transient one that lasted the whole budget.
pub async fn retry_transient<T, F, Fut>(
    what: &str,
    budget: Duration,
    mut attempt: F,
) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let deadline = tokio::time::Instant::now() + budget;
    let mut wait = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error)
                if is_retryable_sqlx(&error) && tokio::time::Instant::now() + wait < deadline =>
            {
                tracing::warn!(%error, what, wait_ms = wait.as_millis() as u64, "store not reachable; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection pool to the store.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// The SQLite database file (none for PostgreSQL and in-memory SQLite).
    file: Option<std::sync::Arc<std::path::PathBuf>>,
}

impl Db {
    /// Connects to `url` (`postgres://…` or `sqlite://PATH`; a SQLite file is
    /// created when missing). Does not run migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let scheme = url.split(':').next().unwrap_or_default();
        let (backend, url) = match scheme {
            "postgres" | "postgresql" => (Backend::Postgres, url.to_owned()),
            "sqlite" => (Backend::Sqlite, sqlite_create_if_missing(url)),
            other => {
                return Err(Error::UnsupportedUrl {
                    scheme: other.to_owned(),
                })
            }
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|source| Error::Connect { backend, source })?;
        let file = if backend == Backend::Sqlite && !url.contains(":memory:") {
            let sqlite = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                .map_err(|source| Error::Connect { backend, source })?;
            Some(std::sync::Arc::new(sqlite.get_filename().to_owned()))
        } else {
            None
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            // No ping before every use of a pooled connection (a round
            // trip per statement for callers that run single statements):
            // a connection that broke fails its next query with an error the
            // callers treat as retryable, and the pool drops it.
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer;
                        // NORMAL sync is durable in WAL mode except on power
                        // loss of the last transaction; busy_timeout waits
                        // for the writer lock instead of failing at once.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| Error::Connect { backend, source })?;
        Ok(Db {
            pool,
            backend,
            file,
        })
    }

    /// Brings the schema up to date. Safe to run from several processes.
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            // PostgreSQL: sqlx holds an advisory lock while migrating.
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
            // SQLite has no such lock: a second process migrating at the
            // same moment fails on the tables the first just created. Once
            // the first is done, running again finds nothing left to do.
            Backend::Sqlite => {
                let mut attempt = 0;
                loop {
                    match SQLITE_MIGRATIONS.run(&self.pool).await {
                        Ok(()) => break,
                        Err(_) if attempt < 20 => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Begins a write transaction that is serializable on both backends:
    /// on PostgreSQL `SERIALIZABLE` isolation, where a transaction whose
    /// reads another one changed concurrently fails (code 40001,
    /// retryable) instead of committing a result computed from stale
    /// reads; on SQLite, whose transactions are serializable anyway,
    /// [`Db::begin_write`].
    ///
    /// # Errors
    /// As [`Db::begin_write`].
    pub async fn begin_serializable(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE")
                    .await?
            }
        })
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a transaction that will write.
    ///
    /// On SQLite this is `BEGIN IMMEDIATE`: the database's one writer lock
    /// is taken up front, waiting up to `busy_timeout` for another writer to
    /// finish. A plain (deferred) `BEGIN` takes it only at the first write,
    /// and a transaction that has read first cannot always wait for it
    /// there: its write fails with `SQLITE_BUSY` (5), or with
    /// `SQLITE_BUSY_SNAPSHOT` (517) if another writer committed since its
    /// first read, which `busy_timeout` does not wait out, and the whole
    /// transaction must be retried. On PostgreSQL it is a plain `BEGIN`
    /// (read committed).
    ///
    /// # Errors
    /// No connection, or the lock was not granted within `busy_timeout`
    /// (retryable, see [`Error::is_retryable`]).
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Claims the store for `role` unless another process holds it: at most
    /// one process at a time holds a role's claim on a store. `None` if it
    /// is held elsewhere; try again later. The claim lasts until the
    /// [`Claim`] is dropped or its process ends (whichever way it ends).
    ///
    /// PostgreSQL: a session advisory lock of this database, held by a
    /// connection of its own (taken out of the pool). SQLite: an exclusive
    /// `flock` on the file `DATABASE-ROLE.lock` beside the database file;
    /// an in-memory database has no other process to keep out.
    ///
    /// # Errors
    /// The database or the lock file cannot be reached.
    pub async fn try_claim(&self, role: &str) -> Result<Option<Claim>> {
        match self.backend {
            Backend::Postgres => {
                let mut conn = self.pool.acquire().await?.detach();
                let granted: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(claim_key(role))
                    .fetch_one(&mut conn)
                    .await?;
                Ok(granted.then_some(Claim(Held::Postgres(conn))))
            }
            Backend::Sqlite => {
                let Some(file) = &self.file else {
                    return Ok(Some(Claim(Held::Private)));
                };
                let mut path = file.as_os_str().to_owned();
                path.push(format!("-{role}.lock"));
                let path = std::path::PathBuf::from(path);
                let lock = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::Claim {
                        path: path.clone(),
                        source: e,
                    })?;
                match lock.try_lock() {
                    Ok(()) => Ok(Some(Claim(Held::File { _lock: lock }))),
                    Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                    Err(std::fs::TryLockError::Error(e)) => Err(Error::Claim { path, source: e }),
                }
            }
        }
    }
}

/// A process's claim on a store for one role (see [`Db::try_claim`]).
#[derive(Debug)]
pub struct Claim(Held);

#[derive(Debug)]
enum Held {
    /// The connection holding the advisory lock.
    Postgres(sqlx::AnyConnection),
    /// The locked file (the lock lasts while it is open).
    File { _lock: std::fs::File },
    /// An in-memory database: nobody else can reach it.
    Private,
}

impl Claim {
    /// Gives the claim up now. Dropping a claim gives it up too, but on
    /// PostgreSQL only once the server notices the connection closed, which
    /// may take a moment; after `release` another process can take it at
    /// once.
    pub async fn release(self) {
        if let Held::Postgres(mut conn) = self.0 {
            // Either way the lock is gone once the connection is: closing it
            // is the fallback when the unlock cannot be sent.
            let _ = sqlx::query("SELECT pg_advisory_unlock_all()")
                .execute(&mut conn)
                .await;
            let _ = sqlx::Connection::close(conn).await;
        }
    }

    /// Whether the claim still holds. On PostgreSQL the lock lasts as long
    /// as the connection that took it: if that connection broke, the lock
    /// is gone and another process may have it now.
    pub async fn holds(&mut self) -> bool {
        match &mut self.0 {
            Held::Postgres(conn) => sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok(),
            Held::File { .. } | Held::Private => true,
        }
    }
}

/// The PostgreSQL advisory lock key of a role's claim: FNV-1a over
/// `hrsync claim: ROLE` (sqlx's migrations lock keys of their own, derived
/// from the database name). Public for tests that queue for a claim.
#[doc(hidden)]
pub fn claim_key(role: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "hrsync claim: ".bytes().chain(role.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// sqlx opens an existing SQLite file only unless `mode=rwc` is given.
fn sqlite_create_if_missing(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// How many rows a statement for `rows` rows is written for: `rows` rounded
/// up to a power of two, at most `max` (and never fewer than `rows`).
///
/// A statement whose row count varies from call to call (an `IN (...)`
/// list, a multi-row insert) is otherwise a new text for every count. Each
/// text is prepared once per connection and sqlx keeps 100 per connection,
/// so with counts up to 200 many executions prepared their statement anew
/// (319 of 2,549 in a projector benchmark run), and PostgreSQL plans each
/// prepared statement anew on its first five runs (a generic plan can only
/// come from the sixth). Rounded up, a query in chunks of up to 200 rows
/// has at most nine texts per connection. Fill the extra slots
/// with [`repeat_last`] (an `IN` list) or with rows of NULLs that the
/// statement filters out ([`padded_values`]).
pub fn padded_rows(rows: usize, max: usize) -> usize {
    if rows == 0 {
        return 0;
    }
    rows.checked_next_power_of_two()
        .unwrap_or(rows)
        .min(max)
        .max(rows)
}

/// `items`, then its last item repeated until there are `slots`: an `IN
/// (...)` list of [`padded_rows`] slots that means the same as `items`.
pub fn repeat_last<T>(items: &[T], slots: usize) -> impl Iterator<Item = &T> {
    let extra = slots.saturating_sub(items.len());
    items
        .iter()
        .chain(std::iter::repeat_n(items.last(), extra).flatten())
}

/// `SELECT * FROM (VALUES ...)` over `slots` rows of `columns` placeholders,
/// keeping only the rows whose first column is not NULL: for `INSERT INTO
/// t (...) {this} ON CONFLICT ...`, with the real rows bound first and each
/// of the other [`padded_rows`] slots bound as NULLs
/// ([`BindPadding::bind_padding`]). Both backends name a
/// `VALUES` list's columns `column1`, `column2`, and so on.
pub fn padded_values(slots: usize, columns: usize) -> String {
    format!(
        "SELECT * FROM (VALUES {}) AS padded WHERE column1 IS NOT NULL",
        placeholders(slots, columns)
    )
}

/// The SQL type of one column of a [`padded_values`] padding row.
/// PostgreSQL gives each `VALUES` column one type from all its rows, so a
/// padding NULL is bound as the type of the real values above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Null {
    /// Text (`&str`).
    Text,
    /// A 64-bit integer (`i64`).
    BigInt,
    /// Bytes (`&[u8]`).
    Blob,
}

/// A query the padding rows of [`padded_values`] can be bound to: sqlx's
/// `Query` and `QueryAs` over the Any driver.
pub trait BindPadding: Sized {
    /// Binds one NULL typed as `null`.
    #[must_use]
    fn bind_null(self, null: Null) -> Self;

    /// Binds `rows` rows of NULLs, column by column typed as `columns`:
    /// the padding after the real rows of a [`padded_values`] statement.
    #[must_use]
    fn bind_padding(mut self, rows: usize, columns: &[Null]) -> Self {
        for _ in 0..rows {
            for &null in columns {
                self = self.bind_null(null);
            }
        }
        self
    }
}

/// [`BindPadding::bind_null`] for either query type.
macro_rules! bind_null {
    ($query:expr, $null:expr) => {
        match $null {
            Null::Text => $query.bind(None::<&str>),
            Null::BigInt => $query.bind(None::<i64>),
            Null::Blob => $query.bind(None::<&[u8]>),
        }
    };
}

impl<'q> BindPadding for sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    fn bind_null(self, null: Null) -> Self {
        bind_null!(self, null)
    }
}

impl<'q, O> BindPadding for sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
    fn bind_null(self, null: Null) -> Self {
        bind_null!(self, null)
    }
}

/// Numbered placeholders for `rows` rows of `columns` values each:
/// `($1, $2), ($3, $4)` for multi-row `VALUES`, or `$1, $2, $3` for an
/// `IN (...)` list when `columns` is 1. Both backends read `$N` through the
/// Any driver. Keep `rows * columns` under 32766 (SQLite's limit).
pub fn placeholders(rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        if columns > 1 {
            sql.push('(');
        }
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * columns + column + 1).to_string());
        }
        if columns > 1 {
            sql.push(')');
        }
    }
    sql
}

#[cfg(test)]
mod tests {
    #[test]
    fn padded_rows_round_up_to_a_power_of_two_within_the_maximum() {
        let padded: Vec<usize> = [0, 1, 2, 3, 5, 8, 9, 100, 129, 200]
            .iter()
            .map(|n| super::padded_rows(*n, 200))
            .collect();
        assert_eq!(padded, [0, 1, 2, 4, 8, 8, 16, 128, 200, 200]);
        assert_eq!(super::padded_rows(300, 200), 300, "never fewer than asked");
        assert_eq!(super::padded_rows(600, 1000), 1000);
    }

    #[test]
    fn repeat_last_fills_the_slots_with_the_last_item() {
        let items = ["a", "b", "c"];
        let filled: Vec<&&str> = super::repeat_last(&items, 5).collect();
        assert_eq!(filled, [&"a", &"b", &"c", &"c", &"c"]);
        assert_eq!(super::repeat_last(&items, 2).count(), 3);
        assert_eq!(super::repeat_last::<&str>(&[], 4).count(), 0);
    }

    #[test]
    fn padded_values_select_the_rows_with_a_first_column() {
        assert_eq!(
            super::padded_values(2, 2),
            "SELECT * FROM (VALUES ($1, $2), ($3, $4)) AS padded WHERE column1 IS NOT NULL"
        );
    }

    #[tokio::test]
    async fn padding_rows_are_typed_nulls_the_statement_leaves_out() {
        let db = super::Db::connect("sqlite::memory:", 1)
            .await
            .expect("sqlite");
        let sql = super::padded_values(4, 3);
        let columns = [Null::Text, Null::BigInt, Null::Blob];
        let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(&sql)
            .bind("a")
            .bind(1_i64)
            .bind(&b"x"[..])
            .bind_padding(3, &columns)
            .fetch_all(db.pool())
            .await
            .expect("query_as");
        assert_eq!(rows, [("a".to_owned(), 1, b"x".to_vec())]);
        let rows = sqlx::query(&sql)
            .bind_padding(4, &columns)
            .fetch_all(db.pool())
            .await
            .expect("query");
        assert!(rows.is_empty());
    }

    #[test]
    fn placeholders_number_rows_and_columns() {
        assert_eq!(super::placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::placeholders(3, 1), "$1, $2, $3");
        assert_eq!(super::placeholders(0, 4), "");
    }

    use super::*;

    fn broken() -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset",
        ))
    }

    #[tokio::test]
    async fn retry_transient_retries_a_broken_connection_until_it_works() {
        let mut tries = 0;
        let result = retry_transient("test", Duration::from_secs(10), || {
            tries += 1;
            let outcome = if tries < 3 { Err(broken()) } else { Ok(tries) };
            async move { outcome }
        })
        .await;
        assert_eq!(result.ok(), Some(3));
    }

    #[tokio::test]
    async fn retry_transient_returns_a_permanent_error_at_once() {
        let mut tries = 0;
        let result: Result<(), _> = retry_transient("test", Duration::from_secs(10), || {
            tries += 1;
            async { Err(sqlx::Error::RowNotFound) }
        })
        .await;
        assert!(matches!(result, Err(sqlx::Error::RowNotFound)));
        assert_eq!(tries, 1);
    }

    #[tokio::test]
    async fn retry_transient_gives_up_once_the_budget_is_spent() {
        let mut tries = 0;
        let started = std::time::Instant::now();
        let result: Result<(), _> = retry_transient("test", Duration::from_millis(350), || {
            tries += 1;
            async { Err(broken()) }
        })
        .await;
        assert!(matches!(result, Err(sqlx::Error::Io(_))));
        // Tries at 0, 100 and 300 ms; the next wait (400 ms) would end past
        // the budget.
        assert_eq!(tries, 3);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        assert_eq!(
            sqlite_create_if_missing("sqlite:///tmp/x.db"),
            "sqlite:///tmp/x.db?mode=rwc"
        );
        assert_eq!(
            sqlite_create_if_missing("sqlite:///tmp/x.db?cache=shared"),
            "sqlite:///tmp/x.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_create_if_missing("sqlite:///tmp/x.db?mode=ro"),
            "sqlite:///tmp/x.db?mode=ro"
        );
    }

    #[tokio::test]
    async fn unsupported_scheme_names_only_the_scheme() {
        let err = Db::connect("mysql://root:hunter2@localhost/db", 1)
            .await
            .expect_err("unsupported");
        let msg = err.to_string();
        assert!(msg.contains("mysql"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
