//! Every account of an app classified against the desired state, with no
//! I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::Value;

use crate::reconcile::App;

use super::inputs::{account_keys, active_of, Inputs, Person};
use super::report::{Action, Class, Finding};
use super::OrphanPolicy;

/// Classifies every account of `inputs` and every person without one.
pub(super) fn classify(app: &App, inputs: &Inputs, orphans: OrphanPolicy) -> Vec<Finding> {
    let index = Index::new(app, inputs);
    let mut findings = Vec::new();
    // The persons an unlinked account is reported or linked for (not
    // missing: creating theirs would link that account).
    let mut accounted: HashSet<&str> = HashSet::new();
    // Unlinked accounts matching exactly one person, by person.
    let mut candidates: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for account in &inputs.accounts {
        let id = account["id"].as_str().unwrap_or_default();
        if let Some(person_id) = index.linked_account.get(id) {
            findings.push(index.linked(account, person_id));
            continue;
        }
        let (matching, path) = index.matching(account);
        match matching.as_slice() {
            [] => findings.push(orphan(app, account, orphans)),
            [person] => candidates
                .entry(person.change.person_id.as_str())
                .or_default()
                .push(account),
            several => {
                accounted.extend(several.iter().map(|p| p.change.person_id.as_str()));
                findings.push(ambiguous(app, account, several, &path));
            }
        }
    }
    for (person_id, accounts) in candidates {
        let Some(person) = index.persons.get(person_id) else {
            continue;
        };
        accounted.insert(person_id);
        for account in &accounts {
            findings.push(index.unlinked(account, person, accounts.len(), orphans));
        }
    }
    findings.extend(index.missing(&accounted));
    findings
}

/// What classifying one app's accounts looks up.
struct Index<'a> {
    app: &'a App,
    inputs: &'a Inputs,
    /// The attributes the mapping manages.
    managed: BTreeSet<String>,
    /// Persons by id.
    persons: HashMap<&'a str, &'a Person>,
    /// Linked accounts: SCIM id to person id.
    linked_account: HashMap<&'a str, &'a str>,
    /// Links: person id to SCIM id.
    link_of: HashMap<&'a str, &'a str>,
    /// The ids of the accounts the app has.
    present: HashSet<&'a str>,
    /// Persons by match key.
    by_key: HashMap<(usize, &'a str), Vec<&'a Person>>,
}

impl<'a> Index<'a> {
    fn new(app: &'a App, inputs: &'a Inputs) -> Self {
        let mut by_key: HashMap<(usize, &str), Vec<&Person>> = HashMap::new();
        for person in &inputs.persons {
            for (path, key) in &person.keys {
                by_key
                    .entry((*path, key.as_str()))
                    .or_default()
                    .push(person);
            }
        }
        Index {
            app,
            inputs,
            managed: app.mapping.managed(),
            persons: inputs
                .persons
                .iter()
                .map(|p| (p.change.person_id.as_str(), p))
                .collect(),
            linked_account: inputs
                .links
                .iter()
                .map(|(person, id)| (id.as_str(), person.as_str()))
                .collect(),
            link_of: inputs
                .links
                .iter()
                .map(|(person, id)| (person.as_str(), id.as_str()))
                .collect(),
            present: inputs
                .accounts
                .iter()
                .filter_map(|a| a["id"].as_str())
                .collect(),
            by_key,
        }
    }

    /// The persons an account matches: by the first path of the chain by
    /// which it matches anyone, as linking would find it; and that path.
    fn matching(&self, account: &Value) -> (Vec<&'a Person>, String) {
        let keys = account_keys(self.app, account);
        for (i, path) in self.app.match_chain.paths().iter().enumerate() {
            let mut persons: Vec<&Person> = keys
                .iter()
                .filter(|(p, _)| *p == i)
                .filter_map(|(_, key)| self.by_key.get(&(i, key.as_str())))
                .flatten()
                .copied()
                .collect();
            persons.sort_by_key(|p| p.change.person_id.as_str());
            persons.dedup_by_key(|p| p.change.person_id.as_str());
            if !persons.is_empty() {
                return (persons, path.to_string());
            }
        }
        (Vec::new(), String::new())
    }

