//! What a change of the rules would do: every stored person evaluated under
//! the current rules and under proposed ones, compared, nothing written.
//!
//! Each person is evaluated as the projector evaluates them (the same
//! subject with the same reporting lines, the same lifecycle and pre-hire
//! decisions: [`Projector::grant`]), so the preview shows what applying
//! the rules would emit. The persons are read a page at a time in one
//! read-only snapshot; each page is evaluated on a blocking thread while
//! the next one is read, and dropped once compared.

use std::collections::BTreeMap;
use std::sync::Arc;

use hrsync_domain::AppAssignment;
use serde::Serialize;
use tokio::task::JoinHandle;

use super::evaluate::subject;
use super::inputs::{Inputs, People};
use super::person::PersonRow;
use super::Projector;
use crate::error::{PreviewError, ProjectError, Result};
use crate::rules::{LineReads, RuleSet, RulesConfig};
use crate::store::{parse_all, parse_later, BatchTx, Lookup};

/// How many changed persons [`Projector::preview_rules`] lists at most.
pub const PREVIEW_LIMIT: usize = 1000;

/// How many persons a preview reads and evaluates at a time.
const PAGE: usize = 1000;

/// How to preview rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviewOptions {
    /// The time to evaluate at, ms since the epoch; `None`: now.
    pub at_ms: Option<i64>,
    /// How many changed persons to list at most (the first by employee
    /// id); the totals count them all.
    pub limit: usize,
}

impl Default for PreviewOptions {
    fn default() -> Self {
        PreviewOptions {
            at_ms: None,
            limit: PREVIEW_LIMIT,
        }
    }
}

/// What applying proposed rules would change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RulesPreview {
    /// The time evaluated at, ms since the epoch.
    pub at_ms: i64,
    /// The fingerprint of the rules the projector runs.
    pub current_fingerprint: String,
    /// The fingerprint of the proposed rules; equal to the current one if
    /// nothing that decides an outcome changed.
    pub proposed_fingerprint: String,
    /// Stored persons compared (every one).
    pub persons: u64,
    /// Persons whose groups or apps would change.
    pub persons_changed: u64,
    /// Per group of either rule set: how many persons would join it and
    /// how many would leave it.
    pub groups: BTreeMap<String, Movement>,
    /// Per app granted by either rule set: how many persons would be
    /// assigned it and how many would lose it.
    pub apps: BTreeMap<String, Movement>,
    /// The persons whose groups or apps would change, by employee id, at
    /// most the limit asked for.
    pub changes: Vec<PersonChange>,
    /// Whether more persons would change than `changes` lists.
    pub changes_truncated: bool,
}

/// How many persons would gain and lose a group or an app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Movement {
    /// Persons who would gain it.
    pub gaining: u64,
    /// Persons who would lose it.
    pub losing: u64,
}

/// How one person's groups and apps would change (each list sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PersonChange {
    /// The person's HR employee id.
    pub employee_id: String,
    /// Groups they would join.
    pub groups_gained: Vec<String>,
    /// Groups they would leave.
    pub groups_lost: Vec<String>,
    /// Apps they would be assigned.
    pub apps_gained: Vec<String>,
    /// Apps they would lose.
    pub apps_lost: Vec<String>,
}

impl PersonChange {
    fn is_empty(&self) -> bool {
        self.groups_gained.is_empty()
            && self.groups_lost.is_empty()
            && self.apps_gained.is_empty()
            && self.apps_lost.is_empty()
    }
}

/// One page of persons, read and with their rule inputs looked up.
struct Page {
    people: People,
    inputs: Inputs,
    /// The last employee id of the page.
    last: String,
}

/// A page's persons compared: how many, and the changes of those that
/// change.
type Compared = (u64, Vec<PersonChange>);

impl Projector {
    /// What applying `rules` would change now, listing at most
    /// [`PREVIEW_LIMIT`] persons: see [`Projector::preview_rules_with`].
    ///
    /// # Errors
    /// As [`Projector::preview_rules_with`].
    pub async fn preview_rules(&self, rules: &RulesConfig) -> Result<RulesPreview, PreviewError> {
        self.preview_rules_with(rules, PreviewOptions::default())
            .await
    }

