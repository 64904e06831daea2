//! Projector throughput benchmark.
//!
//! A backlog of lifecycle events is produced onto `hr.lifecycle.v1` on a real
//! Kafka-protocol broker (tansu) *before* the projector starts; the projector
//! then runs in this process (its library, exactly as `hrsync projector run`
//! runs it) against a fresh PostgreSQL database, and the benchmark measures:
//!
//! - events/s applied (offsets stored with the state) and directory changes/s
//!   emitted (outbox drained to `directory.changes.v1`), overall and
//!   sustained between 10 % and 90 % of the backlog;
//! - this process's RSS every `--sample-ms` while the backlog drains;
//! - the fast lane: immediate terminations published on
//!   `hr.lifecycle.priority.v1` while the backlog waits, timed until the
//!   person is stored as deprovisioned and until the directory change is read
//!   back from `directory.changes.priority.v1`;
//! - where the time goes: per-batch timings of the main consumer, CPU per
//!   thread group / PostgreSQL backend / broker, PostgreSQL table counters,
//!   and with `--profile` every SQL statement's round trips (from sqlx's own
//!   statement events) plus offline timings of decode, fold, JSON and CEL.
//!
//! ```sh
//! cargo run --release -p hrsync-tests --bin bench_projector -- --events 100000 --people 20000
//! cargo run --release -p hrsync-tests --bin bench_projector -- --sizes 100000,200000
//! cargo run --release -p hrsync-tests --bin bench_projector -- --events 100000 --profile
//! ```
//!
//! The backlog is generated and sent in chunks, so the benchmark's own
//! memory does not grow with the backlog; with `--sizes` every size runs in a
//! fresh child process, so RSS figures are comparable between sizes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use hrsync_bus::{KafkaConfig, OutgoingRecord, Producer};
use hrsync_domain::{
    AppAssignment, Attribute, AttributeChange, DirectoryChange, EmployeeId, EmploymentType, Hire,
    LifecycleEvent, LifecyclePayload, LifecycleState, Move, PersonId, Profile, SourceSystem,
    Terminate, TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_projector::config::ProjectorConfig;
use hrsync_projector::project::Projector;
use hrsync_projector::rules::{GroupConfig, RuleSet, RulesConfig, Subject};
use hrsync_projector::run::{self, Mode, RunError, Topics};
use hrsync_projector::state::{AttributeSources, PersonState};
use hrsync_store::Db;
use hrsync_tests::{projector_topics, Broker, PgDatabase, SqliteFile};
use rdkafka::consumer::{BaseConsumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::Row as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The allocator of the `hrsync` binary, so that the projector runs here as
/// it runs there.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const DAY_MS: i64 = 86_400_000;
/// Events generated, encoded and sent per chunk.
const CHUNK: usize = 5_000;
/// Linux clock ticks per second (`getconf CLK_TCK`).
const TICKS: f64 = 100.0;
/// Marks the benchmark's own monitoring queries in the SQL profile.
const MARK: &str = "/*bench*/ ";

#[derive(Debug, Clone, Parser)]
#[command(about = "Projector throughput, memory and fast-lane latency benchmark")]
struct Args {
    /// Events in the backlog: one hire per person, then moves, then
    /// terminations.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// People hired in the backlog.
    #[arg(long, default_value_t = 20_000)]
    people: usize,
    /// Share of the backlog that is terminations (half past-dated, half
    /// future-dated).
    #[arg(long, default_value_t = 0.03)]
    terminations: f64,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Projector `batch_max` (default: the projector's default).
    #[arg(long)]
    batch: Option<usize>,
    /// Projector `batch_linger_ms` (default: the projector's default).
    #[arg(long)]
    linger_ms: Option<u64>,
    /// Projector `max_connections` (default: the projector's default).
    #[arg(long)]
    max_connections: Option<u32>,
    /// Backlog progress (0..1) at which each fast-lane termination is sent.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.01, 0.25, 0.5, 0.75])]
    probes: Vec<f64>,
    /// Sampling interval of progress, outbox size and RSS.
    #[arg(long, default_value_t = 250)]
    sample_ms: u64,
    /// Also time every SQL statement (sqlx statement events) and the CPU
    /// work of one event offline (decode, fold, JSON, CEL). Adds a little
    /// overhead: compare throughput with a run without it.
    #[arg(long)]
    profile: bool,
    /// Store: postgres or sqlite.
    #[arg(long, default_value = "postgres")]
    store: String,
    /// Run once per backlog size, each in a fresh child process, and print
    /// one table comparing them.
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Extra librdkafka property for every Kafka client of the run (the
    /// projector's consumers and producer, and the benchmark's producer),
    /// e.g. `queued.max.messages.kbytes=16384`. Repeatable.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    kafka_properties: Vec<String>,
    /// What-if experiment: a PostgreSQL setting for the benchmark's fresh
    /// database (`ALTER DATABASE ... SET`), e.g.
    /// `max_parallel_workers_per_gather=0`. Repeatable.
    #[arg(long = "pg-set", value_name = "KEY=VALUE")]
    pg_settings: Vec<String>,
    /// What-if experiment: a parameter added to the store URL of the
    /// projector's connections, e.g. `statement-cache-capacity=1000`
    /// (sqlx's connection options). Repeatable.
    #[arg(long = "url-param", value_name = "KEY=VALUE")]
    url_params: Vec<String>,
    /// What-if experiment: run `VACUUM ANALYZE projector_person` every this
    /// many seconds while the backlog drains (0: never; autovacuum only).
    #[arg(long, default_value_t = 0)]
    vacuum_every_s: u64,
    /// Give up after this long.
    #[arg(long, default_value_t = 1800)]
    timeout_s: u64,
}

// ---------------------------------------------------------------------------
// The backlog.

const DEPARTMENTS: [&str; 5] = [
    "Customer Support",
    "Sales",
    "Engineering",
    "Finance",
    "People",
];
const TITLES: [&str; 5] = [
    "Associate",
    "Specialist",
    "Senior Specialist",
    "Team Lead",
    "Manager",
];
const LOCATIONS: [&str; 5] = ["EU-BER", "EU-PAR", "US-NYC", "US-SFO", "APAC-SIN"];

fn employee(i: usize) -> String {
    format!("E{i:06}")
}

fn vip(n: usize) -> String {
    format!("V{n:05}")
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).expect("timestamp in range")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn event(employee: &str, effective: i64, payload: LifecyclePayload) -> LifecycleEvent {
    LifecycleEvent::new(
        SourceSystem::new("workday").expect("source"),
        EmployeeId::new(employee).expect("employee id"),
        ts(now_ms()),
        ts(effective),
        TimeZone::new("Europe/Berlin").expect("time zone"),
        payload,
    )
    .expect("valid event")
}

fn attributes(i: usize, id: &str) -> WorkerAttributes {
    let mut a = WorkerAttributes::new("Given", format!("Family{i}"), EmploymentType::Employee);
    a.department = Some(DEPARTMENTS[i % 5].to_owned());
    a.title = Some(
        if i.is_multiple_of(50) {
            TITLES[4]
        } else {
            TITLES[i % 4]
        }
        .to_owned(),
    );
    a.location = Some(LOCATIONS[i % 5].to_owned());
    a.cost_center = Some(format!("CC-{}", 100 + i % 40));
    a.work_email = Some(format!("{}@example.com", id.to_lowercase()));
    if i > 0 {
        // Eight reports per manager: chains of about log8(people).
        a.manager_id = Some(EmployeeId::new(employee((i - 1) / 8)).expect("manager id"));
    }
    a
}

/// The deterministic backlog: event `index` is built on demand.
#[derive(Debug, Clone, Copy)]
struct Plan {
    people: usize,
    hires: usize,
    moves: usize,
    terms: usize,
    /// Hires take effect 30 days before this; moves and past terminations
    /// after it (all in the past).
    base_ms: i64,
}

impl Plan {
    fn new(args: &Args, now: i64) -> Self {
        let hires = args.people.min(args.events).max(1);
        let terms = ((args.events as f64 * args.terminations) as usize)
            .min(args.events.saturating_sub(hires))
            .min(hires);
        let moves = args.events.saturating_sub(hires + terms);
        Plan {
            people: hires,
            hires,
            moves,
            terms,
            base_ms: now - DAY_MS,
        }
    }

    fn len(&self) -> usize {
        self.hires + self.moves + self.terms
    }

    fn event(&self, index: usize) -> LifecycleEvent {
        if index < self.hires {
            let id = employee(index);
            let a = attributes(index, &id);
            return event(
                &id,
                self.base_ms - 30 * DAY_MS + i64::try_from(index).unwrap_or(0),
                LifecyclePayload::Hire(Hire { attributes: a }),
            );
        }
        if index < self.hires + self.moves {
            let k = index - self.hires;
            let p = k % self.people;
            let round = k / self.people;
            let change = match k % 10 {
                4 | 5 => {
                    AttributeChange::set(Attribute::Department, DEPARTMENTS[(p + 1 + round) % 5])
                }
                6 | 7 => AttributeChange::set(Attribute::Location, LOCATIONS[(p + 1 + round) % 5]),
                8 if p > 0 => {
                    // A reorg: another manager above in the tree.
                    let manager = (p - 1) / 8 + round % 3;
                    let manager = if manager >= p { (p - 1) / 8 } else { manager };
                    AttributeChange::set(Attribute::ManagerId, employee(manager))
                }
                9 => AttributeChange::set(Attribute::CostCenter, format!("CC-{}", 200 + round)),
                _ => AttributeChange::set(Attribute::Title, TITLES[(p + 1 + round) % 5]),
            };
            return event(
                &employee(p),
                self.base_ms + 1_000 + i64::try_from(k).unwrap_or(0),
                LifecyclePayload::Move(Move {
                    changes: vec![change],
                }),
            );
        }
        let t = index - self.hires - self.moves;
        let p = (t * 37 + 11) % self.people;
        // Half took effect ten hours ago (deprovisioned now: fast-lane
        // changes), half are scheduled two weeks ahead (a timer).
        let effective = if t.is_multiple_of(2) {
            self.base_ms + 50_000_000 + i64::try_from(t).unwrap_or(0)
        } else {
            self.base_ms + 15 * DAY_MS + i64::try_from(t).unwrap_or(0)
        };
        event(
            &employee(p),
            effective,
            LifecyclePayload::Terminate(Terminate {
                immediate: false,
                last_day_worked: None,
                reason: Some("resigned".to_owned()),
            }),
        )
    }
}

fn vip_hire(n: usize, base_ms: i64) -> LifecycleEvent {
    let id = vip(n);
    let mut a = attributes(1 + n, &id);
    a.department = Some("Engineering".to_owned());
    event(
        &id,
        base_ms - 30 * DAY_MS,
        LifecyclePayload::Hire(Hire { attributes: a }),
    )
}

fn immediate_termination(id: &str) -> LifecycleEvent {
    event(
        id,
        now_ms(),
        LifecyclePayload::Terminate(Terminate {
            immediate: true,
            last_day_worked: None,
            reason: Some("misconduct".to_owned()),
        }),
    )
}

fn rules() -> RulesConfig {
    let group = |name: &str, rule: &str, apps: &[&str]| GroupConfig {
        name: name.to_owned(),
        rule: rule.to_owned(),
        apps: apps.iter().map(|a| (*a).to_owned()).collect(),
        description: None,
        previous_names: Vec::new(),
    };
    RulesConfig {
        groups: vec![
            group("Everyone", "true", &["slack", "google-workspace"]),
            group(
                "Customer Support",
                r#"person.department == "Customer Support""#,
                &["zendesk"],
            ),
            group(
                "Engineering",
                r#"person.department == "Engineering" && person.employment_type != "INTERN""#,
                &["github", "jira"],
            ),
            group(
                "People Managers",
                r#"is_manager || person.title.contains("Manager")"#,
                &["lattice", "workday-manager"],
            ),
            group(
                "EMEA Sales",
                r#"person.department == "Sales" && person.location.startsWith("EU-") || "E000002" in manager_chain"#,
                &["salesforce"],
            ),
        ],
    }
}

/// Generates, encodes and sends events `range` of the plan in chunks;
/// returns the end offset of every partition written.
async fn produce(
    producer: &Producer,
    topic: &str,
    count: usize,
    build: impl Fn(usize) -> LifecycleEvent,
    ends: &mut BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    let mut start = 0;
    while start < count {
        let end = (start + CHUNK).min(count);
        let encoded: Vec<(String, Vec<u8>)> = (start..end)
            .map(|i| {
                let e = build(i);
                Ok((
                    e.employee_id.as_str().to_owned(),
                    hrsync_schema::encode_lifecycle(&e)?,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        let records: Vec<OutgoingRecord<'_>> = encoded
            .iter()
            .map(|(key, payload)| OutgoingRecord {
                topic,
                key: key.as_bytes(),
                payload,
                headers: &[],
            })
            .collect();
        for delivery in producer.send_batch(&records).await? {
            let next = delivery.offset + 1;
            let e = ends.entry(delivery.partition).or_insert(next);
            *e = (*e).max(next);
        }
        start = end;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// What the projector reports through tracing: its per-batch debug event and,
// with --profile, sqlx's per-statement events.

#[derive(Debug, Clone, Copy)]
struct BatchStat {
    /// When its event came (just after its commit).
    at: Instant,
    priority: bool,
    records: u64,
    changes: u64,
    ms: u64,
    /// Microseconds from the end of the previous batch to its first record.
    wait_us: u64,
    /// Microseconds from its first record to its last.
    gather_us: u64,
    /// Microseconds per phase, in the order of [`PHASES`].
    phases: [u64; 6],
}

/// The phases of a batch the projector times (its `batch applied` fields).
const PHASES: [(&str, &str); 6] = [
    ("store_events_us", "wait for the events to be stored"),
    ("load_us", "load their persons"),
    ("fold_us", "fold the events"),
    (
        "inputs_us",
        "whom else to evaluate; report counts; manager chains",
    ),
    (
        "write_us",
        "evaluate, encode, write persons and outbox rows",
    ),
    ("commit_us", "store positions, commit"),
];

#[derive(Debug, Default, Clone, Copy)]
struct SqlStat {
    count: u64,
    secs: f64,
    rows: u64,
}

#[derive(Debug, Clone, Copy)]
struct PublisherStatement {
    at: Instant,
    delete: bool,
    rows: u64,
}

#[derive(Debug, Default)]
struct Collected {
    batches: Vec<BatchStat>,
    publisher: Vec<PublisherStatement>,
    sql: BTreeMap<String, SqlStat>,
    warnings: u64,
    first_warnings: Vec<String>,
    /// Batches rolled back by a conflict and retried: consumer, error.
    conflicts: Vec<String>,
}

static COLLECTED: LazyLock<Mutex<Collected>> = LazyLock::new(Mutex::default);

fn collected() -> std::sync::MutexGuard<'static, Collected> {
    COLLECTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct Fields {
    message: String,
    consumer: String,
    statement: String,
    summary: String,
    records: u64,
    changes: u64,
    ms: u64,
    wait_us: u64,
    gather_us: u64,
    rows: u64,
    elapsed_secs: f64,
    phases: [u64; 6],
    other: String,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else if self.other.len() < 300 {
            self.other
                .push_str(&format!(" {}={:?}", field.name(), value));
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "consumer" => self.consumer = value.to_owned(),
            "db.statement" => self.statement = value.to_owned(),
            "summary" => self.summary = value.to_owned(),
            "message" => self.message = value.to_owned(),
            name if self.other.len() < 300 => self.other.push_str(&format!(" {name}={value}")),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match field.name() {
            "records" => self.records = value,
            "changes" => self.changes = value,
            "ms" => self.ms = value,
            "wait_us" => self.wait_us = value,
            "gather_us" => self.gather_us = value,
            "rows_affected" | "rows_returned" => self.rows += value,
            name => {
                if let Some(i) = PHASES.iter().position(|(field, _)| *field == name) {
                    self.phases[i] = value;
                }
            }
        }
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }
}

/// Names a statement by what it does in the projector.
fn sql_label(sql: &str) -> String {
    const KNOWN: [(&str, &str); 19] = [
        (
            "SELECT event_id FROM projector_event",
            "dedupe: SELECT event ids (200/stmt)",
        ),
        (
            "INSERT INTO projector_event",
            "INSERT events, returning the new ones (200/stmt)",
        ),
        ("SELECT employee_id, person_id", "load persons (200/stmt)"),
        (
            "SELECT employee_id, manager_id FROM projector_person",
            "manager chains: 1 stmt per level (200/stmt)",
        ),
        (
            "SELECT employee_id FROM projector_person WHERE manager_id IN",
            "reports below a moved manager: 1 stmt per level (200/stmt)",
        ),
        (
            "SELECT manager_id, reports FROM projector_reports",
            "direct-report counts (200/stmt)",
        ),
        (
            "INSERT INTO projector_reports",
            "UPSERT direct-report count changes (200/stmt)",
        ),
        ("INSERT INTO projector_person", "UPSERT persons (200/stmt)"),
        (
            "INSERT INTO projector_outbox",
            "INSERT outbox (one pack per 200 persons)",
        ),
        ("INSERT INTO projector_offset", "UPSERT offsets (1/stmt)"),
        (
            "WITH head AS (SELECT seq, changes FROM projector_outbox WHERE priority",
            "publisher: unsent priority copies",
        ),
        ("UPDATE projector_outbox", "publisher: priority copies sent"),
        ("WITH head", "publisher: read outbox"),
        ("DELETE FROM projector_outbox", "publisher: delete outbox"),
        (
            "SELECT payload FROM projector_event",
            "refold: a person's events",
        ),
        (
            "SELECT employee_id FROM projector_person WHERE next_check",
            "timer: due persons",
        ),
        ("BEGIN", "BEGIN"),
        ("COMMIT", "COMMIT"),
        ("ROLLBACK", "ROLLBACK"),
    ];
    let sql = sql.trim();
    if sql.starts_with(MARK.trim()) {
        return "(benchmark's own monitoring)".to_owned();
    }
    let upper = sql.to_ascii_uppercase();
    for (prefix, label) in KNOWN {
        if upper.starts_with(&prefix.to_ascii_uppercase()) {
            return label.to_owned();
        }
    }
    sql.chars().take(60).collect()
}

/// A minimal global subscriber that collects the events above (and counts
/// warnings); spans are not tracked.
struct Collector {
    profile: bool,
}

impl tracing::Subscriber for Collector {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        let target = meta.target();
        if target.starts_with("hrsync_projector::run")
            || (self.profile && target.starts_with("sqlx::query"))
        {
            *meta.level() <= tracing::Level::DEBUG
        } else {
            *meta.level() <= tracing::Level::WARN
        }
    }

    fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        if meta.target() == "sqlx::query" && *meta.level() > tracing::Level::WARN {
            let sql = if fields.statement.trim().is_empty() {
                fields.summary.as_str()
            } else {
                fields.statement.as_str()
            };
            let label = sql_label(sql);
            let mut c = collected();
            if label.starts_with("publisher:") {
                c.publisher.push(PublisherStatement {
                    at: Instant::now(),
                    delete: label.contains("delete"),
                    rows: fields.rows,
                });
            }
            let stat = c.sql.entry(label).or_default();
            stat.count += 1;
            stat.secs += fields.elapsed_secs;
            stat.rows += fields.rows;
        } else if fields.message == "batch applied" {
            collected().batches.push(BatchStat {
                at: Instant::now(),
                priority: fields.consumer.ends_with("-priority"),
                records: fields.records,
                changes: fields.changes,
                ms: fields.ms,
                wait_us: fields.wait_us,
                gather_us: fields.gather_us,
                phases: fields.phases,
            });
        } else if fields.message == "batch conflicted; retrying" {
            collected().conflicts.push(fields.other.clone());
        } else if *meta.level() <= tracing::Level::WARN {
            let mut c = collected();
            c.warnings += 1;
            if c.first_warnings.len() < 5 {
                c.first_warnings.push(format!(
                    "{} {}: {}{}",
                    meta.level(),
                    meta.target(),
                    fields.message,
                    fields.other
                ));
            }
        }
    }

    fn enter(&self, _span: &tracing::span::Id) {}

    fn exit(&self, _span: &tracing::span::Id) {}
}

fn init_tracing(profile: bool) -> anyhow::Result<()> {
    tracing::subscriber::set_global_default(Collector { profile })?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Processes: memory and CPU.

/// Bytes the allocator has handed out and not had back (jemalloc's
/// `stats.allocated`, refreshed): the live heap, without pages the
/// allocator keeps for reuse.
fn heap_kib() -> u64 {
    let _ = tikv_jemalloc_ctl::epoch::advance();
    tikv_jemalloc_ctl::stats::allocated::read().map_or(0, |b| b as u64 / 1024)
}

fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// `(comm, utime + stime)` of a `/proc/.../stat` file.
fn stat_ticks(path: &str) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After the comm: state is field 3, utime 14, stime 15.
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn thread_group(comm: &str) -> String {
    if comm.starts_with("rdk:broker") {
        return "rdkafka broker threads".to_owned();
    }
    match comm.trim_end_matches(|c: char| c.is_ascii_digit()) {
        "tokio-runtime-w" | "tokio-rt-worker" => {
            "tokio workers (decode, fold, CEL, SQL client)".to_owned()
        }
        "rdk:main" => "rdkafka main threads".to_owned(),
        other => other.to_owned(),
    }
}

/// Busy and total ticks of the whole machine.
fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn find_pid(needle_a: &str, needle_b: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle_a) && cmdline.contains(needle_b) {
            return Some(pid);
        }
    }
    None
}

#[derive(Debug, Default, Clone)]
struct CpuSnapshot {
    threads: HashMap<String, (String, u64)>,
    pg_backends: HashMap<i64, u64>,
    pg_background: HashMap<i64, u64>,
    broker: u64,
    machine_busy: u64,
}

async fn cpu_snapshot(monitor: Option<&Db>, broker_pid: Option<u32>) -> CpuSnapshot {
    let mut snap = CpuSnapshot::default();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            let tid = entry.file_name().to_string_lossy().into_owned();
            if let Some(t) = stat_ticks(&format!("/proc/self/task/{tid}/stat")) {
                snap.threads.insert(tid, t);
            }
        }
    }
    if let Some(db) = monitor {
        let sql = format!(
            "{MARK}SELECT CAST(pid AS BIGINT), CASE WHEN datname IS NULL THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END FROM pg_stat_activity \
             WHERE datname = current_database() OR datname IS NULL"
        );
        if let Ok(rows) = sqlx::query(&sql).fetch_all(db.pool()).await {
            for row in rows {
                let (Ok(pid), Ok(background)) =
                    (row.try_get::<i64, _>(0), row.try_get::<i64, _>(1))
                else {
                    continue;
                };
                if let Some((_, ticks)) = stat_ticks(&format!("/proc/{pid}/stat")) {
                    if background == 0 {
                        snap.pg_backends.insert(pid, ticks);
                    } else {
                        snap.pg_background.insert(pid, ticks);
                    }
                }
            }
        }
    }
    if let Some(pid) = broker_pid {
        snap.broker = stat_ticks(&format!("/proc/{pid}/stat")).map_or(0, |(_, t)| t);
    }
    snap.machine_busy = machine_ticks().0;
    snap
}

/// CPU used between two snapshots, in CPU-seconds, by category.
#[derive(Debug, Default, Clone)]
struct CpuUse {
    threads: BTreeMap<String, f64>,
    process: f64,
    pg_backends: f64,
    pg_background: f64,
    broker: f64,
    machine: f64,
}

fn cpu_use(before: &CpuSnapshot, after: &CpuSnapshot) -> CpuUse {
    let mut used = CpuUse::default();
    for (tid, (comm, ticks)) in &after.threads {
        let start = before.threads.get(tid).map_or(0, |(_, t)| *t);
        let secs = ticks.saturating_sub(start) as f64 / TICKS;
        *used.threads.entry(thread_group(comm)).or_default() += secs;
        used.process += secs;
    }
    let delta = |b: &HashMap<i64, u64>, a: &HashMap<i64, u64>| -> f64 {
        a.iter()
            .map(|(pid, t)| t.saturating_sub(b.get(pid).copied().unwrap_or(0)))
            .sum::<u64>() as f64
            / TICKS
    };
    used.pg_backends = delta(&before.pg_backends, &after.pg_backends);
    used.pg_background = delta(&before.pg_background, &after.pg_background);
    used.broker = after.broker.saturating_sub(before.broker) as f64 / TICKS;
    used.machine = after.machine_busy.saturating_sub(before.machine_busy) as f64 / TICKS;
    used
}

// ---------------------------------------------------------------------------
// Store monitoring (its own small pool, not the projector's).

#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// Sum of stored next offsets of the main topic.
    offsets: i64,
    /// Every partition reached its end.
    complete: bool,
}

async fn progress(
    monitor: &Db,
    group: &str,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
) -> anyhow::Result<Progress> {
    let rows = sqlx::query(&format!(
        "{MARK}SELECT kafka_partition, next_offset FROM projector_offset WHERE consumer = $1 AND topic = $2"
    ))
    .bind(group)
    .bind(topic)
    .fetch_all(monitor.pool())
    .await?;
    let mut stored: BTreeMap<i64, i64> = BTreeMap::new();
    for row in rows {
        stored.insert(row.try_get(0)?, row.try_get(1)?);
    }
    Ok(Progress {
        offsets: stored.values().sum(),
        complete: ends
            .iter()
            .all(|(p, end)| stored.get(&i64::from(*p)).is_some_and(|n| n >= end)),
    })
}

async fn scalar(monitor: &Db, sql: &str) -> anyhow::Result<i64> {
    let value: Option<i64> = sqlx::query_scalar(&format!("{MARK}{sql}"))
        .fetch_one(monitor.pool())
        .await?;
    Ok(value.unwrap_or(0))
}

async fn outbox_len(monitor: &Db) -> anyhow::Result<i64> {
    // Changes, not rows: a pack holds many.
    scalar(
        monitor,
        "SELECT CAST(COALESCE(SUM(changes), 0) AS BIGINT) FROM projector_outbox",
    )
    .await
}

async fn versions(monitor: &Db) -> anyhow::Result<i64> {
    scalar(
        monitor,
        "SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM projector_person",
    )
    .await
}

/// PostgreSQL activity counters of this database's projector tables.
async fn pg_counters(monitor: &Db) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    let rows = sqlx::query(&format!(
        "{MARK}SELECT CAST(relname AS TEXT), CAST(COALESCE(seq_scan, 0) AS BIGINT), \
         CAST(COALESCE(idx_scan, 0) AS BIGINT), CAST(n_tup_ins AS BIGINT), \
         CAST(n_tup_upd AS BIGINT), CAST(n_tup_hot_upd AS BIGINT), CAST(n_tup_del AS BIGINT) \
         FROM pg_stat_user_tables WHERE relname LIKE 'projector_%'"
    ))
    .fetch_all(monitor.pool())
    .await?;
    for row in rows {
        let table: String = row.try_get(0)?;
        let table = table.trim_start_matches("projector_").to_owned();
        for (i, name) in ["seq_scan", "idx_scan", "ins", "upd", "hot_upd", "del"]
            .iter()
            .enumerate()
        {
            out.insert(format!("{table}.{name}"), row.try_get(i + 1)?);
        }
    }
    let row = sqlx::query(&format!(
        "{MARK}SELECT CAST(xact_commit AS BIGINT), CAST(xact_rollback AS BIGINT), \
         CAST(blks_hit AS BIGINT), CAST(blks_read AS BIGINT), CAST(tup_returned AS BIGINT), \
         CAST(tup_fetched AS BIGINT) FROM pg_stat_database WHERE datname = current_database()"
    ))
    .fetch_one(monitor.pool())
    .await?;
    for (i, name) in [
        "xact_commit",
        "xact_rollback",
        "blks_hit",
        "blks_read",
        "tup_returned",
        "tup_fetched",
    ]
    .iter()
    .enumerate()
    {
        out.insert(format!("db.{name}"), row.try_get(i)?);
    }
    // The whole server's write-ahead log (pg_stat_wal, PostgreSQL 14 on):
    // during a run the projector is its only writer of note.
    let wal = sqlx::query(&format!(
        "{MARK}SELECT CAST(wal_records AS BIGINT), CAST(wal_fpi AS BIGINT), \
         CAST(wal_bytes AS BIGINT) FROM pg_stat_wal"
    ))
    .fetch_optional(monitor.pool())
    .await;
    if let Ok(Some(row)) = wal {
        for (i, name) in ["records", "full_page_images", "bytes"].iter().enumerate() {
            out.insert(format!("server_wal.{name}"), row.try_get(i)?);
        }
    }
    Ok(out)
}

/// The plans of the projector's per-batch lookups on the final state, with
/// 200 keys as the projector sends them, and the size of the person table.
async fn explain(monitor: &Db) -> anyhow::Result<Vec<(String, String)>> {
    let quote = |ids: &[String]| {
        ids.iter()
            .map(|i| format!("'{}'", i.replace('\'', "")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let managers: Vec<String> = sqlx::query_scalar(&format!(
        "{MARK}SELECT DISTINCT manager_id FROM projector_person WHERE manager_id IS NOT NULL \
         ORDER BY manager_id LIMIT 200"
    ))
    .fetch_all(monitor.pool())
    .await?;
    let people: Vec<String> = sqlx::query_scalar(&format!(
        "{MARK}SELECT employee_id FROM projector_person ORDER BY md5(employee_id) LIMIT 200"
    ))
    .fetch_all(monitor.pool())
    .await?;
    // The statements as project.rs writes them.
    let reports = |list: &str| {
        format!("SELECT manager_id, reports FROM projector_reports WHERE manager_id IN ({list})")
    };
    let old_managers = |list: &str| {
        format!(
            "SELECT employee_id, manager_id FROM projector_person WHERE employee_id IN ({list})"
        )
    };
    let params = |n: usize| hrsync_store::placeholders(n, 1);
    if managers.is_empty() || people.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = monitor.pool().acquire().await?;
    let mut plans = Vec::new();
    let mut plan_of = async |title: String, sql: String| -> anyhow::Result<()> {
        let rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&mut *conn).await?;
        plans.push((title, shorten_lists(&rows.join("\n"))));
        Ok(())
    };
    let size_sql = format!(
        "{MARK}SELECT 'table ' || pg_size_pretty(pg_relation_size('projector_person')) || \
         ', with indexes ' || pg_size_pretty(pg_total_relation_size('projector_person')) || \
         ', live rows ' || n_live_tup || ', dead rows ' || n_dead_tup || \
         ', autovacuums ' || autovacuum_count || ', autoanalyzes ' || autoanalyze_count \
         FROM pg_stat_user_tables WHERE relname = 'projector_person'"
    );
    plan_of("projector_person after the run".to_owned(), size_sql).await?;
    plan_of(
        "direct-report counts, 200 manager ids, custom plan (literal values)".to_owned(),
        format!("EXPLAIN (ANALYZE, BUFFERS) {}", reports(&quote(&managers))),
    )
    .await?;
    plan_of(
        "manager chains (one level), 200 employee ids, custom plan (literal values)".to_owned(),
        format!(
            "EXPLAIN (ANALYZE, BUFFERS) {}",
            old_managers(&quote(&people))
        ),
    )
    .await?;
    // sqlx prepares every statement; after five executions PostgreSQL may
    // switch a prepared statement to its generic plan.
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *conn)
        .await?;
    let types = vec!["text"; managers.len()].join(", ");
    sqlx::query(&format!(
        "PREPARE bench_reports ({types}) AS {}",
        reports(&params(managers.len()))
    ))
    .execute(&mut *conn)
    .await?;
    let mut plan_of = async |title: String, sql: String| -> anyhow::Result<()> {
        let rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&mut *conn).await?;
        plans.push((title, shorten_lists(&rows.join("\n"))));
        Ok(())
    };
    plan_of(
        "direct-report counts, 200 manager ids, generic plan (as a prepared statement may run)"
            .to_owned(),
        format!(
            "EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_reports ({})",
            quote(&managers)
        ),
    )
    .await?;
    sqlx::query("DEALLOCATE bench_reports")
        .execute(&mut *conn)
        .await?;
    sqlx::query("RESET plan_cache_mode")
        .execute(&mut *conn)
        .await?;
    Ok(plans)
}

/// Plans quote the 200 keys; keep the first two.
fn shorten_lists(plan: &str) -> String {
    let mut out = String::with_capacity(plan.len());
    let mut rest = plan;
    loop {
        let next = [("'{", "}'"), ("ARRAY[", "]")]
            .into_iter()
            .filter_map(|(open, close)| rest.find(open).map(|i| (i, open, close)))
            .min_by_key(|(i, _, _)| *i);
        let Some((i, open, close)) = next else {
            out.push_str(rest);
            return out;
        };
        let body_start = i + open.len();
        let Some(len) = rest[body_start..].find(close) else {
            out.push_str(rest);
            return out;
        };
        let body = &rest[body_start..body_start + len];
        let items: Vec<&str> = body.split(',').map(str::trim).collect();
        out.push_str(&rest[..body_start]);
        if items.len() > 3 {
            out.push_str(&format!(
                "{}, {}, … {} values …",
                items[0],
                items[1],
                items.len()
            ));
        } else {
            out.push_str(body);
        }
        out.push_str(close);
        rest = &rest[body_start + len + close.len()..];
    }
}

// ---------------------------------------------------------------------------
// Kafka helpers.

fn raw_consumer(bootstrap: &str, fetch_wait_ms: u32) -> anyhow::Result<ClientConfig> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", hrsync_tests::unique("bench"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string());
    Ok(cfg)
}

fn assign_all(
    consumer: &impl rdkafka::consumer::Consumer<rdkafka::consumer::DefaultConsumerContext>,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(())
}

/// Reads the priority lane of directory changes from the start, noting when
/// each VIP's deprovisioning change arrives. Only the VIPs' records (known
/// by their key, the person id) are decoded: decoding every record on the
/// lane took about 5 % of the benchmark process's CPU, from the projector
/// it measures.
fn spawn_watcher(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    vips: &[String],
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<u64>> {
    // Like the projector's own fast lane: no long broker poll.
    let consumer: StreamConsumer = raw_consumer(bootstrap, 10)?.create()?;
    assign_all(&consumer, topic, partitions)?;
    let keys: HashSet<Vec<u8>> = vips
        .iter()
        .map(|v| hrsync_projector::project::person_id_of(v).into_bytes())
        .collect();
    Ok(tokio::spawn(async move {
        let mut records = 0;
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return records,
                m = consumer.recv() => m,
            };
            let Ok(message) = message else { continue };
            records += 1;
            if !message.key().is_some_and(|key| keys.contains(key)) {
                continue;
            }
            let Some(Ok(change)) = message
                .payload()
                .map(hrsync_schema::decode_directory_change)
            else {
                continue;
            };
            if change.employee_id.as_str().starts_with('V')
                && change.lifecycle_state == LifecycleState::Deprovisioned
            {
                seen.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(change.employee_id.as_str().to_owned())
                    .or_insert_with(Instant::now);
            }
        }
    }))
}

/// Reads a whole topic from the start with a plain consumer: records and
/// seconds. Stops at `expected` records, or after 3 s without any.
fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: Option<u64>,
) -> anyhow::Result<(u64, f64)> {
    let consumer: BaseConsumer = raw_consumer(bootstrap, 100)?
        .set("fetch.max.bytes", "52428800")
        .create()?;
    assign_all(&consumer, topic, partitions)?;
    let started = Instant::now();
    let mut count = 0u64;
    let mut last = Instant::now();
    let mut last_at = started;
    while last.elapsed() < Duration::from_secs(3) && expected.is_none_or(|e| count < e) {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("reading {topic} took more than 600 s ({count} records)");
        }
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            count += 1;
            last = Instant::now();
            last_at = last;
        }
    }
    Ok((count, last_at.duration_since(started).as_secs_f64()))
}

