//! Metric names in Rust sources, as the Prometheus exporter
//! (metrics-exporter-prometheus) renders them: counters and gauges under
//! their own name; histograms as `_bucket`, `_sum`, `_count` when buckets are
//! configured for them, otherwise as summaries (the name with a `quantile`
//! label, `_sum`, `_count`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::{files_under, read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// What a scan of the sources found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    metrics: BTreeMap<String, Kind>,
    /// `set_buckets`: every histogram has buckets.
    all_bucketed: bool,
    /// `set_buckets_for_metric(Matcher::…)`: (matcher, pattern).
    bucketed: Vec<(String, String)>,
}

impl Scan {
    fn has_buckets(&self, name: &str) -> bool {
        self.all_bucketed
            || self
                .bucketed
                .iter()
                .any(|(matcher, pattern)| match matcher.as_str() {
                    "Full" => name == pattern,
                    "Prefix" => name.starts_with(pattern.as_str()),
                    "Suffix" => name.ends_with(pattern.as_str()),
                    other => panic!("unknown Matcher::{other}"),
                })
    }

    /// Every series name a scrape can show.
    pub(crate) fn series(&self) -> BTreeSet<String> {
        let mut series = BTreeSet::new();
        for (name, kind) in &self.metrics {
            match kind {
                Kind::Counter | Kind::Gauge => {
                    series.insert(name.clone());
                }
                Kind::Histogram => {
                    if self.has_buckets(name) {
                        series.insert(format!("{name}_bucket"));
                    } else {
                        series.insert(name.clone());
                    }
                    series.insert(format!("{name}_sum"));
                    series.insert(format!("{name}_count"));
                }
            }
        }
        series
    }
}

/// Every series the code in `crates/*/src` exports.
pub(crate) fn exported_series(repo: &Path) -> BTreeSet<String> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(repo.join("crates")).expect("crates/") {
        let src = entry.expect("entry").path().join("src");
        if src.is_dir() {
            for file in files_under(&src) {
                if file.extension().is_some_and(|e| e == "rs") {
                    sources.push(read(&file));
                }
            }
        }
    }
    let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
    scan(&sources).series()
}

/// Names a pending metric would be visible under, whatever its kind.
pub(crate) fn series_names(metric: &str) -> Vec<String> {
    ["", "_bucket", "_sum", "_count"]
        .iter()
        .map(|suffix| format!("{metric}{suffix}"))
        .collect()
}

/// Finds `counter!`, `gauge!` and `histogram!` invocations (names as
/// literals or `&str` constants), and the exporter's bucket settings.
/// A name it cannot read fails the scan rather than being skipped.
pub(crate) fn scan(sources: &[&str]) -> Scan {
    let files: Vec<Vec<Tok>> = sources
        .iter()
        .map(|source| without_test_items(lex(source)))
        .collect();
    let mut constants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for tokens in &files {
        for window in tokens.windows(7) {
            if let [Tok::Ident(kw), Tok::Ident(name), Tok::Punct(':'), Tok::Punct('&'), Tok::Ident(ty), Tok::Punct('='), Tok::Str(value)] =
                window
            {
                if kw == "const" && ty == "str" {
                    constants
                        .entry(name.clone())
                        .or_default()
                        .insert(value.clone());
                }
            }
        }
    }
    let resolve = |argument: &[Tok]| -> String {
        // `"name".into()`, `NAME.to_owned()`: the part before the call.
        let argument = argument
            .split(|t| *t == Tok::Punct('.'))
            .next()
            .unwrap_or_default();
        match argument {
            [Tok::Str(name)] => name.clone(),
            path if path
                .iter()
                .all(|t| matches!(t, Tok::Ident(_) | Tok::Punct(':'))) =>
            {
                let Some(Tok::Ident(constant)) = path.last() else {
                    panic!("an empty metric name argument");
                };
                let values = constants
                    .get(constant)
                    .unwrap_or_else(|| panic!("metric name constant {constant} not found"));
                assert_eq!(
                    values.len(),
                    1,
                    "constant {constant} is ambiguous: {values:?}"
                );
                values.iter().next().cloned().unwrap_or_default()
            }
            other => panic!("cannot read a metric name from {other:?}"),
        }
    };
    let mut scan = Scan::default();
    for tokens in &files {
        for (i, token) in tokens.iter().enumerate() {
            let Tok::Ident(word) = token else { continue };
            let rest = &tokens[i + 1..];
            let kind = match word.as_str() {
                "counter" => Kind::Counter,
                "gauge" => Kind::Gauge,
                "histogram" => Kind::Histogram,
                "set_buckets" if rest.first() == Some(&Tok::Punct('(')) => {
                    scan.all_bucketed = true;
                    continue;
                }
                "set_buckets_for_metric" => {
                    if let [Tok::Punct('('), Tok::Ident(m), Tok::Punct(':'), Tok::Punct(':'), Tok::Ident(matcher), Tok::Punct('('), ..] =
                        rest
                    {
                        assert_eq!(m, "Matcher", "set_buckets_for_metric without Matcher::");
                        let pattern = resolve(first_argument(&rest[6..]));
                        scan.bucketed.push((matcher.clone(), pattern));
                    }
                    continue;
                }
                _ => continue,
            };
            if !matches!(rest, [Tok::Punct('!'), Tok::Punct('('), ..]) {
                continue;
            }
            let name = resolve(first_argument(&rest[2..]));
            if let Some(earlier) = scan.metrics.insert(name.clone(), kind) {
                assert_eq!(earlier, kind, "{name} is recorded as two kinds");
            }
        }
    }
    scan
}

