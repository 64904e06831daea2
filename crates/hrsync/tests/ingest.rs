//! `hrsync ingest import` end to end: the real binary against a real
//! Kafka-protocol broker (tansu) and a real PostgreSQL or SQLite store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{Days, Utc};
use hrsync_domain::{EventKind, LifecycleEvent, LifecyclePayload};
use hrsync_ingest::snapshot::Snapshot;
use hrsync_ingest::store::IngestStore;
use hrsync_tests::{read_topic, Broker, PgDatabase, SqliteFile};

const TOPIC: &str = "hr.lifecycle.v1";
const PRIORITY: &str = "hr.lifecycle.priority.v1";
const HEADER: &str = "employee_id,given_name,family_name,title,department,manager_id,employment_type,status,hire_date,termination_date,termination_immediate,time_zone,badge";

/// One row of a test export.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    title: String,
    department: String,
    manager: String,
    employment_type: &'static str,
    status: &'static str,
    hire: String,
    termination: String,
    immediate: &'static str,
    time_zone: &'static str,
}

/// A company of `n` workers: E0001 leads; the last 11 left in 2025; the 10
/// before them are on leave; E0250..E0259 are contractors.
fn company(n: usize) -> BTreeMap<String, Row> {
    let zones = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"];
    (1..=n)
        .map(|i| {
            let id = format!("E{i:04}");
            let row = Row {
                id: id.clone(),
                title: "Support Agent".into(),
                department: "Customer Support".into(),
                manager: if i == 1 {
                    String::new()
                } else {
                    "E0001".into()
                },
                employment_type: if (250..260).contains(&i) {
                    "contractor"
                } else {
                    "employee"
                },
                status: if i > n - 11 {
                    "terminated"
                } else if i > n - 21 {
                    "on leave"
                } else {
                    "active"
                },
                hire: format!("2020-{:02}-{:02}", i % 12 + 1, i % 28 + 1),
                termination: if i > n - 11 {
                    "2025-06-30".into()
                } else {
                    String::new()
                },
                immediate: "",
                time_zone: zones[i % zones.len()],
            };
            (id, row)
        })
        .collect()
}

fn csv(rows: &BTreeMap<String, Row>) -> String {
    let mut text = String::from(HEADER);
    for r in rows.values() {
        text.push_str(&format!(
            "\n{},Given{},Family{},{},{},{},{},{},{},{},{},{},B-{}",
            r.id,
            r.id,
            r.id,
            r.title,
            r.department,
            r.manager,
            r.employment_type,
            r.status,
            r.hire,
            r.termination,
            r.immediate,
            r.time_zone,
            r.id
        ));
    }
    text.push('\n');
    text
}

/// A test workspace: broker, store, config file, export files.
struct Setup {
    broker: Broker,
    dir: tempfile::TempDir,
    config: PathBuf,
    store_url: String,
}

impl Setup {
    fn new(store_url: &str, publish_batch: usize) -> anyhow::Result<Self> {
        let broker = Broker::start()?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("hrsync.toml");
        std::fs::write(
            &config,
            format!(
                r#"
{kafka}
[telemetry]
log_format = "human"
log_filter = "warn"
listen = "127.0.0.1:0"

[ingest]
database_url = "{store_url}"
publish_batch = {publish_batch}

[[ingest.sources]]
name = "workday"
max_termination_share = 0.10
max_dropped = 5
"#,
                kafka = broker.kafka_toml()
            ),
        )?;
        Ok(Setup {
            broker,
            dir,
            config,
            store_url: store_url.to_owned(),
        })
    }

    fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn hrsync(&self, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
        let output = Command::new(env!("CARGO_BIN_EXE_hrsync"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .envs(env.iter().copied())
            .output()?;
        Ok(output)
    }

    fn import(&self, file: &Path, extra: &[&str]) -> anyhow::Result<Output> {
        self.import_with_env(file, extra, &[])
    }

    fn import_with_env(
        &self,
        file: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Output> {
        let file = file.to_str().expect("utf-8 path");
        let mut args = vec!["ingest", "import", "--source", "workday", file];
        args.extend_from_slice(extra);
        self.hrsync(&args, env)
    }

    fn events(&self, topic: &str) -> anyhow::Result<Vec<LifecycleEvent>> {
        read_topic(&self.broker.bootstrap(), topic)?
            .into_iter()
            .map(|r| {
                let event = hrsync_schema::decode_lifecycle(&r.payload)?;
                assert_eq!(
                    r.key,
                    event.employee_id.as_str().as_bytes(),
                    "key = employee id"
                );
                Ok(event)
            })
            .collect()
    }

    async fn baseline(&self) -> anyhow::Result<Snapshot> {
        let db = hrsync_store::Db::connect(&self.store_url, 1).await?;
        db.migrate().await?;
        Ok(IngestStore::new(db).baseline("workday").await?)
    }
}

fn ok(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "hrsync failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn counts(events: &[LifecycleEvent]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for e in events {
        *counts.entry(e.kind().as_str()).or_default() += 1;
    }
    counts
}

fn by_employee(events: &[LifecycleEvent]) -> BTreeSet<(String, &'static str)> {
    events
        .iter()
        .map(|e| (e.employee_id.as_str().to_owned(), e.kind().as_str()))
        .collect()
}

/// Day 0 of 300 workers, then a day 1 with every kind of change, then day 1
/// again; on the given store.
async fn day0_day1_story(store_url: &str) -> anyhow::Result<()> {
    let setup = Setup::new(store_url, 100)?;
    let day0 = company(300);
    let file0 = setup.write("day0.csv", &csv(&day0))?;

    let stdout = ok(&setup.import(&file0, &[])?);
    assert!(stdout.contains("289 hires"), "{stdout}");
    let events0 = setup.events(TOPIC)?;
    // 279 active + 10 on leave hired; the 10 on leave also start a leave;
    // the 11 who left in 2025 are not hired.
    assert_eq!(
        counts(&events0),
        BTreeMap::from([("hire", 289), ("leave_started", 10)]),
    );
    assert!(events0.iter().all(LifecycleEvent::has_derived_id));
    let ids: BTreeSet<_> = events0.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.len(), events0.len(), "no duplicate ids");
    assert!(setup.events(PRIORITY)?.is_empty());
    assert_eq!(setup.baseline().await?.workers.len(), 300);

    // Day 1.
    let today = Utc::now().date_naive();
    let mut day1 = day0.clone();
    let row = |d: &mut BTreeMap<String, Row>, id: &str| d.get_mut(id).unwrap().clone();
    let mut set = |id: &str, f: &dyn Fn(&mut Row)| {
        let mut r = row(&mut day1, id);
        f(&mut r);
        day1.insert(id.to_owned(), r);
    };
    set("E0002", &|r| r.title = "Team Lead".into());
    set("E0003", &|r| r.department = "Sales".into());
    set("E0004", &|r| r.manager = "E0002".into());
    set("E0250", &|r| r.employment_type = "employee");
    let yesterday = today.checked_sub_days(Days::new(1)).unwrap().to_string();
    let in_a_month = today.checked_add_days(Days::new(30)).unwrap().to_string();
    set("E0010", &|r| {
        r.status = "terminated";
        r.termination = yesterday.clone();
    });
    set("E0011", &|r| {
        r.status = "terminated";
        r.termination = in_a_month.clone();
        r.immediate = "true";
    });
    set("E0012", &|r| r.termination = in_a_month.clone());
    set("E0290", &|r| {
        r.status = "active";
        r.hire = "2027-01-04".into();
        r.termination = String::new();
    });
    set("E0020", &|r| r.status = "on leave");
    set("E0280", &|r| r.status = "active");
    day1.remove("E0030");
    let file1 = setup.write("day1.csv", &csv(&day1))?;

    let stdout = ok(&setup.import(&file1, &[])?);
    let all = setup.events(TOPIC)?;
    let events1 = &all[..]
        .iter()
        .filter(|e| !ids.contains(&e.event_id))
        .cloned()
        .collect::<Vec<_>>();
    let expected: BTreeSet<(String, &str)> = [
        ("E0002", "move"),
        ("E0003", "move"),
        ("E0004", "move"),
        ("E0250", "move"),
        ("E0010", "terminate"),
        ("E0011", "terminate"),
        ("E0012", "terminate"),
        ("E0030", "terminate"),
        ("E0290", "rehire"),
        ("E0020", "leave_started"),
        ("E0280", "leave_ended"),
    ]
    .into_iter()
    .map(|(id, kind)| (id.to_owned(), kind))
    .collect();
    assert_eq!(by_employee(events1), expected, "{stdout}");
    assert_eq!(
        events1.len(),
        expected.len(),
        "exactly one event per change"
    );
    // The conversion is a move of employment_type only.
    let conversion = events1
        .iter()
        .find(|e| e.employee_id.as_str() == "E0250")
        .unwrap();
    let LifecyclePayload::Move(m) = &conversion.payload else {
        panic!("conversion is a move")
    };
    assert_eq!(m.changes.len(), 1);
    assert_eq!(m.changes[0].attribute.as_str(), "employment_type");
    assert_eq!(m.changes[0].value.as_deref(), Some("EMPLOYEE"));
    // Terminations in effect now also went to the priority lane.
    let priority = setup.events(PRIORITY)?;
    let urgent: BTreeSet<&str> = priority.iter().map(|e| e.employee_id.as_str()).collect();
    assert_eq!(urgent, BTreeSet::from(["E0010", "E0011", "E0030"]));
    assert!(priority.iter().all(|e| e.kind() == EventKind::Terminate));

    // Day 1 again: nothing.
    let before = read_topic(&setup.broker.bootstrap(), TOPIC)?.len();
    let stdout = ok(&setup.import(&file1, &[])?);
    assert!(stdout.contains("no changes"), "{stdout}");
    assert_eq!(read_topic(&setup.broker.bootstrap(), TOPIC)?.len(), before);
    assert_eq!(setup.events(PRIORITY)?.len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn day0_day1_story_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    day0_day1_story(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn day0_day1_story_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    day0_day1_story(&file.url()).await
}

/// A mass termination is refused and a malformed snapshot rejected; neither
/// publishes anything or touches the stored snapshot. Forcing the mass
/// termination then goes through.
#[tokio::test(flavor = "multi_thread")]
async fn refused_and_malformed_snapshots_change_nothing() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    let setup = Setup::new(db.url(), 500)?;
    let day0 = company(100);
    ok(&setup.import(&setup.write("day0.csv", &csv(&day0))?, &[])?);
    let baseline = setup.baseline().await?;
    let published = read_topic(&setup.broker.bootstrap(), TOPIC)?;

    // 20 of 89 active workers terminated: over the 10 % limit.
    let mut mass = day0.clone();
    for i in 40..60 {
        let r = mass.get_mut(&format!("E{i:04}")).unwrap();
        r.status = "terminated";
        r.termination = "2026-01-31".into();
    }
    let mass_file = setup.write("mass.csv", &csv(&mass))?;
    let dry = ok(&setup.import(&mass_file, &["--dry-run"])?);
    assert!(dry.contains("terminate: 20"), "{dry}");
    assert!(dry.contains("would be refused"), "{dry}");
    let refused = setup.import(&mass_file, &[])?;
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("snapshot refused"), "{stderr}");
    assert!(
        stderr.contains("terminates 20 of 89 active workers"),
        "{stderr}"
    );
    assert_eq!(read_topic(&setup.broker.bootstrap(), TOPIC)?, published);
    assert_eq!(setup.baseline().await?, baseline);

    // Malformed: a bad date, an unknown manager, a duplicate id.
    let mut text = csv(&day0);
    text = text.replacen("2020-02-02", "2020-13-45", 1);
    text.push_str("E0005,Dup,Licate,,,,employee,active,2020-01-01,,,UTC,\n");
    text.push_str("E0999,New,Person,,,E7777,employee,active,2020-01-01,,,UTC,\n");
    let bad = setup.write("bad.csv", &text)?;
    let rejected = setup.import(&bad, &[])?;
    assert_eq!(rejected.status.code(), Some(2), "{rejected:?}");
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    let path = bad.display().to_string();
    assert!(stderr.contains("nothing was published"), "{stderr}");
    assert!(
        stderr.contains(&format!("{path}:"))
            && stderr.contains(": hire_date: \"2020-13-45\" is not a date"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{path}:102: employee_id: duplicate employee id \"E0005\""
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{path}:103: manager_id: manager \"E7777\" is not a worker"
        )),
        "{stderr}"
    );
    assert_eq!(read_topic(&setup.broker.bootstrap(), TOPIC)?, published);
    assert_eq!(setup.baseline().await?, baseline);

