//! Projector throughput benchmark: a backlog of lifecycle events on a real
//! Kafka-protocol broker (tansu) is applied into PostgreSQL (or SQLite)
//! with directory changes emitted; memory is sampled as the backlog drains;
//! an immediate termination on the priority lane is timed while the backlog
//! waits.
//!
//! `cargo run --release -p hrsync-tests --bin bench_projector -- --events 100000`

use std::time::{Duration, Instant};

use clap::Parser;
use hrsync_bus::{KafkaConfig, Producer, TopicSpec};
use hrsync_domain::{
    Attribute, AttributeChange, EmployeeId, EmploymentType, Hire, LifecycleEvent, LifecyclePayload,
    Move, SourceSystem, Terminate, TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_projector::config::ProjectorConfig;
use hrsync_projector::project::Projector;
use hrsync_projector::rules::{GroupConfig, RulesConfig};
use hrsync_projector::run::{self, Mode, Topics};
use hrsync_tests::{Broker, PgDatabase, SqliteFile};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
struct Args {
    /// Events in the backlog (one hire per person, then moves).
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// People.
    #[arg(long, default_value_t = 20_000)]
    people: usize,
    /// Partitions of the lifecycle topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Events per projector transaction.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// Store: postgres or sqlite.
    #[arg(long, default_value = "postgres")]
    store: String,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn event(employee: &str, effective: i64, payload: LifecyclePayload) -> LifecycleEvent {
    LifecycleEvent::new(
        SourceSystem::new("workday").expect("source"),
        EmployeeId::new(employee).expect("id"),
        Timestamp::from_millis(now_ms()).expect("now"),
        Timestamp::from_millis(effective).expect("time"),
        TimeZone::new("Europe/Berlin").expect("tz"),
        payload,
    )
    .expect("event")
}

fn hire(employee: &str, effective: i64, i: usize) -> LifecycleEvent {
    let mut a = WorkerAttributes::new("Given", employee, EmploymentType::Employee);
    a.department = Some(["Customer Support", "Sales", "Engineering"][i % 3].to_owned());
    a.title = Some("Agent".to_owned());
    a.work_email = Some(format!("{employee}@example.com"));
    if i > 0 {
        a.manager_id = Some(EmployeeId::new(format!("E{:06}", i / 50)).expect("manager"));
    }
    event(
        employee,
        effective,
        LifecyclePayload::Hire(Hire { attributes: a }),
    )
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn consumed(projector: &Projector, topic: &str) -> anyhow::Result<i64> {
    let sum: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(next_offset) AS BIGINT) FROM projector_offset WHERE topic = $1",
    )
    .bind(topic)
    .fetch_one(projector.db().pool())
    .await?;
    Ok(sum.unwrap_or(0))
}

async fn produce(
    producer: &Producer,
    topic: &str,
    events: &[LifecycleEvent],
) -> anyhow::Result<()> {
    hrsync_tests::publish_lifecycle(producer, topic, events).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let broker = Broker::start()?;
    // Batching producers: the projector reads from the start of each
    // partition, where tansu serves batches correctly.
    let kafka = KafkaConfig::new(broker.bootstrap());
    let topics = Topics {
        lifecycle: "hr.lifecycle.v1".into(),
        lifecycle_priority: "hr.lifecycle.priority.v1".into(),
        directory_changes: "directory.changes.v1".into(),
        directory_priority: "directory.changes.priority.v1".into(),
        dlq: "hrsync.projector.dlq".into(),
    };
    let specs: Vec<TopicSpec> = [
        &topics.lifecycle,
        &topics.lifecycle_priority,
        &topics.directory_changes,
        &topics.directory_priority,
        &topics.dlq,
    ]
    .into_iter()
    .map(|t| TopicSpec::new(t.as_str(), args.partitions))
    .collect();
    hrsync_bus::ensure_topics(&kafka, &specs).await?;

    let (_pg, _sqlite, url) = if args.store == "sqlite" {
        let file = SqliteFile::new()?;
        let url = file.url();
        (None, Some(file), url)
    } else {
        let db = PgDatabase::fresh().await?;
        let url = db.url().to_owned();
        (Some(db), None, url)
    };
    let db = hrsync_store::Db::connect(&url, 8).await?;
    db.migrate().await?;
    let group = |name: &str, rule: &str, apps: &[&str]| GroupConfig {
        name: name.into(),
        rule: rule.into(),
        apps: apps.iter().map(|a| (*a).to_owned()).collect(),
        description: None,
    };
    let config = ProjectorConfig {
        batch_max: args.batch,
        rules: RulesConfig {
            groups: vec![
                group("Everyone", "true", &["slack", "google"]),
                group(
                    "Support",
                    r#"person.department == "Customer Support""#,
                    &["zendesk"],
                ),
                group(
                    "Managers",
                    r#"is_manager || person.title.contains("Manager")"#,
                    &["lattice"],
                ),
                group("Leads", r#"person.title == "Lead""#, &["jira"]),
            ],
        },
        ..ProjectorConfig::default()
    };
    let projector = Projector::new(db, config)?;

    // Start the projector, and hire the person whose termination is timed.
    let shutdown = CancellationToken::new();
    let task = {
        let (projector, kafka, topics, shutdown) = (
            projector.clone(),
            kafka.clone(),
            topics.clone(),
            shutdown.clone(),
        );
        tokio::spawn(
            async move { run::run(projector, &kafka, &topics, Mode::Serve, shutdown).await },
        )
    };
    let base = now_ms() - 86_400_000;
    let producer = Producer::new(&kafka)?;
    produce(&producer, &topics.lifecycle, &[hire("VIP", base, 1)]).await?;
    while projector.person("VIP").await?.is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let warm = consumed(&projector, &topics.lifecycle).await?;

    // The backlog.
    let mut events = Vec::with_capacity(args.events);
    for i in 0..args.people.min(args.events) {
        events.push(hire(&format!("E{i:06}"), base, i));
    }
    let titles = ["Senior Agent", "Lead", "Support Manager", "Agent"];
    let mut k = 0usize;
    while events.len() < args.events {
        let i = k % args.people;
        let change =
            AttributeChange::set(Attribute::Title, titles[(k / args.people) % titles.len()]);
        events.push(event(
            &format!("E{i:06}"),
            base + 1000 + i64::try_from(k).unwrap_or(0),
            LifecyclePayload::Move(Move {
                changes: vec![change],
            }),
        ));
        k += 1;
    }
    let produce_started = Instant::now();
    produce(&producer, &topics.lifecycle, &events).await?;
    let produce_secs = produce_started.elapsed().as_secs_f64();
    let total = warm + i64::try_from(args.events)?;

    // Drain, sampling memory; time the fast lane once a fifth is applied.
    let started = Instant::now();
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut fast_lane: Option<Duration> = None;
    let mut backlog_at_fast_lane = 0;
    loop {
        let done = consumed(&projector, &topics.lifecycle).await?;
        let progress = (done - warm) as f64 / args.events as f64;
        samples.push((progress, rss_kib()));
        if fast_lane.is_none() && progress >= 0.2 {
            backlog_at_fast_lane = total - done;
            let sent = Instant::now();
            let terminate = event(
                "VIP",
                now_ms() + 30 * 86_400_000,
                LifecyclePayload::Terminate(Terminate {
                    immediate: true,
                    last_day_worked: None,
                    reason: None,
                }),
            );
            produce(&producer, &topics.lifecycle_priority, &[terminate]).await?;
            loop {
                let view = projector.person("VIP").await?;
                if view.and_then(|v| v.lifecycle).as_deref() == Some("DEPROVISIONED") {
                    fast_lane = Some(sent.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        if done >= total && projector.outbox(1).await?.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let changes: Option<i64> =
        sqlx::query_scalar("SELECT CAST(SUM(version) AS BIGINT) FROM projector_person")
            .fetch_one(projector.db().pool())
            .await?;
    shutdown.cancel();
    let _ = task.await;

    let at = |p: f64| {
        samples
            .iter()
            .find(|(q, _)| *q >= p)
            .map_or(0, |(_, r)| *r / 1024)
    };
    println!("| measure | value |");
    println!("|---|---|");
    println!("| store | {} |", args.store);
    println!(
        "| backlog | {} events, {} people, {} partitions |",
        args.events, args.people, args.partitions
    );
    println!(
        "| produce | {:.0} events/s |",
        args.events as f64 / produce_secs
    );
    println!(
        "| applied | {:.0} events/s ({:.1} s) |",
        args.events as f64 / secs,
        secs
    );
    println!(
        "| directory changes emitted | {} ({:.0}/s) |",
        changes.unwrap_or(0),
        changes.unwrap_or(0) as f64 / secs
    );
    println!(
        "| RSS MiB at 0/25/50/75/100 % | {} / {} / {} / {} / {} |",
        at(0.0),
        at(0.25),
        at(0.5),
        at(0.75),
        at(1.0)
    );
    println!(
        "| fast-lane termination applied | {} ms with {} events waiting |",
        fast_lane.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(-1)),
        backlog_at_fast_lane
    );
    Ok(())
}
