//! Scale-out benchmark: the same backlog of creates drained by 1 and by 3
//! `hrsync run --role provisioner` processes (release binary) sharing one
//! consumer group, one PostgreSQL link store and one broker (tansu), into
//! a local SCIM app that answers every request after `--latency-ms` (50 ms:
//! a slow SaaS app). Each process may have `--concurrency` requests in
//! flight to the app (the app's `concurrency`), so one process is bound by
//! the app's latency, and more processes carry more.
//!
//! `cargo build --release -p hrsync -p hrsync-tests && target/release/bench_scale`
//!
//! Throughput is the successful creates per second from the audit table,
//! over the whole drain and over its middle 80 % (without the processes'
//! start and the consumer group's first rebalances).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use hrsync_bus::Producer;
use hrsync_domain::{
    AppAssignment, DirectoryChange, EmployeeId, EmploymentType, LifecycleState, PersonId, Profile,
    TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_scim_app::AppState;
use hrsync_tests::{free_port, publish_directory_changes, Broker, PgDatabase};

#[derive(Debug, Parser)]
struct Args {
    /// Creates in the backlog.
    #[arg(long, default_value_t = 3_000)]
    creates: usize,
    /// Provisioner processes of each run.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    processes: Vec<usize>,
    /// The app's answer time.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Requests in flight per process to the app.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Partitions of the topics (at least the most processes).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// The `hrsync` binary (default: beside this one).
    #[arg(long)]
    hrsync: Option<std::path::PathBuf>,
}

fn hire(i: usize) -> DirectoryChange {
    let person = format!("S{i:06}");
    let mut attributes = WorkerAttributes::new("Given", &person, EmploymentType::Employee);
    attributes.work_email = Some(format!("{person}@example.com"));
    attributes.title = Some("Agent".into());
    DirectoryChange {
        person_id: PersonId::new(format!("p-{person}")).expect("person id"),
        employee_id: EmployeeId::new(&person).expect("employee id"),
        version: 1,
        lifecycle_state: LifecycleState::Active,
        profile: Profile {
            attributes,
            time_zone: TimeZone::new("Europe/Berlin").expect("tz"),
            start_at: None,
            terminate_at: None,
        },
        groups: vec![],
        apps: vec![AppAssignment {
            app: "slow".into(),
            groups: vec![],
        }],
        caused_by: vec![],
        priority: false,
        changed_at: Timestamp::from_millis(chrono::Utc::now().timestamp_millis()).expect("now"),
    }
}

/// A local SCIM app that answers every request after `latency`.
async fn slow_app(token: &str, latency: Duration) -> anyhow::Result<(String, AppState)> {
    let state = AppState::new(token);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let slow = axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            tokio::time::sleep(latency).await;
            next.run(request).await
        },
    );
    let router = hrsync_scim_app::router(state.clone()).layer(slow);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((base_url, state))
}

