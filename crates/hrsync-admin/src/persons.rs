//! Persons: one person in full (profile with each attribute's source,
//! lifecycle, groups, apps, each app's account with its last operations,
//! the latest events), and provision-now (an admin action).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use chrono::Utc;
use hrsync_auth::{Principal, Problem};
use hrsync_projector::project::{
    AppExplanation, GroupExplanation, PersonQuery, PersonSummary, PersonView,
};
use hrsync_projector::state::PersonState;
use hrsync_provisioner::run::AdminError;
use hrsync_provisioner::store::accounts::{self, Account as StoredAccount};
use hrsync_provisioner::store::tasks;
use serde::Deserialize;
use serde::Serialize;
use serde_json::json;

use crate::apps::Applied;
use crate::audit::{last_operations, AuditItem};
use crate::paging::{self, Page, Params};
use crate::{actions, unavailable, AdminApi};

/// How many operations per app a person's view lists.
const OPERATIONS_PER_APP: i64 = 5;

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
    /// What will change by itself, soonest first.
    upcoming: Vec<Upcoming>,
    attributes: Vec<AttributeValue>,
    groups: Vec<String>,
    apps: Vec<String>,
    /// Why the person is, or is not, in each group (the rule, and the value
    /// of each input it read) and has each app (the groups granting it),
    /// under the rules in force.
    why: Option<Why>,
    /// Each app's account as the provisioner last left it.
    accounts: Vec<Account>,
    /// The person's accounts in manual-task apps, as last asked of people.
    manual_accounts: Vec<ManualAccount>,
    /// The latest events, newest first.
    events: Vec<Event>,
}

/// The rules' view of a person.
#[derive(Debug, Serialize)]
struct Why {
    rules_fingerprint: String,
    groups: Vec<GroupExplanation>,
    apps: Vec<AppExplanation>,
}

/// A person's account in one app.
#[derive(Debug, Serialize)]
struct Account {
    app: String,
    /// `null` when the person has no account there (any more, or yet).
    scim_id: Option<String>,
    active: bool,
    /// `ok`, or `failed` when the last change could not be applied.
    status: String,
    last_error: Option<String>,
    applied_version: i64,
    groups: Vec<String>,
    updated_at: Option<String>,
    /// The latest SCIM operations for it, newest first.
    last_operations: Vec<AuditItem>,
}

/// A person's account in a manual-task app (one they are assigned, or
/// one asked for), as last asked of people through its tasks.
#[derive(Debug, Serialize)]
struct ManualAccount {
    app: String,
    /// A create was asked for (its task may still be open).
    asked: bool,
    /// Enabled, as last asked.
    active: bool,
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
    /// When it happened in the HR system.
    occurred_at: Option<String>,
    /// When hrsync's projector recorded it.
    recorded_at: Option<String>,
    /// The W3C trace id it was produced in (look it up in the tracing
    /// backend to follow it from ingest to each app).
    trace_id: Option<String>,
}

/// A change the person's state will go through by itself, with time.
#[derive(Debug, Serialize)]
struct Upcoming {
    /// `start` (a pre-hire becomes active), `leave_start`, `leave_end` or
    /// `termination`.
    transition: &'static str,
    at: Option<String>,
}

/// `GET /api/v1/persons/{employee_id}`.
pub(crate) async fn get_person(
    State(api): State<Arc<AdminApi>>,
    Path(employee_id): Path<String>,
) -> Result<Json<Person>, Problem> {
    let view = api
        .projector
        .person(&employee_id)
        .await
        .map_err(unavailable)?;
    let Some(view) = view else {
        return Err(Problem::not_found(format!(
            "no person with employee id {employee_id:?}"
        )));
    };
    let why = api
        .projector
        .explain(&employee_id)
        .await
        .map_err(unavailable)?
        .map(|e| Why {
            rules_fingerprint: e.rules_fingerprint,
            groups: e.groups,
            apps: e.apps,
        });
    let stored = accounts::of_person(api.provisioner.store(), &view.person_id)
        .await
        .map_err(unavailable)?;
    let mut accounts = Vec::new();
    for account in stored {
        let last = last_operations(&api, &view.person_id, &account.app, OPERATIONS_PER_APP).await?;
        accounts.push(account_view(account, last));
    }
    let manual = manual_accounts(&api, &view).await?;
    let mut person = person(view, accounts, Utc::now().timestamp_millis());
    person.why = why;
    person.manual_accounts = manual;
    Ok(Json(person))
}

/// `view`'s accounts in the manual-task apps they are assigned or were
/// asked an account in.
async fn manual_accounts(api: &AdminApi, view: &PersonView) -> Result<Vec<ManualAccount>, Problem> {
    let asked = tasks::accounts(
        api.provisioner.store(),
        std::slice::from_ref(&view.person_id),
    )
    .await
    .map_err(unavailable)?;
    Ok(api
        .provisioner
        .manual_apps()
        .iter()
        .filter_map(|app| {
            let account = asked.iter().find(|(_, a, _)| *a == app.name);
            (account.is_some() || view.apps.contains(&app.name)).then(|| ManualAccount {
                app: app.name.clone(),
                asked: account.is_some(),
                active: account.is_some_and(|(_, _, active)| *active),
            })
        })
        .collect())
}

