//! The decision of reconciling one account, with no I/O: what the change
//! asks for ([`Desired`]) and what the app is known to have (the link, and
//! the account the match chain found) in, the [`Step`]s that make the
//! account match out. [`super`] carries the steps out (SCIM calls, link
//! writes).

use std::collections::{BTreeSet, HashMap};

use hrsync_domain::{DirectoryChange, LifecycleState};
use serde_json::Value;

use crate::scim::read_bool;
use crate::store::links::Link;

/// What a directory change asks of one person's account in one app.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The change's version.
    pub version: i64,
    /// The user as the app's mapping makes it.
    pub user: Value,
    /// Top-level attributes left out because their mapping failed (left as
    /// they are in the app).
    pub failed: Vec<String>,
    /// An account is wanted: the app is assigned and the person not
    /// deprovisioned (pending and suspended persons keep an inactive one).
    pub wanted: bool,
    /// The account is active: assigned, and the person active.
    pub active: bool,
    /// The groups the change grants in the app, sorted.
    pub groups: Vec<String>,
}

impl Desired {
    /// Whether and how `change` wants an account in `app`; the user is
    /// filled in by the caller (it needs the manager's account).
    pub fn of(change: &DirectoryChange, app: &str) -> Self {
        let assigned = change.apps.iter().any(|a| a.app == app);
        Desired {
            version: i64::try_from(change.version).unwrap_or(i64::MAX),
            user: Value::Null,
            failed: Vec::new(),
            wanted: assigned && change.lifecycle_state != LifecycleState::Deprovisioned,
            active: assigned && change.lifecycle_state == LifecycleState::Active,
            groups: assigned_groups(app, change).into_iter().collect(),
        }
    }
}

/// The groups `change` grants its person in `app`, sorted.
fn assigned_groups(app: &str, change: &DirectoryChange) -> BTreeSet<String> {
    change
        .apps
        .iter()
        .filter(|a| a.app == app)
        .flat_map(|a| a.groups.iter().cloned())
        .collect()
}

/// The app's settings the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Top-level attributes the mapping manages: one sent before and now
    /// left out is removed from the account.
    pub managed: &'a BTreeSet<String>,
    /// Whether the person's groups are pushed as SCIM groups.
    pub push_groups: bool,
    /// Group renames: a group's current name to the names it had before.
    pub renames: &'a HashMap<String, Vec<String>>,
}

/// One thing to do to the account, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the change is not newer than the one last applied.
    Stale,
    /// No account and none wanted: record the version only, so an older
    /// change arriving later (a create queued behind a termination that
    /// took the fast lane) cannot create one.
    RecordAbsence,
    /// Create the account as desired (should the create conflict, the
    /// account it conflicts with is matched and the decision made again).
    Create,
    /// Link the account the match chain found.
    Link {
        /// Its SCIM id.
        scim_id: String,
    },
    /// Send the attributes that differ from the account's (`set`), and
    /// remove the managed ones sent before and now left out (`remove`).
    Update {
        /// Attributes to set.
        set: Vec<String>,
        /// Attributes to remove.
        remove: Vec<String>,
    },
    /// Deactivate the account (the deprovision guard may hold it).
    Deactivate,
    /// Reactivate the account.
    Reactivate,
    /// Rename a group renamed in the rules in place: it keeps its members,
    /// so the account neither leaves `from` nor joins `to`.
    RenameGroup {
        /// The name it had.
        from: String,
        /// Its name now.
        to: String,
    },
    /// Join and leave groups.
    Groups {
        /// Groups to join.
        join: Vec<String>,
        /// Groups to leave.
        leave: Vec<String>,
    },
    /// Record the change as applied: its version, the user as desired
    /// (when an account is wanted), whether it is active, and its groups.
    Record {
        /// The account's groups from now on.
        groups: Vec<String>,
    },
}

/// Whether a change of `version` is not newer than what `link` applied.
pub fn is_stale(link: Option<&Link>, version: i64) -> bool {
    link.is_some_and(|l| l.applied_version >= version)
}

/// Whether the app must be searched for an existing account (with the
/// match chain) before deciding: one is wanted and none is linked, or
/// nothing at all is recorded for the person in this app. A leaver with no
/// link may still have an account: created just before a crash lost its
/// link, with the termination then taking the fast lane ahead of the
/// create's replay. It is found and deactivated, not left active.
pub fn needs_search(desired: &Desired, link: Option<&Link>) -> bool {
    !is_stale(link, desired.version)
        && (link.is_none() || desired.wanted && link.is_some_and(|l| l.scim_id.is_empty()))
}

