//! Group memberships: requested durably by each person's reconcile, applied
//! by one writer per (app, group) in batched PATCH requests.
//!
//! Reconciling a person only writes what their memberships should be
//! (`provisioner_member`, one row per (app, group, member), the newest
//! request winning) and wakes the app's writer; it never waits for the app
//! to change a group, so a termination's deactivation does not queue behind
//! group work. The writer sends each group's pending rows as one PATCH
//! (joins as one `add` of many members, leaves as `members[value eq …]`
//! removals), at most [`Target::batch`] members per request, one request at a
//! time per group: servers that apply PATCH as read, change, write lose no
//! member, and a group is found or created once even where the app allows
//! duplicate names.
//!
//! One process at a time writes an app's groups: the writer holds the
//! store's claim `group-writer:APP` ([`Db::try_claim`]). Other processes
//! (another provisioner, `hrsync provisioner reconcile`) only request rows;
//! the writer picks them up within [`POLL`]. Requests survive a crash: a
//! row stays pending until the app has answered, and is sent again after a
//! restart (a join sent twice is harmless; a leave the app says has no
//! target was already applied).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hrsync_store::{Claim, Db};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::reconcile::ReconcileError;
use crate::scim::{filter_value, PatchOp, ScimClient, ScimError};
use crate::store::groups::{self as store, Pending};

/// Group PATCH requests sent, per app.
pub const GROUP_REQUESTS: &str = "hrsync_provisioner_group_requests_total";
/// Memberships an app applied, per app and `op` (`add`, `remove`).
pub const GROUP_MEMBERS: &str = "hrsync_provisioner_group_members_total";
/// Memberships an app refused (kept with their error, not retried).
pub const GROUP_REFUSED: &str = "hrsync_provisioner_group_member_refusals_total";

/// How often a writer looks for requests made by other processes, and how
/// long it waits before trying again to claim an app held elsewhere.
pub const POLL: Duration = Duration::from_secs(1);
/// First wait after a failed request; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between two attempts (a longer `Retry-After` is cut to it).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One membership to bring about in an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The group's name (its `displayName`, as in the rules).
    pub group: String,
    /// The person.
    pub person_id: String,
    /// The member's SCIM user id in the app.
    pub member_id: String,
    /// Join (`true`) or leave (`false`).
    pub member: bool,
}

/// What a group writer needs of its app.
#[derive(Debug, Clone)]
pub struct Target {
    /// The app's name.
    pub app: String,
    /// Its SCIM server.
    pub client: ScimClient,
    /// The server supports PATCH (else a rename is GET + PUT).
    pub patch: bool,
    /// Group renames: a group's current name to the names it had before.
    pub renames: Arc<HashMap<String, Vec<String>>>,
    /// Most members joined or left per request.
    pub batch: usize,
    /// How long a writer waits for more requests before it sends less than
    /// a full batch.
    pub linger: Duration,
}

impl Target {
    /// The names `group` had before, if it was renamed in the rules.
    pub(crate) fn previous_names(&self, group: &str) -> &[String] {
        self.renames.get(group).map_or(&[], Vec::as_slice)
    }

    /// The name a group has now: `name`, or the group it was renamed to.
    #[must_use]
    pub fn current_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.renames
            .iter()
            .find(|(_, olds)| olds.iter().any(|o| o == name))
            .map_or(name, |(new, _)| new.as_str())
    }

    fn scim(&self, source: ScimError) -> ReconcileError {
        ReconcileError::Scim {
            app: self.app.clone(),
            source: Box::new(source),
        }
    }
}

/// The group writer of one app, shared by the clones of its `App`. Started
/// by the first [`GroupWriter::wake`]; stopped once the last clone is
/// dropped.
#[derive(Debug, Default)]
pub struct GroupWriter {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    wake: Notify,
    stop: CancellationToken,
    started: AtomicBool,
    /// The store and app as last woken with.
    target: std::sync::Mutex<Option<(Db, Target)>>,
    /// Per group: held while one of its batches is sent.
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// This process's claim on writing the app's groups.
    claim: tokio::sync::Mutex<Option<Claim>>,
}

impl Drop for GroupWriter {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

impl GroupWriter {
    /// Has the writer look for pending requests now (starting it if need
    /// be), with the app as it is configured now.
    pub fn wake(&self, db: &Db, target: Target) {
        *lock(&self.shared.target) = Some((db.clone(), target));
        if !self.shared.started.swap(true, Ordering::SeqCst) {
            tokio::spawn(supervise(self.shared.clone()));
        }
        self.shared.wake.notify_one();
    }