    /// The groups `account` should join and leave for `person`.
    fn groups_of(&self, account: &Value, person: &Person) -> (Vec<String>, Vec<String>) {
        let Some(memberships) = &self.inputs.memberships else {
            return (Vec::new(), Vec::new());
        };
        let empty = BTreeSet::new();
        let actual = account["id"]
            .as_str()
            .and_then(|id| memberships.of.get(id))
            .unwrap_or(&empty);
        (
            person.groups.difference(actual).cloned().collect(),
            actual.difference(&person.groups).cloned().collect(),
        )
    }

    /// Fills in how `account` differs from what `person` wants.
    fn compare(&self, account: &Value, person: &Person, finding: &mut Finding) {
        if person.wanted {
            finding.differences =
                differences(&person.desired, account, &self.managed, &person.failed);
        }
        if active_of(account) != person.active {
            finding.differences.push("active".to_owned());
        }
        finding.differences.sort();
        let (join, leave) = self.groups_of(account, person);
        finding.groups_to_join = join;
        finding.groups_to_leave = leave;
    }

    /// A linked account: in sync, drifted, or of an unknown person.
    fn linked(&self, account: &Value, person_id: &str) -> Finding {
        let Some(person) = self.persons.get(person_id) else {
            let mut finding =
                Finding::new(Class::Unknown, Action::None).of_account(account, self.app);
            finding.person_id = Some(person_id.to_owned());
            finding.note = Some(
                "linked, but no directory change of this person is stored: nothing to \
                 compare with until their next change"
                    .to_owned(),
            );
            return finding;
        };
        let mut finding = Finding::new(Class::InSync, Action::None)
            .of_account(account, self.app)
            .of_person(person);
        self.compare(account, person, &mut finding);
        if !finding.differences.is_empty() {
            finding.class = Class::Drifted;
            finding.action = Action::Reapply;
        }
        if !finding.groups_to_join.is_empty() || !finding.groups_to_leave.is_empty() {
            finding.class = Class::Drifted;
            finding.differences.push("groups".to_owned());
            if finding.action == Action::None {
                finding.action = Action::Memberships;
            }
        }
        finding
    }

    /// An unlinked account matching `person` alone, one of `matching`
    /// accounts that do: linked, or reported when linking would be wrong.
    fn unlinked(
        &self,
        account: &Value,
        person: &Person,
        matching: usize,
        orphans: OrphanPolicy,
    ) -> Finding {
        let person_id = person.change.person_id.as_str();
        let linked = self.link_of.get(person_id).copied();
        let linked_present = linked.filter(|id| self.present.contains(id));
        let mut finding = Finding::new(Class::UnlinkedMatch, Action::Link)
            .of_account(account, self.app)
            .of_person(person);
        self.compare(account, person, &mut finding);
        if let Some(linked) = linked_present {
            finding.action = Action::Report;
            finding.note = Some(format!(
                "a duplicate: the person is linked to account {linked}; not linked"
            ));
        } else if matching > 1 {
            finding.action = Action::Report;
            finding.note = Some(format!(
                "{matching} accounts match this person (by {}): none linked; resolve the \
                 duplicates in the app",
                self.app.match_chain
            ));
        } else if !person.wanted && active_of(account) && orphans == OrphanPolicy::Report {
            finding.action = Action::Report;
            finding.note = Some(format!(
                "no account is wanted for this person ({}), so linking would deactivate \
                 it: left as it is under orphans = \"report\"",
                person.change.lifecycle_state
            ));
        } else {
            finding.previous_account_id = linked.map(str::to_owned);
        }
        finding
    }

    /// The persons whose account is wanted but absent, but for those an
    /// unlinked account was `accounted` for.
    fn missing(&self, accounted: &HashSet<&str>) -> Vec<Finding> {
        let mut findings = Vec::new();
        for person in &self.inputs.persons {
            let person_id = person.change.person_id.as_str();
            let has_account = self
                .link_of
                .get(person_id)
                .is_some_and(|id| self.present.contains(id));
            if !person.wanted || has_account || accounted.contains(person_id) {
                continue;
            }
            let mut finding = Finding::new(Class::Missing, Action::Create).of_person(person);
            finding.user_name = person.desired["userName"].as_str().map(str::to_owned);
            finding.previous_account_id = self.link_of.get(person_id).map(|id| (*id).to_owned());
            finding.groups_to_join = person.groups.iter().cloned().collect();
            findings.push(finding);
        }
        findings
    }
}

