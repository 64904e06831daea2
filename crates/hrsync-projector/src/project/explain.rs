//! Why a person is in each group: their stored state evaluated under the
//! projector's rules as a batch evaluates it, each rule shown with what it
//! read (see [`crate::explain`]).

use std::collections::BTreeMap;

use hrsync_domain::LifecycleState;
use serde::Serialize;

use super::evaluate::subject;
use super::inputs::{Inputs, People};
use super::person::{lifecycle_of, PersonRow};
use super::Projector;
use crate::error::{ProjectError, Result};
use crate::explain::{explain_apps, explain_groups, AppExplanation, GroupExplanation};
use crate::store::Lookup;

/// Why a person is, or is not, in each configured group and has each app,
/// under the projector's current rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The person's HR employee id.
    pub employee_id: String,
    /// Their person id.
    pub person_id: String,
    /// The time the state was evaluated at, ms since the epoch.
    pub at_ms: i64,
    /// Their lifecycle state then: `PENDING`, `ACTIVE`, `SUSPENDED`,
    /// `DEPROVISIONED`, or `NONE` while no hire is known (then no rule is
    /// evaluated and they are in no group). A deprovisioned person is in
    /// no group whatever the rules say; a pending one has only the apps
    /// whose pre-hire window is open.
    pub lifecycle: String,
    /// The fingerprint of the rules evaluated (see
    /// [`crate::rules::RuleSet::fingerprint`]).
    pub rules_fingerprint: String,
    /// Every configured group, in config order.
    pub groups: Vec<GroupExplanation>,
    /// Every app a group grants, by name.
    pub apps: Vec<AppExplanation>,
}

impl Projector {
    /// Why `employee_id` is in each group and has each app, now; `None` if
    /// no such person is stored. See [`Projector::explain_at`].
    ///
    /// # Errors
    /// Database failures; a stored state that does not parse.
    pub async fn explain(&self, employee_id: &str) -> Result<Option<Explanation>> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.explain_at(employee_id, now_ms).await
    }

    /// Why `employee_id` is in each group and has each app at `now_ms`:
    /// their stored state and reporting lines (direct reports, manager
    /// chain), read in one read-only snapshot, evaluated under the current
    /// rules exactly as the projector evaluates them (the same subject,
    /// the same rules, the same lifecycle and pre-hire decisions), so that
    /// the groups shown as `member` are those the projector emits for
    /// them at that time. Writes nothing.
    ///
    /// # Errors
    /// Database failures; a stored state that does not parse.
    #[tracing::instrument(skip(self))]
    pub async fn explain_at(&self, employee_id: &str, now_ms: i64) -> Result<Option<Explanation>> {
        let mut tx = self.store.snapshot().await?;
        let loaded = tx
            .load_people(std::iter::once(employee_id), PersonRow::parse)
            .await?;
        let Some((id, row)) = loaded.into_iter().next() else {
            tx.into_inner().await?.rollback().await?;
            return Ok(None);
        };
        let mut people: People = BTreeMap::from([(id.clone(), row)]);
        let reads = self.rules.line_reads();
        let inputs = self
            .inputs_for(reads, &mut tx, &mut Lookup::Store, &mut people, now_ms)
            .await?;
        tx.into_inner().await?.rollback().await?;
        let row = people.remove(&id).ok_or_else(|| ProjectError::Corrupt {
            employee_id: id.clone(),
            reason: "loaded, then not found among the persons evaluated".to_owned(),
        })?;
        Ok(Some(self.explanation(&id, &row, &inputs, now_ms)))
    }

    /// The explanation of one loaded person.
    fn explanation(&self, id: &str, row: &PersonRow, inputs: &Inputs, now_ms: i64) -> Explanation {
        let state = &row.state;
        let (groups, apps) = match (state.lifecycle_at(now_ms), state.attributes.as_ref()) {
            (Some(lifecycle), Some(attributes)) => {
                let subject = subject(id, attributes, lifecycle, inputs);
                let evaluation = self.rules.evaluate(&subject);
                let (members, assigned) = self.grant(state, lifecycle, evaluation.clone(), now_ms);
                let groups = explain_groups(&self.rules, Some((&subject, &evaluation)), &members);
                let pending = lifecycle == LifecycleState::Pending;
                let opens = |app: &str| {
                    let opens = self.prehire_opens_ms(app, state, now_ms);
                    (pending && opens > now_ms).then_some(opens)
                };
                let apps = explain_apps(&groups, &assigned, opens);
                (groups, apps)
            }
            _ => {
                let groups = explain_groups(&self.rules, None, &[]);
                let apps = explain_apps(&groups, &[], |_| None);
                (groups, apps)
            }
        };
        Explanation {
            employee_id: id.to_owned(),
            person_id: row.person_id.clone(),
            at_ms: now_ms,
            lifecycle: lifecycle_of(state, now_ms).to_owned(),
            rules_fingerprint: self.rules.fingerprint(),
            groups,
            apps,
        }
    }
}
