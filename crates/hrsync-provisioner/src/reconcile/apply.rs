//! Carrying out the decision of [`super::plan`]: the SCIM calls, the
//! deprovision guard, the group requests and the link write that make one
//! account match a change.

use hrsync_domain::DirectoryChange;
use hrsync_store::Db;

use super::plan::{self, Desired, Step};
use super::{save, App, Guarding, HoldReason, Link, Operation, ReconcileError};
use crate::groups::Membership;
use crate::guard::{Deactivation, Ticket};
use crate::scim::{PatchOp, ScimError};

/// One attempt of [`super::reconcile_with`], adding what it does to `ops`.
pub(super) async fn apply(
    db: &Db,
    app: &App,
    change: &DirectoryChange,
    guarding: Guarding,
    ops: &mut Vec<Operation>,
) -> Result<(), ReconcileError> {
    let existing = super::link(db, change.person_id.as_str(), &app.name).await?;
    let version = i64::try_from(change.version).unwrap_or(i64::MAX);
    // Checked before the user is mapped: a stale change logs nothing.
    if plan::is_stale(existing.as_ref(), version) {
        ops.push(Operation::Stale);
        return Ok(());
    }
    let desired = super::desired(db, app, change).await?;
    let matched = if plan::needs_search(&desired, existing.as_ref()) {
        crate::matching::find_account(&app.client, &app.match_chain, &desired.user)
            .await
            .map_err(|e| app.scim_error(e))?
    } else {
        None
    };
    let managed = app.mapping.managed();
    let rules = app.rules(&managed);
    let mut steps = plan::plan(&desired, existing.as_ref(), matched.as_ref(), rules);
    let mut run = Run {
        db,
        app,
        change,
        desired: &desired,
        guarding,
        ops,
        current: existing.clone().unwrap_or_else(|| Link::absent(0)),
        matched,
        ticket: None,
    };
    if steps.first() == Some(&Step::Create) {
        match run.create().await? {
            Created::Done => {
                steps.remove(0);
            }
            // Taken meanwhile, a lost earlier answer, or an account the
            // server's filter missed (it compares case): decide again with
            // the account the chain finds after all.
            Created::Conflict(found) => {
                steps = plan::plan(&desired, existing.as_ref(), Some(&found), rules);
                run.matched = Some(found);
            }
        }
    }
    for step in steps {
        if run.step(step).await? == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// How a create went.
enum Created {
    /// The account was created.
    Done,
    /// It conflicted with this account, which the match chain found.
    Conflict(serde_json::Value),
}

/// Whether to go on with the next step.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Next,
    Stop,
}

/// One attempt under way.
struct Run<'a> {
    db: &'a Db,
    app: &'a App,
    change: &'a DirectoryChange,
    desired: &'a Desired,
    guarding: Guarding,
    ops: &'a mut Vec<Operation>,
    /// The account as known so far.
    current: Link,
    /// The account the match chain found, if it was searched for.
    matched: Option<serde_json::Value>,
    /// A deactivation admitted by the guard counts in its window from
    /// admission until it is recorded (or fails and is dropped).
    ticket: Option<Ticket>,
}

