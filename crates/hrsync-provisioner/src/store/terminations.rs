//! What the list of terminations reads for a page of persons: their
//! accounts, the audit records that say whether each was deactivated (or
//! failed), and the changes held for them.

use hrsync_store::{Db, Where};
use sqlx::Row;

/// A person's account in one app: whether it is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    /// The person.
    pub person_id: String,
    /// The app.
    pub app: String,
    /// Whether the account is active.
    pub active: bool,
}

/// The accounts of `person_ids` (links without an account left out).
///
/// # Errors
/// Query failures.
pub async fn accounts(db: &Db, person_ids: &[String]) -> sqlx::Result<Vec<AccountState>> {
    let mut sql = Where::default();
    sql.one_of("person_id", person_ids);
    let text = format!(
        "SELECT person_id, app, active FROM provisioner_link{} AND scim_id <> ''",
        sql.clause()
    );
    let rows = sql.bind(sqlx::query(&text)).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| {
            Ok(AccountState {
                person_id: r.try_get(0)?,
                app: r.try_get(1)?,
                active: r.try_get::<i64, _>(2)? != 0,
            })
        })
        .collect()
}

/// An audit record that ends a deactivation: a successful `DEACTIVATE`, or
/// any operation that `FAILED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The person.
    pub person_id: String,
    /// The app.
    pub app: String,
    /// True for a successful deactivation, false for a failure.
    pub deactivated: bool,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The W3C trace id of the change.
    pub trace_id: Option<String>,
    /// The failure.
    pub error: Option<String>,
}

/// The successful deactivations and the failures the audit records of
/// `person_ids`, oldest first.
///
/// # Errors
/// Query failures.
pub async fn outcomes(db: &Db, person_ids: &[String]) -> sqlx::Result<Vec<Outcome>> {
    let mut sql = Where::default();
    sql.one_of("person_id", person_ids);
    // (The clause is never empty: it names the persons.)
    let text = format!(
        "SELECT person_id, app, outcome, at_ms, trace_id, error FROM provisioner_audit{} \
         AND ((operation = 'DEACTIVATE' AND outcome = 'SUCCESS') OR outcome = 'FAILED') \
         ORDER BY at_ms, audit_id",
        sql.clause()
    );
    let rows = sql.bind(sqlx::query(&text)).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| {
            Ok(Outcome {
                person_id: r.try_get(0)?,
                app: r.try_get(1)?,
                // The only successes selected are deactivations.
                deactivated: r.try_get::<String, _>(2)? == "SUCCESS",
                at_ms: r.try_get(3)?,
                trace_id: r.try_get(4)?,
                error: r.try_get(5)?,
            })
        })
        .collect()
}

/// A change held for a person in an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldFor {
    /// The person.
    pub person_id: String,
    /// The app.
    pub app: String,
    /// `guard` (the deprovision guard holds it), `quarantine` (parked
    /// while the app does not answer) or `retry` (the person's change ran
    /// out of attempts; parked for the next probe).
    pub reason: String,
    /// Since when, ms since the epoch.
    pub held_at_ms: i64,
}

/// The changes held for `person_ids`.
///
/// # Errors
/// Query failures.
pub async fn held(db: &Db, person_ids: &[String]) -> sqlx::Result<Vec<HeldFor>> {
    let mut sql = Where::default();
    sql.one_of("person_id", person_ids);
    let text = format!(
        "SELECT person_id, app, reason, held_at_ms FROM provisioner_held{}",
        sql.clause()
    );
    let rows = sql.bind(sqlx::query(&text)).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| {
            Ok(HeldFor {
                person_id: r.try_get(0)?,
                app: r.try_get(1)?,
                reason: r.try_get(2)?,
                held_at_ms: r.try_get(3)?,
            })
        })
        .collect()
}
