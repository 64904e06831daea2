//! Provisioner benchmark: a backlog of directory changes (creates) on a real
//! Kafka-protocol broker (tansu) is drained by the provisioner, wired as
//! `hrsync provisioner run` wires it, into local SCIM apps
//! (`hrsync-scim-app`, in-process) with its link store in PostgreSQL (or
//! SQLite). While the backlog drains, terminations on the priority lane are
//! timed from send until the app's deactivation is recorded.
//!
//! `cargo run --release -p hrsync-tests --bin bench_provisioner -- --creates 50000`
//!
//! Phases: (1) the provisioner creates the accounts of the people whose
//! terminations are timed later, then stops; (2) the backlog is queued on
//! `directory.changes.v1`; (3) the provisioner starts again and drains it;
//! at each `--probe-at` share of the drain, terminations are sent one after
//! another to `directory.changes.priority.v1`.
//!
//! Throughput comes from the `provisioner_audit` table (the `at_ms` of each
//! successful create); progress is read from the apps' user counts, so
//! polling adds no queries to the store while the backlog drains.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use hrsync_bus::{KafkaConfig, Producer, TopicSpec};
use hrsync_domain::{
    AppAssignment, AuditOperation, AuditOutcome, DirectoryChange, EmployeeId, EmploymentType,
    LifecycleState, PersonId, Profile, TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_provisioner::config::ProvisionerConfig;
use hrsync_provisioner::run::{self, Provisioner, Topics};
use hrsync_scim_app::AppState;
use hrsync_store::Db;
use hrsync_tests::{publish_directory_changes, Broker, PgDatabase, SqliteFile};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The allocator of the `hrsync` binary, so that the provisioner runs here
/// as it runs there.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Store {
    Postgres,
    Sqlite,
}

#[derive(Debug, Parser)]
struct Args {
    /// Creates in the backlog: one person hired (ACTIVE) per change.
    #[arg(long, default_value_t = 50_000)]
    creates: usize,
    /// Apps every person is assigned to, each a local SCIM app of its own.
    #[arg(long, default_value_t = 1)]
    apps: usize,
    /// Terminations timed in all, spread over the `--probe-at` points.
    #[arg(long, default_value_t = 40)]
    probes: usize,
    /// Shares of the drain (percent of the backlog's accounts created) at
    /// which terminations are sent.
    #[arg(long, value_delimiter = ',', default_value = "1,25,50,75")]
    probe_at: Vec<f64>,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// The provisioner's link store.
    #[arg(long, value_enum, default_value_t = Store::Postgres)]
    store: Store,
    /// A `key = value` TOML line added to the `[provisioner]` section (e.g.
    /// `--set 'max_connections = 8'`); repeatable.
    #[arg(long = "set")]
    set: Vec<String>,
    /// A `key = value` TOML line added to every `[[provisioner.apps]]`
    /// entry (e.g. `--app-set 'use_patch = true'`); repeatable.
    #[arg(long = "app-set")]
    app_set: Vec<String>,
    /// A librdkafka property for every client, as `[kafka.properties]`
    /// gives it (e.g. `--kafka fetch.wait.max.ms=100`); repeatable.
    #[arg(long = "kafka", value_parser = key_value)]
    kafka: Vec<(String, String)>,
    /// Before each termination, wait a random 0..=this many milliseconds,
    /// so sends are not in step with the consumer's fetch cycle (a
    /// termination sent right after the previous one was applied always
    /// lands at the start of a new fetch).
    #[arg(long, default_value_t = 1000)]
    probe_gap_ms: u64,
    /// Diagnostic, not how `hrsync provisioner run` works: do not publish
    /// audit records to Kafka (they are still stored in the table).
    #[arg(long)]
    no_audit_publish: bool,
    /// Give up when no account has been created for this many seconds.
    #[arg(long, default_value_t = 120)]
    stall_secs: u64,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A directory change as the projector emits it for a hire (ACTIVE, the
/// apps assigned) or a termination (DEPROVISIONED, no apps, fast lane).
fn change(person: &str, version: u64, apps: &[String], terminated: bool) -> DirectoryChange {
    let mut attributes = WorkerAttributes::new("Given", person, EmploymentType::Employee);
    attributes.work_email = Some(format!("{person}@example.com"));
    attributes.title = Some("Agent".into());
    attributes.department = Some("Customer Support".into());
    DirectoryChange {
        person_id: PersonId::new(format!("p-{person}")).expect("person id"),
        employee_id: EmployeeId::new(person).expect("employee id"),
        version,
        lifecycle_state: if terminated {
            LifecycleState::Deprovisioned
        } else {
            LifecycleState::Active
        },
        profile: Profile {
            attributes,
            time_zone: TimeZone::new("Europe/Berlin").expect("tz"),
            start_at: None,
            terminate_at: None,
        },
        groups: vec![],
        apps: if terminated {
            vec![]
        } else {
            apps.iter()
                .map(|a| AppAssignment {
                    app: a.clone(),
                    groups: vec![],
                })
                .collect()
        },
        caused_by: vec![],
        priority: terminated,
        changed_at: Timestamp::from_millis(now_ms()).expect("now"),
    }
}

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .map_or(0, |kib: u64| kib / 1024)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A local SCIM app on a free port, counting the HTTP requests it serves.
struct ScimApp {
    base_url: String,
    state: AppState,
}

async fn start_app(token: &str, requests: Arc<AtomicU64>) -> anyhow::Result<ScimApp> {
    let state = AppState::new(token);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let counting = axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            requests.fetch_add(1, Ordering::Relaxed);
            next.run(request)
        },
    );
    let router = hrsync_scim_app::router(state.clone()).layer(counting);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(ScimApp { base_url, state })
}