impl Run<'_> {
    fn scim(&self, source: ScimError) -> ReconcileError {
        self.app.scim_error(source)
    }

    async fn create(&mut self) -> Result<Created, ReconcileError> {
        let app = self.app;
        match app
            .client
            .create_versioned("Users", &self.desired.user)
            .await
        {
            Ok((created, etag)) => {
                let scim_id = created["id"].as_str().unwrap_or_default().to_owned();
                self.ops.push(Operation::Created {
                    scim_id: scim_id.clone(),
                });
                self.current = Link {
                    scim_id,
                    applied_version: self.desired.version,
                    applied: self.desired.user.clone(),
                    active: self.desired.active,
                    groups: Vec::new(),
                    etag,
                };
                Ok(Created::Done)
            }
            Err(conflict @ ScimError::Status { status: 409, .. }) => {
                crate::matching::resolve_conflict(
                    &app.client,
                    &app.match_chain,
                    &self.desired.user,
                    app.match_scan_limit,
                    &conflict,
                )
                .await
                .map(Created::Conflict)
                .map_err(|e| self.scim(e))
            }
            Err(e) => Err(self.scim(e)),
        }
    }

    async fn step(&mut self, step: Step) -> Result<Flow, ReconcileError> {
        match step {
            Step::Stale => self.ops.push(Operation::Stale),
            Step::RecordAbsence => {
                let tombstone = Link::absent(self.desired.version);
                save(self.db, self.change, &self.app.name, &tombstone).await?;
                self.ops.push(Operation::Unchanged);
            }
            // Handled before the steps run (see `apply`).
            Step::Create => {}
            Step::Link { scim_id } => {
                if let Some(found) = &self.matched {
                    self.current = plan::found_link(found);
                }
                self.ops.push(Operation::Linked { scim_id });
            }
            Step::Update { set, remove } => self.update(set, remove).await?,
            Step::Deactivate => return self.deactivate().await,
            Step::Reactivate => self.set_active(true).await?,
            Step::RenameGroup { to, .. } => {
                let target = self.app.group_target();
                let (_, renamed) = self.app.group_writer.resolve(self.db, &target, &to).await?;
                if let Some(from) = renamed {
                    self.ops.push(Operation::GroupRenamed { from, to });
                }
            }
            Step::Groups { join, leave } => self.request_groups(join, leave).await?,
            Step::Record { groups } => self.record(groups).await?,
        }
        Ok(Flow::Next)
    }

    async fn update(
        &mut self,
        set: Vec<String>,
        remove: Vec<String>,
    ) -> Result<(), ReconcileError> {
        let app = self.app;
        let desired = &self.desired.user;
        let written = if app.patch {
            let patch: Vec<PatchOp> = set
                .iter()
                .map(|k| PatchOp::replace(k.clone(), desired[k.as_str()].clone()))
                .chain(remove.iter().map(|k| PatchOp::remove(k.clone())))
                .collect();
            app.client
                .patch_versioned(
                    "Users",
                    &self.current.scim_id,
                    &patch,
                    app.if_match(&self.current),
                )
                .await
        } else {
            app.client
                .replace_versioned(
                    "Users",
                    &self.current.scim_id,
                    desired,
                    app.if_match(&self.current),
                )
                .await
        };
        self.current.etag = written.map_err(|e| self.scim(e))?.version;
        let mut attributes = set;
        attributes.extend(remove);
        self.ops.push(Operation::Updated { attributes });
        Ok(())
    }

    /// Deactivates, unless the deprovision guard holds it: then nothing
    /// else of this change is applied, and its version is not recorded (it
    /// is applied whole on release).
    async fn deactivate(&mut self) -> Result<Flow, ReconcileError> {
        if self.guarding == Guarding::Check {
            if let Some(guard) = &self.app.guard {
                let (db, app) = (self.db, self.app);
                // Held already (this is its other lane's copy, or it arrived
                // while an admin releases it): it stays held, counted once.
                if super::held::is_held(db, &app.name, self.change, HoldReason::Guard).await? {
                    *self.ops = vec![Operation::Held];
                    return Ok(Flow::Stop);
                }
                let kind = Deactivation::of(self.change);
                match crate::guard::admit(db, &app.name, guard, &app.guard_gate, kind).await? {
                    Some(admitted) => self.ticket = Some(admitted),
                    None => {
                        super::hold(db, &app.name, self.change, HoldReason::Guard).await?;
                        *self.ops = vec![Operation::Held];
                        return Ok(Flow::Stop);
                    }
                }
            }
        }
        self.set_active(false).await?;
        // Counted in the guard's window, unless an admin released it: what
        // was approved does not count towards tripping the guard again.
        if self.guarding == Guarding::Check {
            match self.ticket.take() {
                Some(ticket) => ticket.record().await?,
                None => crate::guard::record_deactivation(self.db, &self.app.name, false).await?,
            }
        }
        Ok(Flow::Next)
    }

    async fn set_active(&mut self, active: bool) -> Result<(), ReconcileError> {
        let app = self.app;
        let written = app
            .client
            .set_active_versioned(
                &self.current.scim_id,
                active,
                app.patch,
                app.if_match(&self.current),
            )
            .await
            .map_err(|e| self.scim(e))?;
        self.current.etag = written.version;
        self.ops.push(if active {
            Operation::Reactivated
        } else {
            Operation::Deactivated
        });
        Ok(())
    }

    /// Requests the joins and leaves of the app's group writer
    /// ([`crate::groups`]), which applies them in batches, so nothing here
    /// waits for the app to change a group.
    async fn request_groups(
        &mut self,
        join: Vec<String>,
        leave: Vec<String>,
    ) -> Result<(), ReconcileError> {
        let target = self.app.group_target();
        let membership = |group: &str, member: bool| Membership {
            // A leave of a group renamed since is a leave of the renamed group.
            group: target.current_name(group).to_owned(),
            person_id: self.change.person_id.as_str().to_owned(),
            member_id: self.current.scim_id.clone(),
            member,
        };
        let requests: Vec<Membership> = join
            .iter()
            .map(|g| membership(g, true))
            .chain(leave.iter().map(|g| membership(g, false)))
            .collect();
        crate::groups::request(self.db, &self.app.name, &requests).await?;
        self.app.group_writer.wake(self.db, target);
        self.ops.push(Operation::Groups {
            added: join,
            removed: leave,
        });
        Ok(())
    }

    /// Records the change as applied.
    async fn record(&mut self, groups: Vec<String>) -> Result<(), ReconcileError> {
        if self.ops.is_empty() {
            self.ops.push(Operation::Unchanged);
        }
        let current = &mut self.current;
        current.groups = groups;
        current.applied_version = self.desired.version;
        if self.desired.wanted {
            current.applied = self.desired.user.clone();
        }
        current.active = self.desired.active;
        save(self.db, self.change, &self.app.name, current).await
    }
}
