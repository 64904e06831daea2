//! End-to-end benchmark: what a user runs. One snapshot of `--workers`
//! workers is imported with `hrsync ingest import` into `hrsync run` (every
//! role in one process, stores in PostgreSQL, a tansu broker), which
//! provisions two local SCIM apps (`hrsync-scim-app`, in this process) with
//! groups pushed: everyone in `Everyone`, and each worker in the group of
//! their department. Timed from the start of the import until every account
//! exists and every group holds exactly the members it should, in both apps.
//!
//! ```sh
//! cargo build --release -p hrsync -p hrsync-tests
//! cargo run --release -p hrsync-tests --bin bench_e2e -- --workers 10000
//! ```
//!
//! Reports the time, the SCIM requests each app served by kind, and the
//! group PATCH requests per member added.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use hrsync_scim_app::{AppState, Options, Quirk};
use hrsync_tests::{free_port, Broker, PgDatabase};
use serde_json::Value;

#[derive(Debug, Parser)]
struct Args {
    /// Workers in the snapshot.
    #[arg(long, default_value_t = 10_000)]
    workers: usize,
    /// Departments the workers are spread over (one group each).
    #[arg(long, default_value_t = 5)]
    departments: usize,
    /// Push groups (without: accounts only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    groups: bool,
    /// Quirk modes of both apps (e.g. `read-change-write-patch`).
    #[arg(long = "quirk")]
    quirks: Vec<Quirk>,
    /// A `key = value` TOML line added to every `[[provisioner.apps]]`
    /// entry (e.g. `--app-set 'group_batch = 50'`); repeatable.
    #[arg(long = "app-set")]
    app_set: Vec<String>,
    /// The `hrsync` binary (default: beside this one).
    #[arg(long)]
    hrsync: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

/// The SCIM requests an app served, by kind.
#[derive(Debug, Default)]
struct Counts {
    user_posts: AtomicU64,
    group_patches: AtomicU64,
    other: AtomicU64,
}

struct LocalApp {
    name: String,
    base_url: String,
    token: String,
    state: AppState,
    counts: Arc<Counts>,
}

async fn start_app(name: &str, quirks: &[Quirk]) -> anyhow::Result<LocalApp> {
    let token = format!("{name}-bench-token");
    let state = AppState::with_options(
        token.clone(),
        Options {
            quirks: quirks.iter().copied().collect(),
            ..Options::default()
        },
    );
    let counts = Arc::new(Counts::default());
    let counting = {
        let counts = counts.clone();
        axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let path = request.uri().path();
                let counter = match (request.method().as_str(), path) {
                    ("POST", p) if p.ends_with("/Users") => &counts.user_posts,
                    ("PATCH", p) if p.contains("/Groups/") => &counts.group_patches,
                    _ => &counts.other,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                next.run(request)
            },
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let router = hrsync_scim_app::router(state.clone()).layer(counting);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(LocalApp {
        name: name.to_owned(),
        base_url,
        token,
        state,
        counts,
    })
}

fn department(i: usize, departments: usize) -> String {
    format!("Department {}", i % departments.max(1))
}

fn snapshot(workers: usize, departments: usize) -> String {
    let mut csv = String::from(
        "employee_id,given_name,family_name,title,department,employment_type,status,hire_date,time_zone\n",
    );
    for i in 1..=workers {
        csv.push_str(&format!(
            "W{i:05},Given{i},Family{i},Agent,{},employee,active,2021-03-01,Europe/Paris\n",
            department(i, departments)
        ));
    }
    csv
}

fn config(args: &Args, broker: &Broker, url: &str, apps: &[LocalApp], listen: u16) -> String {
    let names: Vec<String> = apps.iter().map(|a| format!("{:?}", a.name)).collect();
    let names = names.join(", ");
    let mut rules = format!(
        "[[projector.rules.groups]]\nname = \"Everyone\"\nrule = 'true'\napps = [{names}]\n"
    );
    for d in 0..args.departments {
        let name = department(d, args.departments);
        rules.push_str(&format!(
            "\n[[projector.rules.groups]]\nname = {name:?}\nrule = 'person.department == {name:?}'\napps = [{names}]\n"
        ));
    }
    let mut app_sections = String::new();
    for app in apps {
        app_sections.push_str(&format!(
            "\n[[provisioner.apps]]\nname = {:?}\nbase_url = {:?}\ntoken = {:?}\npush_groups = {}\nrate_limit = 0\n",
            app.name, app.base_url, app.token, args.groups
        ));
        for line in &args.app_set {
            app_sections.push_str(line);
            app_sections.push('\n');
        }
    }
    format!(
        r#"[kafka]
brokers = "{brokers}"
default_partitions = 3

[telemetry]
log_format = "human"
log_filter = "warn"
listen = "127.0.0.1:{listen}"

[ingest]
database_url = "{url}"

[ingest.push]
listen = "127.0.0.1:{push}"
token = "bench-push-token"

[[ingest.sources]]
name = "hris"

[projector]
database_url = "{url}"

{rules}
[provisioner]
database_url = "{url}"
{app_sections}"#,
        brokers = broker.bootstrap(),
        push = free_port().unwrap_or(0),
    )
}

/// Per group display name: the member ids (several groups of one name are
/// listed apart).
async fn groups(app: &LocalApp) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let http = reqwest::Client::new();
    let mut found = Vec::new();
    let mut start = 1;
    loop {
        let page: Value = http
            .get(format!("{}/Groups", app.base_url))
            .bearer_auth(&app.token)
            .query(&[("startIndex", start.to_string()), ("count", "100".into())])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let resources = page["Resources"].as_array().cloned().unwrap_or_default();
        let got = resources.len();
        for g in resources {
            let members = g["members"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(|v| v["value"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            found.push((g["displayName"].as_str().unwrap_or("").to_owned(), members));
        }
        start += got;
        if got == 0 || start as u64 > page["totalResults"].as_u64().unwrap_or(0) {
            return Ok(found);
        }
    }
}

/// What each app's groups should be: display name to member count.
fn desired(args: &Args) -> BTreeMap<String, usize> {
    let mut want = BTreeMap::new();
    if !args.groups {
        return want;
    }
    want.insert("Everyone".to_owned(), args.workers);
    for i in 1..=args.workers {
        *want.entry(department(i, args.departments)).or_default() += 1;
    }
    want
}

/// Whether an app's groups are exactly as desired (each name once, with
/// distinct members), and if not, why.
fn groups_differ(
    found: &[(String, Vec<String>)],
    want: &BTreeMap<String, usize>,
) -> Option<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, members) in found {
        if seen.insert(name, members.len()).is_some() {
            return Some(format!("group {name:?} exists more than once"));
        }
        let distinct: std::collections::HashSet<&String> = members.iter().collect();
        if distinct.len() != members.len() {
            return Some(format!("group {name:?} lists a member twice"));
        }
    }
    for (name, count) in want {
        match seen.get(name.as_str()) {
            Some(n) if n == count => {}
            Some(n) => return Some(format!("{name:?}: {n} of {count} members")),
            None => return Some(format!("{name:?}: missing")),
        }
    }
    (seen.len() != want.len()).then(|| format!("{} groups, {} wanted", seen.len(), want.len()))
}

struct Run {
    child: Child,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let hrsync = hrsync_tests::hrsync_binary(args.hrsync.as_deref())?;
    let broker = Broker::start()?;
    let db = PgDatabase::fresh().await?;
    let mut apps = Vec::new();
    for name in ["slack", "zendesk"] {
        apps.push(start_app(name, &args.quirks).await?);
    }
    let dir = tempfile::tempdir()?;
    let listen = free_port()?;
    let config_path = dir.path().join("hrsync.toml");
    std::fs::write(
        &config_path,
        config(&args, &broker, db.url(), &apps, listen),
    )?;
    let log_path = dir.path().join("hrsync.log");
    let command = |sub: &[&str]| {
        let mut command = Command::new(&hrsync);
        command.arg("--config").arg(&config_path).args(sub);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HRSYNC_") {
                command.env_remove(name);
            }
        }
        command
    };
    let run = Run {
        child: command(&["run"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()?,
    };
    let ready = Instant::now();
    loop {
        let up = reqwest::get(format!("http://127.0.0.1:{listen}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            break;
        }
        if ready.elapsed() > Duration::from_secs(120) {
            bail!(
                "hrsync run not ready in 120 s:\n{}",
                std::fs::read_to_string(&log_path)?
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let csv = dir.path().join("snapshot.csv");
    std::fs::write(&csv, snapshot(args.workers, args.departments))?;
    let want = desired(&args);
    eprintln!(
        "importing {} workers into 2 apps, groups {}",
        args.workers,
        if args.groups { "pushed" } else { "not pushed" }
    );

    let started = Instant::now();
    let import = command(&["ingest", "import", "--source", "hris"])
        .arg(&csv)
        .output()?;
    anyhow::ensure!(
        import.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&import.stderr)
    );
    let imported = started.elapsed();
    let mut accounts_at = None;
    let mut last_report = Instant::now();
    let done = loop {
        let users: Vec<usize> = apps.iter().map(|a| a.state.user_count()).collect();
        if accounts_at.is_none() && users.iter().all(|&u| u >= args.workers) {
            accounts_at = Some(started.elapsed());
        }
        let mut why = None;
        if accounts_at.is_some() {
            for app in &apps {
                if let Some(differs) = groups_differ(&groups(app).await?, &want) {
                    why = Some(format!("{}: {differs}", app.name));
                    break;
                }
            }
            if why.is_none() {
                break started.elapsed();
            }
        }
        if started.elapsed() > Duration::from_secs(args.timeout_secs) {
            bail!(
                "not done after {} s: users {users:?}; {}\n{}",
                args.timeout_secs,
                why.unwrap_or_default(),
                tail(&log_path)
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  {:>5.1} s: users {users:?} {}",
                started.elapsed().as_secs_f64(),
                why.unwrap_or_default()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    drop(run);

    println!(
        "workers: {}, apps: 2, groups pushed: {}",
        args.workers, args.groups
    );
    println!("import command: {:.1} s", imported.as_secs_f64());
    println!(
        "every account in place: {:.1} s",
        accounts_at.unwrap_or(done).as_secs_f64()
    );
    println!(
        "every account and membership in place: {:.1} s",
        done.as_secs_f64()
    );
    let members_added: usize = want.values().sum();
    for app in &apps {
        let patches = app.counts.group_patches.load(Ordering::Relaxed);
        println!(
            "{}: {} user creates, {} group PATCH requests ({} members added: {:.3} requests per member), {} other requests",
            app.name,
            app.counts.user_posts.load(Ordering::Relaxed),
            patches,
            members_added,
            if members_added == 0 { 0.0 } else { patches as f64 / members_added as f64 },
            app.counts.other.load(Ordering::Relaxed),
        );
    }
    Ok(())
}

fn tail(path: &std::path::Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