    // Forced, the mass termination is published, and the forcing recorded
    // as an admin action with who ran it.
    ok(&setup.import_with_env(&mass_file, &["--force"], &[("USER", "ops-bob")])?);
    let after = setup.events(TOPIC)?;
    assert_eq!(after.len(), published.len() + 20);
    assert_ne!(setup.baseline().await?, baseline);
    let db = hrsync_store::Db::connect(&setup.store_url, 1).await?;
    let recorded = hrsync_store::actions::search(
        &db,
        &hrsync_store::actions::ActionFilter {
            limit: 10,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(
        (
            recorded[0].action.as_str(),
            recorded[0].target.as_str(),
            recorded[0].subject.as_str(),
            recorded[0].outcome.as_str()
        ),
        ("import.force", "workday", "ops-bob", "ok")
    );
    assert!(recorded[0].detail.contains("import_id"), "{recorded:?}");
    Ok(())
}

/// A dry run needs the store only: with no broker reachable it still
/// reports the plan, and logs no error.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_works_without_a_broker() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("ingest.db").display()
    );
    let setup = Setup::new(&url, 500)?;
    let day0 = company(30);
    ok(&setup.import(&setup.write("day0.csv", &csv(&day0))?, &[])?);
    let mut day1 = day0.clone();
    day1.get_mut("E0007").expect("worker").title = "Director".into();
    let day1_file = setup.write("day1.csv", &csv(&day1))?;

