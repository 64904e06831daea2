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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use cel::common::types::{CelBool, CelInt, CelList};
use cel::common::value::Val;
use cel::{Context, Env, Program, Value};
use hrsync_domain::{AppAssignment, LifecycleState, WorkerAttributes};
use hrsync_expr::{
    attribute_values, check_references, parse_reason, person, references, string, References,
    PERSON_ATTRIBUTES,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The variables a rule may read, besides the ones its own macros bind.
pub(crate) const VARIABLES: [&str; 6] = [
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
///
/// Each rule keeps its outcomes for the inputs it reads (a rule on the
/// department reads nothing else), so persons who agree on them are not
/// evaluated again: most rules read few attributes, whose values repeat
/// across a workforce, and running CEL is most of an evaluation's cost.
pub struct RuleSet {
    /// The CEL environment the rules were compiled for and run in.
    env: Arc<Env>,
    /// The groups, in config order.
    groups: Vec<CompiledGroup>,
    /// See [`RuleSet::fingerprint`].
    fingerprint: String,
}

/// One group with its rule compiled.
struct CompiledGroup {
    name: String,
    rule: String,
    /// Sorted and deduplicated.
    apps: Vec<String>,
    program: Program,
    /// What the rule reads, as found in its syntax tree.
    references: References,
    /// What of a person the rule reads.
    reads: Reads,
    /// Its outcomes for the inputs seen, by [`Reads::key`].
    memo: Mutex<Memo>,
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
            let references = references(program.expression());
            let reads = Reads::of(&references);
            groups.push(CompiledGroup {
                name: name.to_owned(),
                rule: group.rule.clone(),
                apps: apps.into_iter().collect(),
                program,
                references,
                reads,
                memo: Mutex::new(Memo::default()),
            });
        }
        let fingerprint = fingerprint(&groups);
        Ok(RuleSet {
            env,
            groups,
            fingerprint,
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
        // Built on the first rule whose outcome for these inputs is not
        // known yet: most of an evaluation's cost.
        let mut context = None;
        let mut key = Vec::new();
        let mut groups = Vec::new();
        let mut errors = Vec::new();
        let mut apps: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for group in &self.groups {
            // `None`: the memo is off; `Some(None)`: no outcome kept yet
            // for this key.
            let kept = {
                let mut memo = lock(&group.memo);
                (!memo.off).then(|| {
                    key.clear();
                    group.reads.key(subject, &mut key);
                    memo.get(&key)
                })
            };
            let outcome = match kept {
                Some(Some(known)) => known,
                kept => {
                    let context = context.get_or_insert_with(|| self.context(subject));
                    let outcome = outcome(group.program.execute(context));
                    if kept.is_some() {
                        lock(&group.memo).insert(&key, &outcome);
                    }
                    outcome
                }
            };
            match outcome {
                Ok(true) => {
                    groups.push(group.name.clone());
                    for app in &group.apps {
                        apps.entry(app).or_default().push(&group.name);
                    }
                }
                Ok(false) => {}
                Err(reason) => errors.push(RuleError::new(&group.name, reason.to_string())),
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
        self.groups.iter().any(|g| g.reads.manager_chain)
    }

    /// Whether a rule reads `direct_reports` or `is_manager`: then a change
    /// of someone's reports changes their input.
    pub fn reads_direct_reports(&self) -> bool {
        self.groups
            .iter()
            .any(|g| g.reads.direct_reports || g.reads.is_manager)
    }

    /// Whether a rule reads the number `direct_reports`; if only
    /// `is_manager` is read, a manager's input changes only when their
    /// count goes from zero to more or back.
    pub fn reads_report_count(&self) -> bool {
        self.groups.iter().any(|g| g.reads.direct_reports)
    }

    /// Whether there are no groups, so every evaluation is empty.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// What of the reporting lines the rules read.
    pub(crate) fn line_reads(&self) -> LineReads {
        LineReads {
            manager_chain: self.reads_manager_chain(),
            direct_reports: self.reads_direct_reports(),
            report_count: self.reads_report_count(),
        }
    }

    /// The groups as configured, in config order, each with what its rule
    /// reads.
    pub fn groups(&self) -> impl ExactSizeIterator<Item = GroupRule<'_>> {
        self.groups.iter().map(|group| GroupRule {
            name: &group.name,
            rule: &group.rule,
            apps: &group.apps,
            references: &group.references,
        })
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

/// One group of a [`RuleSet`], as [`RuleSet::groups`] lists them.
#[derive(Debug, Clone, Copy)]
pub struct GroupRule<'a> {
    /// The group's name.
    pub name: &'a str,
    /// Its rule, the CEL source as configured.
    pub rule: &'a str,
    /// The apps it grants, sorted and deduplicated.
    pub apps: &'a [String],
    /// What its rule reads, found in its syntax tree.
    pub references: &'a References,
}

/// What of the reporting lines rules read besides the person, so what an
/// evaluation must look up: see [`RuleSet::reads_manager_chain`],
/// [`RuleSet::reads_direct_reports`] and [`RuleSet::reads_report_count`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LineReads {
    pub(crate) manager_chain: bool,
    pub(crate) direct_reports: bool,
    pub(crate) report_count: bool,
}

impl LineReads {
    /// What either of two rule sets reads.
    pub(crate) fn union(self, other: LineReads) -> LineReads {
        LineReads {
            manager_chain: self.manager_chain || other.manager_chain,
            direct_reports: self.direct_reports || other.direct_reports,
            report_count: self.report_count || other.report_count,
        }
    }
}

/// A rule's outcome for one person: member or not, or why it failed.
type Outcome = Result<bool, Failure>;

/// Why a rule gave no answer for one person. Its text names types, never
/// values: values are a person's data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Failure {
    /// The rule's result is not a bool (the type's name).
    #[error("the rule's result is of type {0}, not bool")]
    NotBool(String),
    /// Evaluating the rule failed (described without values).
    #[error("the rule failed: {0}")]
    Failed(String),
}

/// The [`Outcome`] of a rule's result.
fn outcome(result: Result<Value, cel::ExecutionError>) -> Outcome {
    match result {
        Ok(Value::Bool(member)) => Ok(member),
        Ok(other) => Err(Failure::NotBool(other.type_of().to_string())),
        Err(error) => Err(Failure::Failed(hrsync_expr::describe_failure(&error))),
    }
}

/// What of a [`Subject`] one rule reads, found in its syntax tree: the
/// inputs that decide its outcome. A rule is a pure function of them (the
/// standard library and the strings extension have no clock, no randomness
/// and no side effects), so two persons who agree on them get the same
/// outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Reads {
    /// Indices into [`PERSON_ATTRIBUTES`] of the standard attributes read;
    /// all of them if `person` is read as a whole.
    attributes: Vec<usize>,
    /// `person.custom`, or `person` as a whole.
    custom: bool,
    employee_id: bool,
    state: bool,
    manager_chain: bool,
    direct_reports: bool,
    is_manager: bool,
}

impl Reads {
    fn of(references: &References) -> Reads {
        let whole = references.whole_person;
        let reads_field = |field: &str| whole || references.person_fields.contains(field);
        let reads_name = |name: &str| references.names.contains(name);
        Reads {
            attributes: (0..PERSON_ATTRIBUTES.len())
                .filter(|&i| reads_field(PERSON_ATTRIBUTES[i]))
                .collect(),
            custom: reads_field(hrsync_expr::CUSTOM),
            employee_id: reads_name("employee_id"),
            state: reads_name("state"),
            manager_chain: reads_name("manager_chain"),
            direct_reports: reads_name("direct_reports"),
            is_manager: reads_name("is_manager"),
        }
    }

    /// Appends to `key` the inputs this rule reads of `subject`, each
    /// length-prefixed in a fixed order, so that two subjects have equal
    /// keys exactly when they agree on every input the rule reads.
    fn key(&self, subject: &Subject<'_>, key: &mut Vec<u8>) {
        fn put(key: &mut Vec<u8>, bytes: &[u8]) {
            key.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            key.extend_from_slice(bytes);
        }
        if !self.attributes.is_empty() {
            let values = attribute_values(subject.attributes);
            for &i in &self.attributes {
                put(key, values[i].as_bytes());
            }
        }
        if self.custom {
            put(key, &(subject.attributes.custom.len() as u64).to_le_bytes());
            for (name, value) in &subject.attributes.custom {
                put(key, name.as_bytes());
                put(key, value.as_bytes());
            }
        }
        if self.employee_id {
            put(key, subject.employee_id.as_bytes());
        }
        if self.state {
            put(key, subject.lifecycle_state.as_str().as_bytes());
        }
        if self.manager_chain {
            put(key, &(subject.manager_chain.len() as u64).to_le_bytes());
            for id in subject.manager_chain {
                put(key, id.as_bytes());
            }
        }
        if self.direct_reports {
            put(key, &(subject.direct_reports as u64).to_le_bytes());
        }
        if self.is_manager {
            put(key, &[u8::from(subject.direct_reports > 0)]);
        }
    }
}

/// Most entries one rule's [`Memo`] holds before it starts over.
const MEMO_ENTRIES: usize = 4096;

/// Most key bytes one rule's [`Memo`] holds before it starts over: bounds
/// its memory whatever the rule reads (a whole `person`, a long chain).
const MEMO_KEY_BYTES: usize = 256 * 1024;

/// One rule's outcomes for the inputs it was evaluated on, so that persons
/// who agree on what the rule reads (a department, a title, a manager
/// chain) are not evaluated again. Bounded: when full it starts over, and
/// if fewer than half of its lookups since the last start found an
/// outcome, the rule's inputs rarely repeat (it reads an employee id, say)
/// and it stops keeping outcomes at all.
#[derive(Debug, Default)]
struct Memo {
    outcomes: HashMap<Box<[u8]>, Outcome>,
    key_bytes: usize,
    /// Lookups that found an outcome since the memo last started over.
    hits: usize,
    /// Whether it gave up keeping outcomes.
    off: bool,
}

impl Memo {
    fn get(&mut self, key: &[u8]) -> Option<Outcome> {
        let outcome = self.outcomes.get(key).cloned();
        self.hits += usize::from(outcome.is_some());
        outcome
    }

    fn insert(&mut self, key: &[u8], outcome: &Outcome) {
        if self.off || self.outcomes.contains_key(key) {
            return;
        }
        if self.outcomes.len() >= MEMO_ENTRIES || self.key_bytes + key.len() > MEMO_KEY_BYTES {
            self.off = self.hits < self.outcomes.len();
            self.outcomes = HashMap::new();
            self.key_bytes = 0;
            self.hits = 0;
            if self.off || key.len() > MEMO_KEY_BYTES {
                return;
            }
        }
        self.key_bytes += key.len();
        self.outcomes.insert(key.into(), outcome.clone());
    }
}

/// Locks a rule's memo. A thread that panicked holding it left it whole
/// (each of its writes is one map operation), so the poison is ignored.
fn lock(memo: &Mutex<Memo>) -> std::sync::MutexGuard<'_, Memo> {
    memo.lock().unwrap_or_else(PoisonError::into_inner)
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
