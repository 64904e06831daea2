//! What a reconciliation reads: the app's accounts, its links, every
//! person's desired state and the members of the pushed groups.

use std::collections::{BTreeSet, HashMap, HashSet};

use hrsync_domain::DirectoryChange;
use hrsync_store::Db;
use serde_json::Value;

use crate::reconcile::{App, ReconcileError};
use crate::scim::ScimError;

/// What the classification works from.
#[derive(Debug, Default)]
pub(super) struct Inputs {
    /// Every account of the app.
    pub(super) accounts: Vec<Value>,
    /// The app's links with an account: (person id, SCIM id).
    pub(super) links: Vec<(String, String)>,
    /// Every person whose desired state is known.
    pub(super) persons: Vec<Person>,
    /// Members of the pushed groups, when the app pushes groups.
    pub(super) memberships: Option<Memberships>,
}

/// One person's desired state in the app.
#[derive(Debug, Clone)]
pub(super) struct Person {
    pub(super) change: DirectoryChange,
    /// An account is wanted (assigned, not deprovisioned).
    pub(super) wanted: bool,
    /// It is wanted active.
    pub(super) active: bool,
    /// The SCIM user wanted.
    pub(super) desired: Value,
    /// Top-level attributes whose mapping failed (left as they are).
    pub(super) failed: Vec<String>,
    /// Groups the account should be in (when groups are pushed).
    pub(super) groups: BTreeSet<String>,
    /// The desired user's key on each path of the match chain.
    pub(super) keys: Vec<(usize, String)>,
}

impl Person {
    pub(super) fn new(app: &App, change: DirectoryChange, manager: Option<&str>) -> Self {
        // Wanted and active as the reconciler decides them.
        let want = crate::reconcile::plan::Desired::of(&change, &app.name);
        let (wanted, active) = (want.wanted, want.active);
        let (desired, errors) = app.mapping.user(&change, &app.name, active, manager);
        let groups = if wanted && app.push_groups {
            want.groups.into_iter().collect()
        } else {
            BTreeSet::new()
        };
        Person {
            keys: person_keys(app, &desired),
            failed: errors.into_iter().map(|e| e.top_key).collect(),
            change,
            wanted,
            active,
            desired,
            groups,
        }
    }
}

/// The members of an app's pushed groups.
#[derive(Debug, Clone, Default)]
pub(super) struct Memberships {
    /// Groups read.
    pub(super) groups: usize,
    /// Requests pending with the group writer.
    pub(super) pending: u64,
    /// The pushed groups (by name) each account is in.
    pub(super) of: HashMap<String, BTreeSet<String>>,
}

/// Reads the app's accounts, the links, the persons' desired states and
/// the pushed groups' members.
pub(super) async fn gather(db: &Db, app: &App) -> Result<Inputs, ReconcileError> {
    let scim = |source: ScimError| ReconcileError::Scim {
        app: app.name.clone(),
        source: Box::new(source),
    };
    let mut accounts = app
        .client
        .list("Users", None, usize::MAX)
        .await
        .map_err(scim)?;
    let rows = crate::store::links::linked(db, &app.name).await?;
    let mut links = Vec::with_capacity(rows.len());
    let mut managers: HashMap<String, String> = HashMap::new();
    for row in rows {
        if let Some(employee) = row.employee_id {
            managers.insert(employee, row.scim_id.clone());
        }
        links.push((row.person_id, row.scim_id));
    }
    // A linked account the listing did not show (created or changed while
    // the pages were read) is asked for by id before it counts as missing.
    let listed: HashSet<String> = accounts
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_owned))
        .collect();
    for (_, scim_id) in &links {
        if !listed.contains(scim_id) {
            if let Some(account) = app.client.get("Users", scim_id).await.map_err(scim)? {
                accounts.push(account);
            }
        }
    }
    let persons = persons(db, app, &managers).await?;
    let memberships = if app.push_groups {
        Some(memberships(db, app).await?)
    } else {
        None
    };
    Ok(Inputs {
        accounts,
        links,
        persons,
        memberships,
    })
}

