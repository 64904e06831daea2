//! Changes kept durably for an app: held by the deprovision guard, or
//! parked while the app is quarantined or for a retry.

use hrsync_domain::{DirectoryChange, PersonId};
use hrsync_store::Db;

use super::{HoldReason, ReconcileError};
use crate::store::held::{self as store, Held};

/// The version of `change` as stored.
fn version(change: &DirectoryChange) -> i64 {
    i64::try_from(change.version).unwrap_or(i64::MAX)
}

/// Keeps `change` durably for `app` until it is released or resumed.
///
/// # Errors
/// Store failures.
pub async fn hold(
    db: &Db,
    app: &str,
    change: &DirectoryChange,
    reason: HoldReason,
) -> Result<(), ReconcileError> {
    let payload = hrsync_schema::encode_directory_change(change).map_err(|e| {
        ReconcileError::Store(hrsync_store::Error::Query(sqlx::Error::Encode(Box::new(e))))
    })?;
    let held = Held {
        app,
        person_id: change.person_id.as_str(),
        version: version(change),
        reason: reason.as_str(),
    };
    Ok(store::keep(db, held, payload).await?)
}

/// Whether `change` is held for `app` for `reason` already: the same change
/// arriving again (its copy on the priority lane and on the main topic)
/// is the same deactivation, not another one for the guard to count.
///
/// # Errors
/// Store failures.
pub(super) async fn is_held(
    db: &Db,
    app: &str,
    change: &DirectoryChange,
    reason: HoldReason,
) -> Result<bool, ReconcileError> {
    let held = Held {
        app,
        person_id: change.person_id.as_str(),
        version: version(change),
        reason: reason.as_str(),
    };
    Ok(store::contains(db, held).await?)
}

/// The changes held for `app` for `reason`, oldest version first per person.
///
/// # Errors
/// Store failures; a held change that no longer decodes is skipped with a
/// log line.
pub async fn held(
    db: &Db,
    app: &str,
    reason: HoldReason,
) -> Result<Vec<DirectoryChange>, ReconcileError> {
    let payloads = store::list(db, app, reason.as_str()).await?;
    Ok(payloads
        .iter()
        .filter_map(|p| match hrsync_schema::decode_directory_change(p) {
            Ok(change) => Some(change),
            Err(error) => {
                tracing::error!(app, %error, "a held change no longer decodes");
                None
            }
        })
        .collect())
}

/// Untrips `app`'s guard and forgets the window's deactivations; the held
/// changes are removed one by one with [`forget_held`] as they are applied.
///
/// # Errors
/// Store failures.
pub async fn untrip(db: &Db, app: &str) -> Result<(), ReconcileError> {
    crate::store::guard::untrip(db, app).await?;
    metrics::gauge!(crate::guard::GUARD_TRIPPED, "app" => app.to_owned()).set(0.0);
    crate::store::guard::forget_deactivations(db, app).await?;
    Ok(())
}

/// Removes a held change once applied.
///
/// # Errors
/// Store failures.
pub async fn forget_held(
    db: &Db,
    app: &str,
    change: &DirectoryChange,
) -> Result<(), ReconcileError> {
    Ok(store::forget(db, app, change.person_id.as_str(), version(change)).await?)
}

/// The persons with changes parked for `app` (quarantined or waiting for a
/// retry; not those the guard holds).
///
/// # Errors
/// Store failures, or a stored person id that is not one.
pub async fn parked_persons(db: &Db, app: &str) -> Result<Vec<PersonId>, ReconcileError> {
    store::parked_persons(db, app)
        .await?
        .into_iter()
        .map(|p| PersonId::new(p).map_err(|e| undecodable(Box::new(e))))
        .collect()
}

/// The newest change parked for `person` in `app`, if any. It carries the
/// whole state the person should have in the app, so once it is applied
/// the older ones are stale ([`forget_parked`]).
///
/// # Errors
/// Store failures, or a parked change that no longer decodes (it stays
/// parked).
pub async fn newest_parked(
    db: &Db,
    app: &str,
    person: &PersonId,
) -> Result<Option<DirectoryChange>, ReconcileError> {
    let Some(payload) = store::newest_parked(db, app, person.as_str()).await? else {
        return Ok(None);
    };
    hrsync_schema::decode_directory_change(&payload)
        .map(Some)
        .map_err(|e| undecodable(Box::new(e)))
}

/// A stored value that no longer reads as what it should be, as a store
/// error.
fn undecodable(error: Box<dyn std::error::Error + Send + Sync>) -> ReconcileError {
    ReconcileError::Store(hrsync_store::Error::Query(sqlx::Error::Decode(error)))
}

/// Removes the changes parked for `change`'s person in `app` up to its
/// version, once it is applied.
///
/// # Errors
/// Store failures.
pub async fn forget_parked(
    db: &Db,
    app: &str,
    change: &DirectoryChange,
) -> Result<(), ReconcileError> {
    Ok(store::forget_parked(db, app, change.person_id.as_str(), version(change)).await?)
}
