//! The lifecycle log is kept whole: `hrsync projector run` and `topics
//! ensure` refuse a lifecycle topic that lets the broker remove records
//! (unless the config allows it), and `hrsync projector rebuild` refuses to
//! empty the store once the log lost its first records. Against a real
//! Kafka-protocol broker (tansu) and a SQLite store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hrsync_bus::{Producer, TopicSpec};
use hrsync_domain::{
    EmployeeId, EmploymentType, Hire, LifecycleEvent, LifecyclePayload, SourceSystem, TimeZone,
    Timestamp, WorkerAttributes,
};
use hrsync_tests::{read_topic_until_quiet, Broker, SqliteFile};

const LIFECYCLE: &str = "hr.lifecycle.v1";
const DAY_MS: i64 = 24 * 3_600_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn hire(employee: &str) -> LifecycleEvent {
    let now = Timestamp::from_millis(now_ms()).unwrap();
    LifecycleEvent::new(
        SourceSystem::new("workday").unwrap(),
        EmployeeId::new(employee).unwrap(),
        now,
        Timestamp::from_millis(now_ms() - 30 * DAY_MS).unwrap(),
        TimeZone::new("Europe/Berlin").unwrap(),
        LifecyclePayload::Hire(Hire {
            attributes: WorkerAttributes::new("Given", employee, EmploymentType::Employee),
        }),
    )
    .unwrap()
}

/// A projector config for `broker` and `store_url`; `topics` goes into
/// `[topics]`.
fn write_config(dir: &Path, name: &str, broker: &Broker, store_url: &str, topics: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"
{kafka}
[telemetry]
log_format = "human"
log_filter = "warn"
listen = "127.0.0.1:0"

[projector]
database_url = "{store_url}"
batch_linger_ms = 5

[[projector.rules.groups]]
name = "Everyone"
rule = 'true'
apps = ["slack"]

[topics]
{topics}
"#,
            kafka = broker.kafka_toml()
        ),
    )
    .unwrap();
    path
}

fn hrsync(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hrsync"));
    command.arg("--config").arg(config).args(args);
    command
}

