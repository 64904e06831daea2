//! A snapshot load and the accounts it must end as, shared by the fault
//! tests: a snapshot hiring `workers` support agents, a second one that
//! promotes every 20th and terminates every 100th at once, and the check of
//! each app's accounts against the desired state.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::stack::{eventually_every, ScimApps};

const HEADER: &str = "employee_id,given_name,family_name,title,department,employment_type,status,hire_date,time_zone,termination_date,termination_immediate\n";

/// Two snapshots of `workers` workers of source `hris`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) workers: usize,
}

fn row(i: usize, title: &str, terminated: bool) -> String {
    let (status, date, immediate) = if terminated {
        ("terminated", "2026-01-31", "true")
    } else {
        ("active", "", "")
    };
    format!(
        "W{i:05},Given{i},Family{i},{title},Customer Support,employee,{status},2021-03-01,Europe/Paris,{date},{immediate}\n"
    )
}

/// Who the second snapshot promotes, and who it terminates at once.
fn promoted(i: usize) -> bool {
    i % 20 == 3
}

fn terminated(i: usize) -> bool {
    i % 100 == 7
}

fn title(i: usize) -> &'static str {
    if promoted(i) {
        "Support Lead"
    } else {
        "Support Agent"
    }
}

impl Load {
    /// The first snapshot: everyone hired as a support agent.
    pub(crate) fn hires(self) -> String {
        let mut csv = String::from(HEADER);
        for i in 1..=self.workers {
            csv.push_str(&row(i, "Support Agent", false));
        }
        csv
    }

    /// The second snapshot: every 20th worker promoted, every 100th
    /// terminated immediately.
    pub(crate) fn changes(self) -> String {
        let mut csv = String::from(HEADER);
        for i in 1..=self.workers {
            csv.push_str(&row(i, title(i), terminated(i)));
        }
        csv
    }

    /// What each account must be once both snapshots are in: `userName` →
    /// (title, active). A worker terminated before their account was
    /// created gets none (nothing is created for a leaver), so for them no
    /// account is as good as an inactive one.
    fn desired(self) -> BTreeMap<String, (String, bool)> {
        (1..=self.workers)
            .map(|i| (format!("W{i:05}"), (title(i).to_owned(), !terminated(i))))
            .collect()
    }

    /// Per app, how the accounts differ from the desired state: duplicates,
    /// missing, unexpected, and wrong title or `active` (the first few of
    /// each). Empty when every app is as desired.
    pub(crate) async fn differences(self, apps: &ScimApps) -> anyhow::Result<Vec<String>> {
        let want = self.desired();
        let mut problems = Vec::new();
        for app in apps.all() {
            let users = app.users().await?;
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            let mut wrong = Vec::new();
            for user in &users {
                let name = user["userName"].as_str().unwrap_or_default().to_owned();
                *seen.entry(name.clone()).or_default() += 1;
                let title = user["title"].as_str().unwrap_or_default();
                let active = active(user);
                match want.get(&name) {
                    Some((t, a)) if t == title && *a == active => {}
                    Some(w) => wrong.push(format!("{name}: ({title}, {active}) not {w:?}")),
                    None => wrong.push(format!("{name}: not an HR worker")),
                }
            }
            let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
            let missing: Vec<_> = want
                .iter()
                .filter(|(k, (_, active))| *active && !seen.contains_key(*k))
                .map(|(k, _)| k)
                .collect();
            if !duplicates.is_empty() || !missing.is_empty() || !wrong.is_empty() {
                problems.push(format!(
                    "{}: {} accounts, {} duplicated (e.g. {:?}), {} missing (e.g. {:?}), {} wrong (e.g. {:?})",
                    app.name,
                    users.len(),
                    duplicates.len(),
                    duplicates.iter().take(3).collect::<Vec<_>>(),
                    missing.len(),
                    missing.iter().take(3).collect::<Vec<_>>(),
                    wrong.len(),
                    wrong.iter().take(3).collect::<Vec<_>>(),
                ));
            }
        }
        Ok(problems)
    }

    /// Waits until the first app holds at least `share` of the workers.
    pub(crate) async fn until_created(
        self,
        apps: &ScimApps,
        share: f64,
        limit: Duration,
    ) -> anyhow::Result<()> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let target = (self.workers as f64 * share) as usize;
        eventually_every(
            &format!("{target} accounts created"),
            limit,
            Duration::from_millis(200),
            || async { Ok(apps.all()[0].count().await? >= target) },
        )
        .await
    }
}

/// `active` as the app answers it (a boolean; absent means active).
pub(crate) fn active(user: &Value) -> bool {
    user["active"].as_bool().unwrap_or(true)
}