    // Nothing listens on port 9 (discard) here.
    let output = setup.import_with_env(
        &day1_file,
        &["--dry-run"],
        &[("HRSYNC_KAFKA__BROKERS", "127.0.0.1:9")],
    )?;
    let report = ok(&output);
    assert!(report.contains("nothing published"), "{report}");
    assert!(report.contains("move: 1"), "{report}");
    assert!(report.contains("E0007"), "{report}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.to_lowercase().contains("error"),
        "a dry run logged errors: {stderr}"
    );
    Ok(())
}

/// The importer aborts mid-publish; the next run finishes the import with
/// every event present exactly once by id, and accepts the snapshot.
async fn crash_mid_publish_resumes(
    failpoint: &str,
    duplicates_allowed: bool,
) -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    let setup = Setup::new(&file.url(), 40)?;
    let day0 = company(200);
    let export = setup.write("day0.csv", &csv(&day0))?;
    let crashed = setup.import_with_env(&export, &[], &[("FAILPOINTS", failpoint)])?;
    assert!(
        !crashed.status.success(),
        "the failpoint aborts: {crashed:?}"
    );
    let partial = setup.events(TOPIC)?;
    assert_eq!(partial.len(), 40, "one batch was out when it crashed");
    assert!(
        setup.baseline().await?.workers.is_empty(),
        "not accepted yet"
    );

    let stdout = ok(&setup.import(&export, &[])?);
    assert!(
        stdout.contains("no changes"),
        "resumed, then nothing new: {stdout}"
    );
    let events = setup.events(TOPIC)?;
    let mut by_id: BTreeMap<String, &LifecycleEvent> = BTreeMap::new();
    for e in &events {
        if let Some(first) = by_id.insert(e.event_id.to_string(), e) {
            assert_eq!(first, e, "a repeated id carries the same event");
        }
    }
    // 179 active + 10 on leave hired, 10 leaves started.
    assert_eq!(by_id.len(), 199, "every event, once by id");
    if duplicates_allowed {
        assert_eq!(events.len(), 199 + 40, "the unmarked batch was sent again");
    } else {
        assert_eq!(events.len(), 199, "marked batches are not sent again");
    }
    assert_eq!(setup.baseline().await?.workers.len(), 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_before_a_batch_is_marked_resends_it_with_the_same_ids() -> anyhow::Result<()> {
    crash_mid_publish_resumes("ingest.before_mark", true).await
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_a_batch_is_marked_resumes_without_repeats() -> anyhow::Result<()> {
    crash_mid_publish_resumes("ingest.after_batch", false).await
}