// ---------------------------------------------------------------------------
// One run.

#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    done: i64,
    outbox: i64,
    rss_kib: u64,
    heap_kib: u64,
}

#[derive(Debug, Clone)]
struct ProbeResult {
    employee: String,
    at_progress: f64,
    waiting: i64,
    outbox: i64,
    acked_ms: f64,
    applied_ms: Option<f64>,
    emitted_ms: Option<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[allow(clippy::too_many_arguments)]
async fn probe(
    producer: Producer,
    monitor: Db,
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    topic: String,
    employee: String,
    at_progress: f64,
    waiting: i64,
    outbox: i64,
) -> anyhow::Result<ProbeResult> {
    let termination = immediate_termination(&employee);
    let payload = hrsync_schema::encode_lifecycle(&termination)?;
    let sent = Instant::now();
    producer
        .send(OutgoingRecord {
            topic: &topic,
            key: employee.as_bytes(),
            payload: &payload,
            headers: &[],
        })
        .await?;
    let acked_ms = ms(sent.elapsed());
    let mut applied_ms = None;
    let mut emitted_ms = None;
    let lifecycle_sql =
        format!("{MARK}SELECT lifecycle FROM projector_person WHERE employee_id = $1");
    while sent.elapsed() < Duration::from_secs(120) {
        if applied_ms.is_none() {
            let lifecycle: Option<String> = sqlx::query_scalar(&lifecycle_sql)
                .bind(&employee)
                .fetch_optional(monitor.pool())
                .await?;
            if lifecycle.as_deref() == Some("DEPROVISIONED") {
                applied_ms = Some(ms(sent.elapsed()));
            }
        }
        if emitted_ms.is_none() {
            let at = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&employee)
                .copied();
            emitted_ms = at.map(|at| ms(at.duration_since(sent)));
        }
        if applied_ms.is_some() && emitted_ms.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(ProbeResult {
        employee,
        at_progress,
        waiting,
        outbox,
        acked_ms,
        applied_ms,
        emitted_ms,
    })
}

fn spawn_projector(
    projector: &Projector,
    kafka: &KafkaConfig,
    topics: &Topics,
    shutdown: &CancellationToken,
) -> JoinHandle<Result<(), RunError>> {
    let (projector, kafka, topics, shutdown) = (
        projector.clone(),
        kafka.clone(),
        topics.clone(),
        shutdown.clone(),
    );
    tokio::spawn(
        async move { run::run(projector, None, &kafka, &topics, Mode::Serve, shutdown).await },
    )
}

#[derive(Debug, Clone, Default)]
struct Offline {
    rows: Vec<(String, f64)>,
}

/// CPU cost of one event's pure work, measured outside the projector with
/// its own public functions (single thread).
fn offline_profile(plan: &Plan, rules: &RulesConfig) -> anyhow::Result<Offline> {
    let n = plan.len().min(20_000);
    let stride = (plan.len() / n).max(1);
    let events: Vec<LifecycleEvent> = (0..n).map(|i| plan.event(i * stride)).collect();
    let payloads: Vec<Vec<u8>> = events
        .iter()
        .map(hrsync_schema::encode_lifecycle)
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    let per = |started: Instant, count: usize| started.elapsed().as_secs_f64() * 1e6 / count as f64;

    let started = Instant::now();
    for p in &payloads {
        std::hint::black_box(hrsync_schema::decode_lifecycle(p)?);
    }
    rows.push((
        "Avro decode of a lifecycle event".to_owned(),
        per(started, n),
    ));
    let started = Instant::now();
    for p in &payloads {
        std::hint::black_box(hrsync_schema::decode_lifecycle_generic(p)?);
    }
    rows.push((
        "… through apache-avro's generic path (before the direct reader)".to_owned(),
        per(started, n),
    ));

    let sources = AttributeSources::default();
    let hires: Vec<LifecycleEvent> = (0..plan.hires.min(5_000)).map(|i| plan.event(i)).collect();
    let started = Instant::now();
    let mut states: Vec<PersonState> = hires
        .iter()
        .map(|e| {
            let mut s = PersonState::new(e.employee_id.as_str());
            s.apply_in_order(e, &sources);
            s
        })
        .collect();
    rows.push((
        "fold: a hire into a new person state".to_owned(),
        per(started, hires.len()),
    ));

    let started = Instant::now();
    let mut stored_len = 0;
    for s in &states {
        let stored = s.to_stored()?;
        stored_len += stored.len();
        let back = PersonState::from_stored(&stored).map_err(anyhow::Error::msg)?;
        std::hint::black_box(back);
    }
    rows.push((
        format!(
            "person state to its stored form and back (avg {} bytes)",
            stored_len / states.len().max(1)
        ),
        per(started, states.len()),
    ));

    let started = Instant::now();
    let mut json_len = 0;
    for s in &states {
        let text = serde_json::to_string(s)?;
        json_len += text.len();
        let back: PersonState = serde_json::from_str(&text)?;
        std::hint::black_box(back);
    }
    rows.push((
        format!(
            "person state to JSON and back (avg {} bytes; for comparison with the binary form)",
            json_len / states.len().max(1)
        ),
        per(started, states.len()),
    ));

    let ruleset = RuleSet::compile(rules)?;
    let chain = vec![employee(3), employee(0)];
    let started = Instant::now();
    for s in &mut states {
        let attributes = s
            .attributes
            .clone()
            .unwrap_or_else(|| WorkerAttributes::new("", "", EmploymentType::Employee));
        std::hint::black_box(ruleset.evaluate(&Subject {
            employee_id: &s.employee_id,
            attributes: &attributes,
            lifecycle_state: LifecycleState::Active,
            manager_chain: &chain,
            direct_reports: 3,
        }));
    }
    rows.push((
        format!(
            "CEL: evaluate all {} group rules for a person",
            rules.groups.len()
        ),
        per(started, states.len()),
    ));
    // What emit_changed does per changed person after the rules: the digest
    // of the desired state (JSON + SHA-256) and the Avro encoding.
    let evaluations: Vec<(Profile, Vec<String>, Vec<AppAssignment>)> = states
        .iter()
        .map(|s| {
            let attributes = s
                .attributes
                .clone()
                .unwrap_or_else(|| WorkerAttributes::new("", "", EmploymentType::Employee));
            let e = ruleset.evaluate(&Subject {
                employee_id: &s.employee_id,
                attributes: &attributes,
                lifecycle_state: LifecycleState::Active,
                manager_chain: &chain,
                direct_reports: 3,
            });
            let profile = Profile {
                attributes,
                time_zone: TimeZone::new(&s.time_zone).expect("time zone"),
                start_at: s.employed_from_ms.map(ts),
                terminate_at: None,
            };
            (profile, e.groups, e.apps)
        })
        .collect();
    let started = Instant::now();
    // As the projector's digest input: the structs serialised in field
    // order, no JSON tree.
    #[derive(serde::Serialize)]
    struct Desired<'a> {
        lifecycle: &'a str,
        profile: &'a Profile,
        groups: &'a [String],
        apps: &'a [AppAssignment],
    }
    for (profile, groups, apps) in &evaluations {
        let desired = Desired {
            lifecycle: "ACTIVE",
            profile,
            groups,
            apps,
        };
        // (The projector also hashes these bytes with SHA-256; sha2 is not
        // a dependency here, and its samples are under 1 % in perf.)
        std::hint::black_box(serde_json::to_vec(&desired)?);
    }
    rows.push((
        "desired state as JSON bytes (digested by SHA-256 in the projector)".to_owned(),
        per(started, evaluations.len()),
    ));
    let started = Instant::now();
    for (i, (profile, groups, apps)) in evaluations.iter().enumerate() {
        let change = DirectoryChange {
            person_id: PersonId::new(format!("p-{i:032x}"))?,
            employee_id: EmployeeId::new(employee(i))?,
            version: 3,
            lifecycle_state: LifecycleState::Active,
            profile: profile.clone(),
            groups: groups.clone(),
            apps: apps.clone(),
            caused_by: hires
                .get(i)
                .map(|e| vec![e.event_id.clone()])
                .unwrap_or_default(),
            priority: false,
            changed_at: ts(now_ms()),
        };
        std::hint::black_box(hrsync_schema::encode_directory_change(&change)?);
    }
    rows.push((
        "Avro encode of a directory change (clone + encode)".to_owned(),
        per(started, evaluations.len()),
    ));
    Ok(Offline { rows })
}