/// Every person's desired state in `app`, the enterprise `manager` as the
/// manager's linked account (`managers`: employee id to SCIM id).
pub(super) async fn persons(
    db: &Db,
    app: &App,
    managers: &HashMap<String, String>,
) -> Result<Vec<Person>, ReconcileError> {
    let payloads = crate::store::people::all(db).await?;
    Ok(decode_persons(app, &payloads, managers))
}

pub(super) fn decode_persons(
    app: &App,
    payloads: &[Vec<u8>],
    managers: &HashMap<String, String>,
) -> Vec<Person> {
    let mut failed_mappings = 0usize;
    let persons = payloads
        .iter()
        .filter_map(|p| match hrsync_schema::decode_directory_change(p) {
            Ok(change) => Some(change),
            Err(error) => {
                tracing::error!(app = %app.name, %error, "a stored directory change no longer decodes; its person is left out of the reconciliation");
                None
            }
        })
        .map(|change| {
            let manager = change
                .profile
                .attributes
                .manager_id
                .as_ref()
                .and_then(|m| managers.get(m.as_str()))
                .map(String::as_str);
            let person = Person::new(app, change, manager);
            failed_mappings += usize::from(!person.failed.is_empty());
            person
        })
        .collect();
    if failed_mappings > 0 {
        tracing::warn!(app = %app.name, persons = failed_mappings, "attribute mappings failed for some persons; those attributes are not compared");
    }
    persons
}

/// Reads the members of every group pushed to `app`. A group gone from
/// the app has no members.
pub(super) async fn memberships(db: &Db, app: &App) -> Result<Memberships, ReconcileError> {
    let groups = crate::store::groups::all(db, &app.name).await?;
    let mut memberships = Memberships {
        groups: groups.len(),
        pending: crate::groups::pending(db, &app.name).await?,
        of: HashMap::new(),
    };
    for (name, id) in groups {
        let group = app
            .client
            .get("Groups", &id)
            .await
            .map_err(|source| ReconcileError::Scim {
                app: app.name.clone(),
                source: Box::new(source),
            })?;
        let members = group
            .as_ref()
            .and_then(|g| g.get("members"))
            .and_then(Value::as_array);
        for member in members.into_iter().flatten() {
            if let Some(account) = member.get("value").and_then(Value::as_str) {
                memberships
                    .of
                    .entry(account.to_owned())
                    .or_default()
                    .insert(name.clone());
            }
        }
    }
    Ok(memberships)
}

/// A person's keys: on each path of the app's match chain, the value of
/// the desired user there, without regard to case. With
/// [`account_keys`], the one place that decides what matches.
pub(super) fn person_keys(app: &App, desired: &Value) -> Vec<(usize, String)> {
    app.match_chain
        .paths()
        .iter()
        .enumerate()
        .filter_map(|(i, path)| path.key(desired).map(|key| (i, key.to_lowercase())))
        .collect()
}

/// An account's values on each path of the app's match chain, without
/// regard to case.
pub(super) fn account_keys(app: &App, account: &Value) -> Vec<(usize, String)> {
    app.match_chain
        .paths()
        .iter()
        .enumerate()
        .flat_map(|(i, path)| {
            path.values(account)
                .into_iter()
                .map(move |value| (i, value.to_lowercase()))
        })
        .collect()
}

/// An account's `active` flag: a boolean, or the string `"true"`/`"false"`
/// in any case; absent means active (RFC 7643's default).
pub(super) fn active_of(account: &Value) -> bool {
    match account.get("active") {
        Some(Value::Bool(active)) => *active,
        Some(Value::String(s)) => !s.trim().eq_ignore_ascii_case("false"),
        _ => true,
    }
}
