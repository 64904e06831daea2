//! The alert rules (`deploy/prometheus/alerts.yml`) and the dashboards'
//! queries, checked by `promtool` (Debian's `prometheus` package, which
//! `scripts/test` installs): the rules and the Prometheus config load, each
//! alert's unit tests pass (`alerts.test.yml`), every dashboard query is
//! valid PromQL, and no selector on a histogram's `le` label matches only
//! one of the forms Prometheus 2 ("60") and 3 ("60.0") write it in.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

use super::{dashboards, metrics, promql, read, repo, str_of, yaml, SCRAPE_SERIES};

/// Runs `promtool ARGS` in `dir`; panics with its output unless it passes.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool not runnable ({e}): install Debian's `prometheus` package \
                 (scripts/test does)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The alerts the rules must hold (the operations issue's list, dead hook
/// deliveries, overdue manual termination tasks, and leases a provisioner
/// lost).
const ALERTS: &[&str] = &[
    "HrsyncDeprovisionGuardTripped",
    "HrsyncAppQuarantined",
    "HrsyncPersonsWaitingForRetry",
    "HrsyncPriorityLaneLag",
    "HrsyncTerminationSloAtRisk",
    "HrsyncRoleDown",
    "HrsyncProjectorStoreUnclaimed",
    "HrsyncDeadLettersGrowing",
    "HrsyncConsumerStuck",
    "HrsyncHookDeliveriesDead",
    "HrsyncManualTerminationTaskOverdue",
    "HrsyncProvisionerLeaseLost",
];

#[test]
fn alert_rules_load_and_each_alert_fires_in_its_unit_test() {
    let dir = repo().join("deploy/prometheus");
    // The config names the rules file, so this also checks the rules.
    let checked = promtool(&dir, &["check", "config", "prometheus.yml"]);
    assert!(checked.contains("alerts.yml"), "{checked}");
    promtool(&dir, &["test", "rules", "alerts.test.yml"]);

    let rules = yaml(&dir.join("alerts.yml"));
    let exported = metrics::exported_series(&repo());
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = str_of(&rule["alert"], "alert");
            assert!(alerts.insert(name.to_owned()), "{name} twice");
            for metric in promql::metric_names(str_of(&rule["expr"], "expr")) {
                assert!(
                    exported.contains(&metric) || SCRAPE_SERIES.contains(&metric.as_str()),
                    "{name} queries {metric}, which no code exports"
                );
            }
            let severity = str_of(&rule["labels"]["severity"], "severity");
            assert!(["page", "ticket"].contains(&severity), "{name}: {severity}");
            let runbook = str_of(&rule["annotations"]["runbook"], "runbook");
            let anchor = runbook
                .strip_prefix("docs/alerts.md#")
                .unwrap_or_else(|| panic!("{name}: runbook {runbook}"));
            assert_eq!(anchor, name.to_lowercase());
            assert!(
                read(&repo().join("docs/alerts.md")).contains(&format!("## {name}\n")),
                "{name} is not explained in docs/alerts.md"
            );
        }
    }
    let wanted: BTreeSet<String> = ALERTS.iter().map(|a| (*a).to_owned()).collect();
    assert_eq!(alerts, wanted);

    // Each alert is tested both firing and silent.
    let tests = yaml(&dir.join("alerts.test.yml"));
    let mut fired = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for case in tests["tests"].as_sequence().expect("tests") {
        for check in case["alert_rule_test"].as_sequence().expect("checks") {
            let name = str_of(&check["alertname"], "alertname").to_owned();
            if check["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty())
            {
                fired.insert(name);
            } else {
                silent.insert(name);
            }
        }
    }
    assert_eq!(fired, wanted, "alerts tested firing");
    assert_eq!(silent, wanted, "alerts tested silent");
}

/// Every PromQL expression of a dashboard's panels.
fn panel_exprs(value: &Json, out: &mut Vec<(String, String)>) {
    for panel in value["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.to_owned(), expr.to_owned()));
            }
        }
        panel_exprs(panel, out);
    }
}

/// `expr` with Grafana's variables replaced as Grafana would fill them in.
fn filled_in(expr: &str) -> String {
    let mut text = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h");
    // Dashboard variables appear in label matchers (`app=~"$app"`).
    while let Some(start) = text.find('$') {
        let end = text[start + 1..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '{' || c == '}'))
            .map_or(text.len(), |n| start + 1 + n);
        text.replace_range(start..end, ".*");
    }
    text
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut count = 0;
    for (path, dashboard) in dashboards() {
        let mut exprs = Vec::new();
        panel_exprs(&dashboard, &mut exprs);
        for (title, expr) in exprs {
            count += 1;
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            rules.push_str(&format!(
                "      # {name}: {title}\n      - record: dashboard:query_{count}\n        expr: {}\n",
                serde_json::to_string(&filled_in(&expr)).expect("a string")
            ));
        }
    }
    assert!(count > 20, "only {count} queries found");
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("dashboards.yml"), &rules).expect("write");
    let checked = promtool(dir.path(), &["check", "rules", "dashboards.yml"]);
    assert!(
        checked.contains(&format!("{count} rules found")),
        "{checked}"
    );
}

#[test]
fn histogram_le_selectors_match_both_label_forms() {
    let mut sources: Vec<(String, String)> = Vec::new();
    for (path, dashboard) in dashboards() {
        let mut exprs = Vec::new();
        panel_exprs(&dashboard, &mut exprs);
        let name = path.display().to_string();
        sources.extend(
            exprs
                .into_iter()
                .map(|(title, e)| (format!("{name}: {title}"), e)),
        );
    }
    let alerts = yaml(&repo().join("deploy/prometheus/alerts.yml"));
    for group in alerts["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            sources.push((
                str_of(&rule["alert"], "alert").to_owned(),
                str_of(&rule["expr"], "expr").to_owned(),
            ));
        }
    }
    let mut checked = 0;
    for (source, expr) in &sources {
        let compact: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
        for (at, _) in compact.match_indices("le=") {
            // The label `le`, not the end of another (`role=`).
            let before = compact[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            checked += 1;
            assert!(
                compact[at..].starts_with("le=~"),
                "{source}: `le=` matches one form only (Prometheus 3 writes 60 as \"60.0\"); \
                 use le=~\"60|60[.]0\": {expr}"
            );
        }
    }
    assert!(
        checked >= 2,
        "the termination SLO's selectors were not found"
    );
}
