//! Metric names in PromQL expressions (as Grafana sends them, with its
//! `$variables`).

use std::collections::BTreeSet;

/// Words that are never metric names: operators, modifiers, aggregations.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "atan2",
];
/// Modifiers followed by a list of label names in parentheses.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

pub(crate) fn metric_names(expr: &str) -> BTreeSet<String> {
    assert!(
        !expr.contains("__name__"),
        "select metrics by their name, not by __name__: {expr}"
    );
    let c: Vec<char> = expr.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let word_char = |ch: char| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':';
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if matches!(ch, '"' | '\'' | '`') {
            i = after_string(&c, i);
        } else if ch == '{' {
            // Label matchers.
            i = after_close(&c, i, '}');
        } else if ch == '[' {
            // Ranges and subqueries.
            i = after_close(&c, i, ']');
        } else if ch == '$' {
            // A Grafana variable.
            i += 1;
            if at(i) == '{' {
                i = after_close(&c, i, '}');
            } else {
                while word_char(at(i)) {
                    i += 1;
                }
            }
        } else if ch == '#' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch.is_ascii_digit() || (ch == '.' && at(i + 1).is_ascii_digit()) {
            // Numbers and durations.
            while at(i).is_ascii_alphanumeric() || at(i) == '.' || at(i) == '_' {
                i += 1;
            }
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while word_char(at(i)) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let mut next = i;
            while at(next).is_whitespace() {
                next += 1;
            }
            if LABEL_LISTS.contains(&lower.as_str()) && at(next) == '(' {
                i = after_close(&c, next, ')');
            } else if at(next) != '(' && !KEYWORDS.contains(&lower.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Metric names of a Grafana query variable: `label_values(selector,
/// label)`, `query_result(expr)` or an expression.
pub(crate) fn variable_metric_names(query: &str) -> BTreeSet<String> {
    let query = query.trim();
    let call = |name: &str| {
        query
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('('))
            .and_then(|rest| rest.strip_suffix(')'))
    };
    if let Some(arguments) = call("label_values") {
        match arguments.rsplit_once(',') {
            Some((selector, _label)) => metric_names(selector),
            None => BTreeSet::new(),
        }
    } else if let Some(expr) = call("query_result") {
        metric_names(expr)
    } else if call("label_names").is_some() || call("metrics").is_some() {
        BTreeSet::new()
    } else {
        metric_names(query)
    }
}

/// The index after the string literal starting at `i`.
fn after_string(c: &[char], i: usize) -> usize {
    let quote = c[i];
    let mut j = i + 1;
    while j < c.len() && c[j] != quote {
        if c[j] == '\\' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// The index after the `close` matching the opener at `i`, skipping
/// string literals.
fn after_close(c: &[char], i: usize, close: char) -> usize {
    let mut j = i + 1;
    while j < c.len() && c[j] != close {
        if matches!(c[j], '"' | '\'' | '`') {
            j = after_string(c, j);
        } else {
            j += 1;
        }
    }
    j + 1
}

#[test]
fn promql_names_skip_functions_labels_keywords_and_variables() {
    let names = |expr: &str| -> Vec<String> { metric_names(expr).into_iter().collect() };
    assert_eq!(
        names(
            r#"sum by (topic) (rate(hrsync_a_total{topic=~".*priority.*", x="}{"}[$__rate_interval]))"#
        ),
        ["hrsync_a_total"]
    );
    assert_eq!(
        names("histogram_quantile(0.99, sum by (le, app) (rate(hrsync_b_bucket[5m])))"),
        ["hrsync_b_bucket"]
    );
    assert_eq!(
        names("sum(rate(a_sum[1m])) / on (app) group_left (team) sum(b_count offset 1h) > bool 0.5 and up"),
        ["a_sum", "b_count", "up"]
    );
    assert_eq!(
        names(r#"max without (instance) (c{quantile="0.5"}) * ${factor} + $other"#),
        ["c"]
    );
    assert_eq!(
        variable_metric_names("label_values(hrsync_c_total{x=\"a,b\"}, app)")
            .into_iter()
            .collect::<Vec<_>>(),
        ["hrsync_c_total"]
    );
    assert!(variable_metric_names("label_values(app)").is_empty());
}
