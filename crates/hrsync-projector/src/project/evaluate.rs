//! Evaluating persons: their desired directory state from the rules, and a
//! directory change for each whose desired state differs from the one last
//! emitted.

use hrsync_domain::{
    AppAssignment, DirectoryChange, EmployeeId, LifecycleState, PersonId, Profile, TimeZone,
    Timestamp, WorkerAttributes,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::inputs::Inputs;
use super::person::{Emitted, PersonRow};
use super::Projector;
use crate::error::{ProjectError, Result};
use crate::rules::{Evaluation, Subject};
use crate::state::PersonState;
use crate::store::{Change, Pack, StoredPerson};

/// A person's desired state, as far as it decides whether a directory
/// change is emitted (the version, causes and time of a change do not).
#[derive(Serialize)]
struct Desired<'a> {
    lifecycle: &'a str,
    profile: &'a Profile,
    groups: &'a [String],
    apps: &'a [AppAssignment],
}

/// Marks a digest of [`Desired::digest`] (the format it is computed in).
const DIGEST_PREFIX: &str = "2:";

impl Desired<'_> {
    /// SHA-256 of the JSON of the desired state, fields in declaration
    /// order (serialised straight from the structs: no JSON tree is built).
    fn digest(&self) -> serde_json::Result<String> {
        let json = serde_json::to_vec(self)?;
        Ok(format!("{DIGEST_PREFIX}{:x}", Sha256::digest(&json)))
    }
}

/// One chunk of persons after [`Projector::prepare_chunk`].
pub(super) struct Prepared {
    /// Their rows to write back.
    pub(super) writes: Vec<StoredPerson>,
    /// Their directory changes, encoded for the outbox.
    pub(super) pack: Pack,
}

impl Projector {
    /// The CPU work of a chunk of persons: their directory changes, and
    /// their rows to write back.
    pub(super) fn prepare_chunk(
        &self,
        mut rows: Vec<(String, PersonRow)>,
        inputs: &Inputs,
        now_ms: i64,
    ) -> Result<Prepared> {
        let mut changes = Vec::new();
        let mut writes = Vec::new();
        for (id, row) in &mut rows {
            if let Some(change) = self.evaluate(id, row, inputs, now_ms)? {
                changes.push(change);
            }
            if let Some(write) = row.write_back(now_ms, &self.prehire_offsets)? {
                writes.push(write);
            }
        }
        // The persons are dropped here, on the blocking thread: freeing a
        // thousand states took 3 % of the projector's CPU on the batch's
        // own path when they went back to the batch.
        drop(rows);
        Ok(Prepared {
            writes,
            pack: Pack::new(changes),
        })
    }

    /// Evaluates the rules for one person; if their desired state differs
    /// from the last one emitted, the encoded directory change.
    fn evaluate(
        &self,
        id: &str,
        row: &mut PersonRow,
        inputs: &Inputs,
        now_ms: i64,
    ) -> Result<Option<Change>> {
        let Some(lifecycle) = row.state.lifecycle_at(now_ms) else {
            return Ok(None);
        };
        let attributes = row.state.attributes.clone().unwrap_or_else(|| {
            WorkerAttributes::new("", "", hrsync_domain::EmploymentType::Employee)
        });
        let (groups, apps) = self.assignments(id, row, lifecycle, &attributes, inputs, now_ms);
        let profile = profile_of(id, row, attributes)?;
        let desired = Desired {
            lifecycle: lifecycle.as_str(),
            profile: &profile,
            groups: &groups,
            apps: &apps,
        };
        let digest = desired.digest().map_err(|e| ProjectError::build(id, e))?;
        if row.emitted.digest == digest {
            return Ok(None);
        }
        let change = DirectoryChange {
            person_id: PersonId::new(row.person_id.clone())
                .map_err(|e| ProjectError::build(id, e))?,
            employee_id: EmployeeId::new(id.to_owned()).map_err(|e| ProjectError::build(id, e))?,
            version: 0,
            lifecycle_state: lifecycle,
            profile,
            groups,
            apps,
            caused_by: Vec::new(),
            priority: false,
            changed_at: Timestamp::from_millis(now_ms).map_err(|e| ProjectError::build(id, e))?,
        };
        emit(id, row, change, digest).map(Some)
    }

    /// The groups and apps the rules give a person in `lifecycle` (see
    /// [`Projector::grant`]).
    fn assignments(
        &self,
        id: &str,
        row: &PersonRow,
        lifecycle: LifecycleState,
        attributes: &WorkerAttributes,
        inputs: &Inputs,
        now_ms: i64,
    ) -> (Vec<String>, Vec<AppAssignment>) {
        let evaluation = self
            .rules
            .evaluate(&subject(id, attributes, lifecycle, inputs));
        for error in &evaluation.errors {
            // The reason may quote profile values: log the group only.
            tracing::warn!(employee_id = %id, group = %error.group, "group rule failed to evaluate; treated as false");
            metrics::counter!("hrsync_projector_rule_errors_total", "group" => error.group.clone())
                .increment(1);
        }
        self.grant(&row.state, lifecycle, evaluation, now_ms)
    }

