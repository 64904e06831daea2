//! The story the demo tells: HR events in, what each app should then hold.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{Datelike, Days, NaiveTime, TimeZone as _, Utc};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::parts::{Hr, ScimApp};
use super::{FIRST_STEP_TIMEOUT, STEP_TIMEOUT};

pub(super) const LUCY: &str = "lucy.moreau@acme.example";
pub(super) const OMAR: &str = "omar.haddad@acme.example";

pub(super) struct Story<'a> {
    pub(super) hr: &'a Hr,
    pub(super) apps: &'a [ScimApp],
    /// Cancelled when a role fails.
    pub(super) failed: &'a CancellationToken,
    pub(super) steps: usize,
}

impl Story<'_> {
    /// Tells the whole story, step by step.
    pub(super) async fn play(mut self) -> anyhow::Result<()> {
        for (title, event, expected) in joining().into_iter().chain(leaving_and_returning()) {
            self.step(&title, event, &expected).await?;
        }
        Ok(())
    }

    /// HR says `event`; waits until the apps hold `expected`, then prints
    /// what they hold.
    pub(super) async fn step(
        &mut self,
        title: &str,
        event: HrEvent,
        expected: &[(&str, Vec<Account>)],
    ) -> anyhow::Result<()> {
        self.steps += 1;
        let n = self.steps;
        println!("{n}. {title}");
        let terminate_now = event.kind == "terminate" && event.immediate == Some(true);
        let body = serde_json::to_string(&event)?;
        println!("   HR said    POST /v1/events {body}");
        let said = self
            .hr
            .say(body)
            .await
            .with_context(|| format!("step {n}"))?;
        println!("   ingest     202 Accepted, event {}", said.event_id);
        let latency = if terminate_now {
            Some(self.deactivation_latency(LUCY, said.at).await?)
        } else {
            None
        };
        let timeout = if n == 1 {
            FIRST_STEP_TIMEOUT
        } else {
            STEP_TIMEOUT
        };
        let holdings = self
            .wait_for(expected, timeout)
            .await
            .with_context(|| format!("step {n}: {title}"))?;
        let synced = said.at.elapsed();
        println!("{}", table(&holdings));
        match latency {
            Some(per_app) => {
                let parts: Vec<String> = per_app
                    .iter()
                    .map(|(app, d)| format!("{app} {} ms", d.as_millis()))
                    .collect();
                let all = per_app.iter().map(|(_, d)| *d).max().unwrap_or_default();
                println!(
                    "   termination latency: {} ms from HR's 202 to every app showing the \
                     account inactive ({})\n",
                    all.as_millis(),
                    parts.join(", ")
                );
            }
            None => println!("   in sync {:.2} s after HR's 202\n", synced.as_secs_f64()),
        }
        Ok(())
    }

    /// Polls every app until `user` is inactive in each; returns, per app,
    /// the time from `since` to the first poll that saw it.
    pub(super) async fn deactivation_latency(
        &self,
        user: &str,
        since: Instant,
    ) -> anyhow::Result<Vec<(&'static str, Duration)>> {
        let mut seen: BTreeMap<&'static str, Duration> = BTreeMap::new();
        while seen.len() < self.apps.len() {
            self.check_roles()?;
            if since.elapsed() > STEP_TIMEOUT {
                let missing: Vec<&str> = self
                    .apps
                    .iter()
                    .map(|a| a.name)
                    .filter(|a| !seen.contains_key(a))
                    .collect();
                bail!(
                    "{user} still active in {} {} s after the termination",
                    missing.join(", "),
                    STEP_TIMEOUT.as_secs()
                );
            }
            for app in self.apps {
                if seen.contains_key(app.name) {
                    continue;
                }
                let accounts = app.accounts(&self.hr.client).await?;
                if accounts.iter().any(|a| a.user == user && !a.active) {
                    seen.insert(app.name, since.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(self.apps.iter().map(|a| (a.name, seen[a.name])).collect())
    }

    /// Reads every app until it holds what `expected` says, or fails after
    /// `timeout` with what they hold instead.
    pub(super) async fn wait_for(
        &self,
        expected: &[(&str, Vec<Account>)],
        timeout: Duration,
    ) -> anyhow::Result<Vec<(&'static str, Vec<Account>)>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_roles()?;
            let mut holdings = Vec::new();
            for app in self.apps {
                holdings.push((app.name, app.accounts(&self.hr.client).await?));
            }
            let matches = holdings.len() == expected.len()
                && holdings
                    .iter()
                    .zip(expected)
                    .all(|((app, held), (want_app, want))| app == want_app && held == want);
            if matches {
                return Ok(holdings);
            }
            if Instant::now() > deadline {
                bail!(
                    "after {} s the apps hold\n{}\nbut should hold\n{}",
                    timeout.as_secs(),
                    table(&holdings),
                    table(expected),
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(super) fn check_roles(&self) -> anyhow::Result<()> {
        if self.failed.is_cancelled() {
            bail!("a role failed (its error is logged above)");
        }
        Ok(())
    }
}

/// One step: its title, what HR says, and what the apps then hold.
type Step = (String, HrEvent, Holdings);

/// Per app, in the order the apps are started, the accounts it holds.
type Holdings = Vec<(&'static str, Vec<Account>)>;

const CS: &str = "Customer Support";
const EVERYONE: &str = "Everyone";
const MANAGERS: &str = "People Managers";

/// What slack and lattice hold.
fn holds(slack: Vec<Account>, lattice: Vec<Account>) -> Holdings {
    vec![("slack", slack), ("lattice", lattice)]
}

/// Lucy as she is hired, and rehired.
fn lucy_agent() -> Attributes {
    Attributes {
        given_name: "Lucy",
        family_name: "Moreau",
        employment_type: "employee",
        work_email: LUCY,
        department: "Customer Support",
        title: "Support Agent",
    }
}

/// Lucy joins and is promoted; Omar signs before his start date.
fn joining() -> Vec<Step> {
    let start = next_monday_9am_paris();
    let lucy_manager = || account(LUCY, true, &[CS, EVERYONE, MANAGERS]);
    vec![
        (
            "Lucy Moreau is hired into Customer Support as a Support Agent, starting today".into(),
            HrEvent {
                attributes: Some(lucy_agent()),
                ..HrEvent::new("hire", "E1001")
            },
            holds(vec![account(LUCY, true, &[CS, EVERYONE])], vec![]),
        ),
        (
            "Lucy is promoted to Customer Support Manager: a new group, and a new app".into(),
            HrEvent {
                changes: Some(json!({ "title": "Customer Support Manager" })),
                ..HrEvent::new("move", "E1001")
            },
            holds(vec![lucy_manager()], vec![account(LUCY, true, &[MANAGERS])]),
        ),
        (
            format!(
                "Omar Haddad signs his contract; he starts on {} (a pre-hire: Slack \
                 prepares his account, inactive until then)",
                start.format("%A %-d %B")
            ),
            HrEvent {
                effective_at: Some(start.to_rfc3339()),
                attributes: Some(Attributes {
                    given_name: "Omar",
                    family_name: "Haddad",
                    work_email: OMAR,
                    ..lucy_agent()
                }),
                ..HrEvent::new("hire", "E1002")
            },
            holds(
                vec![lucy_manager(), account(OMAR, false, &[CS, EVERYONE])],
                vec![account(LUCY, true, &[MANAGERS])],
            ),
        ),
    ]
}

/// Lucy takes leave and returns, is terminated at once, and is rehired.
fn leaving_and_returning() -> Vec<Step> {
    let omar = || account(OMAR, false, &[CS, EVERYONE]);
    let lucy = |active| account(LUCY, active, &[CS, EVERYONE, MANAGERS]);
    vec![
        (
            "Lucy goes on parental leave: her accounts are suspended".into(),
            HrEvent {
                leave_type: Some("parental"),
                expected_return: Some((Utc::now().date_naive() + Days::new(91)).to_string()),
                ..HrEvent::new("leave_started", "E1001")
            },
            holds(
                vec![lucy(false), omar()],
                vec![account(LUCY, false, &[MANAGERS])],
            ),
        ),
        (
            "Lucy returns from leave".into(),
            HrEvent::new("leave_ended", "E1001"),
            holds(
                vec![lucy(true), omar()],
                vec![account(LUCY, true, &[MANAGERS])],
            ),
        ),
        (
            "Lucy is terminated, effective immediately".into(),
            HrEvent {
                immediate: Some(true),
                reason: Some("involuntary"),
                ..HrEvent::new("terminate", "E1001")
            },
            holds(
                vec![account(LUCY, false, &[]), omar()],
                vec![account(LUCY, false, &[])],
            ),
        ),
        (
            "Lucy is rehired, back in Customer Support as a Support Agent".into(),
            HrEvent {
                attributes: Some(lucy_agent()),
                ..HrEvent::new("rehire", "E1001")
            },
            holds(
                vec![account(LUCY, true, &[CS, EVERYONE]), omar()],
                vec![account(LUCY, false, &[])],
            ),
        ),
    ]
}

/// An event as HR posts it to the push API (a struct rather than a
/// `json!` map, so it prints in this order rather than sorted).
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct HrEvent {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) employee_id: &'static str,
    pub(super) time_zone: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) effective_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) attributes: Option<Attributes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) changes: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) leave_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) expected_return: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) immediate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reason: Option<&'static str>,
}

