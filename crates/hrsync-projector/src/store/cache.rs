//! Persons' rows as this process last wrote them, kept after the commit,
//! so that a batch does not read its own persons back from the store. A
//! row is kept as stored (the state in its binary form: about 1.2 KiB of
//! heap) and parsed when a batch takes it, as a row read from the store
//! would be.
//!
//! A batch takes its persons out of the cache and the cache has them again
//! once the batch commits; a batch that fails leaves them out, so its retry
//! reads them from the store. A cached row may still be stale: another
//! lane, the timer or another process may have written the person since.
//! That is safe because a batch writes back every person it took from the
//! cache, and the write checks the stored revision (`revision + 1`): a
//! stale row fails the batch with a conflict.

use std::collections::HashMap;

/// A row with a revision: the cache keeps the newest one it was given.
pub(crate) trait Revised {
    fn revision(&self) -> i64;
}

/// At most `capacity` rows by employee id.
#[derive(Debug)]
pub(crate) struct PersonCache<R> {
    rows: HashMap<String, R>,
    capacity: usize,
}

impl<R: Revised> PersonCache<R> {
    pub(crate) fn new(capacity: usize) -> Self {
        PersonCache {
            rows: HashMap::new(),
            capacity,
        }
    }

    /// Takes a person's row out: a batch writes it back and the cache has
    /// it again only once that batch commits.
    pub(crate) fn take(&mut self, employee_id: &str) -> Option<R> {
        self.rows.remove(employee_id)
    }

    /// Keeps `rows` as committed, unless a newer revision of a person is
    /// kept already (a later commit by another lane that got here first).
    pub(crate) fn remember(&mut self, rows: impl IntoIterator<Item = (String, R)>) {
        if self.capacity == 0 {
            return;
        }
        for (id, row) in rows {
            match self.rows.get_mut(&id) {
                Some(kept) if kept.revision() > row.revision() => {}
                Some(kept) => *kept = row,
                None => {
                    if self.rows.len() >= self.capacity {
                        self.evict();
                    }
                    self.rows.insert(id, row);
                }
            }
        }
    }

    /// Drops every row (the store was changed behind the revisions).
    pub(crate) fn clear(&mut self) {
        self.rows.clear();
    }

    /// Makes room: drops a tenth of the rows (whichever the map yields
    /// first).
    fn evict(&mut self) {
        let drop: Vec<String> = self
            .rows
            .keys()
            .take(self.capacity / 10 + 1)
            .cloned()
            .collect();
        for id in drop {
            self.rows.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Row(i64, &'static str);

    impl Revised for Row {
        fn revision(&self) -> i64 {
            self.0
        }
    }

    fn rows(rows: &[(&str, i64, &'static str)]) -> Vec<(String, Row)> {
        rows.iter()
            .map(|(id, revision, value)| ((*id).to_owned(), Row(*revision, value)))
            .collect()
    }

    #[test]
    fn a_taken_row_is_gone_until_remembered_again() {
        let mut cache = PersonCache::new(10);
        cache.remember(rows(&[("E1", 1, "a")]));
        assert_eq!(cache.take("E1"), Some(Row(1, "a")));
        assert_eq!(cache.take("E1"), None);
        cache.remember(rows(&[("E1", 2, "b")]));
        assert_eq!(cache.take("E1"), Some(Row(2, "b")));
    }

    #[test]
    fn an_older_revision_does_not_replace_a_newer_one() {
        let mut cache = PersonCache::new(10);
        cache.remember(rows(&[("E1", 3, "newer")]));
        cache.remember(rows(&[("E1", 2, "older")]));
        assert_eq!(cache.take("E1"), Some(Row(3, "newer")));
        cache.remember(rows(&[("E1", 3, "same"), ("E1", 4, "newest")]));
        assert_eq!(cache.take("E1"), Some(Row(4, "newest")));
    }

    #[test]
    fn it_holds_at_most_its_capacity() {
        let mut cache = PersonCache::new(100);
        let many: Vec<(String, Row)> = (0..1000).map(|i| (format!("E{i}"), Row(1, "x"))).collect();
        cache.remember(many);
        assert!(cache.rows.len() <= 100, "{} rows kept", cache.rows.len());
        assert!(cache.rows.len() >= 90, "{} rows kept", cache.rows.len());
        // The last one remembered is among them.
        assert_eq!(cache.take("E999"), Some(Row(1, "x")));
    }

    #[test]
    fn capacity_zero_keeps_nothing_and_clear_drops_everything() {
        let mut off = PersonCache::new(0);
        off.remember(rows(&[("E1", 1, "a")]));
        assert_eq!(off.take("E1"), None);

        let mut cache = PersonCache::new(10);
        cache.remember(rows(&[("E1", 1, "a"), ("E2", 1, "b")]));
        cache.clear();
        assert_eq!((cache.take("E1"), cache.take("E2")), (None, None));
    }
}
