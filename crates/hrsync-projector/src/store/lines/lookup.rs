//! Where a batch reads the reporting lines: in the store, in its
//! transaction, or in memory (noting what it read).

use std::collections::{BTreeSet, HashMap};

use super::{Lines, Reads};
use crate::error::Result;
use crate::store::{BatchTx, ROWS};

/// Where a batch looks up the reporting lines of persons it did not load.
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    /// The store, in the batch's transaction.
    Store,
    /// The lines in memory, noting what the batch read.
    Memory(&'a Lines, Reads<'a>),
}

impl Lookup<'_> {
    /// The kept number of direct reports of each of `ids` that has any.
    pub(crate) async fn counts(
        &mut self,
        tx: &mut BatchTx,
        ids: &[&str],
    ) -> Result<HashMap<String, i64>> {
        match self {
            Lookup::Memory(lines, reads) => {
                reads
                    .keys
                    .counts
                    .extend(ids.iter().map(|id| (*id).to_owned()));
                lines.read(|index| {
                    ids.iter()
                        .filter_map(|id| Some(((*id).to_owned(), *index.counts.get(*id)?)))
                        .collect()
                })
            }
            Lookup::Store => {
                let tx = tx.get().await?;
                let mut counts = HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(ROWS) {
                    let slots = hrsync_store::padded_rows(chunk.len(), ROWS);
                    let sql = format!(
                        "SELECT manager_id, reports FROM projector_reports WHERE manager_id IN ({})",
                        hrsync_store::placeholders(slots, 1)
                    );
                    let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
                    for id in hrsync_store::repeat_last(chunk, slots) {
                        query = query.bind(*id);
                    }
                    counts.extend(query.fetch_all(&mut **tx).await?);
                }
                Ok(counts)
            }
        }
    }

    /// Everyone whose stored manager is one of `managers`.
    pub(crate) async fn reports_of(
        &mut self,
        tx: &mut BatchTx,
        managers: &[String],
    ) -> Result<Vec<String>> {
        match self {
            Lookup::Memory(lines, reads) => {
                reads.keys.reports.extend(managers.iter().cloned());
                lines.read(|index| {
                    managers
                        .iter()
                        .filter_map(|m| index.reports.get(m))
                        .flatten()
                        .cloned()
                        .collect()
                })
            }
            Lookup::Store => {
                let tx = tx.get().await?;
                let mut reports = Vec::new();
                for chunk in managers.chunks(ROWS) {
                    let slots = hrsync_store::padded_rows(chunk.len(), ROWS);
                    let sql = format!(
                        "SELECT employee_id FROM projector_person WHERE manager_id IN ({})",
                        hrsync_store::placeholders(slots, 1)
                    );
                    let mut query = sqlx::query_scalar::<_, String>(&sql);
                    for id in hrsync_store::repeat_last(chunk, slots) {
                        query = query.bind(id.as_str());
                    }
                    reports.extend(query.fetch_all(&mut **tx).await?);
                }
                Ok(reports)
            }
        }
    }

    /// The manager chain of each person of `own` (their managers), nearest
    /// first, at most `depth` long, stopping at a cycle: the managers of
    /// `own` as given, the others' looked up. In memory, a walk up the
    /// lines per person; from the store, one statement per level of the
    /// chains for all of them at once.
    pub(crate) async fn chains(
        &mut self,
        tx: &mut BatchTx,
        own: HashMap<String, Option<String>>,
        depth: usize,
    ) -> Result<HashMap<String, Vec<String>>> {
        match self {
            Lookup::Memory(lines, reads) => lines.read(|index| {
                let mut chains = HashMap::with_capacity(own.len());
                for person in own.keys() {
                    let mut chain: Vec<String> = Vec::new();
                    let mut last: &str = person;
                    while chain.len() < depth {
                        let next = match own.get(last) {
                            Some(manager) => manager.as_deref(),
                            None => {
                                if !reads.keys.managers.contains(last) {
                                    reads.keys.managers.insert(last.to_owned());
                                }
                                index.manager.get(last).map(String::as_str)
                            }
                        };
                        match next {
                            Some(m) if m != person && !chain.iter().any(|c| c == m) => {
                                chain.push(m.to_owned());
                                last = m;
                            }
                            _ => break,
                        }
                    }
                    chains.insert(person.clone(), chain);
                }
                chains
            }),
            Lookup::Store => {
                let tx = tx.get().await?;
                let mut manager = own;
                let persons: Vec<String> = manager.keys().cloned().collect();
                let mut chains: HashMap<String, Vec<String>> =
                    HashMap::with_capacity(persons.len());
                // (person, the last one of their chain so far)
                let mut walking: Vec<(&str, String)> =
                    persons.iter().map(|id| (id.as_str(), id.clone())).collect();
                for _ in 0..depth {
                    let unknown: BTreeSet<&str> = walking
                        .iter()
                        .map(|(_, last)| last.as_str())
                        .filter(|last| !manager.contains_key(*last))
                        .collect();
                    let unknown: Vec<&str> = unknown.into_iter().collect();
                    manager.extend(stored_managers_of(tx, &unknown).await?);
                    walking.retain_mut(|(person, last)| {
                        let chain = chains.entry((*person).to_owned()).or_default();
                        match manager.get(last.as_str()).cloned().flatten() {
                            Some(m) if m != *person && !chain.contains(&m) => {
                                chain.push(m.clone());
                                *last = m;
                                true
                            }
                            _ => false,
                        }
                    });
                    if walking.is_empty() {
                        break;
                    }
                }
                Ok(chains)
            }
        }
    }
}

/// The stored manager of each of `ids` (`None`: none, or not stored).
async fn stored_managers_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ids: &[&str],
) -> Result<HashMap<String, Option<String>>> {
    let mut managers: HashMap<String, Option<String>> =
        ids.iter().map(|id| ((*id).to_owned(), None)).collect();
    for chunk in ids.chunks(ROWS) {
        let slots = hrsync_store::padded_rows(chunk.len(), ROWS);
        let sql = format!(
            "SELECT employee_id, manager_id FROM projector_person WHERE employee_id IN ({})",
            hrsync_store::placeholders(slots, 1)
        );
        let mut query = sqlx::query_as::<_, (String, Option<String>)>(&sql);
        for id in hrsync_store::repeat_last(chunk, slots) {
            query = query.bind(*id);
        }
        managers.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(managers)
}
