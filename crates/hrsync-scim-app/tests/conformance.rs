//! The built `hrsync-scim-app` binary against the `scim2-tester`
//! conformance checks (PyPI, pinned below), run by `run_scim2_tester.py`
//! with the Python of `~/.cache/hrsync/venv` (which `scripts/test`
//! installs).
//!
//! Every check must succeed. Every checker the package exports must have
//! run (a new scim2-tester version adding checks that do not run fails
//! here), for each resource type where it applies. A check that this app
//! cannot pass by design would be listed in `NOT_APPLICABLE` with the
//! reason; there is none.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::Value;

/// The scim2-tester version these expectations were written for.
const SCIM2_TESTER_VERSION: &str = "0.5.2";

/// Checks allowed not to succeed: (checker, reason). None.
const NOT_APPLICABLE: &[(&str, &str)] = &[];

/// Checkers the runner does not call on their own: `resource_type_tests`
/// orchestrates the per-resource-type checkers, which are counted instead.
const ORCHESTRATORS: &[&str] = &["resource_type_tests"];

/// Checkers run once per resource type; each must have run for both.
const PER_RESOURCE_TYPE: &[&str] = &[
    "object_creation",
    "object_query",
    "object_query_without_id",
    "object_query_with_attributes",
    "object_list_with_attributes",
    "search_with_attributes",
    "object_replacement",
    "object_deletion",
    "check_add_attribute",
    "check_remove_attribute",
    "check_replace_attribute",
];

/// The app binary, killed on drop.
struct App {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    base_url: String,
}

impl App {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hrsync-scim-app"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start hrsync-scim-app");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read stdout");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("hrsync-scim-app did not start: {line:?}"))
            .to_owned();
        App {
            child,
            _stdout: stdout,
            base_url: format!("http://{addr}"),
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> std::path::PathBuf {
    let python = hrsync_tests::tools_dir().join("venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing. Run `bash scripts/test` (it installs scim2-tester), or \
         `python3 -m venv ~/.cache/hrsync/venv && ~/.cache/hrsync/venv/bin/pip install \
         scim2-tester=={SCIM2_TESTER_VERSION}`",
        python.display()
    );
    python
}

fn write_token(dir: &Path, token: &str) -> String {
    let path = dir.join("token");
    std::fs::write(&path, format!("{token}\n")).expect("write token");
    path.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn passes_every_scim2_tester_check() {
    let python = python();
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = write_token(dir.path(), &hrsync_tests::unique("token"));
    let app = App::start(&["--token-file", &token_file]);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/run_scim2_tester.py");
    let output = Command::new(python)
        .arg(&script)
        .args([&app.base_url, &token_file])
        .output()
        .expect("run scim2-tester");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "scim2-tester failed to run: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );

    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let inventory = lines
        .iter()
        .find(|l| l["kind"] == "inventory")
        .expect("inventory line");
    assert_eq!(
        inventory["version"], SCIM2_TESTER_VERSION,
        "the checks below were written for scim2-tester {SCIM2_TESTER_VERSION}"
    );
    let exported: BTreeSet<&str> = inventory["checkers"]
        .as_array()
        .expect("checkers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let results: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "result").collect();

    // Every check succeeded (or is listed as not applicable, with why).
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r["status"] != "SUCCESS")
        .filter(|r| !NOT_APPLICABLE.iter().any(|(title, _)| r["title"] == *title))
        .map(|r| {
            format!(
                "{} {} [{}]: {}",
                r["resource_type"].as_str().unwrap_or("-"),
                r["title"].as_str().unwrap_or("?"),
                r["status"].as_str().unwrap_or("?"),
                r["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "checks not passed:\n{}",
        failed.join("\n")
    );

    // Every exported checker ran, the per-resource-type ones for both types.
    let mut ran: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in &results {
        let title = r["title"].as_str().expect("title");
        let resource_type = r["resource_type"].as_str().unwrap_or("-");
        ran.entry(title).or_default().insert(resource_type);
    }
    let not_run: Vec<&&str> = exported
        .iter()
        .filter(|name| !ORCHESTRATORS.contains(name) && !ran.contains_key(**name))
        .collect();
    assert!(not_run.is_empty(), "checkers that did not run: {not_run:?}");
    for name in PER_RESOURCE_TYPE {
        assert_eq!(
            ran.get(name)
                .map(|types| types.iter().copied().collect::<Vec<_>>()),
            Some(vec!["Group", "User"]),
            "{name} must run for users and groups"
        );
    }
    // The PATCH checkers run once per attribute: all of them were tried.
    let per_attribute = |title: &str, resource_type: &str| {
        results
            .iter()
            .filter(|r| r["title"] == title && r["resource_type"] == resource_type)
            .count()
    };
    assert!(per_attribute("check_replace_attribute", "User") >= 25);
    assert!(per_attribute("check_replace_attribute", "Group") >= 3);
    eprintln!(
        "scim2-tester {SCIM2_TESTER_VERSION}: {} checks from {} checkers, all passed",
        results.len(),
        ran.len()
    );
}

#[test]
fn refuses_to_start_without_a_token() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hrsync-scim-app"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("HRSYNC_SCIM_APP_TOKEN")
            .env_remove("HRSYNC_SCIM_APP_TOKEN_FILE")
            .output()
            .expect("run hrsync-scim-app")
    };
    let none = run(&[]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("--token-file"));

    let dir = tempfile::tempdir().expect("tempdir");
    let empty = write_token(dir.path(), "  ");
    assert!(!run(&["--token-file", &empty]).status.success());
    assert!(!run(&["--token-file", "/nonexistent/token"])
        .status
        .success());
    assert!(!run(&["--token", "a", "--token-file", &empty])
        .status
        .success());
}

#[test]
fn serves_with_the_token_of_the_environment_and_never_logs_it() {
    let token = hrsync_tests::unique("env-token");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hrsync-scim-app"))
        .args(["--listen", "127.0.0.1:0"])
        .env("HRSYNC_SCIM_APP_TOKEN", &token)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hrsync-scim-app");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read stdout");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening")
        .to_owned();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let statuses = runtime.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/ServiceProviderConfig");
        let with = client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("get");
        let without = client.get(&url).send().await.expect("get");
        (with.status().as_u16(), without.status().as_u16())
    });
    assert_eq!(statuses, (200, 401));

    let _ = child.kill();
    let output = child.wait_with_output().expect("wait");
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(logs.contains("listening"), "{logs}");
    assert!(
        logs.contains("/ServiceProviderConfig"),
        "requests are logged at debug: {logs}"
    );
    assert!(!logs.contains(&token), "the token was logged: {logs}");
}
