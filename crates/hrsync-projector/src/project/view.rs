//! A person as `hrsync user show` prints them.

use super::person::PersonRow;
use super::Projector;
use crate::error::Result;
use crate::state::PersonState;

/// What `hrsync user show` prints.
#[derive(Debug, Clone)]
pub struct PersonView {
    /// Person id.
    pub person_id: String,
    /// Last emitted version.
    pub version: i64,
    /// The folded state.
    pub state: PersonState,
    /// Last emitted lifecycle state.
    pub lifecycle: Option<String>,
    /// Last emitted groups.
    pub groups: Vec<String>,
    /// Last emitted apps.
    pub apps: Vec<String>,
    /// The person's most recent events (at most 20), newest first.
    pub recent: Vec<SeenEvent>,
}

/// How many recent events `hrsync user show` prints.
const RECENT_EVENTS: usize = 20;

/// One event a person has seen, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenEvent {
    /// Event id.
    pub event_id: String,
    /// Kind.
    pub kind: String,
    /// Source system.
    pub source: String,
    /// Effective time as the fold uses it, ms since the epoch.
    pub effective_ms: i64,
    /// When it happened in the HR system (its `occurred_at`), ms since the
    /// epoch.
    pub occurred_ms: i64,
    /// When the projector recorded it, ms since the epoch.
    pub recorded_ms: i64,
    /// The W3C trace id it was produced in, if it came with one.
    pub trace_id: Option<String>,
}

impl Projector {
    /// A person's stored state, for `hrsync user show`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn person(&self, employee_id: &str) -> Result<Option<PersonView>> {
        let mut tx = self.store.reading().await?;
        let loaded = tx
            .load_people(std::iter::once(employee_id), PersonRow::parse)
            .await?;
        let Some((_, row)) = loaded.into_iter().next() else {
            return Ok(None);
        };
        let mut events = tx.stored_events(employee_id).await?;
        tx.into_inner().await?.commit().await?;
        // Newest first, in the fold's order.
        events.sort_by_cached_key(|s| std::cmp::Reverse(crate::state::sort_key(&s.event)));
        let recent = events
            .into_iter()
            .take(RECENT_EVENTS)
            .map(|stored| {
                let e = &stored.event;
                SeenEvent {
                    event_id: e.event_id.to_string(),
                    kind: e.kind().as_str().to_owned(),
                    source: e.source_system.as_str().to_owned(),
                    effective_ms: crate::state::effective_ms(e),
                    occurred_ms: e.occurred_at.as_millis(),
                    recorded_ms: stored.received_ms,
                    trace_id: stored.trace_id,
                }
            })
            .collect();
        Ok(Some(PersonView {
            person_id: row.person_id,
            version: row.version,
            state: row.state,
            lifecycle: row.emitted.lifecycle,
            groups: row.emitted.groups,
            apps: row.emitted.apps,
            recent,
        }))
    }
}
