//! Hooks benchmark: how soon an immediate termination's hook delivery and
//! its session-revoked SET reach their receivers while the hooks role works
//! through a backlog. A snapshot of `--workers` workers is imported into
//! `hrsync run` (every role in one process, stores in PostgreSQL, a tansu
//! broker) with one hook endpoint taking every event and one SSF receiver,
//! both served by this process and answering each request after
//! `--answer-ms`: the hires become a backlog of `--workers` hook
//! deliveries. While it drains, `--terminations` workers are terminated
//! through the push API, one every `--every-ms`; each is timed from the
//! push API's 202 until the receiver has the `person.left` delivery, and
//! until it has the SET.
//!
//! ```sh
//! cargo build --release -p hrsync -p hrsync-tests
//! target/release/bench_hooks --workers 10000
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use clap::Parser;
use hrsync_tests::{free_port, Broker, PgDatabase};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
struct Args {
    /// Workers in the snapshot: the backlog of hook deliveries.
    #[arg(long, default_value_t = 10_000)]
    workers: usize,
    /// How long the receivers take to answer each request.
    #[arg(long, default_value_t = 50)]
    answer_ms: u64,
    /// Immediate terminations pushed while the backlog drains.
    #[arg(long, default_value_t = 40)]
    terminations: usize,
    /// Between two terminations.
    #[arg(long, default_value_t = 250)]
    every_ms: u64,
    /// The `hrsync` binary (default: beside this one).
    #[arg(long)]
    hrsync: Option<PathBuf>,
}

/// When each receiver first had each thing.
#[derive(Default)]
struct Arrivals {
    /// (employee id, event type) of hook deliveries.
    hooks: HashMap<(String, String), Instant>,
    /// The e-mail of each SET's subject.
    sets: HashMap<String, Instant>,
}

type Shared = (Arc<Mutex<Arrivals>>, Duration);

async fn hook(State((arrivals, answer)): State<Shared>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    if let Ok(event) = serde_json::from_slice::<Value>(&body) {
        let key = (
            event["data"]["employee_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            event["type"].as_str().unwrap_or_default().to_owned(),
        );
        arrivals
            .lock()
            .expect("arrivals")
            .hooks
            .entry(key)
            .or_insert(now);
    }
    tokio::time::sleep(answer).await;
    StatusCode::NO_CONTENT
}

async fn ssf(State((arrivals, answer)): State<Shared>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let claims = String::from_utf8_lossy(&body)
        .split('.')
        .nth(1)
        .and_then(|part| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .ok()
        })
        .and_then(|json| serde_json::from_slice::<Value>(&json).ok());
    if let Some(email) = claims.as_ref().and_then(|c| c["sub_id"]["email"].as_str()) {
        arrivals
            .lock()
            .expect("arrivals")
            .sets
            .entry(email.to_owned())
            .or_insert(now);
    }
    tokio::time::sleep(answer).await;
    StatusCode::ACCEPTED
}

fn snapshot(workers: usize) -> String {
    let mut csv = String::from(
        "employee_id,given_name,family_name,work_email,department,employment_type,status,hire_date,time_zone\n",
    );
    for i in 1..=workers {
        csv.push_str(&format!(
            "W{i:05},Given{i},Family{i},w{i:05}@example.com,Sales,employee,active,2021-03-01,Europe/Paris\n"
        ));
    }
    csv
}

fn config(broker: &Broker, url: &str, receiver: u16, listen: u16, push: u16, key: &str) -> String {
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

[provisioner]
database_url = "{url}"

[hooks]
database_url = "{url}"

[[hooks.endpoints]]
name = "bench"
url = "http://127.0.0.1:{receiver}/hook"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[hooks.ssf]
issuer = "http://127.0.0.1:{keys}"
listen = "127.0.0.1:{keys}"
signing_key = {{ file = "{key}" }}
key_id = "bench"

[[hooks.ssf.receivers]]
name = "sessions"
url = "http://127.0.0.1:{receiver}/ssf"
audience = "https://sessions.bench"
"#,
        brokers = broker.bootstrap(),
        keys = free_port().unwrap_or(0),
    )
}

