//! What rule evaluation reads besides a person: whom else a batch must
//! evaluate (managers whose report count it changes, people below a
//! manager who moved), the report counts and the manager chains. Looked up
//! with the batch's persons laid over what is stored.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::person::{lifecycle_of, manager_of, PersonRow};
use super::Projector;
use crate::error::Result;
use crate::rules::LineReads;
use crate::store::{BatchTx, Lookup};

/// The persons of a batch, by employee id.
pub(super) type People = BTreeMap<String, PersonRow>;

/// What rule evaluation reads besides the person: manager chains and direct
/// report counts, by employee id.
pub(super) struct Inputs {
    pub(super) chains: HashMap<String, Vec<String>>,
    pub(super) reports: HashMap<String, usize>,
    /// How the batch changes each manager's number of direct reports
    /// (managers whose count does not change are left out).
    pub(super) deltas: BTreeMap<String, i64>,
}

impl Projector {
    /// Adds to `people` everyone else whose rule inputs this batch changes,
    /// and looks up the inputs of all of them.
    ///
    /// Managers whose number of direct reports changes are evaluated too
    /// and, when a rule reads `manager_chain`, everyone up to the chain
    /// depth below a person whose manager changes. Counts and chains are
    /// looked up (`lookup`) with this batch's persons laid over them, so no
    /// row is written twice.
    pub(super) async fn inputs(
        &self,
        tx: &mut BatchTx,
        lookup: &mut Lookup<'_>,
        people: &mut People,
        now_ms: i64,
    ) -> Result<Inputs> {
        let reads = self.rules.line_reads();
        self.inputs_for(reads, tx, lookup, people, now_ms).await
    }

    /// [`Projector::inputs`] for rules that read `reads` of the reporting
    /// lines (the projector's own, or those with rules an admin proposes).
    pub(super) async fn inputs_for(
        &self,
        reads: LineReads,
        tx: &mut BatchTx,
        lookup: &mut Lookup<'_>,
        people: &mut People,
        now_ms: i64,
    ) -> Result<Inputs> {
        let deltas = self.widen(reads, tx, lookup, people, now_ms).await?;
        let reports = if reads.direct_reports {
            report_counts(tx, lookup, people, &deltas).await?
        } else {
            HashMap::new()
        };
        let chains = if reads.manager_chain {
            let own = people
                .iter()
                .map(|(id, row)| (id.clone(), manager_of(&row.state)))
                .collect();
            let depth = self.config.manager_chain_depth;
            lookup.chains(tx, own, depth).await?
        } else {
            HashMap::new()
        };
        Ok(Inputs {
            chains,
            reports,
            deltas,
        })
    }

    /// Adds to `people` everyone else whose rule inputs this batch changes
    /// (see [`Projector::inputs`]), and returns how the batch changes each
    /// manager's number of direct reports.
    async fn widen(
        &self,
        reads: LineReads,
        tx: &mut BatchTx,
        lookup: &mut Lookup<'_>,
        people: &mut People,
        now_ms: i64,
    ) -> Result<BTreeMap<String, i64>> {
        let mut seen = Widened {
            // A manager id nobody was hired under is looked for once.
            requested: people.keys().cloned().collect(),
            ..Widened::default()
        };
        // A person loaded here is re-evaluated as stored, except that the
        // clock may have moved their lifecycle on: that can change their
        // manager's count in turn, hence the loop (it ends: `requested`
        // only grows).
        loop {
            let deltas = report_deltas(people, now_ms);
            let mut wanted = self
                .managers_to_evaluate(reads, tx, lookup, &deltas, &mut seen)
                .await?;
            let depth = self.config.manager_chain_depth;
            if reads.manager_chain && depth > 1 {
                wanted
                    .extend(below_moved_managers(tx, lookup, people, &mut seen, depth - 1).await?);
            }
            if wanted.is_empty() {
                return Ok(deltas);
            }
            let ids = wanted.iter().map(String::as_str);
            people.extend(tx.load_people(ids, PersonRow::parse).await?);
            seen.requested.extend(wanted);
        }
    }

    /// The managers whose rules read a count that `deltas` change, not
    /// looked for yet.
    async fn managers_to_evaluate(
        &self,
        reads: LineReads,
        tx: &mut BatchTx,
        lookup: &mut Lookup<'_>,
        deltas: &BTreeMap<String, i64>,
        seen: &mut Widened,
    ) -> Result<BTreeSet<String>> {
        let mut wanted = BTreeSet::new();
        if reads.report_count {
            wanted.extend(
                deltas
                    .keys()
                    .filter(|m| !seen.requested.contains(*m))
                    .cloned(),
            );
        } else if reads.direct_reports {
            // Only `is_manager` is read: a manager whose count stays above
            // zero (or at zero) evaluates as before. Their stored counts are
            // looked up (again only if their delta moved).
            let unchecked: Vec<&str> = deltas
                .iter()
                .filter(|(m, delta)| {
                    !seen.requested.contains(*m) && seen.checked.get(*m) != Some(*delta)
                })
                .map(|(m, _)| m.as_str())
                .collect();
            let stored = lookup.counts(tx, &unchecked).await?;
            for manager in unchecked {
                let delta = deltas.get(manager).copied().unwrap_or(0);
                let before = stored.get(manager).copied().unwrap_or(0);
                if (before > 0) != (before + delta > 0) {
                    wanted.insert(manager.to_owned());
                }
                seen.checked.insert(manager.to_owned(), delta);
            }
        }
        Ok(wanted)
    }
}

