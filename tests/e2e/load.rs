//! The load the fault tests run under, and the check of its end state.
//!
//! A snapshot hires `workers` support agents; a second snapshot promotes
//! every 20th and terminates every 100th at once. [`Load::differences`]
//! compares each app's accounts with what an uninterrupted run leaves:
//! every worker's account once, with the newest title, active unless
//! terminated (a leaver whose account did not exist yet gets none).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::stack::{eventually_every, Processes, ScimApps};

const HEADER: &str = "employee_id,given_name,family_name,title,department,employment_type,status,hire_date,time_zone,termination_date,termination_immediate\n";

/// A snapshot load of `workers` workers, `W00001` onwards.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// How many workers the snapshots hold.
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

/// `active` as the app answers it (a boolean; absent means active).
pub(crate) fn active(user: &Value) -> bool {
    user["active"].as_bool().unwrap_or(true)
}

impl Load {
    /// A load of `workers` workers.
    pub(crate) const fn new(workers: usize) -> Self {
        Load { workers }
    }

    /// The first snapshot: everyone hired as a support agent.
    pub(crate) fn hires(&self) -> String {
        let mut csv = String::from(HEADER);
        for i in 1..=self.workers {
            csv.push_str(&row(i, "Support Agent", false));
        }
        csv
    }

    /// The second snapshot: every 20th worker promoted, every 100th
    /// terminated immediately.
    pub(crate) fn changes(&self) -> String {
        let mut csv = String::from(HEADER);
        for i in 1..=self.workers {
            csv.push_str(&row(i, title(i), terminated(i)));
        }
        csv
    }

    /// What each account must be in the end: `userName` → (title,
    /// active). A worker terminated before their account was created gets
    /// none (nothing is created for a leaver), so for them no account is as
    /// good as an inactive one.
    fn desired(&self) -> BTreeMap<String, (String, bool)> {
        (1..=self.workers)
            .map(|i| (format!("W{i:05}"), (title(i).to_owned(), !terminated(i))))
            .collect()
    }

    /// Per app, how the accounts differ from the desired state:
    /// duplicates, missing, unexpected, and wrong title or `active` (the
    /// first few of each).
    pub(crate) async fn differences(&self, apps: &ScimApps) -> anyhow::Result<Vec<String>> {
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
        &self,
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

    /// Waits up to `limit` (every 2 s) until every app's accounts are as
    /// desired; fails with the differences and the last log lines of each
    /// of the stack's first `processes` processes.
    pub(crate) async fn settled_in(
        &self,
        apps: &ScimApps,
        stack: &Processes,
        processes: usize,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let settled = eventually_every(
            "every account as desired in every app",
            limit,
            Duration::from_secs(2),
            || async { Ok(self.differences(apps).await?.is_empty()) },
        )
        .await;
        if let Err(error) = settled {
            let logs: Vec<String> = (0..processes).map(|i| stack.log_tail(i)).collect();
            anyhow::bail!(
                "{error}\n{:#?}\n{}",
                self.differences(apps).await?,
                logs.join("\n")
            );
        }
        Ok(())
    }

    /// Waits up to `limit` until every app's accounts are as desired; fails
    /// with the differences and the processes' last log lines.
    pub(crate) async fn settled(
        &self,
        apps: &ScimApps,
        stack: &Processes,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let settled = eventually_every(
            "every account as desired in every app",
            limit,
            Duration::from_secs(1),
            || async { Ok(self.differences(apps).await?.is_empty()) },
        )
        .await;
        if let Err(error) = settled {
            // What the provisioner was doing: its quarantines, held and
            // in-flight work, and every quarantine it logged.
            let metrics = stack.metrics(0).await.unwrap_or_default();
            let state: Vec<&str> = metrics
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter(|l| {
                    ["quarantin", "held", "in_flight", "parked", "stall"]
                        .iter()
                        .any(|k| l.contains(k))
                })
                .collect();
            let log = stack.log(0);
            let quarantines: Vec<&str> = log.lines().filter(|l| l.contains("quarantin")).collect();
            anyhow::bail!(
                "{error}\n{:#?}\nmetrics:\n{}\nquarantines logged:\n{}\nlast lines:\n{}",
                self.differences(apps).await?,
                state.join("\n"),
                quarantines.join("\n"),
                stack.log_tail(0)
            );
        }
        Ok(())
    }
}