fn account_view(account: StoredAccount, last_operations: Vec<AuditItem>) -> Account {
    Account {
        scim_id: Some(account.scim_id).filter(|id| !id.is_empty()),
        app: account.app,
        active: account.active,
        status: account.status,
        last_error: account.last_error,
        applied_version: account.applied_version,
        groups: account.groups,
        updated_at: time(Some(account.updated_at_ms)),
        last_operations,
    }
}

fn person(view: PersonView, accounts: Vec<Account>, now_ms: i64) -> Person {
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
        upcoming: upcoming(state, now_ms),
        attributes,
        groups: view.groups.clone(),
        apps: view.apps.clone(),
        why: None,
        accounts,
        manual_accounts: Vec::new(),
        events: view
            .recent
            .iter()
            .map(|e| Event {
                event_id: e.event_id.clone(),
                kind: e.kind.clone(),
                source: e.source.clone(),
                effective_at: time(Some(e.effective_ms)),
                occurred_at: time(Some(e.occurred_ms)),
                recorded_at: time(Some(e.recorded_ms)),
                trace_id: e.trace_id.clone(),
            })
            .collect(),
    }
}

/// The transitions of `state` after `now_ms`, soonest first.
fn upcoming(state: &PersonState, now_ms: i64) -> Vec<Upcoming> {
    let leave = state.leave.as_ref();
    let mut at: Vec<(i64, &'static str)> = [
        (state.employed_from_ms, "start"),
        (leave.map(|l| l.from_ms), "leave_start"),
        (leave.and_then(|l| l.until_ms), "leave_end"),
        (state.terminate_at_ms, "termination"),
    ]
    .into_iter()
    .filter_map(|(ms, transition)| ms.filter(|ms| *ms > now_ms).map(|ms| (ms, transition)))
    .collect();
    at.sort();
    at.into_iter()
        .map(|(ms, transition)| Upcoming {
            transition,
            at: time(Some(ms)),
        })
        .collect()
}

/// RFC 3339 in UTC, milliseconds.
fn time(ms: Option<i64>) -> Option<String> {
    ms.and_then(paging::rfc3339)
}

/// The body of a provision-now request (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProvisionRequest {
    /// Only this app.
    app: Option<String>,
}

/// The answer to provision-now.
#[derive(Debug, Serialize)]
pub(crate) struct Provisioned {
    action_id: String,
    person_id: String,
    version: u64,
    lifecycle: String,
    apps: Vec<Applied>,
}

/// `POST /api/v1/persons/{employee_id}/provision`: the person's newest
/// desired state applied to each app now, each account read back first.
pub(crate) async fn provision(
    State(api): State<Arc<AdminApi>>,
    Extension(principal): Extension<Principal>,
    Path(employee_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Provisioned>, Problem> {
    let request: ProvisionRequest = if body.is_empty() {
        ProvisionRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Problem::unprocessable("$", format!("not a provision request: {e}")))?
    };
    let outcome = api
        .provisioner
        .provision_now(&employee_id, request.app.as_deref())
        .await;
    let (ok, detail) = match &outcome {
        Ok((change, results)) => {
            let failed: Vec<&str> = results
                .iter()
                .filter(|r| r.result.is_err())
                .map(|r| r.app.as_str())
                .collect();
            (
                failed.is_empty(),
                json!({ "version": change.version, "app": request.app, "failed": failed }),
            )
        }
        Err(e) => (false, json!({ "app": request.app, "error": e.to_string() })),
    };
    let action_id =
        actions::record(&api, &principal, "provision_now", &employee_id, ok, detail).await;
    let (change, results) = outcome.map_err(|e| match e {
        AdminError::UnknownPerson(_) => Problem::not_found(e.to_string()),
        AdminError::UnknownApp(_) | AdminError::ManualApp(_) => {
            Problem::unprocessable("$.app", e.to_string())
        }
        other => unavailable(other),
    })?;
    Ok(Json(Provisioned {
        action_id,
        person_id: change.person_id.as_str().to_owned(),
        version: change.version,
        lifecycle: change.lifecycle_state.to_string(),
        apps: results
            .iter()
            .map(|r| Applied::new(change.person_id.as_str(), change.version, r))
            .collect(),
    }))
}

/// The query parameters of a person search.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchQuery {
    /// Part of the employee id, a name or an e-mail address.
    q: Option<String>,
    lifecycle: Option<String>,
    group: Option<String>,
    app: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /api/v1/persons`.
pub(crate) async fn search(
    State(api): State<Arc<AdminApi>>,
    Params(query): Params<SearchQuery>,
) -> Result<Json<Page<PersonSummary>>, Problem> {
    const LIFECYCLES: [&str; 5] = ["PENDING", "ACTIVE", "SUSPENDED", "DEPROVISIONED", "NONE"];
    if let Some(lifecycle) = &query.lifecycle {
        if !LIFECYCLES.contains(&lifecycle.as_str()) {
            return Err(Problem::bad_request(format!(
                "lifecycle: {lifecycle:?} is not one of {}",
                LIFECYCLES.join(", ")
            )));
        }
    }
    let query = PersonQuery {
        text: query.q.filter(|q| !q.trim().is_empty()),
        lifecycle: query.lifecycle,
        group: query.group,
        app: query.app,
        after: query.cursor,
        limit: paging::limit(query.limit)?,
    };
    let page = api
        .projector
        .search_persons(&query)
        .await
        .map_err(unavailable)?;
    Ok(Json(Page {
        items: page.persons,
        next_cursor: page.next_after,
    }))
}
