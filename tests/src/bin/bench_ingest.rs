//! Ingest benchmark: `hrsync ingest import` of a large HR export, as a user
//! runs it. A snapshot of `--workers` workers (every canonical column, a
//! five-level management tree, time zones) is imported into a fresh store
//! (PostgreSQL or SQLite) and published to a tansu broker (librdkafka's
//! default batching, as a user runs it: not the one-record batches the
//! tests use against tansu's fetch bug, which only consumers meet); then the next
//! day's snapshot (1 % moves, 0.5 % hires and 0.5 % terminations), then the
//! same snapshot again. Each command is timed from its start to its exit,
//! with its peak RSS (`VmHWM`); the records on the lifecycle
//! topics are counted against the plan.
//!
//! ```sh
//! cargo build --release -p hrsync -p hrsync-tests --bin hrsync --bin bench_ingest
//! target/release/bench_ingest --workers 100000
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use hrsync_tests::{Broker, PgDatabase, SqliteFile};

#[derive(Debug, Parser)]
struct Args {
    /// Workers in the first snapshot.
    #[arg(long, default_value_t = 100_000)]
    workers: usize,
    /// The ingest store: `postgres` or `sqlite`.
    #[arg(long, default_value = "postgres")]
    store: String,
    /// The `hrsync` binary (default: beside this one).
    #[arg(long)]
    hrsync: Option<PathBuf>,
}

const HEADER: &str = "employee_id,given_name,family_name,preferred_name,display_name,work_email,\
personal_email,phone,title,department,manager_id,location,cost_center,employment_type,status,\
hire_date,termination_date,time_zone\n";

const DEPARTMENTS: [&str; 6] = [
    "Customer Support",
    "Engineering",
    "Finance",
    "Sales",
    "Marketing",
    "People",
];
const ZONES: [&str; 4] = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"];

/// Worker `i`'s manager: a tree of fan-out 8 under `W000001`.
fn manager(i: usize) -> Option<usize> {
    (i > 1).then(|| (i - 2) / 8 + 1)
}

/// One CSV row for worker `i`, with `title` and `status` as given.
fn row(i: usize, title: &str, terminated: Option<&str>) -> String {
    let department = DEPARTMENTS[i % DEPARTMENTS.len()];
    format!(
        "W{i:06},Given{i},Family{i},,Given{i} Family{i},w{i}@acme.example,p{i}@mail.example,\
         +33 1 00 {:02} {:02} {:02},{title},{department},{},Site {},CC-{:03},employee,{},\
         2021-{:02}-{:02},{},{}\n",
        i % 100,
        (i / 100) % 100,
        (i / 10_000) % 100,
        manager(i).map(|m| format!("W{m:06}")).unwrap_or_default(),
        i % 40,
        i % 250,
        if terminated.is_some() {
            "terminated"
        } else {
            "active"
        },
        i % 12 + 1,
        i % 28 + 1,
        terminated.unwrap_or(""),
        ZONES[i % ZONES.len()],
    )
}

/// Day 0: every worker active.
fn day0(workers: usize) -> String {
    let mut csv = String::with_capacity(workers * 200);
    csv.push_str(HEADER);
    for i in 1..=workers {
        csv.push_str(&row(i, "Agent", None));
    }
    csv
}

/// Day 1: 1 % of the workers change title, 0.5 % are terminated (workers
/// who manage nobody), 0.5 % are hired. Returns the CSV and the number of
/// events it should produce.
fn day1(workers: usize) -> (String, usize) {
    let mut csv = String::with_capacity(workers * 200);
    csv.push_str(HEADER);
    let mut events = 0;
    // Managers are 1..=workers/8 + 1; leaves come after them.
    let first_leaf = workers / 8 + 2;
    for i in 1..=workers {
        if i >= first_leaf && i % 200 == 7 {
            csv.push_str(&row(i, "Agent", Some("2026-01-31")));
            events += 1;
        } else if i % 100 == 3 {
            csv.push_str(&row(i, "Senior Agent", None));
            events += 1;
        } else {
            csv.push_str(&row(i, "Agent", None));
        }
    }
    for i in workers + 1..=workers + workers / 200 {
        csv.push_str(&row(i, "Agent", None));
        events += 1;
    }
    (csv, events)
}

/// One finished command: its wall time, peak RSS and output.
struct Measured {
    wall: Duration,
    max_rss_kib: i64,
    stdout: String,
}

