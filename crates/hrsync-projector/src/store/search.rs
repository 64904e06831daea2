//! The person search of the admin API over `projector_person`: by text
//! (employee id, names, e-mail addresses), lifecycle, group and app, in
//! employee id order, a page at a time.

use hrsync_store::Where;
use sqlx::Row;

use super::Store;
use crate::error::Result;

/// Which persons to find.
#[derive(Debug, Clone, Default)]
pub struct PersonQuery {
    /// Part of the employee id, a name or an e-mail address (any case).
    pub text: Option<String>,
    /// Only persons in this lifecycle state (`ACTIVE`, ...).
    pub lifecycle: Option<String>,
    /// Only members of this group.
    pub group: Option<String>,
    /// Only persons assigned this app.
    pub app: Option<String>,
    /// Only persons after this employee id (the last of the previous page).
    pub after: Option<String>,
    /// At most this many rows are read for a page.
    pub limit: i64,
}

/// A stored person's row as the search reads it.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) employee_id: String,
    pub(crate) person_id: String,
    pub(crate) lifecycle: String,
    pub(crate) emitted: String,
    pub(crate) state: Vec<u8>,
}

/// `text` as a `LIKE` pattern matching it anywhere, its wildcards escaped.
fn contains(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// `name` as it appears, quoted, in the emitted JSON's group and app lists.
fn quoted(name: &str) -> String {
    contains(&serde_json::Value::from(name).to_string())
}

impl Store {
    /// Up to `query.limit` persons matching the text and lifecycle, and
    /// maybe the group and app (the caller checks those exactly against the
    /// emitted lists: the match here is on their JSON text).
    pub(crate) async fn search_people(&self, query: &PersonQuery) -> Result<Vec<Found>> {
        let mut sql = Where::default();
        let mut likes = Vec::new();
        if let Some(text) = &query.text {
            likes.push(("search", contains(&text.to_lowercase())));
        }
        for name in [&query.group, &query.app].into_iter().flatten() {
            likes.push(("emitted", quoted(name)));
        }
        sql.equals("lifecycle", query.lifecycle.as_deref());
        sql.compare_text("employee_id >", query.after.as_deref());
        for (column, pattern) in &likes {
            sql.like(column, pattern);
        }
        let text = format!(
            "SELECT employee_id, person_id, lifecycle, emitted, state FROM projector_person{} \
             ORDER BY employee_id LIMIT {}",
            sql.clause(),
            query.limit.max(0)
        );
        let rows = sql
            .bind(sqlx::query(&text))
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Found {
                    employee_id: r.try_get(0)?,
                    person_id: r.try_get(1)?,
                    lifecycle: r.try_get(2)?,
                    emitted: r.try_get(3)?,
                    state: r.try_get(4)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_patterns_match_literally() {
        assert_eq!(contains("lucy_g%"), "%lucy\\_g\\%%");
        assert_eq!(quoted("Customer Support"), "%\"Customer Support\"%");
    }
}