    /// Applies every request of the app pending now, group by group, without
    /// lingering; gives up on a group after a few failed attempts. `false`
    /// (and nothing applied) when another process writes the app's groups:
    /// it applies them.
    ///
    /// # Errors
    /// Store failures, or the app's last failure on a group.
    pub async fn flush(&self, db: &Db, target: &Target) -> Result<bool, ReconcileError> {
        if !claim(&self.shared, db, &target.app).await? {
            return Ok(false);
        }
        let flush = Target {
            linger: Duration::ZERO,
            ..target.clone()
        };
        loop {
            let groups = pending_groups(db, &target.app).await?;
            if groups.is_empty() {
                return Ok(true);
            }
            for group in groups {
                write_group(db, &flush, &self.shared, &group, Some(4)).await?;
            }
        }
    }

    /// Finds, renames in place or creates group `name` now, under the
    /// group's lock (a renamed group keeps its id and members). Returns the
    /// group's id and, if it was renamed, the name it had.
    ///
    /// # Errors
    /// SCIM or store failures.
    pub async fn resolve(
        &self,
        db: &Db,
        target: &Target,
        name: &str,
    ) -> Result<(String, Option<String>), ReconcileError> {
        let lock = self.shared.lock_for(name);
        let _held = lock.lock().await;
        group_id(db, target, name).await
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn lock_for(&self, group: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks)
            .entry(group.to_owned())
            .or_default()
            .clone()
    }

