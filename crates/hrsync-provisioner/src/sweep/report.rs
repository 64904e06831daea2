//! What a reconciliation found and did: findings, the report and its
//! summary for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::reconcile::App;

use super::inputs::{account_keys, active_of, Person};
use super::OrphanPolicy;

/// The class of an account (or, for `Missing`, of a person).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Linked and as desired.
    InSync,
    /// Linked, but attributes, `active` or group memberships differ.
    Drifted,
    /// Not linked, but it matches an HR person.
    UnlinkedMatch,
    /// A person's wanted account is absent from the app.
    Missing,
    /// Not linked, and no HR person matches it.
    Orphan,
    /// Linked to a person of whom no directory change is stored.
    Unknown,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 6] = [
        Class::InSync,
        Class::Drifted,
        Class::UnlinkedMatch,
        Class::Missing,
        Class::Orphan,
        Class::Unknown,
    ];

    /// The metric label and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::InSync => "in_sync",
            Class::Drifted => "drifted",
            Class::UnlinkedMatch => "unlinked_match",
            Class::Missing => "missing",
            Class::Orphan => "orphan",
            Class::Unknown => "unknown",
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Class::InSync => "in sync",
            Class::Drifted => "drifted",
            Class::UnlinkedMatch => "unlinked match",
            Class::Missing => "missing",
            Class::Orphan => "orphan",
            Class::Unknown => "unknown",
        }
    }
}

/// What a finding calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing.
    None,
    /// Link the account to its person, then apply the person's desired
    /// state to it.
    Link,
    /// Create the person's account (apply their desired state).
    Create,
    /// Read the account back and apply the person's desired state again.
    Reapply,
    /// Deactivate the orphan, under the deprovision guard.
    Deactivate,
    /// Request the account's missing joins and extra leaves of the app's
    /// group writer (only its group memberships differ).
    Memberships,
    /// Leave it as it is; the note says why.
    Report,
}

impl Action {
    /// Whether a fix run applies this to its one account (link, create,
    /// re-apply, deactivate), as opposed to nothing or memberships
    /// requested of the group writer together.
    pub(super) fn fixes_one(self) -> bool {
        matches!(
            self,
            Action::Link | Action::Create | Action::Reapply | Action::Deactivate
        )
    }

    pub(super) fn would(self) -> &'static str {
        match self {
            Action::None => "nothing to do",
            Action::Link => "would link",
            Action::Create => "would create",
            Action::Reapply => "would re-apply",
            Action::Deactivate => "would deactivate",
            Action::Memberships => "would fix memberships",
            Action::Report => "reported only",
        }
    }

    pub(super) fn done(self) -> &'static str {
        match self {
            Action::None => "nothing to do",
            Action::Link => "linked",
            Action::Create => "created",
            Action::Reapply => "re-applied",
            Action::Deactivate => "deactivated",
            Action::Memberships => "memberships fixed",
            Action::Report => "reported only",
        }
    }
}

/// What a fix did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FixResult {
    /// Done; the operations sent.
    Done {
        /// Each operation, for people (`linked …`, `updated title`).
        operations: Vec<String>,
    },
    /// A deactivation was held by the deprovision guard.
    Held {
        /// The operations before the hold.
        operations: Vec<String>,
    },
    /// The app is quarantined: the change was parked until it answers.
    Parked,
    /// Not done, as the state changed meanwhile; the reason says how.
    Skipped {
        /// Why.
        reason: String,
    },
    /// It failed; the next reconciliation tries again.
    Failed {
        /// The error.
        error: String,
    },
}

/// One account of the app (or, for `missing`, one person), as classified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Its class.
    pub class: Class,
    /// The account's SCIM id (none for a missing account).
    pub account_id: Option<String>,
    /// The account's `userName` (for a missing one, the desired one).
    pub user_name: Option<String>,
    /// Whether the account is active in the app.
    pub active: Option<bool>,
    /// The HR person it belongs to, if any.
    pub person_id: Option<String>,
    /// Their HR employee id.
    pub employee_id: Option<String>,
    /// Attributes that differ from the desired state (`title`,
    /// `name.givenName`, `urn:…:User:department`, `active`, `groups`).
    pub differences: Vec<String>,
    /// Pushed groups the account should be in and is not.
    pub groups_to_join: Vec<String>,
    /// Pushed groups the account is in and should not be.
    pub groups_to_leave: Vec<String>,
    /// The person's link named this account, which is gone from the app.
    pub previous_account_id: Option<String>,
    /// What it calls for.
    pub action: Action,
    /// Why an account is left as it is, or what else to know.
    pub note: Option<String>,
    /// What the fix did (none in a dry run, or when nothing was to do).
    pub result: Option<FixResult>,
    /// The account's values on each path of the match chain.
    #[serde(skip)]
    pub(super) keys: Vec<(usize, String)>,
}

impl Finding {
    pub(super) fn new(class: Class, action: Action) -> Self {
        Finding {
            class,
            account_id: None,
            user_name: None,
            active: None,
            person_id: None,
            employee_id: None,
            differences: Vec::new(),
            groups_to_join: Vec::new(),
            groups_to_leave: Vec::new(),
            previous_account_id: None,
            action,
            note: None,
            result: None,
            keys: Vec::new(),
        }
    }

