//! Why a person is, or is not, in each group, and so has each app: every
//! rule with what it read of the person and what it gave.
//!
//! What a rule reads is found in its syntax tree
//! ([`hrsync_expr::references`]), so an explanation shows only the inputs
//! that decide the rule (a department rule shows the department, not the
//! title), each with the value the evaluation used: the same [`Subject`]
//! the rules were evaluated for. Pure: [`crate::project::Projector::explain`]
//! loads the person and their reporting lines, builds the subject as the
//! projector does and calls these.

use std::collections::{BTreeMap, BTreeSet};

use hrsync_domain::AppAssignment;
use hrsync_expr::{attribute_values, References, CUSTOM, PERSON_ATTRIBUTES};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::rules::{Evaluation, RuleSet, Subject, VARIABLES};

/// One input a rule read of a person, with the value its evaluation used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleInput {
    /// What was read, as a rule names it: `person.department`,
    /// `person.custom.badge`, `person.custom` (the whole map), `state`,
    /// `manager_chain`, `direct_reports`, `is_manager`, `employee_id`.
    pub name: String,
    /// Its value: a string (an unset attribute is `""`), a bool, an int, a
    /// list of employee ids, or a map; `null` for a `person.custom` key the
    /// person does not have.
    pub value: Value,
}

/// One configured group, for one person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupExplanation {
    /// The group's name.
    pub group: String,
    /// Its rule, the CEL source as configured.
    pub rule: String,
    /// The apps membership grants.
    pub apps: Vec<String>,
    /// Whether the person is a member now: the rule holds and their
    /// lifecycle keeps groups (a deprovisioned person has none). What the
    /// projector emits for them.
    pub member: bool,
    /// What the rule gave: `true` or `false`, `null` if it failed or was
    /// not evaluated (a person with no hire known is not).
    pub rule_result: Option<bool>,
    /// What the rule read of the person, with the values it used.
    pub inputs: Vec<RuleInput>,
    /// Why the rule failed for this person (it then counts as false).
    pub error: Option<String>,
}

/// One app granted by any configured group, for one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppExplanation {
    /// The app.
    pub app: String,
    /// Whether the person is assigned the app now.
    pub assigned: bool,
    /// The groups the person is in that grant it: why they have it (or
    /// would, once its pre-hire window opens).
    pub granted_by: Vec<String>,
    /// Every configured group that grants it.
    pub granting_groups: Vec<String>,
    /// For a person not started yet whose groups grant the app: when its
    /// pre-hire window opens (ms since the epoch), if it is not open yet.
    pub prehire_window_opens_ms: Option<i64>,
}

/// The inputs a rule that reads `references` read of `subject`, with their
/// values: the standard attributes in the order of [`PERSON_ATTRIBUTES`],
/// then `person.custom` (its keys read by name, or the whole map), then the
/// other variables in the order of the rule variables.
pub fn rule_inputs(references: &References, subject: &Subject<'_>) -> Vec<RuleInput> {
    let input = |name: String, value: Value| RuleInput { name, value };
    let mut inputs = Vec::new();
    let values = attribute_values(subject.attributes);
    for (attribute, value) in PERSON_ATTRIBUTES.iter().zip(values) {
        if references.whole_person || references.person_fields.contains(*attribute) {
            inputs.push(input(format!("person.{attribute}"), value.into()));
        }
    }
    let custom = &subject.attributes.custom;
    if references.whole_custom {
        let map: Map<String, Value> = custom
            .iter()
            .map(|(key, value)| (key.clone(), value.as_str().into()))
            .collect();
        inputs.push(input(format!("person.{CUSTOM}"), Value::Object(map)));
    } else {
        for key in &references.custom_keys {
            let value = custom.get(key).map_or(Value::Null, |v| v.as_str().into());
            inputs.push(input(format!("person.{CUSTOM}.{key}"), value));
        }
    }
    for variable in VARIABLES.iter().filter(|v| **v != "person") {
        if !references.names.contains(*variable) {
            continue;
        }
        let value = match *variable {
            "employee_id" => subject.employee_id.into(),
            "state" => subject.lifecycle_state.as_str().into(),
            "manager_chain" => subject.manager_chain.to_vec().into(),
            "direct_reports" => subject.direct_reports.into(),
            "is_manager" => (subject.direct_reports > 0).into(),
            _ => continue,
        };
        inputs.push(input((*variable).to_owned(), value));
    }
    inputs
}

/// Every group of `rules`, in config order, for one person: `evaluated` is
/// the subject the rules were evaluated for with its evaluation
/// (`rules.evaluate(subject)`), or `None` if they were not (no hire is
/// known); `members`, the groups the person is given.
pub fn explain_groups(
    rules: &RuleSet,
    evaluated: Option<(&Subject<'_>, &Evaluation)>,
    members: &[String],
) -> Vec<GroupExplanation> {
    rules
        .groups()
        .map(|group| {
            let (rule_result, inputs, error) = match evaluated {
                Some((subject, evaluation)) => {
                    let error = evaluation
                        .errors
                        .iter()
                        .find(|e| e.group == group.name)
                        .map(|e| e.reason.clone());
                    let holds = evaluation.groups.iter().any(|g| g == group.name);
                    let result = if error.is_some() { None } else { Some(holds) };
                    (result, rule_inputs(group.references, subject), error)
                }
                None => (None, Vec::new(), None),
            };
            GroupExplanation {
                group: group.name.to_owned(),
                rule: group.rule.to_owned(),
                apps: group.apps.to_vec(),
                member: members.iter().any(|m| m == group.name),
                rule_result,
                inputs,
                error,
            }
        })
        .collect()
}

/// Every app a group of `groups` grants, sorted, for one person:
/// `assigned` are the apps the person is given; `prehire_opens` tells, for
/// an app their groups grant that they are not given, when its pre-hire
/// window opens (`None`: the person has started).
pub fn explain_apps(
    groups: &[GroupExplanation],
    assigned: &[AppAssignment],
    prehire_opens: impl Fn(&str) -> Option<i64>,
) -> Vec<AppExplanation> {
    let mut granting: BTreeMap<&str, (BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for group in groups {
        for app in &group.apps {
            let (all, member) = granting.entry(app).or_default();
            all.insert(&group.group);
            if group.member {
                member.insert(&group.group);
            }
        }
    }
    granting
        .into_iter()
        .map(|(app, (all, member))| {
            let given = assigned.iter().find(|a| a.app == app);
            let granted_by: Vec<String> = match given {
                Some(given) => given.groups.clone(),
                None => member.into_iter().map(str::to_owned).collect(),
            };
            let held = given.is_none() && !granted_by.is_empty();
            AppExplanation {
                app: app.to_owned(),
                assigned: given.is_some(),
                granted_by,
                granting_groups: all.into_iter().map(str::to_owned).collect(),
                prehire_window_opens_ms: if held { prehire_opens(app) } else { None },
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