/// The `[provisioner]` section as an operator would write it, parsed the
/// way `hrsync` parses its config file.
fn provisioner_config(
    args: &Args,
    url: &str,
    apps: &[(String, ScimApp)],
    token: &str,
) -> anyhow::Result<ProvisionerConfig> {
    let mut toml = format!("database_url = {url:?}\n");
    for line in &args.set {
        toml.push_str(line);
        toml.push('\n');
    }
    for (name, app) in apps {
        toml.push_str(&format!(
            "\n[[apps]]\nname = {name:?}\nbase_url = {:?}\ntoken = {token:?}\n",
            app.base_url
        ));
        // A local app takes what it can: no rate limit, unless `--app-set`
        // gives one.
        if !args
            .app_set
            .iter()
            .any(|line| line.trim_start().starts_with("rate_limit"))
        {
            toml.push_str("rate_limit = 0\n");
        }
        for line in &args.app_set {
            toml.push_str(line);
            toml.push('\n');
        }
    }
    // The text holds the token: never print it, nor the parse error's
    // snippet of it.
    let config: ProvisionerConfig =
        toml::from_str(&toml).map_err(|e| anyhow::anyhow!("--set/--app-set: {}", e.message()))?;
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

type RunTask = JoinHandle<Result<(), hrsync_bus::Error>>;

/// Starts the provisioner in-process as `hrsync provisioner run` does:
/// store connected and migrated, audit published, both consumers running.
async fn start_provisioner(
    config: &ProvisionerConfig,
    url: &str,
    kafka: &KafkaConfig,
    topics: &Topics,
    publish_audit: bool,
) -> anyhow::Result<(CancellationToken, RunTask)> {
    let db = Db::connect(url, config.max_connections).await?;
    db.migrate().await?;
    let audit = match publish_audit {
        true => Some((Producer::new(kafka)?, topics.audit.clone())),
        false => None,
    };
    let provisioner = Arc::new(Provisioner::new(db, config, audit).await?);
    let shutdown = CancellationToken::new();
    let task = {
        let (kafka, config, topics, shutdown) = (
            kafka.clone(),
            config.clone(),
            topics.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            run::run(provisioner, &kafka, &config, &topics, None, shutdown).await
        })
    };
    Ok((shutdown, task))
}

async fn stop_provisioner((shutdown, task): (CancellationToken, RunTask)) -> anyhow::Result<()> {
    shutdown.cancel();
    task.await?.context("provisioner")?;
    Ok(())
}