    fn target(&self) -> Option<(Db, Target)> {
        lock(&self.target).clone()
    }
}

/// Whether this process may write the app's groups: it holds the claim, or
/// takes it now.
async fn claim(shared: &Shared, db: &Db, app: &str) -> Result<bool, ReconcileError> {
    let mut claim = shared.claim.lock().await;
    if let Some(held) = claim.as_mut() {
        if held.holds().await {
            return Ok(true);
        }
        // The connection that held it broke: another process may have it.
        *claim = None;
    }
    *claim = db.try_claim(&format!("group-writer:{app}")).await?;
    Ok(claim.is_some())
}

/// The writer's loop: while this process holds the app's claim, one task
/// per group with pending requests; woken by requests made here, and every
/// [`POLL`] for those made elsewhere.
async fn supervise(shared: Arc<Shared>) {
    let mut tasks = tokio::task::JoinSet::new();
    let running = Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
    loop {
        if let Some((db, target)) = shared.target() {
            match claim(&shared, &db, &target.app).await {
                Ok(true) => match pending_groups(&db, &target.app).await {
                    Ok(groups) => {
                        for group in groups {
                            if !lock(&running).insert(group.clone()) {
                                continue;
                            }
                            let (db, target, shared, running) =
                                (db.clone(), target.clone(), shared.clone(), running.clone());
                            tasks.spawn(async move {
                                if let Err(error) =
                                    write_group(&db, &target, &shared, &group, None).await
                                {
                                    tracing::warn!(app = %target.app, %group, %error, "group writer stopped; trying again");
                                    tokio::time::sleep(POLL).await;
                                }
                                lock(&running).remove(&group);
                                // Requests made while it finished are picked
                                // up at once.
                                shared.wake.notify_one();
                            });
                        }
                    }
                    Err(error) => {
                        tracing::warn!(app = %target.app, %error, "pending group memberships not read");
                    }
                },
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(app = %target.app, %error, "group writer claim not taken");
                }
            }
        }
        tokio::select! {
            () = shared.stop.cancelled() => break,
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.abort_all();
    if let Some(claim) = shared.claim.lock().await.take() {
        claim.release().await;
    }
}

/// Durably requests `memberships` of `app`; its writer applies them.
///
/// # Errors
/// Store failures.
pub async fn request(db: &Db, app: &str, memberships: &[Membership]) -> Result<(), ReconcileError> {
    // The request that applies them joins the requesting change's trace.
    let trace_parent = hrsync_telemetry::propagation::inject(&tracing::Span::current())
        .into_iter()
        .find(|(name, _)| name == hrsync_telemetry::propagation::TRACEPARENT)
        .map(|(_, value)| value);
    let requests: Vec<store::Request<'_>> = memberships
        .iter()
        .map(|m| store::Request {
            group: &m.group,
            member_id: &m.member_id,
            person_id: &m.person_id,
            member: m.member,
            seq: next_seq(),
        })
        .collect();
    store::request(db, app, &requests, trace_parent.as_deref()).await?;
    Ok(())
}

/// How many membership requests of `app` are still to be applied.
///
/// # Errors
/// Store failures.
pub async fn pending(db: &Db, app: &str) -> Result<u64, ReconcileError> {
    let count = store::pending_count(db, app).await?;
    Ok(u64::try_from(count).unwrap_or_default())
}

/// The memberships of `app` the app refused, as (group, member id, error).
///
/// # Errors
/// Store failures.
pub async fn refused(db: &Db, app: &str) -> Result<Vec<(String, String, String)>, ReconcileError> {
    Ok(store::refused(db, app).await?)
}

/// Request order: microseconds since the epoch, strictly increasing within
/// the process.
fn next_seq() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp_micros();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

async fn pending_groups(db: &Db, app: &str) -> Result<Vec<String>, ReconcileError> {
    Ok(store::pending_groups(db, app).await?)
}

async fn pending_rows(
    db: &Db,
    app: &str,
    group: &str,
    limit: usize,
) -> Result<Vec<Pending>, ReconcileError> {
    Ok(store::pending(db, app, group, limit).await?)
}

/// Records `rows` as applied (see [`store::applied`]).
async fn applied(db: &Db, app: &str, group: &str, rows: &[Pending]) -> Result<(), ReconcileError> {
    Ok(store::applied(db, app, group, rows).await?)
}

/// Records that the app refused `row`: kept with the error, not retried.
async fn refuse(
    db: &Db,
    app: &str,
    group: &str,
    row: &Pending,
    error: &ScimError,
) -> Result<(), ReconcileError> {
    tracing::error!(
        app,
        group,
        member = %row.member_id,
        join = row.member,
        %error,
        "the app refused a group membership; it is kept as refused and not retried"
    );
    metrics::counter!(GROUP_REFUSED, "app" => app.to_owned()).increment(1);
    store::refuse(db, app, group, row, &error.to_string()).await?;
    Ok(())
}

/// What sending one batch came to.
enum Sent {
    /// The app applied it.
    Applied,
    /// Try again after the wait (the app's `Retry-After`, if it gave one).
    Retry(ScimError),
    /// The group is gone from the app: look it up again.
    Gone,
    /// The app refused the batch as a whole: send its members one by one.
    Refused(ScimError),
}

/// Sends `group`'s pending requests until none is left (or, with
/// `attempts`, until that many consecutive attempts failed).
async fn write_group(
    db: &Db,
    target: &Target,
    shared: &Shared,
    group: &str,
    attempts: Option<u32>,
) -> Result<(), ReconcileError> {
    let lock = shared.lock_for(group);
    let _held = lock.lock().await;
    let mut failures = 0u32;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut rows = pending_rows(db, &target.app, group, target.batch).await?;
        if rows.is_empty() {
            return Ok(());
        }
        if rows.len() < target.batch && !target.linger.is_zero() {
            tokio::select! {
                () = shared.stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(target.linger) => {}
            }
            rows = pending_rows(db, &target.app, group, target.batch).await?;
        }
        let error = match send(db, target, group, &rows).await? {
            Sent::Applied => {
                applied(db, &target.app, group, &rows).await?;
                failures = 0;
                backoff = FIRST_BACKOFF;
                continue;
            }
            Sent::Gone => {
                // Forget the id; the next batch finds or creates the group
                // again (leaves of a group that is gone are done). Gone
                // again at once is a failure like any other.
                forget_group(db, &target.app, group).await?;
                let leaves: Vec<Pending> = rows.iter().filter(|r| !r.member).cloned().collect();
                applied(db, &target.app, group, &leaves).await?;
                if failures == 0 {
                    failures = 1;
                    continue;
                }
                ScimError::Status {
                    method: "PATCH".into(),
                    path: "/Groups".into(),
                    status: 404,
                    scim_type: None,
                    detail: Some(format!("group {group} is gone again after being found")),
                    retry_after: None,
                }
            }
            Sent::Refused(error) if rows.len() == 1 => {
                refuse(db, &target.app, group, &rows[0], &error).await?;
                continue;
            }
            Sent::Refused(_) => {
                one_by_one(db, target, group, &rows).await?;
                continue;
            }
            Sent::Retry(error) => error,
        };
        failures += 1;
        tracing::warn!(app = %target.app, group, %error, attempt = failures, "group memberships not applied; retrying");
        if attempts.is_some_and(|most| failures >= most) {
            return Err(target.scim(error));
        }
        let wait = error.retry_after().unwrap_or(backoff).min(MAX_BACKOFF);
        backoff = (backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            () = shared.stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Sends a refused batch's requests one at a time, so that one member the
/// app refuses does not hold back the others.
async fn one_by_one(
    db: &Db,
    target: &Target,
    group: &str,
    rows: &[Pending],
) -> Result<(), ReconcileError> {
    for row in rows {
        match send(db, target, group, std::slice::from_ref(row)).await? {
            Sent::Applied => applied(db, &target.app, group, std::slice::from_ref(row)).await?,
            Sent::Refused(error) => refuse(db, &target.app, group, row, &error).await?,
            // Left for the next batch.
            Sent::Retry(_) | Sent::Gone => return Ok(()),
        }
    }
    Ok(())
}

/// One PATCH of `group` with `rows`: the joins as one `add`, each leave as a
/// `remove` of `members[value eq …]`. Its requests are in the trace of the
/// oldest request it carries.
async fn send(
    db: &Db,
    target: &Target,
    group: &str,
    rows: &[Pending],
) -> Result<Sent, ReconcileError> {
    let span = tracing::info_span!("group.write", app = %target.app, group, members = rows.len());
    if let Some(parent) = rows.iter().find_map(|r| r.trace_parent.as_deref()) {
        hrsync_telemetry::propagation::continue_from(
            &span,
            [(
                hrsync_telemetry::propagation::TRACEPARENT,
                parent.as_bytes(),
            )],
        );
    }
    send_in(db, target, group, rows).instrument(span).await
}

async fn send_in(
    db: &Db,
    target: &Target,
    group: &str,
    rows: &[Pending],
) -> Result<Sent, ReconcileError> {
    let joins: Vec<Value> = rows
        .iter()
        .filter(|r| r.member)
        .map(|r| json!({ "value": r.member_id }))
        .collect();
    // A group that never existed has nobody to lose: leaves alone do not
    // create it.
    let id = if joins.is_empty() {
        match existing_group(db, target, group).await {
            Ok(Some(id)) => id,
            Ok(None) => return Ok(Sent::Applied),
            Err(ReconcileError::Scim { source, .. }) if source.is_retryable() => {
                return Ok(Sent::Retry(*source))
            }
            Err(e) => return Err(e),
        }
    } else {
        match group_id(db, target, group).await {
            Ok((id, _)) => id,
            Err(ReconcileError::Scim { source, .. }) if source.is_retryable() => {
                return Ok(Sent::Retry(*source))
            }
            Err(e) => return Err(e),
        }
    };
    let mut ops = Vec::new();
    let (added, removed) = (joins.len(), rows.len() - joins.len());
    if !joins.is_empty() {
        ops.push(PatchOp::add("members", Value::Array(joins)));
    }
    ops.extend(
        rows.iter()
            .filter(|r| !r.member)
            .map(|r| PatchOp::remove(format!("members[value eq {}]", filter_value(&r.member_id)))),
    );
    metrics::counter!(GROUP_REQUESTS, "app" => target.app.clone()).increment(1);
    match target.client.patch_members(&id, &ops).await {
        Ok(()) => {
            let app = target.app.clone();
            metrics::counter!(GROUP_MEMBERS, "app" => app.clone(), "op" => "add")
                .increment(added as u64);
            metrics::counter!(GROUP_MEMBERS, "app" => app, "op" => "remove")
                .increment(removed as u64);
            Ok(Sent::Applied)
        }
        Err(ScimError::Status { status: 404, .. }) => Ok(Sent::Gone),
        // RFC 7644 §3.5.2.2: removing a member the group does not have is
        // `noTarget`; that leave is done.
        Err(ScimError::Status {
            status: 400,
            scim_type: Some(t),
            ..
        }) if t == "noTarget" && rows.len() == 1 && !rows[0].member => Ok(Sent::Applied),
        Err(e) if e.is_retryable() => Ok(Sent::Retry(e)),
        Err(e) => Ok(Sent::Refused(e)),
    }
}

/// The SCIM id of group `name` in the app: remembered, found by
/// `displayName`, renamed in place from a name it had before, or created.
/// Also returns the previous name if it renamed the group.
async fn group_id(
    db: &Db,
    target: &Target,
    name: &str,
) -> Result<(String, Option<String>), ReconcileError> {
    if let Some(id) = known_group(db, &target.app, name).await? {
        return Ok((id, None));
    }
    if let Some(id) = find_group(target, name).await? {
        remember_group(db, &target.app, name, &id).await?;
        return Ok((id, None));
    }
    for old in target.previous_names(name) {
        let id = match known_group(db, &target.app, old).await? {
            Some(id) => Some(id),
            None => find_group(target, old).await?,
        };
        let Some(id) = id else { continue };
        rename_group(target, &id, name)
            .await
            .map_err(|e| target.scim(e))?;
        forget_group(db, &target.app, old).await?;
        remember_group(db, &target.app, name, &id).await?;
        // The memberships requested under the old name are the renamed
        // group's.
        store::rename(db, &target.app, old, name).await?;
        tracing::info!(app = %target.app, from = %old, to = %name, "group renamed in place");
        return Ok((id, Some(old.clone())));
    }
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": name,
        "members": [],
    });
    let id = match target.client.create("Groups", &body).await {
        Ok(created) => created["id"].as_str().unwrap_or_default().to_owned(),
        // Created meanwhile by someone else, or by a request of ours whose
        // answer was lost: link it.
        Err(ScimError::Status { status: 409, .. }) => {
            find_group(target, name).await?.ok_or_else(|| {
                target.scim(ScimError::Status {
                    method: "POST".into(),
                    path: "/Groups".into(),
                    status: 409,
                    scim_type: Some("uniqueness".into()),
                    detail: Some(format!(
                        "group {name} conflicts, but no group of that name is found"
                    )),
                    retry_after: None,
                })
            })?
        }
        Err(e) => return Err(target.scim(e)),
    };
    remember_group(db, &target.app, name, &id).await?;
    Ok((id, None))
}

/// The id of the app's group named `name`. Where the app holds several of
/// that name (it allows duplicates), the same one every time: the lowest id.
async fn find_group(target: &Target, name: &str) -> Result<Option<String>, ReconcileError> {
    let found = target
        .client
        .find("Groups", "displayName", name)
        .await
        .map_err(|e| target.scim(e))?;
    let mut ids: Vec<&str> = found.iter().filter_map(|g| g["id"].as_str()).collect();
    ids.sort_unstable();
    if ids.len() > 1 {
        tracing::warn!(app = %target.app, group = name, count = ids.len(), chosen = ids[0], "several groups of this name in the app; using the one with the lowest id");
    }
    Ok(ids.first().map(|id| (*id).to_owned()))
}

/// The SCIM id of group `name` in the app if it exists there, under this
/// name or, if it was renamed since, under its new one. Never creates it.
async fn existing_group(
    db: &Db,
    target: &Target,
    name: &str,
) -> Result<Option<String>, ReconcileError> {
    let current = target.current_name(name);
    for candidate in [name, current] {
        if let Some(id) = known_group(db, &target.app, candidate).await? {
            return Ok(Some(id));
        }
        if let Some(id) = find_group(target, candidate).await? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Renames a group: PATCH `displayName`, or GET + PUT without PATCH.
async fn rename_group(target: &Target, id: &str, name: &str) -> Result<(), ScimError> {
    if target.patch {
        let op = PatchOp::replace("displayName", json!(name));
        target.client.patch("Groups", id, &[op]).await?;
        return Ok(());
    }
    let Some(mut group) = target.client.get("Groups", id).await? else {
        return Ok(());
    };
    group["displayName"] = json!(name);
    if let Some(o) = group.as_object_mut() {
        o.remove("meta");
    }
    target.client.replace("Groups", id, &group).await?;
    Ok(())
}

/// The remembered SCIM id of the app's group `name`.
///
/// # Errors
/// Store failures.
pub async fn known_group(db: &Db, app: &str, name: &str) -> Result<Option<String>, ReconcileError> {
    Ok(store::known(db, app, name).await?)
}

async fn remember_group(db: &Db, app: &str, name: &str, id: &str) -> Result<(), ReconcileError> {
    store::remember(db, app, name, id).await?;
    Ok(())
}

async fn forget_group(db: &Db, app: &str, name: &str) -> Result<(), ReconcileError> {
    store::forget(db, app, name).await?;
    Ok(())
}

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;