struct Run(Child);

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `p`-th percentile of `sorted` (nearest rank).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: {} measured, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.terminations <= args.workers,
        "more terminations than workers"
    );
    let hrsync = hrsync_tests::hrsync_binary(args.hrsync.as_deref())?;
    let broker = Broker::start()?;
    let db = PgDatabase::fresh().await?;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("ssf.pem");
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()?;
    anyhow::ensure!(made.success(), "openssl genpkey: {made}");

    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .route("/ssf", axum::routing::post(ssf))
        .with_state((arrivals.clone(), Duration::from_millis(args.answer_ms)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (listen, push) = (free_port()?, free_port()?);
    let config_path = dir.path().join("hrsync.toml");
    let key_path = key.display().to_string();
    std::fs::write(
        &config_path,
        config(&broker, db.url(), receiver, listen, push, &key_path),
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
    let _run = Run(command(&["run"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()?);
    let ready = Instant::now();
    while !reqwest::get(format!("http://127.0.0.1:{listen}/readyz"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if ready.elapsed() > Duration::from_secs(120) {
            bail!(
                "hrsync run not ready in 120 s:\n{}",
                std::fs::read_to_string(&log_path)?
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let csv = dir.path().join("snapshot.csv");
    std::fs::write(&csv, snapshot(args.workers))?;
    eprintln!(
        "importing {} workers: a backlog of {} hook deliveries",
        args.workers, args.workers
    );
    let imported = Instant::now();
    let import = command(&["ingest", "import", "--source", "hris"])
        .arg(&csv)
        .output()?;
    anyhow::ensure!(
        import.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&import.stderr)
    );
    let joined = || arrivals.lock().expect("arrivals").hooks.len();
    while joined() < 100 {
        if imported.elapsed() > Duration::from_secs(120) {
            bail!("the backlog did not start draining in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "backlog draining ({} delivered); terminating {}",
        joined(),
        args.terminations
    );

    let store = sqlx::PgPool::connect(db.url()).await?;
    let owed = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM hook_delivery WHERE status = 'pending' AND hook = 'bench'",
        )
        .fetch_one(&store)
        .await
    };
    let client = reqwest::Client::new();
    let mut pushed = Vec::new();
    for n in 0..args.terminations {
        // Spread over the snapshot, from its end (delivered last).
        let worker = args.workers - n * (args.workers / args.terminations.max(1));
        let id = format!("W{worker:05}");
        let answer = client
            .post(format!("http://127.0.0.1:{push}/v1/events"))
            .bearer_auth("bench-push-token")
            .json(&json!({"type": "terminate", "employee_id": id,
                "time_zone": "Europe/Paris", "immediate": true}))
            .send()
            .await?;
        let accepted = Instant::now();
        anyhow::ensure!(answer.status().as_u16() == 202, "push: {}", answer.status());
        let owed_now = owed().await?;
        pushed.push((id, format!("w{worker:05}@example.com"), accepted, owed_now));
        tokio::time::sleep(Duration::from_millis(args.every_ms)).await;
    }
    let waiting = Instant::now();
    let (mut hooks, mut sets, mut backlog) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        {
            let seen = arrivals.lock().expect("arrivals");
            hooks.clear();
            sets.clear();
            backlog.clear();
            for (id, email, accepted, before) in &pushed {
                if let Some(at) = seen.hooks.get(&(id.clone(), "person.left".to_owned())) {
                    hooks.push(at.duration_since(*accepted));
                }
                if let Some(at) = seen.sets.get(email) {
                    sets.push(at.duration_since(*accepted));
                }
                backlog.push(*before);
            }
        }
        if hooks.len() == pushed.len() && sets.len() == pushed.len() {
            break;
        }
        if waiting.elapsed() > Duration::from_secs(120) {
            bail!(
                "after 120 s: {} of {} hooks, {} SETs",
                hooks.len(),
                pushed.len(),
                sets.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "workers: {}, receivers answer in {} ms, {} immediate terminations, one every {} ms",
        args.workers, args.answer_ms, args.terminations, args.every_ms
    );
    println!(
        "hook deliveries owed (recorded, not yet delivered) as each termination was pushed: {} to {}",
        backlog.iter().min().unwrap_or(&0),
        backlog.iter().max().unwrap_or(&0)
    );
    let drained = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let left = owed().await?;
        if left == 0 {
            break;
        }
        if drained.elapsed() > Duration::from_secs(600) {
            bail!(
                "the backlog did not drain in 600 s ({left} owed):\n{}",
                std::fs::read_to_string(&log_path)?
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  {:>5.1} s: {left} owed", imported.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "backlog of {} deliveries drained {:.1} s after the import began",
        args.workers,
        imported.elapsed().as_secs_f64()
    );
    report(
        "termination hook (person.left), push API 202 -> receiver",
        hooks,
    );
    report("session-revoked SET, push API 202 -> receiver", sets);
    Ok(())
}
