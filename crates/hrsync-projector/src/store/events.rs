//! A batch's transaction while the batch's events are being stored.
//!
//! Storing the events is a batch's first statement and its longest one
//! (about a fifth of a batch on PostgreSQL), and the projector had nothing
//! to do while it ran. Now it runs on a task of its own ([`BatchTx::storing`])
//! while the batch folds its events into the persons it has in memory; the
//! first statement after it ([`BatchTx::get`]) waits for it.
//!
//! Folding before the store has said which events are new is safe for
//! events that sort after everything folded into the person's committed
//! state: every stored event of a person is folded into their stored state
//! (in the same transaction), so an event that sorts after all of those
//! cannot have been stored. Which of them were folded that way is given to
//! [`BatchTx::expect_new`]; if the store finds one of them stored already,
//! the person the batch took from memory was not the committed one (another
//! writer got there first), and the batch fails with a conflict, to be
//! retried with that person read from the store.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hrsync_store::{BindPadding, Null};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::ROWS;
use crate::error::{ProjectError, Result};

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// (employee id, event id) of a stored event.
pub(crate) type EventKey = (String, String);

/// An event to store.
pub(crate) struct NewEvent {
    pub(crate) event_id: String,
    pub(crate) employee_id: String,
    pub(crate) effective_ms: i64,
    pub(crate) payload: Vec<u8>,
    /// The W3C trace id it was produced in, if any.
    pub(crate) trace_id: Option<String>,
}

/// The insert of a batch's events, run on a task of its own: the
/// transaction, and the events it stored (those not stored before).
type Storing = JoinHandle<(Tx, Result<Vec<EventKey>>)>;

/// A batch's transaction, possibly still storing the batch's events.
pub(crate) struct BatchTx {
    tx: Option<Tx>,
    storing: Option<Storing>,
    /// Events folded before the store said they were new.
    expected: Vec<EventKey>,
    stored: HashSet<EventKey>,
    waited: Waited,
}

/// How long a batch waited for its events to be stored, in microseconds,
/// readable while the batch holds its transaction (for timing the phases
/// around it).
#[derive(Debug, Clone, Default)]
pub(crate) struct Waited(Arc<AtomicU64>);

impl Waited {
    /// Microseconds waited so far.
    pub(crate) fn us(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, us: u64) {
        self.0.fetch_add(us, Ordering::Relaxed);
    }
}

impl BatchTx {
    /// A transaction with nothing under way.
    pub(crate) fn ready(tx: Tx) -> Self {
        BatchTx {
            tx: Some(tx),
            storing: None,
            expected: Vec::new(),
            stored: HashSet::new(),
            waited: Waited::default(),
        }
    }

    /// A transaction storing `events` (received at `now_ms`) on a task of
    /// its own.
    ///
    /// If the batch is dropped before it waits for it, the task still ends
    /// the statement, then rolls the transaction back.
    pub(crate) fn storing(mut tx: Tx, events: Vec<NewEvent>, now_ms: i64) -> Self {
        // (In the batch's span, so that the statement's events are the
        // batch's.)
        let task = tokio::spawn(
            async move {
                let stored = store_events(&mut tx, &events, now_ms).await;
                (tx, stored)
            }
            .in_current_span(),
        );
        BatchTx {
            tx: None,
            storing: Some(task),
            expected: Vec::new(),
            stored: HashSet::new(),
            waited: Waited::default(),
        }
    }

    /// Events the batch folded before the store said they were new: the
    /// store must have stored every one of them (see the module's
    /// documentation), or [`BatchTx::get`] fails with a conflict.
    pub(crate) fn expect_new(&mut self, events: Vec<EventKey>) {
        self.expected = events;
    }