/// What [`Projector::widen`] looked at already.
#[derive(Default)]
struct Widened {
    /// Whoever was looked for.
    requested: BTreeSet<String>,
    /// Persons whose manager changed, whose reports were looked for.
    chain_roots: BTreeSet<String>,
    /// Managers whose `is_manager` was found unchanged, with the count
    /// change it was checked for.
    checked: BTreeMap<String, i64>,
}

/// Everyone up to `levels` below a person of `people` whose manager
/// changed (not looked for yet): a person at level n below them has their
/// new managers from position n of their chain on.
async fn below_moved_managers(
    tx: &mut BatchTx,
    lookup: &mut Lookup<'_>,
    people: &People,
    seen: &mut Widened,
    levels: usize,
) -> Result<Vec<String>> {
    let roots: Vec<String> = people
        .iter()
        .filter(|(id, row)| {
            manager_of(&row.state) != row.stored_manager && !seen.chain_roots.contains(*id)
        })
        .map(|(id, _)| id.clone())
        .collect();
    seen.chain_roots.extend(roots.iter().cloned());
    Ok(reports_below(tx, lookup, people, roots, levels)
        .await?
        .into_iter()
        .filter(|id| !seen.requested.contains(id))
        .collect())
}

/// A person counts as a direct report of their manager unless
/// deprovisioned or not hired (`NONE`; `""`: not stored).
fn counts_as_report(lifecycle: &str) -> bool {
    !matches!(lifecycle, "DEPROVISIONED" | "NONE" | "")
}

/// How writing `people` back changes each manager's number of direct
/// reports (managers whose count does not change are left out).
fn report_deltas(people: &People, now_ms: i64) -> BTreeMap<String, i64> {
    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
    for row in people.values() {
        let before = row
            .stored_manager
            .as_ref()
            .filter(|_| counts_as_report(&row.stored_lifecycle));
        let manager = manager_of(&row.state);
        let after = manager
            .as_ref()
            .filter(|_| counts_as_report(lifecycle_of(&row.state, now_ms)));
        if before == after {
            continue;
        }
        if let Some(m) = before {
            *deltas.entry(m.clone()).or_default() -= 1;
        }
        if let Some(m) = after {
            *deltas.entry(m.clone()).or_default() += 1;
        }
    }
    deltas.retain(|_, delta| *delta != 0);
    deltas
}

/// The number of direct reports of each of `people`: as stored, plus this
/// batch's `deltas`.
async fn report_counts(
    tx: &mut BatchTx,
    lookup: &mut Lookup<'_>,
    people: &People,
    deltas: &BTreeMap<String, i64>,
) -> Result<HashMap<String, usize>> {
    let ids: Vec<&str> = people.keys().map(String::as_str).collect();
    let mut counts = lookup.counts(tx, &ids).await?;
    for (manager, delta) in deltas {
        if people.contains_key(manager) {
            *counts.entry(manager.clone()).or_default() += delta;
        }
    }
    Ok(counts
        .into_iter()
        .map(|(id, count)| (id, usize::try_from(count).unwrap_or(0)))
        .collect())
}

/// Everyone up to `levels` levels below `roots` in the reporting lines, as
/// looked up with `people` laid over them. One lookup per level.
async fn reports_below(
    tx: &mut BatchTx,
    lookup: &mut Lookup<'_>,
    people: &People,
    roots: Vec<String>,
    levels: usize,
) -> Result<BTreeSet<String>> {
    let mut found: BTreeSet<String> = BTreeSet::new();
    let mut seen: HashSet<String> = roots.iter().cloned().collect();
    let mut frontier = roots;
    for _ in 0..levels {
        if frontier.is_empty() {
            break;
        }
        let managers: HashSet<&str> = frontier.iter().map(String::as_str).collect();
        let reports_to_them =
            |row: &PersonRow| manager_of(&row.state).is_some_and(|m| managers.contains(m.as_str()));
        let mut reports = lookup.reports_of(tx, &frontier).await?;
        // This batch's persons report where their new state says.
        reports.retain(|id| people.get(id).is_none_or(reports_to_them));
        reports.extend(
            people
                .iter()
                .filter(|(_, row)| reports_to_them(row))
                .map(|(id, _)| id.clone()),
        );
        let mut next = Vec::new();
        for id in reports {
            if seen.insert(id.clone()) {
                found.insert(id.clone());
                next.push(id);
            }
        }
        frontier = next;
    }
    Ok(found)
}