    /// The groups and apps `evaluation` (of the rules, for a person in
    /// `state` and `lifecycle`) gives the person at `now_ms`: none once
    /// deprovisioned; before the start, only the apps whose pre-hire
    /// window is open. The projector's, its explanations' and its rule
    /// previews' one decision of who gets what.
    pub(super) fn grant(
        &self,
        state: &PersonState,
        lifecycle: LifecycleState,
        evaluation: Evaluation,
        now_ms: i64,
    ) -> (Vec<String>, Vec<AppAssignment>) {
        match lifecycle {
            LifecycleState::Deprovisioned => (Vec::new(), Vec::new()),
            LifecycleState::Pending => {
                let apps = evaluation
                    .apps
                    .into_iter()
                    .filter(|a| now_ms >= self.prehire_opens_ms(&a.app, state, now_ms))
                    .collect();
                (evaluation.groups, apps)
            }
            _ => (evaluation.groups, evaluation.apps),
        }
    }

    /// When `app`'s pre-hire window opens for a person in `state` (its
    /// `prehire_days` before their start; a start not known counts as
    /// `now_ms`).
    pub(super) fn prehire_opens_ms(&self, app: &str, state: &PersonState, now_ms: i64) -> i64 {
        let start = state.employed_from_ms.unwrap_or(now_ms);
        let days = self.config.prehire_days.get(app).copied().unwrap_or(0);
        start - i64::from(days) * 86_400_000
    }
}

/// What the rules see of person `id` in `lifecycle` with `attributes`: their
/// manager chain and direct report count as looked up in `inputs` (none if
/// the rules read none).
pub(super) fn subject<'a>(
    id: &'a str,
    attributes: &'a WorkerAttributes,
    lifecycle: LifecycleState,
    inputs: &'a Inputs,
) -> Subject<'a> {
    Subject {
        employee_id: id,
        attributes,
        lifecycle_state: lifecycle,
        manager_chain: inputs.chains.get(id).map_or(&[], Vec::as_slice),
        direct_reports: inputs.reports.get(id).copied().unwrap_or(0),
    }
}

/// A person's profile as a directory change carries it.
fn profile_of(id: &str, row: &PersonRow, attributes: WorkerAttributes) -> Result<Profile> {
    let timestamp = |ms: Option<i64>| {
        ms.map(Timestamp::from_millis)
            .transpose()
            .map_err(|e| ProjectError::build(id, e))
    };
    Ok(Profile {
        attributes,
        time_zone: TimeZone::new(&row.state.time_zone).map_err(|e| ProjectError::build(id, e))?,
        start_at: timestamp(row.state.employed_from_ms)?,
        terminate_at: timestamp(row.state.terminate_at_ms)?,
    })
}

/// Emits `change` (its desired state digested as `digest`): the person's
/// next version, the events that caused it, whether it goes to the fast
/// lane (access cut: deprovisioned or suspended anew, or an app removed);
/// what was emitted is remembered in `row`.
fn emit(
    id: &str,
    row: &mut PersonRow,
    mut change: DirectoryChange,
    digest: String,
) -> Result<Change> {
    let lifecycle = change.lifecycle_state;
    let app_names: Vec<String> = change.apps.iter().map(|a| a.app.clone()).collect();
    let removed_app = row.emitted.apps.iter().any(|a| !app_names.contains(a));
    let cut = matches!(
        lifecycle,
        LifecycleState::Deprovisioned | LifecycleState::Suspended
    ) && row.emitted.lifecycle.as_deref() != Some(lifecycle.as_str());
    change.priority = cut || removed_app;
    row.version += 1;
    change.version = u64::try_from(row.version).unwrap_or(0);
    change.caused_by = std::mem::take(&mut row.caused_by);
    let payload =
        hrsync_schema::encode_directory_change(&change).map_err(|e| ProjectError::build(id, e))?;
    row.emitted = Emitted {
        digest,
        lifecycle: Some(lifecycle.as_str().to_owned()),
        groups: change.groups,
        apps: app_names,
    };
    row.changed = true;
    Ok(Change {
        person_id: row.person_id.clone(),
        payload,
        priority: change.priority,
        traceparent: row.trace.take(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hrsync_domain::EmploymentType;

    fn profile(title: &str) -> Profile {
        let mut attributes = WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee);
        attributes.title = Some(title.to_owned());
        attributes.custom.insert("badge".into(), "42".into());
        Profile {
            attributes,
            time_zone: TimeZone::new("Europe/Berlin").unwrap(),
            start_at: Some(Timestamp::from_millis(1_700_000_000_000).unwrap()),
            terminate_at: None,
        }
    }

    #[test]
    fn a_digest_is_of_the_whole_desired_state() {
        let (engineer, manager) = (profile("Engineer"), profile("Manager"));
        let groups = vec!["Customer Support".to_owned()];
        let apps = vec![AppAssignment {
            app: "zendesk".into(),
            groups: groups.clone(),
        }];
        let desired = Desired {
            lifecycle: "ACTIVE",
            profile: &engineer,
            groups: &groups,
            apps: &apps,
        };
        let digest = desired.digest().unwrap();
        assert!(digest.starts_with(DIGEST_PREFIX), "{digest}");
        let same = Desired {
            profile: &profile("Engineer"),
            ..desired
        };
        assert_eq!(same.digest().unwrap(), digest);
        let others = [
            Desired {
                profile: &manager,
                ..desired
            },
            Desired {
                lifecycle: "SUSPENDED",
                ..desired
            },
            Desired {
                groups: &[],
                ..desired
            },
            Desired {
                apps: &[],
                ..desired
            },
        ];
        for other in others {
            assert_ne!(other.digest().unwrap(), digest);
        }
    }
}