#[derive(Debug, Clone, Default)]
struct Report {
    events: usize,
    people: usize,
    partitions: i32,
    batch_max: usize,
    linger_ms: u64,
    produce_secs: f64,
    applied_secs: f64,
    drained_secs: f64,
    sustained: Option<f64>,
    changes: i64,
    changes_on_topic: u64,
    versions_total: i64,
    lifecycle_read: (u64, f64),
    rss_start_kib: u64,
    rss_min_kib: u64,
    rss_max_kib: u64,
    rss_at: Vec<(f64, u64)>,
    heap_start_kib: u64,
    heap_max_kib: u64,
    heap_at: Vec<(f64, u64)>,
    hwm_kib: u64,
    outbox_max: i64,
    outbox_at: Vec<(f64, i64)>,
    probes: Vec<ProbeResult>,
    batches: Vec<BatchStat>,
    sql: BTreeMap<String, SqlStat>,
    warnings: (u64, Vec<String>),
    conflicts: Vec<String>,
    cpu: CpuUse,
    pg: BTreeMap<String, i64>,
    offline: Offline,
    samples: Vec<Sample>,
    plans: Vec<(String, String)>,
    publisher: Vec<PublisherStatement>,
}

async fn run_one(args: &Args) -> anyhow::Result<Report> {
    let defaults = ProjectorConfig::default();
    let mut report = Report {
        events: args.events,
        people: args.people,
        partitions: args.partitions,
        batch_max: args.batch.unwrap_or(defaults.batch_max),
        linger_ms: args.linger_ms.unwrap_or(defaults.batch_linger_ms),
        ..Report::default()
    };

    let broker = Broker::start()?;
    let bootstrap = broker.bootstrap();
    let broker_pid = bootstrap
        .rsplit(':')
        .next()
        .and_then(|port| find_pid("tansu", &format!("127.0.0.1:{port}")));
    // Batching producers (as in production): every reader here reads from
    // the start of a partition or resumes at a batch boundary, where tansu
    // 0.6 serves batches correctly (see `Broker::kafka_config`).
    let mut kafka = KafkaConfig::new(bootstrap.clone());
    kafka.default_partitions = args.partitions;
    for property in &args.kafka_properties {
        let (key, value) = property
            .split_once('=')
            .with_context(|| format!("--kafka-property {property}: expected KEY=VALUE"))?;
        kafka.properties.insert(key.to_owned(), value.to_owned());
    }
    let topics = projector_topics(&kafka, args.partitions).await?;

    let (_pg, _sqlite, url) = if args.store == "sqlite" {
        let file = SqliteFile::new()?;
        let url = file.url();
        (None, Some(file), url)
    } else {
        let db = PgDatabase::fresh().await?;
        let url = db.url().to_owned();
        (Some(db), None, url)
    };
    let postgres = args.store != "sqlite";
    let config = ProjectorConfig {
        batch_max: report.batch_max,
        batch_linger_ms: report.linger_ms,
        max_connections: args.max_connections.unwrap_or(defaults.max_connections),
        rules: rules(),
        ..defaults
    };
    let monitor = Db::connect(&url, 2).await?;
    if postgres && !args.pg_settings.is_empty() {
        let name: String = sqlx::query_scalar("SELECT CAST(current_database() AS TEXT)")
            .fetch_one(monitor.pool())
            .await?;
        for setting in &args.pg_settings {
            let (key, value) = setting
                .split_once('=')
                .with_context(|| format!("--pg-set {setting}: expected KEY=VALUE"))?;
            anyhow::ensure!(
                key.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'),
                "--pg-set {setting}: not a setting name"
            );
            sqlx::query(&format!(
                "ALTER DATABASE \"{name}\" SET {key} = '{}'",
                value.replace('\'', "''")
            ))
            .execute(monitor.pool())
            .await?;
        }
    }
    // The projector's connections are opened after the settings.
    let mut projector_url = url.clone();
    for param in &args.url_params {
        anyhow::ensure!(
            param.contains('='),
            "--url-param {param}: expected KEY=VALUE"
        );
        projector_url.push(if projector_url.contains('?') {
            '&'
        } else {
            '?'
        });
        projector_url.push_str(param);
    }
    let db = Db::connect(&projector_url, config.max_connections).await?;
    db.migrate().await?;
    let group = config.group_id.clone();
    let projector = Projector::new(db, config.clone())?;
    let plan = Plan::new(args, now_ms());
    let producer = Producer::new(&kafka)?;

    // Warm-up: the people whose termination is timed are hired and their
    // first change published; then the projector stops.
    let vips: Vec<String> = (0..args.probes.len()).map(vip).collect();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    produce(
        &producer,
        &topics.lifecycle,
        vips.len(),
        |n| vip_hire(n, plan.base_ms),
        &mut ends,
    )
    .await?;
    {
        let shutdown = CancellationToken::new();
        let task = spawn_projector(&projector, &kafka, &topics, &shutdown);
        let started = Instant::now();
        loop {
            let p = progress(&monitor, &group, &topics.lifecycle, &ends).await?;
            if p.complete && outbox_len(&monitor).await? == 0 {
                break;
            }
            if task.is_finished() || started.elapsed() > Duration::from_secs(120) {
                bail!("the projector did not apply the warm-up hires");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        task.await??;
    }
    let warm_offsets = progress(&monitor, &group, &topics.lifecycle, &ends)
        .await?
        .offsets;
    let warm_versions = versions(&monitor).await?;

    // The backlog, all on the topic before the projector starts again.
    eprintln!(
        "producing {} events ({} hires, {} moves, {} terminations) for {} people ...",
        plan.len(),
        plan.hires,
        plan.moves,
        plan.terms,
        plan.people
    );
    let produce_started = Instant::now();
    produce(
        &producer,
        &topics.lifecycle,
        plan.len(),
        |i| plan.event(i),
        &mut ends,
    )
    .await?;
    report.produce_secs = produce_started.elapsed().as_secs_f64();
    let total = i64::try_from(plan.len())?;

    if args.profile {
        report.offline = offline_profile(&plan, &config.rules)?;
    }

    // Drain it.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stop_watcher = CancellationToken::new();
    let watcher = spawn_watcher(
        &bootstrap,
        &topics.directory_priority,
        args.partitions,
        &vips,
        seen.clone(),
        stop_watcher.clone(),
    )?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let mut c = collected();
        c.batches.clear();
        c.sql.clear();
        c.publisher.clear();
    }
    let pg_before = if postgres {
        pg_counters(&monitor).await?
    } else {
        BTreeMap::new()
    };
    let cpu_before = cpu_snapshot(postgres.then_some(&monitor), broker_pid).await;
    report.rss_start_kib = rss_kib();
    report.heap_start_kib = heap_kib();
    eprintln!("draining ...");
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = spawn_projector(&projector, &kafka, &topics, &shutdown);
    let vacuum = (postgres && args.vacuum_every_s > 0).then(|| {
        let (monitor, stop, every) = (
            monitor.clone(),
            shutdown.clone(),
            Duration::from_secs(args.vacuum_every_s),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                let sql = format!("{MARK}VACUUM ANALYZE projector_person");
                if let Err(error) = sqlx::query(&sql).execute(monitor.pool()).await {
                    eprintln!("vacuum failed: {error}");
                }
            }
        })
    });
    let mut next_probe = 0;
    let mut running_probe: Option<JoinHandle<anyhow::Result<ProbeResult>>> = None;
    let mut last_report = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(args.sample_ms)).await;
        let p = progress(&monitor, &group, &topics.lifecycle, &ends).await?;
        let done = p.offsets - warm_offsets;
        let outbox = outbox_len(&monitor).await?;
        let secs = started.elapsed().as_secs_f64();
        report.samples.push(Sample {
            secs,
            done,
            outbox,
            rss_kib: rss_kib(),
            heap_kib: heap_kib(),
        });
        if p.complete && report.applied_secs == 0.0 {
            // The commit of the last main batch, not the sample that saw it
            // (samples are `--sample-ms` apart: 5 % of a 5 s run).
            let last = collected()
                .batches
                .iter()
                .filter(|b| !b.priority)
                .map(|b| b.at)
                .max();
            report.applied_secs = last
                .map_or(secs, |at| {
                    at.saturating_duration_since(started).as_secs_f64()
                })
                .min(secs);
        }
        if let Some(handle) = running_probe.take_if(|h| h.is_finished()) {
            report.probes.push(handle.await??);
        }
        if running_probe.is_none() && next_probe < args.probes.len() {
            let at = args.probes[next_probe];
            if done as f64 >= at * total as f64 || p.complete {
                running_probe = Some(tokio::spawn(probe(
                    producer.clone(),
                    monitor.clone(),
                    seen.clone(),
                    topics.lifecycle_priority.clone(),
                    vips[next_probe].clone(),
                    done as f64 / total as f64,
                    total - done,
                    outbox,
                )));
                next_probe += 1;
            }
        }
        if p.complete && outbox == 0 && running_probe.is_none() && next_probe >= args.probes.len() {
            report.drained_secs = secs;
            break;
        }
        if task.is_finished() {
            shutdown.cancel();
            task.await??;
            bail!("the projector stopped before the backlog was drained");
        }
        if started.elapsed() > Duration::from_secs(args.timeout_s) {
            bail!("not drained after {} s ({done} of {total})", args.timeout_s);
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "  {secs:.0} s: {done}/{total} applied ({:.0}/s), outbox {outbox}, RSS {} MiB",
                done as f64 / secs,
                rss_kib() / 1024
            );
        }
    }
    let cpu_after = cpu_snapshot(postgres.then_some(&monitor), broker_pid).await;
    report.cpu = cpu_use(&cpu_before, &cpu_after);
    report.hwm_kib = status_kib("VmHWM:");
    shutdown.cancel();
    task.await??;
    if let Some(vacuum) = vacuum {
        let _ = vacuum.await;
    }
    stop_watcher.cancel();
    let _ = watcher.await;
    {
        let mut c = collected();
        report.batches = std::mem::take(&mut c.batches);
        report.sql = std::mem::take(&mut c.sql);
        report.publisher = std::mem::take(&mut c.publisher);
        report.warnings = (c.warnings, c.first_warnings.clone());
        report.conflicts = std::mem::take(&mut c.conflicts);
    }
    // Closing the projector's connections makes PostgreSQL flush their
    // statistics.
    projector.db().pool().close().await;
    if postgres {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let after = pg_counters(&monitor).await?;
        for (k, v) in after {
            let delta = v - pg_before.get(&k).copied().unwrap_or(0);
            report.pg.insert(k, delta);
        }
    }

    if postgres && args.profile {
        report.plans = explain(&monitor).await?;
    }
    report.versions_total = versions(&monitor).await?;
    let probes_emitted = i64::try_from(
        report
            .probes
            .iter()
            .filter(|p| p.applied_ms.is_some())
            .count(),
    )?;
    report.changes = report.versions_total - warm_versions - probes_emitted;

    // Progress → memory and outbox.
    let first_at = |fraction: f64| {
        report
            .samples
            .iter()
            .find(|s| s.done as f64 >= fraction * total as f64)
            .copied()
    };
    report.rss_min_kib = report.samples.iter().map(|s| s.rss_kib).min().unwrap_or(0);
    report.rss_max_kib = report.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    report.heap_max_kib = report.samples.iter().map(|s| s.heap_kib).max().unwrap_or(0);
    for fraction in [0.25, 0.5, 0.75, 1.0] {
        if let Some(s) = first_at(fraction) {
            report.rss_at.push((fraction, s.rss_kib));
            report.heap_at.push((fraction, s.heap_kib));
            report.outbox_at.push((fraction, s.outbox));
        }
    }
    report.outbox_max = report.samples.iter().map(|s| s.outbox).max().unwrap_or(0);
    if let (Some(a), Some(b)) = (first_at(0.1), first_at(0.9)) {
        if b.secs > a.secs {
            report.sustained = Some((b.done - a.done) as f64 / (b.secs - a.secs));
        }
    }

    // What the broker can serve: the changes emitted, and the backlog read
    // back by a plain consumer.
    eprintln!("reading the topics back ...");
    let (bootstrap2, changes_topic, lifecycle_topic, partitions) = (
        bootstrap.clone(),
        topics.directory_changes.clone(),
        topics.lifecycle.clone(),
        args.partitions,
    );
    let expected_changes = u64::try_from(report.versions_total)?;
    let expected_lifecycle = u64::try_from(ends.values().sum::<i64>())?;
    let (on_topic, lifecycle_read) = tokio::task::spawn_blocking(move || {
        let changes = read_all(
            &bootstrap2,
            &changes_topic,
            partitions,
            Some(expected_changes),
        )?;
        let lifecycle = read_all(
            &bootstrap2,
            &lifecycle_topic,
            partitions,
            Some(expected_lifecycle),
        )?;
        anyhow::Ok((changes.0, lifecycle))
    })
    .await??;
    report.changes_on_topic = on_topic;
    report.lifecycle_read = lifecycle_read;
    drop(broker);
    Ok(report)
}