/// The tokens of a call's first argument (`tokens` starts after `(`).
fn first_argument(tokens: &[Tok]) -> &[Tok] {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') if depth > 0 => depth -= 1,
            Tok::Punct(',' | ')') if depth == 0 => return &tokens[..i],
            _ => {}
        }
    }
    tokens
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
}

/// Rust source as identifiers, string literals and punctuation; comments,
/// numbers, char literals and lifetimes dropped.
fn lex(source: &str) -> Vec<Tok> {
    let c: Vec<char> = source.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let ident_char = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some((text, end)) = raw_string(&c, i) {
            out.push(Tok::Str(text));
            i = end;
        } else if ch == '"' || (ch == 'b' && at(i + 1) == '"') {
            i += if ch == 'b' { 2 } else { 1 };
            let mut text = String::new();
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    text.push(c[i]);
                    i += 1;
                }
                text.push(at(i));
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(text));
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // An escaped char literal.
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime.
                i += 1;
                while ident_char(at(i)) {
                    i += 1;
                }
            }
        } else if ch.is_ascii_digit() {
            while ident_char(at(i)) || (at(i) == '.' && at(i + 1).is_ascii_digit()) {
                i += 1;
            }
        } else if ident_char(ch) {
            let start = i;
            while ident_char(at(i)) {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else {
            out.push(Tok::Punct(ch));
            i += 1;
        }
    }
    out
}

/// A raw string (`r"…"`, `r#"…"#`, `br"…"`) starting at `i`: its text
/// and the index after it.
fn raw_string(c: &[char], i: usize) -> Option<(String, usize)> {
    let start = match (c.get(i), c.get(i + 1)) {
        (Some('r'), _) => i + 1,
        (Some('b'), Some('r')) => i + 2,
        _ => return None,
    };
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return None;
    }
    let hashes = c[start..].iter().take_while(|&&ch| ch == '#').count();
    if c.get(start + hashes) != Some(&'"') {
        return None;
    }
    let body = start + hashes + 1;
    let closing: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    let end = (body..c.len()).find(|&j| c[j..].starts_with(&closing))?;
    Some((c[body..end].iter().collect(), end + closing.len()))
}

/// Drops the items under `#[cfg(test)]`: their metrics are never
/// exported by a running role.
fn without_test_items(tokens: Vec<Tok>) -> Vec<Tok> {
    let cfg_test = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".to_owned()),
        Tok::Punct('('),
        Tok::Ident("test".to_owned()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if !tokens[i..].starts_with(&cfg_test) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        i += cfg_test.len();
        // The item runs to a `;` outside brackets, or through its first
        // `{ … }` (a module, a function).
        let mut depth = 0usize;
        while i < tokens.len() {
            match &tokens[i] {
                Tok::Punct('(' | '[') => depth += 1,
                Tok::Punct(')' | ']') => depth = depth.saturating_sub(1),
                Tok::Punct(';') if depth == 0 => {
                    i += 1;
                    break;
                }
                Tok::Punct('{') if depth == 0 => {
                    let mut braces = 0usize;
                    while i < tokens.len() {
                        match &tokens[i] {
                            Tok::Punct('{') => braces += 1,
                            Tok::Punct('}') => braces -= 1,
                            _ => {}
                        }
                        i += 1;
                        if braces == 0 {
                            break;
                        }
                    }
                    break;
                }
                _ => {}
            }
            i += 1;
        }
    }
    out
}

#[test]
fn metric_scan_reads_names_constants_and_buckets_and_skips_tests() {
    let source = r##"
        const LAG: &'static str = "hrsync_x_lag";
        pub(crate) const DONE: &str = "hrsync_x_done_total";
        // metrics::counter!("hrsync_in_a_comment_total");
        /* metrics::gauge!("hrsync_in_a_block_comment"); */
        fn work(c: char) {
            let _ = '"';
            metrics::counter!(crate::metrics::DONE, "stage" => "x").increment(1);
            gauge!(LAG).set(1.0);
            metrics::histogram!("hrsync_x_seconds", "app" => app.clone()).record(0.1);
            metrics::histogram!("hrsync_y_seconds").record(0.1);
            metrics::describe_counter!("hrsync_described_only_total", "text");
            let _ = r#"metrics::counter!("hrsync_in_a_raw_string_total")"#;
        }
        fn recorder() {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("hrsync_x_seconds".into()), &[0.1, 1.0]);
        }
        #[cfg(test)]
        mod tests {
            fn t() { metrics::counter!("hrsync_test_only_total").increment(1); }
        }
        fn after_tests() { metrics::counter!("hrsync_after_tests_total").increment(1); }
    "##;
    let series = scan(&[source]).series();
    let expected: BTreeSet<String> = [
        "hrsync_after_tests_total",
        "hrsync_x_done_total",
        "hrsync_x_lag",
        // Buckets configured: a histogram.
        "hrsync_x_seconds_bucket",
        "hrsync_x_seconds_count",
        "hrsync_x_seconds_sum",
        // No buckets: a summary with quantiles.
        "hrsync_y_seconds",
        "hrsync_y_seconds_count",
        "hrsync_y_seconds_sum",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(series, expected);
}
