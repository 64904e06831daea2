//! The reporting lines a batch reads besides its own persons: who a person
//! reports to, who reports to a manager, and how many of those count
//! (`projector_reports`). A batch needs them for the managers whose count
//! it changes, for the people below a manager who moved, and for the chains
//! above its persons.
//!
//! Read from the store in the batch's transaction ([`Lookup::Store`]) they
//! took a fifth of a batch. The projector that has the store to itself
//! (it holds the store's claim) keeps them in memory instead
//! ([`Lines`], [`Lookup::Memory`]), read from the store once and then
//! updated by every commit of that process.
//!
//! Read from memory, they are no longer among what the store's
//! serializable transactions check, so [`Lines`] checks them itself: a
//! batch notes the generation of the lines before its transaction begins,
//! and every key it reads; commits go through [`Lines::commit`] one at a
//! time, which fails a batch with a conflict when a commit since that
//! generation changed a key it read, or read a key it changes, and
//! otherwise commits and applies the batch's changes as the next
//! generation. The second half matters as much as the first: a batch that
//! read a manager's count and committed first, beside one that changes
//! that count and read the manager's row the first one wrote, is a cycle
//! the store sees only half of (the row), so it lets both commit, each
//! having decided from what the other changed.
//!
//! The generation moves on only once a commit returned, so a batch whose
//! transaction does not see a commit never counts it as seen.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;

use hrsync_store::Db;

use crate::error::{ProjectError, Result};

mod lookup;

pub(crate) use lookup::Lookup;

/// How many commits are remembered at most: a batch that started before
/// the oldest of them conflicts whatever it read. (Commits are forgotten
/// sooner, once no batch under way started before them.)
const LOG: usize = 64;

/// The reporting lines of the whole store, in memory (see the module docs).
#[derive(Debug)]
pub(crate) struct Lines {
    db: Db,
    state: std::sync::Mutex<State>,
    /// Held by a commit from its check until its changes are applied, and
    /// while the lines are read from the store: one at a time.
    turn: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    /// `None` until read from the store, and again once forgotten (a
    /// rebuild, a re-taken claim, a commit of unknown outcome).
    index: Option<Index>,
    /// Commits applied so far.
    generation: u64,
    /// The last commits, oldest first: those since the oldest batch under
    /// way started.
    log: VecDeque<Entry>,
    /// The batches under way: how many started at each generation.
    active: BTreeMap<u64, usize>,
}

/// A commit, as remembered.
#[derive(Debug)]
struct Entry {
    generation: u64,
    /// The lines it changed; `None`: anything may have changed.
    changed: Option<Keys>,
    /// The lines it read.
    read: Keys,
}

/// Lines read or changed, by what of them: three kinds, so that a batch
/// that walked a chain through a manager does not conflict with one that
/// changed that manager's count (every chain passes the top of the
/// hierarchy, whose count a termination changes).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    /// Managers whose number of reports.
    counts: HashSet<String>,
    /// Persons whose manager.
    managers: HashSet<String>,
    /// Managers whose reports (who they are).
    reports: HashSet<String>,
}

impl Keys {
    fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.managers.is_empty() && self.reports.is_empty()
    }

    /// A line in both, named.
    fn common(&self, other: &Keys) -> Option<String> {
        common(&self.counts, &other.counts)
            .map(|k| format!("the report count of {k}"))
            .or_else(|| {
                common(&self.managers, &other.managers).map(|k| format!("the manager of {k}"))
            })
            .or_else(|| {
                common(&self.reports, &other.reports).map(|k| format!("the reports of {k}"))
            })
    }
}

/// The lines themselves.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Index {
    /// Each stored person's manager (those with none left out).
    manager: HashMap<String, String>,
    /// Everyone whose stored manager is the key, whatever their lifecycle.
    reports: HashMap<String, HashSet<String>>,
    /// The kept number of direct reports (`projector_reports`), non-zero.
    counts: HashMap<String, i64>,
}

/// What a batch read from the lines in memory: the generation it started
/// at and the lines it read.
/// Counts as under way (see [`State::active`]) until dropped.
#[derive(Debug)]
pub(crate) struct Reads<'a> {
    since: u64,
    keys: Keys,
    lines: Option<&'a Lines>,
}

impl Drop for Reads<'_> {
    fn drop(&mut self) {
        if let Some(lines) = self.lines {
            lines.state().finish(self.since);
        }
    }
}

/// What a committed batch changed: the manager of every person it wrote,
/// and how it changed managers' counts.
#[derive(Debug, Default)]
pub(crate) struct Changes<'a> {
    pub(crate) managers: Vec<(&'a str, Option<&'a str>)>,
    pub(crate) deltas: BTreeMap<String, i64>,
}