/// An account no HR person matches.
fn orphan(app: &App, account: &Value, orphans: OrphanPolicy) -> Finding {
    let action = match (active_of(account), orphans) {
        (false, _) => Action::None,
        (true, OrphanPolicy::Deactivate) => Action::Deactivate,
        (true, OrphanPolicy::Report) => Action::Report,
    };
    let mut finding = Finding::new(Class::Orphan, action).of_account(account, app);
    if action == Action::Report {
        finding.note = Some(format!(
            "no HR person matches it; left active under orphans = \"{}\"",
            orphans.as_str()
        ));
    }
    finding
}

/// An account that `several` HR persons match by `path`: reported, never
/// linked.
fn ambiguous(app: &App, account: &Value, several: &[&Person], path: &str) -> Finding {
    let mut finding = Finding::new(Class::UnlinkedMatch, Action::Report).of_account(account, app);
    finding.note = Some(format!(
        "{} HR persons match it by {path} ({}): not linked; resolve the duplicate in HR",
        several.len(),
        several
            .iter()
            .map(|p| p.change.employee_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    finding
}

/// The attributes in which `account` differs from `desired`: every
/// attribute of `desired` (but `schemas` and `active`) must be in the
/// account, and every attribute the mapping manages (`managed`) that
/// `desired` leaves out, unless its mapping `failed`, must be absent from
/// it. Complex values are compared by the sub-attributes `desired` has (a
/// server may add its own, such as `name.formatted`), multi-valued ones as
/// sets of such values; strings without regard to case, but for `id`s,
/// `externalId` and references (`manager.value`), which SCIM compares
/// exactly.
pub(super) fn differences(
    desired: &Value,
    account: &Value,
    managed: &BTreeSet<String>,
    failed: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    let Some(desired) = desired.as_object() else {
        return out;
    };
    for (key, value) in desired {
        match (key.as_str(), value, account.get(key)) {
            ("schemas" | "active", _, _) => {}
            // An extension's attributes are named `URN:attribute`, as in
            // the mapping.
            (urn, Value::Object(fields), Some(Value::Object(actual)))
                if urn.starts_with("urn:") =>
            {
                for (name, value) in fields {
                    diff(&format!("{urn}:{name}"), value, actual.get(name), &mut out);
                }
            }
            _ => diff(key, value, account.get(key), &mut out),
        }
    }
    for key in managed {
        let present = account.get(key).is_some_and(|v| !is_empty(v));
        if !desired.contains_key(key) && !failed.contains(key) && present {
            out.push(key.clone());
        }
    }
    out.sort();
    out
}

pub(super) fn diff(path: &str, desired: &Value, actual: Option<&Value>, out: &mut Vec<String>) {
    match (desired, actual) {
        (Value::Object(fields), Some(Value::Object(actual))) => {
            for (key, value) in fields {
                diff(&format!("{path}.{key}"), value, actual.get(key), out);
            }
        }
        _ if !covers(path, desired, actual) => out.push(path.to_owned()),
        _ => {}
    }
}

/// Whether `actual` holds `desired` (see [`differences`]).
pub(super) fn covers(path: &str, desired: &Value, actual: Option<&Value>) -> bool {
    match (desired, actual) {
        (d, None | Some(Value::Null)) => is_empty(d),
        (Value::Object(fields), Some(Value::Object(_))) => fields
            .iter()
            .all(|(k, v)| covers(&format!("{path}.{k}"), v, actual.and_then(|a| a.get(k)))),
        (Value::Array(wanted), Some(Value::Array(have))) => {
            wanted.len() == have.len()
                && wanted
                    .iter()
                    .all(|w| have.iter().any(|h| covers(path, w, Some(h))))
        }
        (Value::String(d), Some(Value::String(a))) => {
            if case_exact(path) {
                d == a
            } else {
                d.to_lowercase() == a.to_lowercase()
            }
        }
        (Value::Bool(d), Some(Value::String(a))) => a.eq_ignore_ascii_case(&d.to_string()),
        (Value::Number(d), Some(Value::Number(a))) => d.as_f64() == a.as_f64(),
        (d, Some(a)) => d == a,
    }
}

/// Attributes SCIM compares exactly (`caseExact`): ids, `externalId`, and
/// references to other resources.
pub(super) fn case_exact(path: &str) -> bool {
    let leaf = path.rsplit(['.', ':']).next().unwrap_or(path);
    leaf == "externalId" || leaf == "id" || path.ends_with("manager.value") || leaf == "$ref"
}

pub(super) fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
        _ => false,
    }
}
