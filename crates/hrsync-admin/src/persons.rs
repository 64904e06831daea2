//! Persons: one person in full (profile with each attribute's source,
//! lifecycle, groups, apps, the latest events).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use hrsync_auth::Problem;
use hrsync_projector::project::PersonView;
use serde::Serialize;

use crate::AdminApi;

/// A person as the API answers.
#[derive(Debug, Serialize)]
pub(crate) struct Person {
    employee_id: String,
    person_id: String,
    /// Version of the last directory change emitted for them.
    version: i64,
    /// Lifecycle state now, from the folded state (`null` before a hire).
    lifecycle: Option<&'static str>,
    /// Lifecycle state in the last directory change emitted.
    emitted_lifecycle: Option<String>,
    time_zone: String,
    employed_from: Option<String>,
    terminates_at: Option<String>,
    terminate_immediate: bool,
    attributes: Vec<AttributeValue>,
    groups: Vec<String>,
    apps: Vec<String>,
    /// The latest events, newest first.
    events: Vec<Event>,
}

#[derive(Debug, Serialize)]
struct AttributeValue {
    name: String,
    value: String,
    /// The HR source whose value this is.
    source: Option<String>,
}

#[derive(Debug, Serialize)]
struct Event {
    event_id: String,
    kind: String,
    source: String,
    effective_at: Option<String>,
}

/// `GET /api/v1/persons/{employee_id}`.
pub(crate) async fn get_person(
    State(api): State<Arc<AdminApi>>,
    Path(employee_id): Path<String>,
) -> Result<Json<Person>, Problem> {
    let view = api.projector.person(&employee_id).await.map_err(|e| {
        tracing::warn!(error = %e, "reading a person failed");
        Problem::unavailable("the projector's store cannot be read now")
    })?;
    let Some(view) = view else {
        return Err(Problem::not_found(format!(
            "no person with employee id {employee_id:?}"
        )));
    };
    Ok(Json(person(view, Utc::now().timestamp_millis())))
}

fn person(view: PersonView, now_ms: i64) -> Person {
    let state = &view.state;
    let attributes = state
        .attributes
        .iter()
        .flat_map(|a| a.values())
        .map(|(attribute, value)| {
            let name = attribute.as_str().into_owned();
            AttributeValue {
                source: state.owners.get(&name).cloned(),
                name,
                value: value.into_owned(),
            }
        })
        .collect();
    Person {
        employee_id: state.employee_id.clone(),
        person_id: view.person_id.clone(),
        version: view.version,
        lifecycle: state.lifecycle_at(now_ms).map(|l| l.as_str()),
        emitted_lifecycle: view.lifecycle.clone(),
        time_zone: state.time_zone.clone(),
        employed_from: time(state.employed_from_ms),
        terminates_at: time(state.terminate_at_ms),
        terminate_immediate: state.terminate_immediate,
        attributes,
        groups: view.groups.clone(),
        apps: view.apps.clone(),
        events: view
            .recent
            .iter()
            .map(|e| Event {
                event_id: e.event_id.clone(),
                kind: e.kind.clone(),
                source: e.source.clone(),
                effective_at: time(Some(e.effective_ms)),
            })
            .collect(),
    }
}

/// RFC 3339 in UTC, milliseconds.
fn time(ms: Option<i64>) -> Option<String> {
    ms.and_then(DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}
