//! Real parts for hrsync's integration tests.
//!
//! Every part is a real server over a real connection: a `tansu`
//! Kafka-protocol broker, a fresh PostgreSQL database on 127.0.0.1:5432 (or
//! a private PostgreSQL server that a test may stop and start), a SQLite
//! file, and the third-party `scim2-server` (PyPI). Each is started on
//! a free port and stopped (or dropped) when its handle is dropped.
//!
//! A missing part fails the test with a message saying how to get it; nothing
//! is skipped. `scripts/test` installs the broker and the SCIM server into
//! `~/.cache/hrsync` before running the tests.

mod broker;
mod change;
mod fault;
mod keys;
mod oidc;
mod pg_server;
mod postgres;
mod process;
mod projector;
mod publish;
mod scim;
mod topic;

pub use broker::{Broker, TANSU_VERSION};
pub use change::directory_change;
pub use fault::{Fault, FaultProxy};
pub use keys::KeyPair;
pub use oidc::{console_sign_in, console_sign_in_from, start_fixture, Issuer, HRSYNC_AUDIENCE};
pub use pg_server::{PgServer, StopMode};
pub use postgres::{break_claims, PgDatabase, DATABASE_PREFIX};
pub use process::free_port;
pub use projector::projector_topics;
pub use publish::{publish_directory_changes, publish_lifecycle, publish_lifecycle_at};
pub use scim::{ScimServer, SCIM2_SERVER_VERSION};
pub use topic::{read_topic, read_topic_until_quiet, TopicRecord};

use std::path::{Path, PathBuf};

/// A SQLite database file in its own temporary directory, removed on drop.
#[derive(Debug)]
pub struct SqliteFile {
    dir: tempfile::TempDir,
}

impl SqliteFile {
    /// A new, not yet existing, database file.
    pub fn new() -> anyhow::Result<Self> {
        Ok(SqliteFile {
            dir: tempfile::tempdir()?,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("hrsync.db")
    }

    /// sqlx connection URL that creates the file on first use.
    pub fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.path().display())
    }
}

/// A random suffix for topic, group and database names, so tests sharing a
/// server never see each other's data.
pub fn unique(prefix: &str) -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{prefix}-{n:016x}")
}

/// Where `scripts/test` installs the tools the harness needs.
pub fn tools_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache").join("hrsync")
}

/// The release `hrsync` binary a benchmark runs: `given`, or the one beside
/// the benchmark's own executable (both built by `cargo build --release`).
///
/// # Errors
/// The binary is not there, saying how to build it.
pub fn hrsync_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow::anyhow!("no directory of this binary"))?
            .join("hrsync"),
    };
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it first (`cargo build --release -p hrsync`) or pass --hrsync",
        path.display()
    );
    Ok(path)
}
