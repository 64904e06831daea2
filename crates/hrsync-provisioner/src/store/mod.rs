//! The provisioner's SQL, one module per thing it stores. Everything else
//! in the crate reads and writes its state through these functions, never
//! with SQL of its own.
//!
//! - [`accounts`]: what the admin API reads: a person's accounts, the
//!   audit searched, an app's health.
//! - [`links`]: the (person, app) links: the account, the version and user
//!   last applied, its groups and ETag.
//! - [`people`]: the newest directory change of each person.
//! - [`held`]: changes held by the deprovision guard or a quarantine.
//! - [`lease`]: which process applies a person's changes now (many
//!   provisioner processes on one PostgreSQL store).
//! - [`guard`]: the deprovision guard's trips and its window of
//!   deactivations.
//! - [`groups`]: the SCIM groups pushed to each app and the queue of
//!   memberships to bring about.
//! - [`tasks`]: manual-task apps: what was last asked of each account,
//!   and the tasks handed to people.
//! - [`runs`]: the last app-wide reconciliation of each app and mode.
//! - [`audit`]: the audit trail of SCIM operations.
//! - [`terminations`]: what the list of terminations reads of a page of
//!   persons: accounts, deactivations and failures, held changes.
//!
//! Functions answer with `sqlx::Error`, which callers wrap in their own
//! error (its retryability is [`hrsync_store::is_retryable_sqlx`]).

pub mod accounts;
pub mod audit;
pub mod groups;
pub mod guard;
pub mod held;
pub mod lease;
pub mod links;
pub mod people;
pub mod runs;
pub mod tasks;
pub mod terminations;

/// Rows in one multi-row statement (13 columns at most: well below the
/// bind limits of PostgreSQL and SQLite).
const ROWS: usize = 200;

/// Now, in ms since the epoch, as the tables record times.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
