//! Applying lifecycle events to the profile store, in batches, with the
//! consumed offsets and the resulting directory changes written in the same
//! transaction (the outbox).
//!
//! - `batch`: a batch, load → fold → evaluate → write → commit.
//! - `person`: a person as a batch holds them.
//! - `inputs`: whom else a batch evaluates, their report counts and
//!   manager chains.
//! - `evaluate`: the rules over a person, and the directory change when
//!   their desired state changed.
//! - `timing`: where a batch's time goes, timed around each phase.
//! - `view`: a person for `hrsync user show`.
//! - `explain`: why a person is in each group, for the admin API.
//! - `preview`: what a change of the rules would do, for the admin API.

mod batch;
mod evaluate;
mod explain;
mod inputs;
mod person;
mod preview;
mod search;
mod timing;
mod view;

use std::collections::BTreeMap;
use std::sync::Arc;

use hrsync_domain::LifecycleEvent;
use hrsync_store::Db;

use crate::config::ProjectorConfig;
use crate::feed::Feed;
use crate::rules::RuleSet;
use crate::store::{BatchTx, Lookup, Store};

use crate::error::Result;
pub use crate::error::{PreviewError, ProjectError};
pub use crate::explain::{AppExplanation, GroupExplanation, RuleInput};
pub use crate::store::PersonQuery;
pub use crate::store::{OutboxRow, Position};
pub use explain::Explanation;
pub use person::person_id_of;
pub use preview::{Movement, PersonChange, PreviewOptions, RulesPreview, PREVIEW_LIMIT};
pub use search::{PersonPage, PersonSummary};
pub use timing::Phases;
pub use view::{PersonView, SeenEvent};

/// A consumed event with the bytes it arrived as (stored as they are).
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    /// The decoded event.
    pub event: LifecycleEvent,
    /// Its Avro single-object encoding, as consumed.
    pub payload: &'a [u8],
    /// The W3C `traceparent` it was produced in, if any.
    pub traceparent: Option<String>,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// New events applied.
    pub applied: usize,
    /// Events already seen (dropped).
    pub duplicates: usize,
    /// Directory changes written to the outbox.
    pub changes: usize,
    /// Of those, fast-lane changes.
    pub priority_changes: usize,
    /// Where the batch's time went.
    pub phases: Phases,
}

/// The profile store and the logic that turns events into directory changes.
#[derive(Debug, Clone)]
pub struct Projector {
    store: Store,
    config: Arc<ProjectorConfig>,
    rules: Arc<RuleSet>,
    prehire_offsets: Arc<Vec<i64>>,
    /// Where committed outbox rows are offered to the publisher, if one
    /// runs in this process.
    feed: Option<Arc<Feed>>,
    /// Awaited before a batch commits (tests hold a batch there).
    before_commit: Option<BeforeCommit>,
}

/// What [`Projector::with_before_commit`] awaits.
type Hook =
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync;

/// See [`Projector::with_before_commit`].
#[derive(Clone)]
struct BeforeCommit(Arc<Hook>);

impl std::fmt::Debug for BeforeCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeCommit")
    }
}

impl Projector {
    /// A projector over a migrated store.
    ///
    /// # Errors
    /// The rules do not compile.
    pub fn new(db: Db, config: ProjectorConfig) -> Result<Self, crate::rules::RuleError> {
        let rules = RuleSet::compile(&config.rules)?;
        let prehire_offsets = config.prehire_offsets_ms();
        let store = Store::new(db, config.person_cache);
        Ok(Projector {
            store,
            config: Arc::new(config),
            rules: Arc::new(rules),
            prehire_offsets: Arc::new(prehire_offsets),
            feed: None,
            before_commit: None,
        })
    }

    /// This projector as the only writer of its store, which `claim`
    /// proves (see [`hrsync_store::Db::try_claim`]): it keeps the reporting
    /// lines (managers, reports, report counts) in memory instead of
    /// reading them from the store in every batch. Its clones share them;
    /// nothing else may write the store while they live.
    #[must_use]
    pub fn with_store_to_itself(&self, claim: &hrsync_store::Claim) -> Self {
        let _ = claim;
        let mut owning = self.clone();
        owning.store = self.store.with_lines_in_memory();
        owning
    }