/// Successful audit records of `operation` for persons starting with
/// `prefix`.
async fn audited(db: &Db, operation: AuditOperation, prefix: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM provisioner_audit WHERE operation = $1 AND outcome = $2 \
         AND person_id LIKE $3",
    )
    .bind(operation.as_str())
    .bind(AuditOutcome::Success.as_str())
    .bind(format!("{prefix}%"))
    .fetch_one(db.pool())
    .await?)
}

/// One timed termination.
struct Probe {
    point: f64,
    /// Backlog accounts not yet created when it was sent.
    waiting: usize,
    /// Send to the last app's deactivation recorded, or none (timed out).
    latency_ms: Option<i64>,
}

/// Sends `victim`'s termination on the priority lane and waits until every
/// app's deactivation is in the audit table. The interval runs from just
/// before the send (so it includes the producer's linger and the broker's
/// acknowledgement) to the latest `at_ms` of those audit records, which the
/// provisioner takes after the app answered the PATCH and the link was
/// saved; the polling interval does not add to it.
async fn probe(
    db: &Db,
    producer: &Producer,
    topic: &str,
    victim: &str,
    apps: &[String],
) -> anyhow::Result<Option<i64>> {
    let termination = change(victim, 2, apps, true);
    let sent = now_ms();
    publish_directory_changes(producer, topic, [&termination]).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (count, last): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MAX(at_ms) FROM provisioner_audit WHERE person_id = $1 \
             AND operation = $2 AND outcome = $3",
        )
        .bind(termination.person_id.as_str())
        .bind(AuditOperation::Deactivate.as_str())
        .bind(AuditOutcome::Success.as_str())
        .fetch_one(db.pool())
        .await?;
        if count >= apps.len() as i64 {
            return Ok(last.map(|at| at - sent));
        }
        if Instant::now() > deadline {
            eprintln!("termination of {victim} not applied within 120 s");
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Logs (stderr, `info`), trace context and the metrics recorder, as
    // `hrsync provisioner run` has them without an OTLP endpoint.
    let _telemetry = hrsync_telemetry::init(&hrsync_telemetry::TelemetryConfig::default())?;
    anyhow::ensure!(
        args.apps >= 1 && args.creates >= 10,
        "--apps ≥ 1, --creates ≥ 10"
    );
    let mut points = args.probe_at.clone();
    points.sort_by(f64::total_cmp);
    let load_before = loadavg();

    let broker = Broker::start()?;
    let mut kafka = KafkaConfig::new(broker.bootstrap());
    kafka.default_partitions = args.partitions;
    kafka.properties.extend(args.kafka.iter().cloned());
    let topics = Topics {
        changes: "directory.changes.v1".into(),
        priority: "directory.changes.priority.v1".into(),
        audit: "provisioning.audit.v1".into(),
        dlq: "hrsync.provisioner.dlq".into(),
    };
    let specs: Vec<TopicSpec> = [
        &topics.changes,
        &topics.priority,
        &topics.audit,
        &topics.dlq,
    ]
    .into_iter()
    .map(|t| TopicSpec::new(t.as_str(), args.partitions))
    .collect();
    hrsync_bus::ensure_topics(&kafka, &specs).await?;

    let (_pg, _sqlite, url) = match args.store {
        Store::Sqlite => {
            let file = SqliteFile::new()?;
            let url = file.url();
            (None, Some(file), url)
        }
        Store::Postgres => {
            let db = PgDatabase::fresh().await?;
            let url = db.url().to_owned();
            (Some(db), None, url)
        }
    };
    let token = hrsync_tests::unique("bench-token");
    let requests = Arc::new(AtomicU64::new(0));
    let mut apps = Vec::new();
    for i in 1..=args.apps {
        apps.push((
            format!("app{i}"),
            start_app(&token, requests.clone()).await?,
        ));
    }
    let app_names: Vec<String> = apps.iter().map(|(n, _)| n.clone()).collect();
    let users = || {
        apps.iter()
            .map(|(_, a)| a.state.user_count())
            .sum::<usize>()
    };
    let config = provisioner_config(&args, &url, &apps, &token)?;
    // The benchmark's own queries use a pool of their own.
    let db = Db::connect(&url, 2).await?;
    db.migrate().await?;
    let producer = Producer::new(&kafka)?;
    let publish_audit = !args.no_audit_publish;

    // (1) The people whose terminations are timed get their accounts first.
    let victims: Vec<String> = (0..args.probes).map(|i| format!("V{i:05}")).collect();
    let running = start_provisioner(&config, &url, &kafka, &topics, publish_audit).await?;
    let hires: Vec<DirectoryChange> = victims
        .iter()
        .map(|v| change(v, 1, &app_names, false))
        .collect();
    publish_directory_changes(&producer, &topics.changes, &hires).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while audited(&db, AuditOperation::Create, "p-V").await? < (victims.len() * args.apps) as i64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the victims' accounts were not created in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_provisioner(running).await?;

    // (2) The backlog, queued while the provisioner is stopped.
    let backlog: Vec<DirectoryChange> = (0..args.creates)
        .map(|i| change(&format!("E{i:06}"), 1, &app_names, false))
        .collect();
    let produce_started = Instant::now();
    publish_directory_changes(&producer, &topics.changes, &backlog).await?;
    let produce_secs = produce_started.elapsed().as_secs_f64();
    drop(backlog);

    // (3) Drain, sampling memory and timing terminations at the points.
    let base = users();
    let total = args.creates * args.apps;
    let started_ms = now_ms();
    let requests_before = requests.load(Ordering::Relaxed);
    let running = start_provisioner(&config, &url, &kafka, &topics, publish_audit).await?;
    let mut rss = vec![(0.0, rss_mib())];
    let mut probes: Vec<Probe> = Vec::new();
    let mut next_victim = victims.iter();
    let mut next_point = 0;
    let (mut last_done, mut last_move) = (0, Instant::now());
    loop {
        let done = users().saturating_sub(base);
        let progress = done as f64 / total as f64;
        if rss.last().is_some_and(|(p, _)| progress >= p + 0.05) {
            rss.push((progress, rss_mib()));
        }
        while next_point < points.len() && (progress * 100.0 >= points[next_point] || done >= total)
        {
            // The share of the probes due at this point.
            let due = (args.probes * (next_point + 1) / points.len()).saturating_sub(probes.len());
            for victim in next_victim.by_ref().take(due) {
                let gap = rand::Rng::random_range(&mut rand::rng(), 0..=args.probe_gap_ms);
                tokio::time::sleep(Duration::from_millis(gap)).await;
                let waiting = total.saturating_sub(users().saturating_sub(base)) / args.apps;
                let latency_ms =
                    probe(&db, &producer, &topics.priority, victim, &app_names).await?;
                eprintln!(
                    "probe {victim} at {} %: {} ms, {waiting} changes waiting",
                    points[next_point],
                    latency_ms.map_or("timed out".to_owned(), |ms| ms.to_string())
                );
                probes.push(Probe {
                    point: points[next_point],
                    waiting,
                    latency_ms,
                });
            }
            next_point += 1;
        }
        if done >= total && next_point == points.len() {
            break;
        }
        if done != last_done {
            (last_done, last_move) = (done, Instant::now());
        } else if last_move.elapsed() > Duration::from_secs(args.stall_secs) {
            bail!(
                "stalled at {done} of {total} accounts; audit outcomes other than success: {}",
                failures(&db).await?
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rss.push((1.0, rss_mib()));
    // Let the last creates' audit records land before reading them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while audited(&db, AuditOperation::Create, "p-E").await? < total as i64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests_made = requests.load(Ordering::Relaxed) - requests_before;
    stop_provisioner(running).await?;
    let load_after = loadavg();

    // Throughput from the audit records of the backlog's creates.
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT at_ms, latency_ms FROM provisioner_audit WHERE operation = $1 AND outcome = $2 \
         AND person_id LIKE 'p-E%' ORDER BY at_ms",
    )
    .bind(AuditOperation::Create.as_str())
    .bind(AuditOutcome::Success.as_str())
    .fetch_all(db.pool())
    .await?;
    anyhow::ensure!(!rows.is_empty(), "no creates audited");
    let n = rows.len();
    let (first, last) = (rows[0].0, rows[n - 1].0);
    let (i10, i90) = (n / 10, n * 9 / 10);
    let sustained =
        (i90 - i10) as f64 * 1000.0 / (rows[i90.min(n - 1)].0 - rows[i10].0).max(1) as f64;
    let overall = n as f64 * 1000.0 / (last - started_ms).max(1) as f64;
    let mean_reconcile = rows.iter().map(|r| r.1).sum::<i64>() as f64 / n as f64;
    let mut latencies: Vec<i64> = probes.iter().filter_map(|p| p.latency_ms).collect();
    latencies.sort_unstable();
    let timed_out = probes.len() - latencies.len();

    let at = |p: f64| rss.iter().find(|(q, _)| *q >= p).map_or(0, |(_, r)| *r);
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| store | {:?}, pool of {} |",
        args.store, config.max_connections
    );
    println!(
        "| backlog | {} creates × {} app(s) = {} SCIM creates, {} partitions |",
        args.creates, args.apps, total, args.partitions
    );
    println!(
        "| queued | {:.0} changes/s |",
        args.creates as f64 / produce_secs
    );
    println!(
        "| creates audited | {n} ({} other outcomes) |",
        failures(&db).await?
    );
    println!(
        "| SCIM ops/s sustained (10 %→90 % of creates) | **{sustained:.0}** ({:.0} changes/s) |",
        sustained / args.apps as f64
    );
    println!(
        "| SCIM ops/s overall (start → last create) | {overall:.0} ({:.1} s; first create after {:.1} s) |",
        (last - started_ms) as f64 / 1000.0,
        (first - started_ms) as f64 / 1000.0
    );
    println!(
        "| HTTP requests to the apps during the drain | {requests_made} ({:.2} per create) |",
        requests_made as f64 / n as f64
    );
    println!(
        "| mean create reconcile (link read, GET filter, POST, link save) | {mean_reconcile:.2} ms; per change at the sustained rate: {:.2} ms |",
        1000.0 * args.apps as f64 / sustained
    );
    println!(
        "| termination, send → deactivation recorded ({} probes, {} timed out) | p50 **{}** / p99 **{}** / max **{}** ms |",
        probes.len(),
        timed_out,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(-1)
    );
    for point in &points {
        let here: Vec<&Probe> = probes.iter().filter(|p| p.point == *point).collect();
        let mut ms: Vec<i64> = here.iter().filter_map(|p| p.latency_ms).collect();
        ms.sort_unstable();
        println!(
            "| — at {point} % ({} probes, {}–{} changes waiting) | p50 {} / max {} ms |",
            here.len(),
            here.iter().map(|p| p.waiting).min().unwrap_or(0),
            here.iter().map(|p| p.waiting).max().unwrap_or(0),
            percentile(&ms, 50.0),
            ms.last().copied().unwrap_or(-1)
        );
    }
    println!(
        "| RSS MiB at 0/25/50/75/100 % (this process: provisioner, apps, producer) | {} / {} / {} / {} / {} |",
        at(0.0),
        at(0.25),
        at(0.5),
        at(0.75),
        at(1.0)
    );
    let kafka_set: Vec<String> = args.kafka.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "| settings | set {:?}, app-set {:?}, kafka {:?}, audit published: {} |",
        args.set, args.app_set, kafka_set, !args.no_audit_publish
    );
    println!("| load average before / after | {load_before} / {load_after} |");
    Ok(())
}

/// Audit records whose outcome is not success, as `OUTCOME: n, …`.
async fn failures(db: &Db) -> anyhow::Result<String> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT outcome, COUNT(*) FROM provisioner_audit WHERE outcome <> $1 GROUP BY outcome",
    )
    .bind(AuditOutcome::Success.as_str())
    .fetch_all(db.pool())
    .await?;
    Ok(if rows.is_empty() {
        "none".to_owned()
    } else {
        rows.iter()
            .map(|(o, c)| format!("{o}: {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}