/// Runs `command` until it exits, failing if it is still running after
/// `timeout` (a refused start must end, not serve).
fn run_to_exit(mut command: Command, timeout: Duration) -> anyhow::Result<Output> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + timeout;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output()?;
            anyhow::bail!(
                "still running after {timeout:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(child.wait_with_output()?)
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lifecycle_topic_with_finite_retention_stops_the_projector_unless_allowed(
) -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let kafka = broker.kafka_config();
    // Created before hrsync with Kafka's default of 7 days.
    hrsync_bus::ensure_topics(
        &kafka,
        &[TopicSpec::new(LIFECYCLE, 3)
            .with_config("retention.ms", "604800000")
            .with_config("retention.bytes", "-1")],
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let store = SqliteFile::new()?;
    let strict = write_config(dir.path(), "strict.toml", &broker, &store.url(), "");

    let refused = run_to_exit(
        hrsync(&strict, &["projector", "run"]),
        Duration::from_secs(60),
    )?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("lifecycle topic hr.lifecycle.v1 has retention.ms=604800000"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "kafka-configs --bootstrap-server {} --alter --entity-type topics --entity-name \
             hr.lifecycle.v1 --add-config retention.ms=-1`",
            broker.bootstrap()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("topics.allow_finite_lifecycle_retention = true"),
        "{stderr}"
    );

    // `topics ensure` creates the rest, lists them, and reports it too.
    let ensured = run_to_exit(
        hrsync(&strict, &["topics", "ensure"]),
        Duration::from_secs(60),
    )?;
    let stdout = String::from_utf8_lossy(&ensured.stdout);
    let stderr = String::from_utf8_lossy(&ensured.stderr);
    assert!(!ensured.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("hr.lifecycle.priority.v1 (3 partitions, retention.ms=-1, retention.bytes=-1 if created)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("lifecycle topic hr.lifecycle.v1 has retention.ms=604800000"),
        "{stderr}"
    );

    // Allowed: the projector runs (with a warning) and projects a hire.
    let allowed = write_config(
        dir.path(),
        "allowed.toml",
        &broker,
        &store.url(),
        "allow_finite_lifecycle_retention = true",
    );
    let _projector = Kill(
        hrsync(&allowed, &["projector", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let producer = Producer::new(&kafka)?;
    hrsync_tests::publish_lifecycle(&producer, LIFECYCLE, [&hire("E1")]).await?;
    until_projected(&broker, "E1")?;
    Ok(())
}

/// Waits up to 60 s for a directory change of employee `employee`: the
/// (allowed) projector projected their hire.
fn until_projected(broker: &Broker, employee: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let changes = read_topic_until_quiet(
            &broker.bootstrap(),
            "directory.changes.v1",
            Duration::from_millis(700),
        )?;
        if changes.iter().any(|r| {
            hrsync_schema::decode_directory_change(&r.payload)
                .is_ok_and(|c| c.employee_id.as_str() == employee)
        }) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the allowed projector did not project {employee}'s hire within 60 s"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_refuses_when_the_lifecycle_log_lost_its_first_records() -> anyhow::Result<()> {
    // tansu with SQLite storage removes records older than a topic's
    // retention.ms (where cleanup.policy says delete) at start and every
    // 10 minutes; its earliest offset is then the first record kept.
    // (It does not implement DeleteRecords.)
    let mut broker = Broker::start_durable()?;
    let kafka = broker.kafka_config();
    hrsync_bus::ensure_topics(
        &kafka,
        &[TopicSpec::new(LIFECYCLE, 1)
            .with_config("cleanup.policy", "delete")
            .with_config("retention.ms", DAY_MS.to_string())],
    )
    .await?;
    // E1 was written three days ago, E2 now: a day's retention removes E1.
    hrsync_tests::publish_lifecycle_at(&kafka, LIFECYCLE, &hire("E1"), now_ms() - 3 * DAY_MS)
        .await?;
    hrsync_tests::publish_lifecycle_at(&kafka, LIFECYCLE, &hire("E2"), now_ms()).await?;

    let dir = tempfile::tempdir()?;
    let store = SqliteFile::new()?;
    let strict = write_config(dir.path(), "strict.toml", &broker, &store.url(), "");
    // The finite retention alone stops a rebuild before anything happens.
    let refused = run_to_exit(
        hrsync(&strict, &["projector", "rebuild", "--idle-seconds", "2"]),
        Duration::from_secs(60),
    )?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("lifecycle topic hr.lifecycle.v1 has retention.ms=86400000"),
        "{stderr}"
    );

    // Allowed, with the whole log still there: the rebuild runs.
    let allowed = write_config(
        dir.path(),
        "allowed.toml",
        &broker,
        &store.url(),
        "allow_finite_lifecycle_retention = true",
    );
    let rebuilt = run_to_exit(
        hrsync(&allowed, &["projector", "rebuild", "--idle-seconds", "2"]),
        Duration::from_secs(120),
    )?;
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("rebuilt: 2 persons"));

    // The broker's maintenance at restart removes E1's record.
    broker.restart()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let starts = hrsync_bus::log_start_offsets(&kafka, LIFECYCLE).await?;
        if starts == [(0, 1)] {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the broker did not remove E1's record within 60 s: log starts {starts:?}; {}",
            broker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let refused = run_to_exit(
        hrsync(&allowed, &["projector", "rebuild", "--idle-seconds", "2"]),
        Duration::from_secs(60),
    )?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "lifecycle topic hr.lifecycle.v1 no longer starts at offset 0 (partition 0 starts at offset 1)"
        ),
        "{stderr}"
    );
    // Nothing was emptied: E1, whose hire the log no longer holds, is kept.
    let shown = run_to_exit(
        hrsync(&allowed, &["user", "show", "E1"]),
        Duration::from_secs(60),
    )?;
    assert!(
        shown.status.success(),
        "E1 is gone from the store: {}{}",
        String::from_utf8_lossy(&shown.stdout),
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(String::from_utf8_lossy(&shown.stdout).contains("employee E1 "));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_resuming_below_the_log_start_stops_the_projector_unless_allowed(
) -> anyhow::Result<()> {
    // The topic's settings pass the check (-1, -1), yet records go: tansu
    // 0.6 with SQLite storage reads retention.ms=-1 with cleanup.policy
    // delete as "remove every record", at start and every 10 minutes. So
    // does an operator's topic whose retention was set right only after
    // records were removed.
    let mut broker = Broker::start_durable()?;
    let kafka = broker.kafka_config();
    hrsync_bus::ensure_topics(
        &kafka,
        &[TopicSpec::new(LIFECYCLE, 1)
            .with_config("retention.ms", "-1")
            .with_config("retention.bytes", "-1")
            .with_config("cleanup.policy", "delete")],
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let kept = SqliteFile::new()?;
    let kept_config = write_config(dir.path(), "kept.toml", &broker, &kept.url(), "");
    hrsync_tests::publish_lifecycle_at(&kafka, LIFECYCLE, &hire("E1"), now_ms()).await?;
    let rebuilt = run_to_exit(
        hrsync(
            &kept_config,
            &["projector", "rebuild", "--idle-seconds", "2"],
        ),
        Duration::from_secs(120),
    )?;
    assert!(
        String::from_utf8_lossy(&rebuilt.stdout).contains("rebuilt: 1 persons"),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );

    // The restart's maintenance removes E1; E2 comes after it.
    broker.restart()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    hrsync_tests::publish_lifecycle_at(&kafka, LIFECYCLE, &hire("E2"), now_ms()).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let starts = hrsync_bus::log_start_offsets(&kafka, LIFECYCLE).await?;
        if starts == [(0, 1)] {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the log does not start at E2's offset 1: {starts:?}; {}",
            broker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A fresh store would start at offset 0, which is gone.
    let fresh = SqliteFile::new()?;
    let fresh_config = write_config(dir.path(), "fresh.toml", &broker, &fresh.url(), "");
    let refused = run_to_exit(
        hrsync(&fresh_config, &["projector", "run"]),
        Duration::from_secs(60),
    )?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "lifecycle topic hr.lifecycle.v1 lost records this store has not applied \
             (partition 0: the store resumes at offset 0, the log starts at 1)"
        ),
        "{stderr}"
    );

    // The store that applied E1 may not be rebuilt, and keeps E1.
    let refused = run_to_exit(
        hrsync(
            &kept_config,
            &["projector", "rebuild", "--idle-seconds", "2"],
        ),
        Duration::from_secs(60),
    )?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("no longer starts at offset 0 (partition 0 starts at offset 1)"),
        "{stderr}"
    );
    let shown = run_to_exit(
        hrsync(&kept_config, &["user", "show", "E1"]),
        Duration::from_secs(60),
    )?;
    assert!(shown.status.success(), "E1 is gone from the store");

    // Allowed: a fresh store goes on from the log start and projects E2.
    let allowed = write_config(
        dir.path(),
        "allowed.toml",
        &broker,
        &fresh.url(),
        "allow_finite_lifecycle_retention = true",
    );
    let _projector = Kill(
        hrsync(&allowed, &["projector", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    until_projected(&broker, "E2")?;
    Ok(())
}