    /// Whether the reporting lines kept in memory (if any) are those
    /// stored: `None`, or the first difference. For tests.
    ///
    /// # Errors
    /// Database failures.
    #[doc(hidden)]
    pub async fn reporting_lines_differ(&self) -> Result<Option<String>> {
        self.store.lines_differ().await
    }

    /// Where a batch starting now reads the reporting lines; before its
    /// transaction begins. Rules that read none leave them in the store
    /// (never read).
    async fn lookup(&self) -> Result<Lookup<'_>> {
        let reads = self.rules.reads_direct_reports() || self.rules.reads_manager_chain();
        self.store.lookup(reads).await
    }

    /// Reads the reporting lines (if kept) from the store again at next
    /// use: the store may have been written behind them.
    pub(crate) fn forget_lines(&self) {
        self.store.forget_lines();
    }

    /// This projector, awaiting `hook` in every batch of
    /// [`Projector::apply_batch`] just before it commits. For tests that
    /// hold a batch there to run other writers beside it.
    #[doc(hidden)]
    #[must_use]
    pub fn with_before_commit(
        &self,
        hook: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        let mut hooked = self.clone();
        hooked.before_commit = Some(BeforeCommit(Arc::new(hook)));
        hooked
    }

    /// This projector, offering the outbox rows it commits to `feed`.
    #[must_use]
    pub(crate) fn with_feed(mut self, feed: Arc<Feed>) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Offers the rows of a transaction that committed to the feed; a
    /// failure may have come after the commit (its rows are then only in
    /// the table), so it breaks the feed off.
    fn hand_off<T>(&self, result: Result<(T, Vec<OutboxRow>)>) -> Result<T> {
        match (result, &self.feed) {
            (Ok((done, rows)), Some(feed)) => {
                feed.push(rows);
                Ok(done)
            }
            (Ok((done, _)), None) => Ok(done),
            (Err(error), Some(feed)) => {
                feed.break_off();
                Err(error)
            }
            (Err(error), None) => Err(error),
        }
    }

    /// The store.
    pub fn db(&self) -> &Db {
        self.store.db()
    }

    /// The configuration.
    pub fn config(&self) -> &ProjectorConfig {
        &self.config
    }

    /// Starts a rebuild: remembers every person's last emitted version,
    /// then empties the store (state, events, offsets, outbox, rules
    /// fingerprint), so the next run replays the log from the beginning.
    ///
    /// # Errors
    /// Database failures roll back.
    pub async fn begin_rebuild(&self) -> Result<()> {
        self.store.begin_rebuild().await
    }

    /// Ends a rebuild: drops the changes the replay produced (downstream
    /// already has them) and continues every person's version above the one
    /// emitted before the rebuild.
    ///
    /// # Errors
    /// Database failures roll back.
    pub async fn finish_rebuild(&self) -> Result<()> {
        self.store.finish_rebuild().await
    }

    /// The stored next offset of a partition, if any.
    ///
    /// # Errors
    /// Database failures.
    pub async fn stored_offset(
        &self,
        consumer: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>> {
        self.store.stored_offset(consumer, topic, partition).await
    }

    /// Applies `events` (decoded, in consumption order) and stores
    /// `positions`, all in one transaction.
    ///
    /// The transaction is serializable (see
    /// [`hrsync_store::Db::begin_serializable`]): a batch that read persons,
    /// report counts or manager chains that another batch changed meanwhile
    /// fails with a conflict ([`ProjectError::is_conflict`]) instead of
    /// storing a result computed from what it read.
    ///
    /// # Errors
    /// Database failures and conflicts roll everything back.
    pub async fn apply_batch(
        &self,
        events: &[Incoming<'_>],
        positions: &[Position],
        now_ms: i64,
    ) -> Result<BatchOutcome> {
        let result = self.apply_batch_tx(events, positions, now_ms).await;
        self.hand_off(result)
    }

    /// Re-evaluates persons whose time-driven transition is due (start,
    /// pre-hire window, termination) and emits those whose desired state
    /// changed. Returns the number of changes.
    ///
    /// # Errors
    /// Database failures roll back.
    pub async fn run_due(&self, now_ms: i64) -> Result<usize> {
        let result = self.run_due_tx(now_ms).await;
        self.hand_off(result)
    }

    async fn run_due_tx(&self, now_ms: i64) -> Result<(usize, Vec<OutboxRow>)> {
        let lookup = self.lookup().await?;
        let mut tx = BatchTx::ready(self.store.begin_batch().await?);
        let due = tx.due(now_ms).await?;
        if due.is_empty() {
            return Ok((0, Vec::new()));
        }
        let rows = self.evaluate_and_commit(tx, lookup, &due, now_ms).await?;
        Ok((rows.len(), rows))
    }

    /// Re-evaluates everyone if the rules changed since the last run; emits
    /// only the persons whose result changed. Returns the number of changes,
    /// or `None` if the rules were unchanged.
    ///
    /// # Errors
    /// Database failures roll back.
    pub async fn reevaluate_if_rules_changed(&self, now_ms: i64) -> Result<Option<usize>> {
        let fingerprint = self.rules.fingerprint();
        let stored = self.store.rules_fingerprint().await?;
        if stored.as_deref() == Some(fingerprint.as_str()) {
            return Ok(None);
        }
        let ids = self.store.employee_ids().await?;
        let mut changes = 0;
        for chunk in ids.chunks(1000) {
            let result = self.reevaluate_tx(chunk, now_ms).await;
            changes += self.hand_off(result)?;
        }
        self.store.set_rules_fingerprint(&fingerprint).await?;
        Ok(Some(changes))
    }

    /// Re-evaluates the persons `ids` in one transaction.
    async fn reevaluate_tx(&self, ids: &[String], now_ms: i64) -> Result<(usize, Vec<OutboxRow>)> {
        let lookup = self.lookup().await?;
        let tx = BatchTx::ready(self.store.begin_batch().await?);
        let rows = self.evaluate_and_commit(tx, lookup, ids, now_ms).await?;
        Ok((rows.len(), rows))
    }

    /// The oldest outbox rows' changes (those of a pack together, however
    /// many), until there are `limit` or the outbox ends.
    ///
    /// # Errors
    /// Database failures; a pack that does not decode.
    pub async fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>> {
        self.store.outbox(limit).await
    }

    /// The changes whose priority copy has not been sent, from the oldest
    /// rows holding any (whole rows, until there are `limit`), however many
    /// other rows are ahead of them: the fast lane does not queue behind a
    /// backlog of creates and updates.
    ///
    /// # Errors
    /// Database failures; a pack that does not decode.
    pub async fn outbox_priority(&self, limit: i64) -> Result<Vec<OutboxRow>> {
        self.store.outbox_priority(limit).await
    }

    /// Records that these rows' priority copies were sent; the rows stay
    /// until they are published on the main topic too.
    ///
    /// # Errors
    /// Database failures.
    pub async fn priority_sent(&self, seqs: &[i64]) -> Result<()> {
        self.store.priority_sent(seqs).await
    }

    /// Removes the published outbox rows `seqs`, and only those.
    ///
    /// Not "every row up to the last one published": sequence numbers are
    /// taken at insert and rows become visible at commit, so a row with a
    /// lower number (a main batch that inserted first and committed after
    /// the priority lane) can appear after the rows above it were read, and
    /// would be deleted unpublished.
    ///
    /// # Errors
    /// Database failures.
    pub async fn delete_outbox(&self, seqs: &[i64]) -> Result<()> {
        self.store.delete_outbox(seqs).await
    }

    /// How many persons are stored.
    ///
    /// # Errors
    /// Database failures.
    pub async fn person_count(&self) -> Result<i64> {
        self.store.person_count().await
    }

    /// Every stored person's version, state (as JSON) and last emitted
    /// result, by employee id (for comparing a rebuild with the original).
    ///
    /// # Errors
    /// Database failures; a state that cannot be read.
    pub async fn dump(&self) -> Result<BTreeMap<String, (i64, String, String)>> {
        self.store.dump().await
    }
}