/// The link of an account found in the app, as the decision compares it:
/// nothing applied yet, no groups pushed.
pub fn found_link(found: &Value) -> Link {
    Link {
        scim_id: found["id"].as_str().unwrap_or_default().to_owned(),
        applied_version: 0,
        applied: strip(found.clone()),
        active: read_bool(&found["active"]).unwrap_or(true),
        groups: Vec::new(),
        etag: crate::scim::meta_version(found),
    }
}

/// A server's user without its server-side fields, for comparison.
pub fn strip(mut user: Value) -> Value {
    if let Some(o) = user.as_object_mut() {
        o.remove("id");
        o.remove("meta");
    }
    user
}

/// The steps that make the account match `desired`: `link` is the stored
/// link, `matched` the account the match chain found (searched only when
/// [`needs_search`] says so).
pub fn plan(
    desired: &Desired,
    link: Option<&Link>,
    matched: Option<&Value>,
    rules: Rules<'_>,
) -> Vec<Step> {
    if is_stale(link, desired.version) {
        return vec![Step::Stale];
    }
    let mut steps = Vec::new();
    let found;
    let account = match link {
        Some(link) if !link.scim_id.is_empty() => link,
        // No account wanted: one the app has anyway is linked (and so
        // deactivated below); without one, only the version is recorded.
        _ if !desired.wanted => match matched {
            Some(matched) => {
                found = found_link(matched);
                steps.push(Step::Link {
                    scim_id: found.scim_id.clone(),
                });
                &found
            }
            None => return vec![Step::RecordAbsence],
        },
        _ => match matched {
            Some(matched) => {
                found = found_link(matched);
                steps.push(Step::Link {
                    scim_id: found.scim_id.clone(),
                });
                &found
            }
            None => {
                // Created as desired: only its groups are left to push.
                found = Link {
                    scim_id: String::new(),
                    applied_version: desired.version,
                    applied: desired.user.clone(),
                    active: desired.active,
                    groups: Vec::new(),
                    etag: None,
                };
                steps.push(Step::Create);
                &found
            }
        },
    };
    steps.extend(account_steps(desired, account, rules));
    steps
}

/// The steps for an account the app has, `account` as last applied.
fn account_steps(desired: &Desired, account: &Link, rules: Rules<'_>) -> Vec<Step> {
    let mut steps = Vec::new();
    let (set, remove) = differences(desired, &account.applied, rules.managed);
    if (!set.is_empty() || !remove.is_empty()) && desired.wanted {
        steps.push(Step::Update { set, remove });
    }
    match (account.active, desired.active) {
        (true, false) => steps.push(Step::Deactivate),
        (false, true) => steps.push(Step::Reactivate),
        _ => {}
    }
    let groups = if rules.push_groups {
        steps.extend(group_steps(desired, &account.groups, rules.renames));
        if desired.wanted {
            desired.groups.clone()
        } else {
            Vec::new()
        }
    } else {
        account.groups.clone()
    };
    steps.push(Step::Record { groups });
    steps
}

/// The attributes of `desired` that differ from `applied` (`active` and
/// `schemas` apart), and the managed ones `applied` has that are now left
/// out (unless their mapping failed).
fn differences(
    desired: &Desired,
    applied: &Value,
    managed: &BTreeSet<String>,
) -> (Vec<String>, Vec<String>) {
    let set = desired
        .user
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, v)| {
                    *k != "active" && *k != "schemas" && applied.get(k.as_str()) != Some(v)
                })
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let remove = applied
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| {
                    managed.contains(k.as_str())
                        && desired.user.get(k.as_str()).is_none()
                        && !desired.failed.contains(k)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    (set, remove)
}

/// The joins, leaves and in-place renames that bring `pushed` to the
/// groups desired (none once no account is wanted).
fn group_steps(
    desired: &Desired,
    pushed: &[String],
    renames: &HashMap<String, Vec<String>>,
) -> Vec<Step> {
    let wanted: &[String] = if desired.wanted { &desired.groups } else { &[] };
    let mut join: Vec<String> = wanted
        .iter()
        .filter(|g| !pushed.contains(g))
        .cloned()
        .collect();
    let mut leave: Vec<String> = pushed
        .iter()
        .filter(|g| !wanted.contains(g))
        .cloned()
        .collect();
    // A group renamed since it was pushed is renamed in place and keeps its
    // members: the account neither leaves the old name nor joins the new.
    let carried: Vec<(String, String)> = join
        .iter()
        .filter_map(|name| {
            renames
                .get(name)
                .into_iter()
                .flatten()
                .find(|old| leave.contains(old))
                .map(|old| (old.clone(), name.clone()))
        })
        .collect();
    let mut steps = Vec::new();
    for (from, to) in carried {
        join.retain(|g| *g != to);
        leave.retain(|g| *g != from);
        steps.push(Step::RenameGroup { from, to });
    }
    if !join.is_empty() || !leave.is_empty() {
        steps.push(Step::Groups { join, leave });
    }
    steps
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
