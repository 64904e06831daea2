//! One projector process per store: the claim on the store, taken at the
//! start (a second process waits as a standby) and watched while running.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::RunError;
use crate::project::Projector;

/// The role a projector claims its store for (see [`claim_store`]).
const CLAIM_ROLE: &str = "projector";

/// How often a projector waiting for the store tries to claim it, and how
/// often one holding it checks that it still does.
const CLAIM_INTERVAL: Duration = Duration::from_secs(1);

/// Claims the store for this projector, waiting while another projector
/// process holds it (a standby takes over within about a second once the
/// holder ends). `None` if `shutdown` came first.
///
/// One projector process at a time applies and publishes a store's events:
/// a second one started by mistake, or as a standby, waits here.
///
/// # Errors
/// The store cannot be reached.
pub async fn claim_store(
    projector: &Projector,
    shutdown: &CancellationToken,
) -> Result<Option<hrsync_store::Claim>, RunError> {
    let mut waiting = false;
    loop {
        if let Some(claim) = projector.db().try_claim(CLAIM_ROLE).await? {
            if waiting {
                tracing::info!("the store is free: this projector takes over");
            }
            metrics::gauge!("hrsync_projector_store_claimed").set(1.0);
            return Ok(Some(claim));
        }
        if !waiting {
            metrics::gauge!("hrsync_projector_store_claimed").set(0.0);
            tracing::warn!("another projector process holds this store; waiting as a standby");
            waiting = true;
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(CLAIM_INTERVAL) => {}
        }
    }
}

/// Checks every [`CLAIM_INTERVAL`] that `claim` still holds. When the
/// connection holding it broke (a restart of the database, a network blip)
/// the lock is free again, or another projector has taken it: claims it
/// again, or fails with [`RunError::ClaimLost`] if another one has it.
/// Claimed again, `projector` reads the reporting lines from the store
/// afresh: while the claim was gone, another process may have written.
pub(super) async fn keep_claim(
    projector: Projector,
    mut claim: hrsync_store::Claim,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                // (The claim is let go as this returns.)
                metrics::gauge!("hrsync_projector_store_claimed").set(0.0);
                return Ok(());
            }
            () = tokio::time::sleep(CLAIM_INTERVAL) => {}
        }
        if claim.holds().await {
            continue;
        }
        tracing::warn!("the connection holding the claim on the store broke; claiming it again");
        claim = loop {
            match projector.db().try_claim(CLAIM_ROLE).await {
                Ok(Some(again)) => {
                    tracing::info!("the store is claimed again");
                    projector.forget_lines();
                    break again;
                }
                Ok(None) => {
                    metrics::gauge!("hrsync_projector_store_claimed").set(0.0);
                    tracing::error!("another projector holds the store now; stopping");
                    shutdown.cancel();
                    return Err(RunError::ClaimLost);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot claim the store again yet; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(CLAIM_INTERVAL) => {}
                    }
                }
            }
        };
    }
}