// ---------------------------------------------------------------------------
// Output.

fn mib(kib: u64) -> String {
    format!("{:.0}", kib as f64 / 1024.0)
}

/// Sampled sizes (progress, KiB) as `a / b / ...` MiB.
fn mibs(samples: &[(f64, u64)]) -> String {
    samples
        .iter()
        .map(|(_, kib)| mib(*kib))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("not seen".to_owned(), |v| format!("{v:.0} ms"))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Cores busy with things other than this run (other processes sharing the
/// machine): runs with a high value are disturbed.
fn other_load(r: &Report) -> f64 {
    let ours = r.cpu.process + r.cpu.pg_backends + r.cpu.pg_background + r.cpu.broker;
    (r.cpu.machine - ours).max(0.0) / r.drained_secs.max(1e-9)
}

fn print_report(args: &Args, r: &Report) {
    let events = r.events as f64;
    println!(
        "\n## Projector benchmark: {} events, {} people, {} partitions, batch_max {}, linger {} ms, store {}\n",
        r.events, r.people, r.partitions, r.batch_max, r.linger_ms, args.store
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| backlog produced (generate + encode + send, batched) | {:.0} events/s ({:.1} s) |",
        events / r.produce_secs,
        r.produce_secs
    );
    println!(
        "| **applied** (offsets stored with state, start → last batch committed) | **{:.0} events/s** ({:.2} s) |",
        events / r.applied_secs,
        r.applied_secs
    );
    println!(
        "| sustained, 10 % → 90 % of the backlog | {} |",
        r.sustained
            .map_or("n/a".to_owned(), |v| format!("{v:.0} events/s"))
    );
    println!(
        "| applied and every change published (outbox empty) | {:.0} events/s ({:.1} s) |",
        events / r.drained_secs,
        r.drained_secs
    );
    println!(
        "| directory changes emitted by the backlog | {} ({:.0} changes/s) |",
        r.changes,
        r.changes as f64 / r.drained_secs
    );
    println!(
        "| records on directory.changes.v1 / sum of person versions | {} / {} |",
        r.changes_on_topic, r.versions_total
    );
    println!(
        "| outbox changes waiting: max / at 25, 50, 75, 100 % | {} / {} |",
        r.outbox_max,
        r.outbox_at
            .iter()
            .map(|(_, o)| o.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| RSS MiB: before start / min / max during the run | {} / {} / {} |",
        mib(r.rss_start_kib),
        mib(r.rss_min_kib),
        mib(r.rss_max_kib)
    );
    println!(
        "| RSS MiB at 25 / 50 / 75 / 100 % of the backlog | {} |",
        mibs(&r.rss_at)
    );
    println!(
        "| heap in use MiB (jemalloc allocated): before start / max / at 25, 50, 75, 100 % | {} / {} / {} |",
        mib(r.heap_start_kib),
        mib(r.heap_max_kib),
        mibs(&r.heap_at)
    );
    println!(
        "| peak RSS of the process (VmHWM) | {} MiB |",
        mib(r.hwm_kib)
    );
    println!(
        "| plain consumer reading the backlog back from tansu | {:.0} records/s ({} records) |",
        r.lifecycle_read.0 as f64 / r.lifecycle_read.1.max(1e-9),
        r.lifecycle_read.0
    );

    println!("\n### Fast lane: immediate terminations on hr.lifecycle.priority.v1\n");
    println!("| person | sent at backlog progress | events waiting on hr.lifecycle.v1 | outbox changes waiting | produce ack | stored as deprovisioned | read from directory.changes.priority.v1 |");
    println!("|---|---|---|---|---|---|---|");
    for p in &r.probes {
        println!(
            "| {} | {:.0} % | {} | {} | {:.0} ms | {} | {} |",
            p.employee,
            p.at_progress * 100.0,
            p.waiting,
            p.outbox,
            p.acked_ms,
            opt_ms(p.applied_ms),
            opt_ms(p.emitted_ms)
        );
    }

    let main: Vec<&BatchStat> = r.batches.iter().filter(|b| !b.priority).collect();
    let mut main_ms: Vec<u64> = main.iter().map(|b| b.ms).collect();
    main_ms.sort_unstable();
    let records: u64 = main.iter().map(|b| b.records).sum();
    let changes: u64 = main.iter().map(|b| b.changes).sum();
    let busy_ms: u64 = main_ms.iter().sum();
    let mut sizes: Vec<u64> = main.iter().map(|b| b.records).collect();
    sizes.sort_unstable();
    println!("\n### Main consumer batches (the projector's `batch applied` events)\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| batches / records / changes | {} / {} / {} |",
        main.len(),
        records,
        changes
    );
    println!(
        "| records per batch: p50 / min / max | {} / {} / {} |",
        percentile(&sizes, 0.5),
        sizes.first().copied().unwrap_or(0),
        sizes.last().copied().unwrap_or(0)
    );
    println!(
        "| apply_batch per batch (records decoded ahead): p50 / p95 / max | {} / {} / {} ms |",
        percentile(&main_ms, 0.5),
        percentile(&main_ms, 0.95),
        main_ms.last().copied().unwrap_or(0)
    );
    println!(
        "| time spent applying (sum of batch times / wall time to last offset) | {:.1} s / {:.1} s = {:.0} % |",
        busy_ms as f64 / 1000.0,
        r.applied_secs,
        busy_ms as f64 / 10.0 / r.applied_secs
    );
    println!(
        "| rate while applying (records / sum of batch times) | {:.0} events/s |",
        records as f64 * 1000.0 / (busy_ms.max(1)) as f64
    );
    if let Some((first, rest)) = main.split_first() {
        let waited_us: u64 = rest.iter().map(|b| b.wait_us).sum();
        let longest = rest.iter().enumerate().max_by_key(|(_, b)| b.wait_us);
        println!(
            "| waiting for the next batch (gathered and decoded ahead): first batch / all later ones / longest (batch) | {:.0} ms / {:.0} ms / {} |",
            first.wait_us as f64 / 1000.0,
            waited_us as f64 / 1000.0,
            longest.map_or("-".to_owned(), |(i, b)| format!(
                "{:.0} ms ({} of {})",
                b.wait_us as f64 / 1000.0,
                i + 2,
                main.len()
            ))
        );
        let tenths: Vec<String> = (0..10)
            .filter_map(|t| {
                let part = &main[t * main.len() / 10..(t + 1) * main.len() / 10];
                let ms: u64 = part.iter().map(|b| b.ms).sum();
                (!part.is_empty()).then(|| format!("{:.0}", ms as f64 / part.len() as f64))
            })
            .collect();
        println!(
            "| mean batch time by tenth of the batches, first to last | {} ms |",
            tenths.join(" / ")
        );
        let mut slowest: Vec<(usize, &&BatchStat)> = main.iter().enumerate().collect();
        slowest.sort_by_key(|(_, b)| std::cmp::Reverse(b.ms));
        println!(
            "| slowest batches: number, ms, changes (ms per phase, in the order of the table below) | {} |",
            slowest
                .iter()
                .take(5)
                .map(|(i, b)| format!(
                    "{} {} ms {} ({})",
                    i + 1,
                    b.ms,
                    b.changes,
                    b.phases
                        .iter()
                        .map(|us| format!("{:.0}", *us as f64 / 1000.0))
                        .collect::<Vec<_>>()
                        .join(" ")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let gathered_us: u64 = main.iter().map(|b| b.gather_us).sum();
        println!(
            "| gathering a batch after its first record: mean | {:.1} ms |",
            gathered_us as f64 / 1000.0 / main.len() as f64
        );
    }
    let priority: Vec<&BatchStat> = r.batches.iter().filter(|b| b.priority).collect();
    println!(
        "| priority-lane batches (records, ms) | {} |",
        priority
            .iter()
            .map(|b| format!("({}, {} ms)", b.records, b.ms))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if !main.is_empty() {
        println!("\nWhere a main batch's time goes (mean per batch; the rest of a batch's time is waiting for the write gate and dead-lettering):\n");
        println!("| phase | mean ms | share of the batch |");
        println!("|---|---|---|");
        let mean_ms = busy_ms as f64 / main.len() as f64;
        for (i, (_, what)) in PHASES.iter().enumerate() {
            let us: u64 = main.iter().map(|b| b.phases[i]).sum();
            let phase_ms = us as f64 / 1000.0 / main.len() as f64;
            println!(
                "| {what} | {phase_ms:.1} | {:.0} % |",
                100.0 * phase_ms / mean_ms.max(f64::MIN_POSITIVE)
            );
        }
    }

    let wall = r.drained_secs;
    println!(
        "\n### CPU from projector start until the outbox was empty ({wall:.1} s wall, {} cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // CPU per backlog event compares machines: how many events a second a
    // machine's cores buy is the machine's, the CPU each event costs is
    // mostly the code's.
    println!("| who | CPU s | cores busy | µs per backlog event |");
    println!("|---|---|---|---|");
    let row = |name: &str, secs: f64| {
        println!(
            "| {name} | {secs:.1} | {:.2} | {:.0} |",
            secs / wall,
            secs * 1e6 / events
        );
    };
    row("benchmark process (projector + monitoring)", r.cpu.process);
    for (name, secs) in &r.cpu.threads {
        if *secs >= 0.05 {
            row(&format!("  thread group: {name}"), *secs);
        }
    }
    row("PostgreSQL backends of this database", r.cpu.pg_backends);
    row(
        "PostgreSQL server processes (WAL writer, checkpointer, ...)",
        r.cpu.pg_background,
    );
    row("tansu broker", r.cpu.broker);
    row(
        "everything else on the machine",
        other_load(r) * r.drained_secs,
    );
    row("whole machine", r.cpu.machine);

    if !r.pg.is_empty() {
        println!("\n### PostgreSQL counters during the run (pg_stat_*)\n");
        println!("| counter | value | per backlog event |");
        println!("|---|---|---|");
        for (k, v) in &r.pg {
            if *v != 0 {
                println!("| {k} | {v} | {:.2} |", *v as f64 / events);
            }
        }
    }

    if !r.sql.is_empty() {
        let total: f64 = r.sql.values().map(|s| s.secs).sum();
        let mut rows: Vec<(&String, &SqlStat)> = r.sql.iter().collect();
        rows.sort_by(|a, b| b.1.secs.total_cmp(&a.1.secs));
        println!("\n### SQL statements (round-trip time measured by sqlx, all connections)\n");
        println!("| statement | count | per backlog event | rows | total s | mean ms | share |");
        println!("|---|---|---|---|---|---|---|");
        for (label, s) in rows {
            println!(
                "| {label} | {} | {:.3} | {} | {:.2} | {:.2} | {:.0} % |",
                s.count,
                s.count as f64 / events,
                s.rows,
                s.secs,
                s.secs * 1000.0 / s.count.max(1) as f64,
                s.secs * 100.0 / total.max(1e-9)
            );
        }
        println!("| total | | | | {total:.2} | | |");
    }
    // Publisher cycles: a read of the outbox that returned rows, until the
    // delete after the broker acknowledged them.
    let mut cycles: Vec<(f64, u64)> = Vec::new();
    let mut read_at: Option<Instant> = None;
    for s in &r.publisher {
        match (s.delete, read_at) {
            (false, _) if s.rows > 0 => read_at = Some(s.at),
            (true, Some(at)) => {
                cycles.push((ms(s.at.duration_since(at)), s.rows));
                read_at = None;
            }
            _ => {}
        }
    }
    if !cycles.is_empty() {
        let mut times: Vec<u64> = cycles.iter().map(|(t, _)| *t as u64).collect();
        times.sort_unstable();
        let rows: u64 = cycles.iter().map(|(_, n)| n).sum();
        let busy: f64 = cycles.iter().map(|(t, _)| t).sum();
        println!(
            "\n### Outbox publisher cycles (read outbox → produce and wait for acks → delete)\n"
        );
        println!("| measure | value |");
        println!("|---|---|");
        println!(
            "| cycles / rows published | {} / {} ({:.0} rows per cycle) |",
            cycles.len(),
            rows,
            rows as f64 / cycles.len() as f64
        );
        println!(
            "| produce + acks per cycle: p50 / p95 / max | {} / {} / {} ms |",
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            times.last().copied().unwrap_or(0)
        );
        println!(
            "| first cycle (the producer's first sends: metadata, producer id) | {:.0} ms for {} rows |",
            cycles[0].0, cycles[0].1
        );
        println!(
            "| publishing rate while publishing | {:.0} rows/s ({:.1} s of {:.1} s) |",
            rows as f64 * 1000.0 / busy.max(1e-9),
            busy / 1000.0,
            r.drained_secs
        );
    }
    if !r.offline.rows.is_empty() {
        println!("\n### CPU work per item, measured outside the projector (one thread)\n");
        println!("| work | µs |");
        println!("|---|---|");
        for (what, us) in &r.offline.rows {
            println!("| {what} | {us:.1} |");
        }
    }
    for (title, plan) in &r.plans {
        println!("\n#### {title}\n\n```\n{plan}\n```");
    }
    if !r.conflicts.is_empty() {
        println!(
            "\n{} batches were rolled back by a conflict and retried:",
            r.conflicts.len()
        );
        for c in r.conflicts.iter().take(10) {
            println!("- {c}");
        }
    }
    if r.warnings.0 > 0 {
        println!("\n{} warnings were logged; the first:", r.warnings.0);
        for w in &r.warnings.1 {
            println!("- {w}");
        }
    }
    // One line for `--sizes` to collect.
    println!(
        "\nRESULT\t{}\t{}\t{:.0}\t{:.0}\t{}\t{:.0}\t{}\t{:.0}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.2}",
        r.events,
        r.people,
        events / r.produce_secs,
        events / r.applied_secs,
        r.sustained.map_or("n/a".to_owned(), |v| format!("{v:.0}")),
        events / r.drained_secs,
        r.changes,
        r.changes as f64 / r.drained_secs,
        mib(r.rss_start_kib),
        mib(r.rss_max_kib),
        mibs(&r.rss_at),
        r.outbox_max,
        r.probes
            .iter()
            .map(|p| format!("{} ({} waiting)", opt_ms(p.emitted_ms), p.waiting))
            .collect::<Vec<_>>()
            .join("; "),
        mib(r.hwm_kib),
        mib(r.heap_max_kib),
        mibs(&r.heap_at),
        other_load(r),
    );
}

/// `--sizes`: one child process per size, then a table comparing them.
fn run_sizes(args: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut passed: Vec<String> = Vec::new();
    let mut skip_next = false;
    for arg in std::env::args().skip(1) {
        if skip_next {
            skip_next = false;
            continue;
        }
        if arg == "--sizes" || arg == "--events" {
            skip_next = true;
            continue;
        }
        if arg.starts_with("--sizes=") || arg.starts_with("--events=") {
            continue;
        }
        passed.push(arg);
    }
    let mut results = Vec::new();
    for size in &args.sizes {
        eprintln!("=== backlog of {size} events ===");
        let output = std::process::Command::new(&exe)
            .args(&passed)
            .args(["--events", &size.to_string()])
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running a size")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        print!("{stdout}");
        if !output.status.success() {
            bail!("the run with {size} events failed");
        }
        if let Some(line) = stdout.lines().find(|l| l.starts_with("RESULT\t")) {
            results.push(
                line.split('\t')
                    .skip(1)
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            );
        }
    }
    println!("\n## Backlog sizes compared\n");
    println!("| backlog events | people | produced ev/s | applied ev/s | sustained 10–90 % ev/s | applied + published ev/s | changes | changes/s | RSS MiB before | RSS MiB max | RSS MiB at 25/50/75/100 % | outbox max | fast lane: read from priority topic | VmHWM MiB | heap in use MiB max | heap in use MiB at 25/50/75/100 % | other load (cores) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        println!("| {} |", r.join(" | "));
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.sizes.is_empty() {
        return run_sizes(&args);
    }
    if args.events == 0 || args.people == 0 {
        bail!("--events and --people must be at least 1");
    }
    init_tracing(args.profile)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run_one(&args))?;
    print_report(&args, &report);
    Ok(())
}