/// Processes killed when the run ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One run with `n` processes: creates per second.
async fn run(args: &Args, hrsync: &std::path::Path, n: usize) -> anyhow::Result<Rates> {
    let broker = Broker::start()?;
    let db = PgDatabase::fresh().await?;
    let token = "bench-token";
    let (base_url, app) = slow_app(token, Duration::from_millis(args.latency_ms)).await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("hrsync.toml");
    let kafka = broker.kafka_toml().replace(
        "default_partitions = 3",
        &format!("default_partitions = {}", args.partitions),
    );
    std::fs::write(
        &config,
        format!(
            "{kafka}\n[telemetry]\nlog_format = \"human\"\nlog_filter = \"warn,hrsync_bus::consumer=info\"\n\n\
             [provisioner]\ndatabase_url = \"{}\"\nmax_connections = 16\n\n\
             [[provisioner.apps]]\nname = \"slow\"\nbase_url = \"{base_url}\"\ntoken = \"{token}\"\n\
             use_patch = true\nuse_etag = false\npush_groups = false\nrate_limit = 0\n\
             concurrency = {}\n",
            db.url(),
            args.concurrency
        ),
    )?;
    let hrsync_command = || {
        let mut command = Command::new(hrsync);
        command.arg("--config").arg(&config);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HRSYNC_") {
                command.env_remove(name);
            }
        }
        command
    };
    let ensured = hrsync_command().args(["topics", "ensure"]).output()?;
    if !ensured.status.success() {
        bail!(
            "topics ensure: {}",
            String::from_utf8_lossy(&ensured.stderr)
        );
    }
    let producer = Producer::new(&broker.kafka_config())?;
    let changes: Vec<DirectoryChange> = (0..args.creates).map(hire).collect();
    publish_directory_changes(&producer, "directory.changes.v1", &changes).await?;

    let mut processes = Processes(Vec::new());
    let mut ports = Vec::new();
    for i in 0..n {
        let log = std::fs::File::create(dir.path().join(format!("provisioner-{i}.log")))?;
        let port = free_port()?;
        ports.push(port);
        processes.0.push(
            hrsync_command()
                .args(["run", "--role", "provisioner"])
                .env("HRSYNC_TELEMETRY__LISTEN", format!("127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
    }
    let started = Instant::now();
    let mut last = (Instant::now(), 0);
    loop {
        let made = app.user_count();
        if made >= args.creates {
            break;
        }
        if made != last.1 {
            last = (Instant::now(), made);
        } else if last.0.elapsed() > Duration::from_secs(120) {
            bail!(
                "{n} process(es): stuck at {made} of {} accounts",
                args.creates
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{n} process(es): {} accounts in {:?}",
        args.creates,
        started.elapsed()
    );
    // How the work was shared, and how often the consumers rejoined.
    for port in &ports {
        let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await?
            .text()
            .await?;
        let sum = |prefix: &str, filter: &str| -> f64 {
            metrics
                .lines()
                .filter(|l| l.starts_with(prefix) && l.contains(filter))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
                .abs()
        };
        eprintln!(
            "  process on :{port}: {} creates, {} consumer rejoins",
            sum(
                "hrsync_provisioner_operations_total{",
                "operation=\"CREATE\""
            ),
            sum("hrsync_bus_consumer_rejoins_total", "")
        );
    }
    // Which partitions each process held, rebalance by rebalance.
    for i in 0..n {
        let log = std::fs::read_to_string(dir.path().join(format!("provisioner-{i}.log")))?;
        for line in log.lines().filter(|l| l.contains("partitions ")) {
            eprintln!("  process {i}: {line}");
        }
    }
    let pool = sqlx::PgPool::connect(db.url()).await?;
    let times: Vec<i64> = sqlx::query_scalar(
        "SELECT at_ms FROM provisioner_audit \
         WHERE operation = 'CREATE' AND outcome = 'SUCCESS' ORDER BY at_ms",
    )
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    drop(processes);
    Ok(Rates::of(&times))
}

/// Creates per second over the whole drain, and over its middle 80 % (the
/// rate a long backlog drains at, without the processes' start and the
/// group's first rebalances).
#[derive(Debug, Clone, Copy)]
struct Rates {
    whole: f64,
    steady: f64,
}

impl Rates {
    #[allow(clippy::cast_precision_loss)] // counts and ms far below 2^52
    fn of(times: &[i64]) -> Rates {
        let per_second = |from: usize, to: usize| {
            let span = (times[to] - times[from]).max(1) as f64 / 1000.0;
            (to - from) as f64 / span
        };
        if times.len() < 10 {
            return Rates {
                whole: 0.0,
                steady: 0.0,
            };
        }
        let n = times.len();
        Rates {
            whole: per_second(0, n - 1),
            steady: per_second(n / 10, n * 9 / 10),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let hrsync = hrsync_tests::hrsync_binary(args.hrsync.as_deref())?;
    let mut rates = Vec::new();
    for n in &args.processes {
        let rate = run(&args, &hrsync, *n).await?;
        println!(
            "{n} provisioner process(es), app latency {} ms, concurrency {} per process: \
             {:.0} creates/s over the whole drain, {:.0} over its middle 80 %",
            args.latency_ms, args.concurrency, rate.whole, rate.steady
        );
        rates.push((*n, rate));
    }
    if let (Some((1, one)), Some((n, many))) = (rates.first(), rates.last()) {
        println!(
            "{n} processes: {:.2} times 1 over the whole drain, {:.2} over its middle",
            many.whole / one.whole,
            many.steady / one.steady
        );
    }
    Ok(())
}