impl HrEvent {
    /// An event of `kind` for `employee_id`, in Paris, effective now.
    pub(super) fn new(kind: &'static str, employee_id: &'static str) -> Self {
        HrEvent {
            kind,
            employee_id,
            time_zone: "Europe/Paris",
            effective_at: None,
            attributes: None,
            changes: None,
            leave_type: None,
            expected_return: None,
            immediate: None,
            reason: None,
        }
    }
}

/// A hire's or rehire's attributes.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Attributes {
    pub(super) given_name: &'static str,
    pub(super) family_name: &'static str,
    pub(super) employment_type: &'static str,
    pub(super) work_email: &'static str,
    pub(super) department: &'static str,
    pub(super) title: &'static str,
}

/// The start of next week: Monday, 09:00 in Paris.
pub(super) fn next_monday_9am_paris() -> chrono::DateTime<chrono_tz::Tz> {
    let today = Utc::now()
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive();
    let days = 7 - u64::from(today.weekday().num_days_from_monday());
    let monday = today + Days::new(days);
    chrono_tz::Europe::Paris
        .from_local_datetime(&monday.and_time(NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default()))
        .earliest()
        .unwrap_or_else(|| Utc::now().with_timezone(&chrono_tz::Europe::Paris) + Days::new(7))
}