impl Index {
    /// The lines as stored.
    async fn read(conn: &mut sqlx::AnyConnection) -> Result<Self> {
        let mut index = Index::default();
        let links: Vec<(String, String)> = sqlx::query_as(
            "SELECT employee_id, manager_id FROM projector_person WHERE manager_id IS NOT NULL",
        )
        .fetch_all(&mut *conn)
        .await?;
        for (person, manager) in links {
            index
                .reports
                .entry(manager.clone())
                .or_default()
                .insert(person.clone());
            index.manager.insert(person, manager);
        }
        index.counts = sqlx::query_as::<_, (String, i64)>(
            "SELECT manager_id, reports FROM projector_reports WHERE reports <> 0",
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        Ok(index)
    }

    /// The lines `changes` change: the manager of a person whose manager
    /// changes, the reports of both managers, and the count of every
    /// manager whose count changes.
    fn touched(&self, changes: &Changes<'_>) -> Keys {
        let mut touched = Keys {
            counts: changes.deltas.keys().cloned().collect(),
            ..Keys::default()
        };
        for &(person, manager) in &changes.managers {
            let before = self.manager.get(person).map(String::as_str);
            if before != manager {
                touched.managers.insert(person.to_owned());
                touched.reports.extend(before.map(str::to_owned));
                touched.reports.extend(manager.map(str::to_owned));
            }
        }
        touched
    }

    fn apply(&mut self, changes: &Changes<'_>) {
        for &(person, manager) in &changes.managers {
            if self.manager.get(person).map(String::as_str) == manager {
                continue;
            }
            if let Some(before) = self.manager.remove(person) {
                if let Some(reports) = self.reports.get_mut(&before) {
                    reports.remove(person);
                    if reports.is_empty() {
                        self.reports.remove(&before);
                    }
                }
            }
            if let Some(after) = manager {
                self.reports
                    .entry(after.to_owned())
                    .or_default()
                    .insert(person.to_owned());
                self.manager.insert(person.to_owned(), after.to_owned());
            }
        }
        for (manager, delta) in &changes.deltas {
            let count = self.counts.entry(manager.clone()).or_default();
            *count += delta;
            if *count == 0 {
                self.counts.remove(manager);
            }
        }
    }
}

/// A key in both sets.
fn common<'a>(one: &'a HashSet<String>, other: &'a HashSet<String>) -> Option<&'a String> {
    let (small, large) = if one.len() < other.len() {
        (one, other)
    } else {
        (other, one)
    };
    small.iter().find(|k| large.contains(*k))
}

impl State {
    /// Why a batch that read `reads` and changes `touched` (`None`: not
    /// known) cannot commit after the commits since it started, if it
    /// cannot: one of them changed a key it read, or read a key it
    /// changes.
    fn conflict(&self, reads: &Reads<'_>, touched: Option<&Keys>) -> Option<String> {
        if self.generation == reads.since {
            return None;
        }
        match self.log.front() {
            Some(oldest) if oldest.generation <= reads.since + 1 => {}
            _ => return Some(format!("the reporting lines ({LOG} commits since)")),
        }
        for entry in self.log.iter().filter(|e| e.generation > reads.since) {
            match &entry.changed {
                None if !reads.keys.is_empty() => {
                    return Some("the reporting lines (read again since)".to_owned());
                }
                None => {}
                Some(changed) => {
                    if let Some(line) = changed.common(&reads.keys) {
                        return Some(line);
                    }
                }
            }
            match touched {
                None if !entry.read.is_empty() => {
                    return Some("the reporting lines (not read yet)".to_owned());
                }
                None => {}
                Some(touched) => {
                    if let Some(line) = touched.common(&entry.read) {
                        return Some(format!("{line} (read by a batch that committed first)"));
                    }
                }
            }
        }
        None
    }

    /// Moves on a generation: a commit that changed `changed` (`None`:
    /// anything) and read `read`.
    fn record(&mut self, changed: Option<Keys>, read: Keys) {
        self.generation += 1;
        self.log.push_back(Entry {
            generation: self.generation,
            changed,
            read,
        });
        self.prune();
    }

    /// A batch that started at `since` is done.
    fn finish(&mut self, since: u64) {
        if let Some(count) = self.active.get_mut(&since) {
            *count -= 1;
            if *count == 0 {
                self.active.remove(&since);
            }
        }
        self.prune();
    }

    /// Forgets the commits no batch under way needs: those up to the
    /// generation the oldest of them started at (all, if none is), and
    /// any beyond [`LOG`].
    fn prune(&mut self) {
        let needed_after = self
            .active
            .first_key_value()
            .map_or(self.generation, |(since, _)| *since);
        while self
            .log
            .front()
            .is_some_and(|e| e.generation <= needed_after)
            || self.log.len() > LOG
        {
            self.log.pop_front();
        }
    }
}

/// Forgets the lines if dropped still holding the batch's reads: a commit
/// whose outcome is unknown (it failed ambiguously, or was cancelled while
/// committing).
struct Unsure<'a> {
    lines: &'a Lines,
    read: Option<Keys>,
}