    pub(super) fn of_account(mut self, account: &Value, app: &App) -> Self {
        self.account_id = account["id"].as_str().map(str::to_owned);
        self.user_name = account["userName"].as_str().map(str::to_owned);
        self.active = Some(active_of(account));
        self.keys = account_keys(app, account);
        self
    }

    pub(super) fn of_person(mut self, person: &Person) -> Self {
        self.person_id = Some(person.change.person_id.as_str().to_owned());
        self.employee_id = Some(person.change.employee_id.as_str().to_owned());
        self
    }

    /// How it ended, for the summary: what was or would be done.
    pub(super) fn outcome(&self, dry_run: bool) -> &'static str {
        match &self.result {
            _ if dry_run => self.action.would(),
            None => self.action.done(),
            Some(FixResult::Done { .. }) => self.action.done(),
            Some(FixResult::Held { .. }) => "held by the deprovision guard",
            Some(FixResult::Parked) => "parked (app quarantined)",
            Some(FixResult::Skipped { .. }) => "skipped (changed meanwhile)",
            Some(FixResult::Failed { .. }) => "FAILED",
        }
    }
}

/// The outcome of reconciling one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The app.
    pub app: String,
    /// Nothing was changed.
    pub dry_run: bool,
    /// The orphan policy applied.
    pub orphans: OrphanPolicy,
    /// When it began (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339).
    pub finished_at: String,
    /// Accounts read from the app.
    pub accounts_read: usize,
    /// Persons whose desired state is known.
    pub persons: usize,
    /// Pushed groups whose members were read (0 without `push_groups`).
    pub groups_read: usize,
    /// Membership requests the group writer had still to apply when the
    /// app was read (they show as drift until applied).
    pub memberships_pending: u64,
    /// Findings per class.
    pub counts: BTreeMap<Class, usize>,
    /// Every account (and missing account), in sync ones included.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Findings with a failed fix.
    pub fn failures(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| matches!(f.result, Some(FixResult::Failed { .. })))
            .count()
    }

    /// Findings whose fix the deprovision guard held.
    pub fn held(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| matches!(f.result, Some(FixResult::Held { .. })))
            .count()
    }

    /// The summary table for people: per class the count and what was (or
    /// would be) done.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "reconciliation of {}{}: {} account(s) read, {} person(s) known, {} group(s) read",
            self.app,
            if self.dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            },
            self.accounts_read,
            self.persons,
            self.groups_read,
        );
        self.write_classes(&mut out);
        self.write_notes(&mut out);
        out
    }

    /// Per class: the count, and what was (or would be) done how often.
    fn write_classes(&self, out: &mut String) {
        let _ = writeln!(out, "{:<16} {:>7}  action", "class", "count");
        for class in Class::ALL {
            let findings: Vec<&Finding> =
                self.findings.iter().filter(|f| f.class == class).collect();
            let mut outcomes: Vec<(&str, usize)> = Vec::new();
            for finding in &findings {
                let outcome = finding.outcome(self.dry_run);
                match outcomes.iter_mut().find(|(o, _)| *o == outcome) {
                    Some((_, n)) => *n += 1,
                    None => outcomes.push((outcome, 1)),
                }
            }
            let actions = if outcomes.is_empty() {
                "-".to_owned()
            } else {
                outcomes
                    .iter()
                    .map(|(o, n)| format!("{o} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "{:<16} {:>7}  {actions}",
                class.label(),
                findings.len()
            );
        }
    }

    /// The lines below the table: orphans reported, membership drift,
    /// pending requests, held deactivations, failed fixes.
    fn write_notes(&self, out: &mut String) {
        let orphans_reported = self
            .findings
            .iter()
            .any(|f| f.class == Class::Orphan && f.action == Action::Report);
        if orphans_reported {
            let _ = writeln!(
                out,
                "orphans = \"{}\": orphans are reported, not deactivated",
                self.orphans.as_str()
            );
        }
        let membership_drift = self
            .findings
            .iter()
            .filter(|f| !f.groups_to_join.is_empty() || !f.groups_to_leave.is_empty())
            .count();
        if membership_drift > 0 {
            let _ = writeln!(
                out,
                "{membership_drift} account(s) with group membership drift (see groups_to_join \
                 and groups_to_leave in the report)"
            );
        }
        if self.memberships_pending > 0 {
            let _ = writeln!(
                out,
                "{} membership request(s) were still pending with the group writer",
                self.memberships_pending
            );
        }
        let held = self.held();
        if held > 0 {
            let _ = writeln!(
                out,
                "{held} deactivation(s) held by the deprovision guard of {app}: \
                 `hrsync provisioner release {app}` lets the held changes through; held orphans \
                 are deactivated by the first reconciliation after it",
                app = self.app
            );
        }
        let failed = self.failures();
        if failed > 0 {
            let _ = writeln!(
                out,
                "{failed} fix(es) failed (see the report's `result.error`); the next \
                 reconciliation tries them again"
            );
        }
    }
}