/// An account as the demo shows it: user, whether active, its groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Account {
    pub(super) user: String,
    pub(super) active: bool,
    pub(super) groups: Vec<String>,
}

pub(super) fn account(user: &str, active: bool, groups: &[&str]) -> Account {
    let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    groups.sort();
    Account {
        user: user.to_owned(),
        active,
        groups,
    }
}

/// Every app's accounts, a line per account.
pub(super) fn table(holdings: &[(&str, Vec<Account>)]) -> String {
    holdings
        .iter()
        .flat_map(|(app, accounts)| account_lines(app, accounts))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An app's accounts as table lines, one per account.
pub(super) fn account_lines(app: &str, accounts: &[Account]) -> Vec<String> {
    if accounts.is_empty() {
        return vec![format!("   {app:<10} (no accounts)")];
    }
    accounts
        .iter()
        .enumerate()
        .map(|(i, account)| {
            format!(
                "   {:<10} {:<26} {:<9} {}",
                if i == 0 { app } else { "" },
                account.user,
                if account.active { "active" } else { "inactive" },
                if account.groups.is_empty() {
                    "-".to_owned()
                } else {
                    account.groups.join(", ")
                }
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_week_starts_on_a_monday_morning() {
        let start = next_monday_9am_paris();
        assert_eq!(start.weekday(), chrono::Weekday::Mon);
        let days = (start.with_timezone(&Utc) - Utc::now()).num_days();
        assert!((0..=7).contains(&days), "{start}");
    }
}