    /// The transaction, once the events are stored.
    ///
    /// # Errors
    /// The insert's error, or a conflict if an event expected to be new
    /// was stored before.
    pub(crate) async fn get(&mut self) -> Result<&mut Tx> {
        if let Some(task) = self.storing.take() {
            let started = std::time::Instant::now();
            let (tx, stored) = match task.await {
                Ok(done) => done,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => {
                    return Err(ProjectError::build(
                        "(batch)",
                        format!("storing the events: {error}"),
                    ))
                }
            };
            self.waited
                .add(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            self.stored = stored?.into_iter().collect();
            if let Some((employee, event)) =
                self.expected.iter().find(|key| !self.stored.contains(*key))
            {
                // (The transaction rolls back as it is dropped.)
                return Err(ProjectError::Conflict(format!(
                    "event {event} of {employee}, folded as new, was stored already \
                     (the person's state in memory was not the committed one)"
                )));
            }
            self.expected = Vec::new();
            self.tx = Some(tx);
        }
        self.tx.as_mut().ok_or_else(used_after_failure)
    }

    /// Whether the store stored this event (it was not stored before).
    /// Only once [`BatchTx::get`] returned.
    pub(crate) fn stored(&self, employee_id: &str, event_id: &str) -> bool {
        // (A lookup by borrowed pair would need another key type; batches
        // ask this only of the events they could not fold ahead.)
        self.stored
            .contains(&(employee_id.to_owned(), event_id.to_owned()))
    }

    /// How many events the store stored.
    pub(crate) fn stored_count(&self) -> usize {
        self.stored.len()
    }

    /// How long [`BatchTx::get`] waited for the events to be stored
    /// (shared: it can be read while the transaction is in use).
    pub(crate) fn waited(&self) -> Waited {
        self.waited.clone()
    }

    /// The transaction, to commit.
    ///
    /// # Errors
    /// As [`BatchTx::get`].
    pub(crate) async fn into_inner(mut self) -> Result<Tx> {
        self.get().await?;
        self.tx.take().ok_or_else(used_after_failure)
    }
}

/// A batch went on with its transaction after an error (a bug).
fn used_after_failure() -> ProjectError {
    ProjectError::build("(batch)", "the transaction was used after it failed")
}

/// Stores `events`, those not stored before, and returns which ones it
/// stored. An event is known by its person and its id.
///
/// Nearly every batch's events are all new, so they are first inserted
/// plainly, inside a savepoint: on PostgreSQL a plain insert costs less
/// than one that checks each row for a conflict and returns the rows it
/// inserted. An event stored before (a repeat, or one the priority lane
/// applied first) fails that insert with a unique violation; the savepoint
/// is rolled back and the events are inserted again, skipping the stored
/// ones and returning the rest.
async fn store_events(tx: &mut Tx, events: &[NewEvent], now_ms: i64) -> Result<Vec<EventKey>> {
    use sqlx::Acquire as _;
    let mut savepoint = tx.begin().await?;
    match insert_events(&mut savepoint, events, now_ms, Insert::Plain).await {
        Ok(_) => {
            savepoint.commit().await?;
            return Ok(events
                .iter()
                .map(|e| (e.employee_id.clone(), e.event_id.clone()))
                .collect());
        }
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
            savepoint.rollback().await?;
        }
        Err(error) => return Err(error.into()),
    }
    Ok(insert_events(tx, events, now_ms, Insert::SkippingStored).await?)
}

/// How [`insert_events`] treats an event stored before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Insert {
    /// It fails the statement.
    Plain,
    /// It is skipped; the statement returns the events it inserted.
    SkippingStored,
}

/// The column types of a `projector_event` row as [`insert_events`] writes
/// it, for its padding rows.
const EVENT_ROW: [Null; 6] = [
    Null::Text,   // event_id
    Null::Text,   // employee_id
    Null::BigInt, // effective_at_ms
    Null::Blob,   // payload
    Null::BigInt, // received_at_ms
    Null::Text,   // trace_id
];

/// Inserts `events` (one statement per chunk); with
/// [`Insert::SkippingStored`], returns those it inserted.
async fn insert_events(
    conn: &mut sqlx::AnyConnection,
    events: &[NewEvent],
    now_ms: i64,
    insert: Insert,
) -> Result<Vec<EventKey>, sqlx::Error> {
    let mut stored = Vec::new();
    for chunk in events.chunks(ROWS) {
        let slots = hrsync_store::padded_rows(chunk.len(), ROWS);
        let sql = format!(
            "INSERT INTO projector_event \
             (event_id, employee_id, effective_at_ms, payload, received_at_ms, trace_id) {}{}",
            hrsync_store::padded_values(slots, EVENT_ROW.len()),
            match insert {
                Insert::Plain => "",
                Insert::SkippingStored => {
                    " ON CONFLICT (employee_id, event_id) DO NOTHING RETURNING employee_id, event_id"
                }
            }
        );
        let mut query = sqlx::query_as::<_, EventKey>(&sql);
        for event in chunk {
            query = query
                .bind(event.event_id.as_str())
                .bind(event.employee_id.as_str())
                .bind(event.effective_ms)
                .bind(event.payload.as_slice())
                .bind(now_ms)
                .bind(event.trace_id.as_deref());
        }
        query = query.bind_padding(slots - chunk.len(), &EVENT_ROW);
        match insert {
            Insert::Plain => {
                query.fetch_optional(&mut *conn).await?;
            }
            Insert::SkippingStored => stored.extend(query.fetch_all(&mut *conn).await?),
        }
    }
    Ok(stored)
}
