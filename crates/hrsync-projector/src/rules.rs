//! Group rules: which groups a person belongs to, and so which apps they get.
//!
//! Each group in `[[projector.rules.groups]]` has a rule written in
//! [CEL](https://cel.dev) (the Common Expression Language) that must evaluate
//! to a bool, and the apps membership grants. Rules are compiled once, into a
//! [`RuleSet`], and evaluated for each person whose profile changes; when the
//! rules themselves change (see [`RuleSet::fingerprint`]) everyone is
//! evaluated again.
//!
//! # What a rule can see
//!
//! | variable | CEL type | value |
//! | --- | --- | --- |
//! | `person` | `map(string, dyn)` | the profile attributes, below |
//! | `employee_id` | `string` | the person's HR employee id |
//! | `state` | `string` | lifecycle state: `"PENDING"`, `"ACTIVE"`, `"SUSPENDED"`, `"DEPROVISIONED"` |
//! | `manager_chain` | `list(string)` | employee ids of the managers above the person, nearest first |
//! | `direct_reports` | `int` | how many workers have this person as manager |
//! | `is_manager` | `bool` | `direct_reports > 0` |
//!
//! Rules are evaluated again for a person when their own profile changes,
//! when their number of direct reports changes, and (if a rule reads
//! `manager_chain`) when the manager of anyone above them within
//! `manager_chain_depth` changes.
//!
//! `person` has every standard attribute as a **string**, always present:
//! `given_name`, `family_name`, `preferred_name`, `display_name`,
//! `work_email`, `personal_email`, `phone`, `title`, `department`,
//! `manager_id`, `location`, `cost_center` and `employment_type`
//! (`"EMPLOYEE"`, `"CONTRACTOR"` or `"INTERN"`). An attribute that is not set
//! is the empty string `""`, so `person.title.contains("Manager")` is simply
//! false for a person without a title instead of an error, and "is set" is
//! written `person.title != ""`.
//!
//! `person.custom` is a `map(string, string)` of the source-specific
//! attributes, holding only the keys that are set: test for a key with
//! `"badge" in person.custom` or `has(person.custom.badge)` before reading it,
//! as in `"badge" in person.custom && person.custom["badge"].startsWith("B-")`.
//!
//! Besides the CEL standard library (`contains`, `startsWith`, `endsWith`,
//! `matches`, `in`, `size`, `exists`, `all`, ...), rules have the strings
//! extension (`lowerAscii`, `upperAscii`, `trim`, `split`, `replace`, ...).
//!
//! # Errors
//!
//! A rule that does not parse, or that names a variable or a `person`
//! attribute that does not exist, is rejected by [`RuleSet::compile`], so a
//! typo stops the projector at start-up rather than emptying a group. A rule
//! that fails for one person (reading a missing `person.custom` key, a
//! non-bool result) counts as false for that person and is reported in
//! [`Evaluation::errors`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use cel::common::types::{CelBool, CelInt, CelList};
use cel::common::value::Val;
use cel::{Context, Env, Program, Value};
use hrsync_domain::{AppAssignment, LifecycleState, WorkerAttributes};
use hrsync_expr::{check_references, parse_reason, person, string};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The variables a rule may read, besides the ones its own macros bind.
const VARIABLES: [&str; 6] = [
    "person",
    "employee_id",
    "state",
    "manager_chain",
    "direct_reports",
    "is_manager",
];

/// Names the meaning of the rule variables in the fingerprint: bump it when
/// what a rule sees changes, so that everyone is evaluated again.
const FINGERPRINT_SCHEME: &str = "hrsync.projector.rules.v1";

/// The `[projector.rules]` config section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// The groups, one `[[projector.rules.groups]]` table each.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
}

/// One `[[projector.rules.groups]]` table: a group, who is in it, and the
/// apps it grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Group name, unique among the groups, e.g. `"People Managers"`; pushed
    /// to the apps as a SCIM group.
    pub name: String,
    /// CEL expression over the person (see the [module docs](self)) that is
    /// true for the members.
    pub rule: String,
    /// Apps that members of this group are assigned.
    #[serde(default)]
    pub apps: Vec<String>,
    /// What the group is for; for people reading the config, not evaluated.
    #[serde(default)]
    pub description: Option<String>,
    /// Names this group had before: the provisioner renames the app's SCIM
    /// group in place (same id, same members) instead of creating a new one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_names: Vec<String>,
}

/// The person a rule set is evaluated for.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The person's HR employee id.
    pub employee_id: &'a str,
    /// The person's current profile attributes.
    pub attributes: &'a WorkerAttributes,
    /// The person's lifecycle state.
    pub lifecycle_state: LifecycleState,
    /// Employee ids of the manager chain, nearest first (manager, manager's
    /// manager, ...).
    pub manager_chain: &'a [String],
    /// Number of workers whose manager_id is this person.
    pub direct_reports: usize,
}