/// The peak RSS of process `pid` so far (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `command` to its end and measures it. The peak RSS is the child's
/// `VmHWM`, read every 2 ms while it runs (a high-water mark, so only a
/// rise in its last 2 ms could be missed).
fn measure(command: &mut Command, out_dir: &Path, label: &str) -> anyhow::Result<Measured> {
    let stdout_path = out_dir.join(format!("{label}.out"));
    let stderr_path = out_dir.join(format!("{label}.err"));
    let started = Instant::now();
    let mut child = command
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&stderr_path)?)
        .stdin(Stdio::null())
        .spawn()?;
    let mut max_rss_kib = 0;
    let status = loop {
        if let Some(kib) = peak_rss_kib(child.id()) {
            max_rss_kib = max_rss_kib.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let wall = started.elapsed();
    let stdout = std::fs::read_to_string(&stdout_path)?;
    if !status.success() {
        bail!(
            "{label} failed ({status}):\n{stdout}\n{}",
            std::fs::read_to_string(&stderr_path)?
        );
    }
    Ok(Measured {
        wall,
        max_rss_kib,
        stdout,
    })
}

/// The records on the lifecycle topic, read from its start (tansu's high
/// watermarks lag behind what it stores). Every event is there once; a
/// termination is also copied to the priority topic.
fn published(broker: &Broker) -> anyhow::Result<i64> {
    let records = hrsync_tests::read_topic(&broker.bootstrap(), "hr.lifecycle.v1")?;
    Ok(i64::try_from(records.len())?)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let hrsync = hrsync_tests::hrsync_binary(args.hrsync.as_deref())?;
    let broker = Broker::start()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let sqlite = SqliteFile::new()?;
    let pg = match args.store.as_str() {
        "postgres" => Some(runtime.block_on(PgDatabase::fresh())?),
        "sqlite" => None,
        other => bail!("--store {other:?}: postgres or sqlite"),
    };
    let url = pg
        .as_ref()
        .map_or_else(|| sqlite.url(), |db| db.url().to_owned());
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("hrsync.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{brokers}\"\ndefault_partitions = 3\n\n\
             [telemetry]\nlog_format = \"human\"\nlog_filter = \"warn\"\n\n\
             [ingest]\ndatabase_url = \"{url}\"\n\n[[ingest.sources]]\nname = \"hris\"\n\
             full_snapshot = true\n",
            brokers = broker.bootstrap()
        ),
    )?;
    let import = |file: &Path, extra: &[&str]| {
        let mut command = Command::new(&hrsync);
        command
            .arg("--config")
            .arg(&config)
            .args(["ingest", "import", "--source", "hris"])
            .arg(file)
            .args(extra);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HRSYNC_") {
                command.env_remove(name);
            }
        }
        command
    };
    // Topics first, so the first import is not timed creating them.
    let status = Command::new(&hrsync)
        .arg("--config")
        .arg(&config)
        .args(["topics", "ensure"])
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "topics ensure failed");

    let day0_file = dir.path().join("day0.csv");
    std::fs::write(&day0_file, day0(args.workers))?;
    let (day1_text, day1_events) = day1(args.workers);
    let day1_file = dir.path().join("day1.csv");
    std::fs::write(&day1_file, day1_text)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len() as f64 / 1e6);
    println!(
        "workers: {}, store: {}, day 0 export {:.1} MB, day 1 {:.1} MB",
        args.workers,
        args.store,
        size(&day0_file)?,
        size(&day1_file)?
    );
    println!("| run | events | wall | peak RSS |");
    println!("|---|---|---|---|");
    let report = |label: &str, events: usize, m: &Measured| {
        println!(
            "| {label} | {events} | {:.2} s | {} MiB |",
            m.wall.as_secs_f64(),
            m.max_rss_kib / 1024
        );
    };

    let dry = measure(&mut import(&day0_file, &["--dry-run"]), dir.path(), "dry0")?;
    anyhow::ensure!(
        dry.stdout.contains(&format!("hire: {}", args.workers)),
        "the dry run did not plan every hire:\n{}",
        dry.stdout.lines().take(5).collect::<Vec<_>>().join("\n")
    );
    report("day 0, dry run (diff only)", args.workers, &dry);

    let first = measure(&mut import(&day0_file, &[]), dir.path(), "day0")?;
    let on_topics = published(&broker)?;
    anyhow::ensure!(
        on_topics == i64::try_from(args.workers)?,
        "{on_topics} records published, {} expected",
        args.workers
    );
    report("day 0: diff and publish every hire", args.workers, &first);

    let second = measure(&mut import(&day1_file, &[]), dir.path(), "day1")?;
    let on_topics = published(&broker)? - i64::try_from(args.workers)?;
    anyhow::ensure!(
        on_topics == i64::try_from(day1_events)?,
        "day 1 published {on_topics} records, {day1_events} expected"
    );
    report("day 1: diff and publish the changes", day1_events, &second);

    let again = measure(&mut import(&day1_file, &[]), dir.path(), "again")?;
    anyhow::ensure!(
        again.stdout.contains("no changes"),
        "re-importing day 1 was not a no-op:\n{}",
        again.stdout
    );
    report("day 1 again: nothing to publish", 0, &again);
    Ok(())
}