impl Drop for Unsure<'_> {
    fn drop(&mut self) {
        if let Some(read) = self.read.take() {
            let mut state = self.lines.state();
            state.index = None;
            state.record(None, read);
        }
    }
}

impl Lines {
    /// Lines of the store `db`, read from it at first use.
    pub(crate) fn new(db: Db) -> Self {
        Lines {
            db,
            state: std::sync::Mutex::new(State::default()),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a batch's reads: call before the batch's transaction begins.
    /// Reads the lines from the store first if they are not in memory.
    pub(crate) async fn start(&self) -> Result<Reads<'_>> {
        if self.state().index.is_none() {
            // The connection first: whoever holds the turn has theirs.
            let mut conn = self.db.pool().acquire().await?;
            // Nothing commits while the store is read.
            let _turn = self.turn.lock().await;
            if self.state().index.is_none() {
                let index = Index::read(&mut conn).await?;
                metrics::counter!("hrsync_projector_reporting_lines_loads_total").increment(1);
                metrics::gauge!("hrsync_projector_reporting_lines_persons")
                    .set(index.manager.len() as f64);
                self.state().index = Some(index);
            }
        }
        let mut state = self.state();
        let since = state.generation;
        *state.active.entry(since).or_default() += 1;
        Ok(Reads {
            since,
            keys: Keys::default(),
            lines: Some(self),
        })
    }

    /// Forgets everything (the store was emptied or changed behind the
    /// lines): read again at next use, and every batch under way conflicts.
    pub(crate) fn forget(&self) {
        let mut state = self.state();
        state.index = None;
        state.record(None, Keys::default());
    }

    /// `read` applied to the lines. A conflict if they were forgotten since
    /// the batch started: it retries, and reads them again as it starts.
    fn read<T>(&self, read: impl FnOnce(&Index) -> T) -> Result<T> {
        match &self.state().index {
            Some(index) => Ok(read(index)),
            None => Err(ProjectError::Conflict(
                "the reporting lines (forgotten since the batch started)".to_owned(),
            )),
        }
    }

    /// Whether the lines in memory are those stored (`None`), or the first
    /// difference found. Waits for commits under way.
    pub(crate) async fn check(&self) -> Result<Option<String>> {
        let mut conn = self.db.pool().acquire().await?;
        let _turn = self.turn.lock().await;
        let stored = Index::read(&mut conn).await?;
        let state = self.state();
        let Some(kept) = &state.index else {
            return Ok(None);
        };
        let differs = |what: &str| Some(format!("{what} differ: kept vs stored"));
        Ok(if kept.manager != stored.manager {
            differs("managers")
        } else if kept.reports != stored.reports {
            differs("reports")
        } else if kept.counts != stored.counts {
            differs(&format!(
                "counts ({:?} vs {:?})",
                sorted(&kept.counts),
                sorted(&stored.counts)
            ))
        } else {
            None
        })
    }

    /// Commits a batch that read `reads` and makes `changes`: fails with a
    /// conflict, without committing, if a commit since the batch started
    /// changed a key it read or read a key it changes; otherwise awaits
    /// `commit` and applies `changes`. If `commit` fails without telling
    /// whether it applied (anything but a conflict, which rolled back), the
    /// lines are read again at next use and every batch under way that
    /// read any conflicts.
    pub(crate) async fn commit(
        &self,
        mut reads: Reads<'_>,
        changes: &Changes<'_>,
        commit: impl Future<Output = Result<()>>,
    ) -> Result<()> {
        let _turn = self.turn.lock().await;
        let touched = {
            let state = self.state();
            let touched = state.index.as_ref().map(|index| index.touched(changes));
            if let Some(what) = state.conflict(&reads, touched.as_ref()) {
                return Err(ProjectError::Conflict(what));
            }
            touched
        };
        // (Batches under way read the lines as they were until the commit
        // is applied below: they are checked against it.)
        let mut unsure = Unsure {
            lines: self,
            read: Some(std::mem::take(&mut reads.keys)),
        };
        let result = commit.await;
        if result.as_ref().is_err_and(|error| !error.is_conflict()) {
            return result;
        }
        // Committed, or rolled back (a conflict).
        let read = unsure.read.take().unwrap_or_default();
        if result.is_ok() {
            let mut state = self.state();
            match state.index.as_mut() {
                Some(index) => {
                    index.apply(changes);
                    metrics::gauge!("hrsync_projector_reporting_lines_persons")
                        .set(index.manager.len() as f64);
                    state.record(touched, read);
                }
                // Forgotten meanwhile: read again at next start.
                None => state.record(None, read),
            }
        }
        result
    }
}

fn sorted(counts: &HashMap<String, i64>) -> BTreeMap<&str, i64> {
    counts.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}

#[cfg(test)]
mod tests;