/// What a rule set decides for one person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Every group whose rule is true, sorted.
    pub groups: Vec<String>,
    /// The apps those groups grant, sorted by app, each with the sorted groups
    /// granting it.
    pub apps: Vec<AppAssignment>,
    /// Rules that failed to evaluate for this person; each counts as false.
    /// A config problem (the rule's author should guard the failing case), not
    /// a transient one: evaluating again gives the same error.
    pub errors: Vec<RuleError>,
}

/// A rule that could not be compiled, or could not be evaluated for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("group \"{group}\": {reason}")]
pub struct RuleError {
    /// Name of the group whose rule failed, as configured.
    pub group: String,
    /// What went wrong, for the person fixing the rule.
    pub reason: String,
}

impl RuleError {
    fn new(group: &str, reason: impl Into<String>) -> Self {
        Self {
            group: group.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Compiled group rules, ready to be evaluated for many people.
///
/// Build it once with [`RuleSet::compile`]; [`RuleSet::evaluate`] takes
/// `&self`, so one rule set can be shared between threads.
pub struct RuleSet {
    /// The CEL environment the rules were compiled for and run in.
    env: Arc<Env>,
    /// The groups, in config order.
    groups: Vec<CompiledGroup>,
    /// See [`RuleSet::fingerprint`].
    fingerprint: String,
    /// See [`RuleSet::reads_manager_chain`].
    reads_manager_chain: bool,
    /// See [`RuleSet::reads_direct_reports`].
    reads_direct_reports: bool,
    /// See [`RuleSet::reads_report_count`].
    reads_report_count: bool,
}

/// One group with its rule compiled.
struct CompiledGroup {
    name: String,
    rule: String,
    /// Sorted and deduplicated.
    apps: Vec<String>,
    program: Program,
}

// The rule set is shared by the projector's workers.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
};

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: Vec<_> = self
            .groups
            .iter()
            .map(|group| (&group.name, &group.rule, &group.apps))
            .collect();
        f.debug_struct("RuleSet")
            .field("groups", &groups)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl RuleSet {
    /// Compiles every group's rule.
    ///
    /// # Errors
    ///
    /// The first group that is not valid: a blank or duplicate name, a blank
    /// app name, a rule that is not CEL, or a rule that reads a variable or a
    /// `person` attribute that does not exist.
    pub fn compile(config: &RulesConfig) -> Result<RuleSet, RuleError> {
        let env = Arc::new(hrsync_expr::env());
        let mut names = HashSet::with_capacity(config.groups.len());
        let mut groups = Vec::with_capacity(config.groups.len());
        let mut reads_manager_chain = false;
        let mut reads_direct_reports = false;
        let mut reads_report_count = false;
        for group in &config.groups {
            let name = group.name.as_str();
            check_name(name).map_err(|reason| RuleError::new(name, reason))?;
            if !names.insert(name) {
                return Err(RuleError::new(name, "another group has the same name"));
            }
            let mut apps = BTreeSet::new();
            for app in &group.apps {
                check_name(app).map_err(|reason| RuleError::new(name, format!("app {reason}")))?;
                apps.insert(app.clone());
            }
            if group.rule.trim().is_empty() {
                return Err(RuleError::new(name, "the rule is empty"));
            }
            let program = env
                .compile(&group.rule)
                .map_err(|errors| RuleError::new(name, parse_reason(&errors)))?;
            check_references(program.expression(), &env, &VARIABLES)
                .map_err(|reason| RuleError::new(name, reason))?;
            reads_manager_chain |= reads(&program, &env, &["manager_chain"]);
            reads_direct_reports |= reads(&program, &env, &["direct_reports", "is_manager"]);
            reads_report_count |= reads(&program, &env, &["direct_reports"]);
            groups.push(CompiledGroup {
                name: name.to_owned(),
                rule: group.rule.clone(),
                apps: apps.into_iter().collect(),
                program,
            });
        }
        let fingerprint = fingerprint(&groups);
        Ok(RuleSet {
            env,
            groups,
            fingerprint,
            reads_manager_chain,
            reads_direct_reports,
            reads_report_count,
        })
    }

    /// Evaluates every rule for `subject`.
    ///
    /// Never fails as a whole: a rule that errors counts as false and is
    /// listed in [`Evaluation::errors`], so one bad rule cannot take away the
    /// groups the other rules grant.
    pub fn evaluate(&self, subject: &Subject<'_>) -> Evaluation {
        if self.groups.is_empty() {
            return Evaluation::default();
        }
        let context = self.context(subject);
        let mut groups = Vec::new();
        let mut errors = Vec::new();
        let mut apps: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for group in &self.groups {
            match group.program.execute(&context) {
                Ok(Value::Bool(true)) => {
                    groups.push(group.name.clone());
                    for app in &group.apps {
                        apps.entry(app).or_default().push(&group.name);
                    }
                }
                Ok(Value::Bool(false)) => {}
                // The value itself is left out: it may be a person's data.
                Ok(other) => errors.push(RuleError::new(
                    &group.name,
                    format!("the rule's result is of type {}, not bool", other.type_of()),
                )),
                Err(error) => errors.push(RuleError::new(
                    &group.name,
                    format!("the rule failed: {}", hrsync_expr::describe_failure(&error)),
                )),
            }
        }
        // Group names are unique (checked by `compile`) and each group's
        // apps are deduplicated, so sorting is all that is left to do.
        groups.sort_unstable();
        let apps = apps
            .into_iter()
            .map(|(app, mut granting)| {
                granting.sort_unstable();
                AppAssignment {
                    app: app.to_owned(),
                    groups: granting.into_iter().map(str::to_owned).collect(),
                }
            })
            .collect();
        Evaluation {
            groups,
            apps,
            errors,
        }
    }

    /// A stable hex digest (SHA-256) of what decides the outcome: the group
    /// names, their rules and their apps.
    ///
    /// Equal configs give equal fingerprints, across runs and machines; any
    /// change to a name, a rule's text or an app set changes it. Neither the
    /// order of the groups or of their apps, nor a repeated app, nor a
    /// description counts, since none changes any person's outcome. Stored
    /// next to the state, a different fingerprint at start-up means "the rules
    /// changed: evaluate everyone again".
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// Whether a rule reads `manager_chain`: then a change of someone's
    /// manager changes the input of everyone below them.
    pub fn reads_manager_chain(&self) -> bool {
        self.reads_manager_chain
    }

    /// Whether a rule reads `direct_reports` or `is_manager`: then a change
    /// of someone's reports changes their input.
    pub fn reads_direct_reports(&self) -> bool {
        self.reads_direct_reports
    }

    /// Whether a rule reads the number `direct_reports`; if only
    /// `is_manager` is read, a manager's input changes only when their
    /// count goes from zero to more or back.
    pub fn reads_report_count(&self) -> bool {
        self.reads_report_count
    }

    /// Whether there are no groups, so every evaluation is empty.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The CEL activation for one person: the variables of the module docs.
    ///
    /// Strings are borrowed from `subject`, not copied: building the
    /// activation is most of the cost of an evaluation.
    fn context<'s>(&self, subject: &Subject<'s>) -> Context<'s, 's> {
        let mut context = Context::with_env(Arc::clone(&self.env));
        context.add_variable_as_val("person", Box::new(person(subject.attributes)));
        context.add_variable_as_val("employee_id", string(subject.employee_id));
        context.add_variable_as_val("state", string(subject.lifecycle_state.as_str()));
        let chain: Vec<Box<dyn Val + 's>> =
            subject.manager_chain.iter().map(|id| string(id)).collect();
        context.add_variable_as_val("manager_chain", Box::new(CelList::from(chain)));
        let reports = i64::try_from(subject.direct_reports).unwrap_or(i64::MAX);
        context.add_variable_as_val("direct_reports", Box::new(CelInt::from(reports)));
        context.add_variable_as_val(
            "is_manager",
            Box::new(CelBool::from(subject.direct_reports > 0)),
        );
        context
    }
}

/// Whether `program`, which reads only [`VARIABLES`], reads one of `names`
/// (as a variable, not a comprehension's own binding of that name): it
/// passes the reference check with every variable, so it fails the check
/// without `names` exactly when it reads one of them.
fn reads(program: &Program, env: &Env, names: &[&str]) -> bool {
    let others: Vec<&str> = VARIABLES
        .iter()
        .copied()
        .filter(|v| !names.contains(v))
        .collect();
    check_references(program.expression(), env, &others).is_err()
}

/// Why `name` cannot name a group or an app, if it cannot.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.trim().is_empty() {
        Err("name is empty")
    } else if name.trim() != name {
        Err("name has leading or trailing whitespace")
    } else {
        Ok(())
    }
}

/// See [`RuleSet::fingerprint`]: SHA-256 over the groups sorted by name, each
/// field length-prefixed so that no two configs encode alike.
fn fingerprint(groups: &[CompiledGroup]) -> String {
    let mut sorted: Vec<&CompiledGroup> = groups.iter().collect();
    sorted.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(FINGERPRINT_SCHEME.as_bytes());
    field(&(sorted.len() as u64).to_be_bytes());
    for group in sorted {
        field(group.name.as_bytes());
        field(group.rule.as_bytes());
        field(&(group.apps.len() as u64).to_be_bytes());
        for app in &group.apps {
            field(app.as_bytes());
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