    /// What applying `rules` instead of the current rules would change:
    /// every stored person evaluated under both at one time, as the
    /// projector evaluates them (deprovisioned persons have no groups
    /// either way, pending ones only the apps whose pre-hire window is
    /// open, persons with no hire known are not evaluated), and compared.
    /// Reads one read-only snapshot of the store, a page at a time, and
    /// writes nothing.
    ///
    /// # Errors
    /// [`PreviewError::Rules`] naming the first proposed group that does
    /// not compile; [`PreviewError::Store`] if reading the store failed.
    #[tracing::instrument(skip_all, fields(groups = rules.groups.len()))]
    pub async fn preview_rules_with(
        &self,
        rules: &RulesConfig,
        options: PreviewOptions,
    ) -> Result<RulesPreview, PreviewError> {
        let proposed = Arc::new(RuleSet::compile(rules)?);
        let at_ms = options
            .at_ms
            .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let mut preview = self.empty_preview(&proposed, at_ms);
        let reads = self.rules.line_reads().union(proposed.line_reads());
        let mut tx = self.store.snapshot().await?;
        let mut after: Option<String> = None;
        let mut comparing: Option<JoinHandle<Result<Compared>>> = None;
        loop {
            let page = self.preview_page(reads, &mut tx, after.as_deref(), at_ms);
            let page = page.await?;
            if let Some(task) = comparing.take() {
                add(&mut preview, joined(task).await?, options.limit);
            }
            let Some(page) = page else { break };
            after = Some(page.last.clone());
            let (this, proposed) = (self.clone(), Arc::clone(&proposed));
            comparing = Some(tokio::task::spawn_blocking(move || {
                Ok(this.compare(&proposed, page, at_ms))
            }));
        }
        tx.into_inner()
            .await?
            .rollback()
            .await
            .map_err(ProjectError::from)?;
        Ok(preview)
    }

    /// A preview with no person compared yet: every group and app of
    /// both rule sets, none moving.
    fn empty_preview(&self, proposed: &RuleSet, at_ms: i64) -> RulesPreview {
        let mut preview = RulesPreview {
            at_ms,
            current_fingerprint: self.rules.fingerprint(),
            proposed_fingerprint: proposed.fingerprint(),
            ..RulesPreview::default()
        };
        for group in self.rules.groups().chain(proposed.groups()) {
            preview.groups.entry(group.name.to_owned()).or_default();
            for app in group.apps {
                preview.apps.entry(app.clone()).or_default();
            }
        }
        preview
    }

