//! Finding persons for the admin API: by part of the employee id, a name or
//! an e-mail address, by lifecycle, group and app, a page at a time.

use serde::Serialize;

use super::person::Emitted;
use super::Projector;
use crate::error::{ProjectError, Result};
use crate::state::PersonState;
use crate::store::PersonQuery;

/// A person as a search lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonSummary {
    /// HR employee id.
    pub employee_id: String,
    /// hrsync's person id.
    pub person_id: String,
    /// Display name, else given and family name.
    pub name: String,
    /// Work e-mail address, if any.
    pub work_email: Option<String>,
    /// Lifecycle state as last stored.
    pub lifecycle: String,
    /// Groups as last emitted.
    pub groups: Vec<String>,
    /// Apps as last emitted.
    pub apps: Vec<String>,
}

/// A page of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonPage {
    /// The persons found, by employee id.
    pub persons: Vec<PersonSummary>,
    /// Where the next page starts (pass as [`PersonQuery::after`]); `None`
    /// when no person is left.
    pub next_after: Option<String>,
}

impl Projector {
    /// The persons `query` selects, in employee id order.
    ///
    /// # Errors
    /// Database failures; a stored row that does not parse.
    pub async fn search_persons(&self, query: &PersonQuery) -> Result<PersonPage> {
        let rows = self.store.search_people(query).await?;
        let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= query.limit;
        let next_after = rows.last().filter(|_| full).map(|r| r.employee_id.clone());
        let mut persons = Vec::new();
        for row in rows {
            let emitted: Emitted = serde_json::from_str(&row.emitted)
                .map_err(|e| ProjectError::build(&row.employee_id, e))?;
            let wanted = |name: &Option<String>, list: &[String]| {
                name.as_ref().is_none_or(|n| list.contains(n))
            };
            if !wanted(&query.group, &emitted.groups) || !wanted(&query.app, &emitted.apps) {
                continue;
            }
            let state = PersonState::from_stored(&row.state)
                .map_err(|e| ProjectError::build(&row.employee_id, e))?;
            let attributes = state.attributes.as_ref();
            persons.push(PersonSummary {
                name: attributes.map_or_else(String::new, |a| {
                    a.display_name
                        .clone()
                        .unwrap_or_else(|| format!("{} {}", a.given_name, a.family_name))
                }),
                work_email: attributes.and_then(|a| a.work_email.clone()),
                employee_id: row.employee_id,
                person_id: row.person_id,
                lifecycle: row.lifecycle,
                groups: emitted.groups,
                apps: emitted.apps,
            });
        }
        Ok(PersonPage {
            persons,
            next_after,
        })
    }
}
