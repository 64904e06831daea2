//! Committed outbox rows handed from the writers to the publisher in
//! memory, so that the publisher need not read back from the database what
//! was written a moment ago.
//!
//! The outbox table stays the record: a row is deleted only once the broker
//! has it, and a row that is not in the feed is still found there. The feed
//! is only an offer: a writer pushes the rows of a transaction after it
//! committed; when it cannot (the feed is full, or a transaction failed after
//! writing rows, so whether they committed is unknown) the feed is marked
//! *broken*, and the publisher goes back to reading the table until it has
//! read everything, then trusts the feed again.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::store::OutboxRow;

/// The rows, and whether any row was left out since the last reset.
#[derive(Debug, Default)]
struct Inner {
    rows: VecDeque<OutboxRow>,
    broken: bool,
    /// Rows the publisher read from the table since the last reset: the
    /// same rows arriving through the feed are dropped, not sent twice.
    read: HashSet<i64>,
}

/// What [`Feed::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Rows committed since the last take, oldest first (possibly none).
    Rows(Vec<OutboxRow>),
    /// Some committed rows may be missing: read the table.
    Broken,
}

/// A bounded in-memory queue of committed outbox rows.
#[derive(Debug)]
pub(crate) struct Feed {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Feed {
    /// A feed holding at most `capacity` rows; it starts broken (the table
    /// may hold rows from before the start).
    pub(crate) fn new(capacity: usize) -> Self {
        Feed {
            inner: Mutex::new(Inner {
                broken: true,
                ..Inner::default()
            }),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Offers the rows of a committed transaction.
    pub(crate) fn push(&self, rows: Vec<OutboxRow>) {
        if rows.is_empty() {
            return;
        }
        let mut inner = self.lock();
        if inner.broken {
            return;
        }
        if inner.rows.len() + rows.len() > self.capacity {
            inner.rows.clear();
            inner.broken = true;
            return;
        }
        inner.rows.extend(rows);
    }

    /// A transaction that may have written rows did not end in a known
    /// commit: its rows, if any, are only in the table.
    pub(crate) fn break_off(&self) {
        let mut inner = self.lock();
        inner.rows.clear();
        inner.broken = true;
    }

    /// Up to `max` rows, oldest first, without those read from the table
    /// since the last reset; more, to end on a whole outbox row (the
    /// changes of a pack are deleted together, so they are sent together).
    pub(crate) fn take(&self, max: usize) -> Taken {
        let mut inner = self.lock();
        if inner.broken {
            return Taken::Broken;
        }
        let mut n = inner.rows.len().min(max);
        while n > 0 && n < inner.rows.len() && inner.rows[n].seq == inner.rows[n - 1].seq {
            n += 1;
        }
        let rows: Vec<OutboxRow> = inner.rows.drain(..n).collect();
        let rows = if inner.read.is_empty() {
            rows
        } else {
            rows.into_iter()
                .filter(|r| !inner.read.contains(&r.seq))
                .collect()
        };
        Taken::Rows(rows)
    }

    /// Before reading the table: forget what the feed holds (the read finds
    /// it) and trust it again from now on.
    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        inner.rows.clear();
        inner.read.clear();
        inner.broken = false;
    }

    /// After reading the table: `seqs` were read there (and will be sent);
    /// rows committed after the reset may be among them.
    pub(crate) fn read_from_table(&self, seqs: impl IntoIterator<Item = i64>) {
        self.lock().read.extend(seqs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64) -> OutboxRow {
        OutboxRow {
            seq,
            person_id: format!("p-{seq}"),
            payload: vec![1, 2, 3],
            priority: seq % 2 == 0,
            traceparent: None,
        }
    }

    fn seqs(taken: Taken) -> Vec<i64> {
        match taken {
            Taken::Rows(rows) => rows.iter().map(|r| r.seq).collect(),
            Taken::Broken => panic!("feed broken"),
        }
    }

    #[test]
    fn starts_broken_until_the_table_was_read() {
        let feed = Feed::new(10);
        feed.push(vec![row(1)]);
        assert_eq!(feed.take(10), Taken::Broken);
        feed.reset();
        feed.push(vec![row(2), row(3)]);
        feed.push(vec![row(4)]);
        assert_eq!(seqs(feed.take(2)), [2, 3]);
        assert_eq!(seqs(feed.take(10)), [4]);
        assert_eq!(seqs(feed.take(10)), Vec::<i64>::new());
    }

    #[test]
    fn the_changes_of_one_outbox_row_are_taken_together() {
        let feed = Feed::new(10);
        feed.reset();
        feed.push(vec![row(1), row(2), row(2), row(2), row(3)]);
        assert_eq!(seqs(feed.take(2)), [1, 2, 2, 2]);
        assert_eq!(seqs(feed.take(2)), [3]);
    }

    #[test]
    fn overflow_breaks_the_feed_and_drops_what_it_held() {
        let feed = Feed::new(3);
        feed.reset();
        feed.push(vec![row(1), row(2)]);
        feed.push(vec![row(3), row(4)]);
        assert_eq!(feed.take(10), Taken::Broken);
        // Later pushes are dropped too until the table was read again.
        feed.push(vec![row(5)]);
        assert_eq!(feed.take(10), Taken::Broken);
        feed.reset();
        assert_eq!(seqs(feed.take(10)), Vec::<i64>::new());
    }

    #[test]
    fn a_failed_transaction_breaks_the_feed() {
        let feed = Feed::new(10);
        feed.reset();
        feed.push(vec![row(1)]);
        feed.break_off();
        assert_eq!(feed.take(10), Taken::Broken);
    }

    #[test]
    fn rows_read_from_the_table_are_not_sent_again() {
        let feed = Feed::new(10);
        feed.reset();
        // Committed after the reset, before the table was read: in both.
        feed.push(vec![row(7)]);
        feed.read_from_table([5, 6, 7]);
        feed.push(vec![row(8)]);
        assert_eq!(seqs(feed.take(10)), [8]);
        // The next reset forgets them.
        feed.reset();
        feed.push(vec![row(7)]);
        assert_eq!(seqs(feed.take(10)), [7]);
    }
}