    /// The stored persons after employee id `after` (at most [`PAGE`]),
    /// and their rule inputs as the rules `reads` need them; `None` once
    /// every person was read.
    async fn preview_page(
        &self,
        reads: LineReads,
        tx: &mut BatchTx,
        after: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<Page>> {
        let rows = tx.people_after(after, PAGE).await?;
        let Some(last) = rows.last().map(|row| row.employee_id.clone()) else {
            return Ok(None);
        };
        let parsed = parse_all(vec![parse_later(rows, PersonRow::parse)]).await?;
        let mut people: People = parsed.into_iter().collect();
        let inputs = self
            .inputs_for(reads, tx, &mut Lookup::Store, &mut people, now_ms)
            .await?;
        // Looking up the inputs may have loaded managers from outside the
        // page (as a batch would evaluate them too): their own page
        // compares them.
        people.retain(|id, _| after.is_none_or(|after| id.as_str() > after) && *id <= last);
        Ok(Some(Page {
            people,
            inputs,
            last,
        }))
    }

    /// Evaluates a page's persons under the current and the `proposed`
    /// rules and compares what they would be given.
    fn compare(&self, proposed: &RuleSet, page: Page, now_ms: i64) -> Compared {
        let mut changes = Vec::new();
        for (id, row) in &page.people {
            let state = &row.state;
            let (Some(lifecycle), Some(attributes)) =
                (state.lifecycle_at(now_ms), state.attributes.as_ref())
            else {
                // No hire known: the projector evaluates no rule for them.
                continue;
            };
            let subject = subject(id, attributes, lifecycle, &page.inputs);
            let now = self.grant(state, lifecycle, self.rules.evaluate(&subject), now_ms);
            let then = self.grant(state, lifecycle, proposed.evaluate(&subject), now_ms);
            let change = PersonChange {
                employee_id: id.clone(),
                groups_gained: missing_from(&then.0, &now.0),
                groups_lost: missing_from(&now.0, &then.0),
                apps_gained: missing_from(&app_names(&then.1), &app_names(&now.1)),
                apps_lost: missing_from(&app_names(&now.1), &app_names(&then.1)),
            };
            if !change.is_empty() {
                changes.push(change);
            }
        }
        (page.people.len() as u64, changes)
    }
}

/// Adds a page's comparison to `preview`, listing at most `limit` persons.
fn add(preview: &mut RulesPreview, (persons, changes): Compared, limit: usize) {
    preview.persons += persons;
    for change in changes {
        preview.persons_changed += 1;
        for (names, moved) in [
            (&change.groups_gained, &mut preview.groups),
            (&change.apps_gained, &mut preview.apps),
        ] {
            for name in names {
                moved.entry(name.clone()).or_default().gaining += 1;
            }
        }
        for (names, moved) in [
            (&change.groups_lost, &mut preview.groups),
            (&change.apps_lost, &mut preview.apps),
        ] {
            for name in names {
                moved.entry(name.clone()).or_default().losing += 1;
            }
        }
        if preview.changes.len() < limit {
            preview.changes.push(change);
        } else {
            preview.changes_truncated = true;
        }
    }
}

/// The names in sorted `these` that are not in sorted `those`.
fn missing_from(these: &[String], those: &[String]) -> Vec<String> {
    these
        .iter()
        .filter(|name| those.binary_search(name).is_err())
        .cloned()
        .collect()
}

/// The app names of assignments sorted by app, in order.
fn app_names(apps: &[AppAssignment]) -> Vec<String> {
    apps.iter().map(|a| a.app.clone()).collect()
}

/// What a blocking task returned.
async fn joined<T>(task: JoinHandle<Result<T>>) -> Result<T> {
    match task.await {
        Ok(done) => done,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(ProjectError::task(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn sorted_lists_are_compared_both_ways() {
        let now = names(&["Everyone", "Support"]);
        let then = names(&["Everyone", "Sales", "Sales Tools"]);
        assert_eq!(missing_from(&then, &now), ["Sales", "Sales Tools"]);
        assert_eq!(missing_from(&now, &then), ["Support"]);
        assert!(missing_from(&now, &now).is_empty());
    }

    #[test]
    fn totals_count_every_change_and_the_list_stops_at_the_limit() {
        let change = |id: &str, gained: &[&str], lost: &[&str]| PersonChange {
            employee_id: id.to_owned(),
            groups_gained: names(gained),
            groups_lost: names(lost),
            apps_gained: names(gained),
            apps_lost: Vec::new(),
        };
        let mut preview = RulesPreview::default();
        add(&mut preview, (3, vec![change("E1", &["A"], &["B"])]), 2);
        add(
            &mut preview,
            (
                5,
                vec![change("E2", &["A"], &[]), change("E3", &[], &["B"])],
            ),
            2,
        );
        assert_eq!((preview.persons, preview.persons_changed), (8, 3));
        let ids: Vec<&str> = preview
            .changes
            .iter()
            .map(|c| c.employee_id.as_str())
            .collect();
        assert_eq!(ids, ["E1", "E2"]);
        assert!(preview.changes_truncated);
        let a = Movement {
            gaining: 2,
            losing: 0,
        };
        let b = Movement {
            gaining: 0,
            losing: 2,
        };
        assert_eq!(
            preview.groups,
            BTreeMap::from([("A".into(), a), ("B".into(), b)])
        );
        assert_eq!(preview.apps, BTreeMap::from([("A".into(), a)]));
    }
}
