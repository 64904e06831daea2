//! `hrsync projector run` end to end: lifecycle events on a real
//! Kafka-protocol broker (tansu) become directory changes, with the profile
//! store on PostgreSQL and on SQLite.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hrsync_bus::{OutgoingRecord, Producer, TopicSpec};
use hrsync_domain::{
    Attribute, AttributeChange, DirectoryChange, EmployeeId, EmploymentType, Hire, LeaveEnded,
    LeaveStarted, LifecycleEvent, LifecyclePayload, LifecycleState, Move, Rehire, SourceSystem,
    Terminate, TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_tests::{read_topic_until_quiet, Broker, PgDatabase, SqliteFile};

const LIFECYCLE: &str = "hr.lifecycle.v1";
const LIFECYCLE_PRIORITY: &str = "hr.lifecycle.priority.v1";
const CHANGES: &str = "directory.changes.v1";
const CHANGES_PRIORITY: &str = "directory.changes.priority.v1";
const DLQ: &str = "hrsync.projector.dlq";
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

fn attributes(department: &str, title: &str) -> WorkerAttributes {
    let mut a = WorkerAttributes::new("Given", "Family", EmploymentType::Employee);
    a.department = Some(department.to_owned());
    a.title = Some(title.to_owned());
    a
}

fn event(employee: &str, effective: i64, payload: LifecyclePayload) -> LifecycleEvent {
    LifecycleEvent::new(
        SourceSystem::new("workday").unwrap(),
        EmployeeId::new(employee).unwrap(),
        ts(now_ms()),
        ts(effective),
        TimeZone::new("Europe/Berlin").unwrap(),
        payload,
    )
    .unwrap()
}

fn hire(employee: &str, effective: i64, department: &str, title: &str) -> LifecycleEvent {
    event(
        employee,
        effective,
        LifecyclePayload::Hire(Hire {
            attributes: attributes(department, title),
        }),
    )
}

fn title_move(employee: &str, effective: i64, title: &str) -> LifecycleEvent {
    event(
        employee,
        effective,
        LifecyclePayload::Move(Move {
            changes: vec![AttributeChange::set(Attribute::Title, title)],
        }),
    )
}

fn terminate(employee: &str, effective: i64, immediate: bool) -> LifecycleEvent {
    event(
        employee,
        effective,
        LifecyclePayload::Terminate(Terminate {
            immediate,
            last_day_worked: None,
            reason: Some("test".into()),
        }),
    )
}

/// The group rules of the tests.
const RULES: &str = r#"
[[projector.rules.groups]]
name = "Everyone"
rule = 'true'
apps = ["slack"]

[[projector.rules.groups]]
name = "Customer Support"
rule = 'person.department == "Customer Support"'
apps = ["zendesk", "slack"]

[[projector.rules.groups]]
name = "People Managers"
rule = 'person.title.contains("Manager") || is_manager'
apps = ["lattice", "workday-manager"]
"#;

/// A projector configuration: `projector_extra` goes into `[projector]`,
/// `top_extra` after it (whole sections).
fn config_text(
    kafka: &str,
    store_url: &str,
    projector_extra: &str,
    top_extra: &str,
    rules: &str,
) -> String {
    format!(
        r#"
{kafka}
[telemetry]
log_format = "human"
log_filter = "warn"
listen = "127.0.0.1:0"

[projector]
database_url = "{store_url}"
timer_interval_ms = 200
batch_linger_ms = 5
{projector_extra}

[projector.prehire_days]
slack = 7
{rules}
{top_extra}
"#
    )
}

/// A broker, a store, and a config file for the projector.
struct Setup {
    broker: Broker,
    dir: tempfile::TempDir,
    config: PathBuf,
    producer: Producer,
}

impl Setup {
    async fn new(store_url: &str, extra: &str) -> anyhow::Result<Self> {
        let broker = Broker::start()?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("hrsync.toml");
        std::fs::write(
            &config,
            config_text(&broker.kafka_toml(), store_url, extra, "", RULES),
        )?;
        let kafka = broker.kafka_config();
        let specs: Vec<TopicSpec> = [
            LIFECYCLE,
            LIFECYCLE_PRIORITY,
            CHANGES,
            CHANGES_PRIORITY,
            DLQ,
        ]
        .into_iter()
        .map(|t| TopicSpec::new(t, 3))
        .collect();
        hrsync_bus::ensure_topics(&kafka, &specs).await?;
        let producer = Producer::new(&kafka)?;
        Ok(Setup {
            broker,
            dir,
            config,
            producer,
        })
    }

    async fn publish(&self, topic: &str, events: &[&LifecycleEvent]) -> anyhow::Result<()> {
        hrsync_tests::publish_lifecycle(&self.producer, topic, events.iter().copied()).await
    }

    fn start(&self, env: &[(&str, &str)]) -> anyhow::Result<Child> {
        self.start_with(&self.config, env)
    }

    fn start_with(&self, config: &std::path::Path, env: &[(&str, &str)]) -> anyhow::Result<Child> {
        Ok(Command::new(env!("CARGO_BIN_EXE_hrsync"))
            .arg("--config")
            .arg(config)
            .args(["projector", "run"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()?)
    }

    fn hrsync(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        self.hrsync_with(&self.config, args)
    }

    fn hrsync_with(
        &self,
        config: &std::path::Path,
        args: &[&str],
    ) -> anyhow::Result<std::process::Output> {
        Ok(Command::new(env!("CARGO_BIN_EXE_hrsync"))
            .arg("--config")
            .arg(config)
            .args(args)
            .output()?)
    }

    /// Every directory change on `topic`, by person, in offset order.
    fn changes(&self, topic: &str) -> anyhow::Result<BTreeMap<String, Vec<DirectoryChange>>> {
        let mut by_person: BTreeMap<String, Vec<DirectoryChange>> = BTreeMap::new();
        for record in
            read_topic_until_quiet(&self.broker.bootstrap(), topic, Duration::from_millis(700))?
        {
            let change = hrsync_schema::decode_directory_change(&record.payload)?;
            assert_eq!(record.key, change.person_id.as_str().as_bytes());
            by_person
                .entry(change.employee_id.as_str().to_owned())
                .or_default()
                .push(change);
        }
        Ok(by_person)
    }

    /// Waits until `check` accepts the changes so far.
    fn wait_for(
        &self,
        what: &str,
        check: impl Fn(&BTreeMap<String, Vec<DirectoryChange>>) -> bool,
    ) -> anyhow::Result<BTreeMap<String, Vec<DirectoryChange>>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let changes = self.changes(CHANGES)?;
            if check(&changes) {
                return Ok(changes);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{what}: not seen within 60 s; changes: {:#?}",
                changes
                    .iter()
                    .map(|(k, v)| (k, v.iter().map(summary).collect::<Vec<_>>()))
                    .collect::<BTreeMap<_, _>>()
            );
        }
    }
}

fn summary(c: &DirectoryChange) -> String {
    format!(
        "v{} {} groups={:?} apps={:?}{}",
        c.version,
        c.lifecycle_state,
        c.groups,
        c.apps.iter().map(|a| a.app.as_str()).collect::<Vec<_>>(),
        if c.priority { " [priority]" } else { "" }
    )
}

fn last<'a>(
    changes: &'a BTreeMap<String, Vec<DirectoryChange>>,
    id: &str,
) -> Option<&'a DirectoryChange> {
    changes.get(id).and_then(|v| v.last())
}

fn apps(c: &DirectoryChange) -> Vec<&str> {
    c.apps.iter().map(|a| a.app.as_str()).collect()
}

fn state_is(
    changes: &BTreeMap<String, Vec<DirectoryChange>>,
    id: &str,
    state: LifecycleState,
) -> bool {
    last(changes, id).is_some_and(|c| c.lifecycle_state == state)
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Joiner, mover, leaver; rehire; leave and return; pre-hire window;
/// future-dated and immediate terminations; out-of-order arrival;
/// duplicates; a poison record. One projector, many employees.
async fn lifecycle_stories(store_url: &str) -> anyhow::Result<()> {
    let setup = Setup::new(store_url, "").await?;
    let now = now_ms();
    let _projector = Kill(setup.start(&[])?);

    // Joiner: hired into Customer Support.
    setup
        .publish(
            LIFECYCLE,
            &[&hire("E1", now - DAY, "Customer Support", "Agent")],
        )
        .await?;
    let changes = setup.wait_for("joiner active", |c| {
        state_is(c, "E1", LifecycleState::Active)
    })?;
    let joined = last(&changes, "E1").unwrap();
    assert_eq!(joined.version, 1);
    assert_eq!(joined.groups, ["Customer Support", "Everyone"]);
    assert_eq!(apps(joined), ["slack", "zendesk"]);
    assert!(!joined.priority);
    assert_eq!(joined.caused_by.len(), 1);

    // Mover: promoted to manager, gains People Managers and its apps.
    setup
        .publish(
            LIFECYCLE,
            &[&title_move("E1", now - HOUR, "Support Manager")],
        )
        .await?;
    let changes = setup.wait_for("promotion", |c| c.get("E1").is_some_and(|v| v.len() >= 2))?;
    let promoted = last(&changes, "E1").unwrap();
    assert_eq!(promoted.version, 2);
    assert_eq!(
        promoted.groups,
        ["Customer Support", "Everyone", "People Managers"]
    );
    assert_eq!(
        apps(promoted),
        ["lattice", "slack", "workday-manager", "zendesk"]
    );
    assert_eq!(
        promoted.profile.attributes.title.as_deref(),
        Some("Support Manager")
    );

    // Leaver: terminated now; everything deprovisioned, on the fast lane.
    setup
        .publish(LIFECYCLE_PRIORITY, &[&terminate("E1", now_ms(), true)])
        .await?;
    let changes = setup.wait_for("leaver", |c| {
        state_is(c, "E1", LifecycleState::Deprovisioned)
    })?;
    let left = last(&changes, "E1").unwrap();
    assert_eq!(left.version, 3);
    assert!(left.groups.is_empty() && left.apps.is_empty());
    assert!(left.priority, "a termination takes the fast lane");
    let fast = setup.changes(CHANGES_PRIORITY)?;
    assert_eq!(last(&fast, "E1").map(|c| c.version), Some(3));

    // Rehire after a dated termination; leave and return; out of order;
    // duplicates; an old move replayed after a termination; a poison record.
    let now = now_ms();
    let e2_hire = hire("E2", now - 30 * DAY, "Sales", "Rep");
    let e2_term = terminate("E2", now - 10 * DAY, false);
    let e2_rehire = event(
        "E2",
        now - DAY,
        LifecyclePayload::Rehire(Rehire {
            attributes: attributes("Sales", "Senior Rep"),
        }),
    );
    let e3_hire = hire("E3", now - 30 * DAY, "Sales", "Rep");
    let e3_leave = event(
        "E3",
        now - HOUR,
        LifecyclePayload::LeaveStarted(LeaveStarted {
            leave_type: Some("parental".into()),
            expected_return: None,
        }),
    );
    let e4_hire = hire("E4", now + 3 * DAY, "Customer Support", "Agent");
    let e5_hire = hire("E5", now + 4000, "Customer Support", "Agent");
    let e6_hire = hire("E6", now - DAY, "Customer Support", "Agent");
    let e6_effective = now + 4000;
    let e6_term = terminate("E6", e6_effective, false);
    let e7_hire = hire("E7", now - DAY, "Customer Support", "Agent");
    let e7_term = terminate("E7", now + 30 * DAY, true);
    // E8: the termination arrives before the hire it ends.
    let e8_term = terminate("E8", now - HOUR, false);
    let e8_hire = hire("E8", now - 2 * DAY, "Customer Support", "Agent");
    // E9: a newer move, then an older one arriving late.
    let e9_hire = hire("E9", now - 2 * DAY, "Sales", "Rep");
    let e9_new = title_move("E9", now - HOUR, "Lead");
    let e9_old = title_move("E9", now - DAY, "Junior Rep");
    // E10: terminated, then an old move replayed.
    let e10_hire = hire("E10", now - 2 * DAY, "Sales", "Rep");
    let e10_term = terminate("E10", now - HOUR, false);
    let e10_old = title_move("E10", now - DAY, "Manager of Everything");
    setup
        .publish(
            LIFECYCLE,
            &[
                &e2_hire, &e2_term, &e2_rehire, &e3_hire, &e3_leave, &e4_hire, &e5_hire, &e6_hire,
                &e6_term, &e7_hire, &e7_term, &e8_term, &e8_hire, &e9_hire, &e9_new, &e9_hire,
                &e9_old, &e10_hire, &e10_term, &e10_old,
            ],
        )
        .await?;
    setup
        .producer
        .send(OutgoingRecord {
            topic: LIFECYCLE,
            key: b"E99",
            payload: b"\xC3\x01garbage",
            headers: &[],
        })
        .await?;
    let e3_back = event(
        "E3",
        now_ms(),
        LifecyclePayload::LeaveEnded(LeaveEnded { reason: None }),
    );

    let changes = setup.wait_for("the other stories", |c| {
        state_is(c, "E2", LifecycleState::Active)
            && state_is(c, "E3", LifecycleState::Suspended)
            && state_is(c, "E4", LifecycleState::Pending)
            && state_is(c, "E5", LifecycleState::Active)
            && state_is(c, "E6", LifecycleState::Deprovisioned)
            && state_is(c, "E7", LifecycleState::Deprovisioned)
            && state_is(c, "E8", LifecycleState::Deprovisioned)
            && state_is(c, "E10", LifecycleState::Deprovisioned)
            && last(c, "E9").is_some_and(|x| x.profile.attributes.title.as_deref() == Some("Lead"))
    })?;
    // Rehire: active again with the rehire's attributes.
    let e2 = last(&changes, "E2").unwrap();
    assert_eq!(e2.profile.attributes.title.as_deref(), Some("Senior Rep"));
    assert_eq!(e2.profile.terminate_at, None);
    // Leave: suspended keeps its apps (the provisioner deactivates), fast lane.
    let e3 = last(&changes, "E3").unwrap();
    assert!(e3.priority);
    assert_eq!(apps(e3), ["slack"]);
    // Pre-hire: only the app with a 7-day window is provisionable 3 days out.
    let e4 = last(&changes, "E4").unwrap();
    assert_eq!(apps(e4), ["slack"], "zendesk has no pre-hire window");
    assert_eq!(e4.profile.start_at, Some(ts(now + 3 * DAY)));
    // The timer moved E5 from pending to active and E6 from active to
    // deprovisioned at their effective times.
    let e5: Vec<LifecycleState> = changes["E5"].iter().map(|c| c.lifecycle_state).collect();
    assert_eq!(e5, [LifecycleState::Pending, LifecycleState::Active]);
    // E6's hire and dated termination may be projected in one batch or in
    // two; in two, a second ACTIVE change carrying the termination date comes
    // between (a real change of desired state). Nothing else may repeat.
    let e6 = &changes["E6"];
    let active: Vec<&DirectoryChange> = e6
        .iter()
        .filter(|c| c.lifecycle_state == LifecycleState::Active)
        .collect();
    let states: Vec<LifecycleState> = e6.iter().map(|c| c.lifecycle_state).collect();
    assert!(
        (1..=2).contains(&active.len())
            && states[active.len()..] == [LifecycleState::Deprovisioned],
        "{states:?}"
    );
    assert_eq!(
        active.last().unwrap().profile.terminate_at,
        Some(ts(e6_effective))
    );
    if let [first, _] = active[..] {
        assert_eq!(
            first.profile.terminate_at, None,
            "an unchanged state re-emitted"
        );
    }
    let e6_gone = last(&changes, "E6").unwrap();
    assert!(e6_gone.priority);
    assert!(
        e6_gone.changed_at.as_millis() >= e6_effective,
        "deprovisioned before its date"
    );
    // Immediate: deprovisioned now although dated a month ahead.
    let e7 = last(&changes, "E7").unwrap();
    assert!(e7
        .profile
        .terminate_at
        .is_some_and(|t| t.as_millis() < now + HOUR));
    // Out of order: the earlier termination wins over the late hire.
    assert!(changes["E8"]
        .iter()
        .all(|c| c.lifecycle_state == LifecycleState::Deprovisioned));
    // Older move does not overwrite the newer value; the duplicate hire is
    // a no-op.
    assert!(changes["E9"]
        .iter()
        .all(|c| c.profile.attributes.title.as_deref() != Some("Junior Rep")));
    // Nothing resurrects E10: once deprovisioned, always deprovisioned.
    let e10: Vec<LifecycleState> = changes["E10"].iter().map(|c| c.lifecycle_state).collect();
    let first_gone = e10
        .iter()
        .position(|s| *s == LifecycleState::Deprovisioned)
        .unwrap();
    assert!(
        e10[first_gone..]
            .iter()
            .all(|s| *s == LifecycleState::Deprovisioned),
        "{e10:?}"
    );
    // Versions strictly increase per person.
    for (id, list) in &changes {
        let versions: Vec<u64> = list.iter().map(|c| c.version).collect();
        let expected: Vec<u64> = (1..=list.len() as u64).collect();
        assert_eq!(versions, expected, "{id}");
    }
    // The poison record is on the DLQ with its reason; the stage went on.
    let dlq = read_topic_until_quiet(&setup.broker.bootstrap(), DLQ, Duration::from_millis(700))?;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].payload, b"\xC3\x01garbage");
    assert!(dlq[0].headers.iter().any(
        |(k, v)| k == "hrsync.dlq.error" && String::from_utf8_lossy(v).contains("undecodable")
    ));

    // Return from leave.
    setup.publish(LIFECYCLE, &[&e3_back]).await?;
    setup.wait_for("return from leave", |c| {
        state_is(c, "E3", LifecycleState::Active)
    })?;

    // `user show` prints the person.
    let shown = setup.hrsync(&["user", "show", "E1"])?;
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{shown:?}");
    assert!(text.contains("lifecycle DEPROVISIONED"), "{text}");
    assert!(text.contains("title = Support Manager"), "{text}");
    assert!(text.contains("terminate"), "{text}");
    let missing = setup.hrsync(&["user", "show", "NOPE"])?;
    assert_eq!(missing.status.code(), Some(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_stories_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    lifecycle_stories(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_stories_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    lifecycle_stories(&file.url()).await
}

/// Reads a projector store directly.
async fn store(url: &str) -> anyhow::Result<hrsync_projector::project::Projector> {
    let db = hrsync_store::Db::connect(url, 2).await?;
    db.migrate().await?;
    Ok(hrsync_projector::project::Projector::new(
        db,
        hrsync_projector::config::ProjectorConfig::default(),
    )?)
}

/// Waits until the store has consumed `expected` main-topic records and
/// published its outbox.
async fn caught_up(url: &str, expected: i64) -> anyhow::Result<()> {
    let projector = store(url).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let consumed: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(SUM(next_offset) AS BIGINT) FROM projector_offset WHERE topic = $1",
        )
        .bind(LIFECYCLE)
        .fetch_one(projector.db().pool())
        .await?;
        let pending = projector.outbox(1).await?.len();
        if consumed == Some(expected) && pending == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projector_event")
                .fetch_one(projector.db().pool())
                .await?;
            let rows = sqlx::query(
                "SELECT consumer, topic, kafka_partition, next_offset FROM projector_offset",
            )
            .fetch_all(projector.db().pool())
            .await?;
            let offsets: Vec<String> = rows
                .iter()
                .map(|r| {
                    use sqlx::Row;
                    format!(
                        "{}/{}/{}={}",
                        r.get::<String, _>(0),
                        r.get::<String, _>(1),
                        r.get::<i64, _>(2),
                        r.get::<i64, _>(3)
                    )
                })
                .collect();
            anyhow::bail!(
                "not caught up: consumed {consumed:?} of {expected}, outbox {pending}, \
                 {events} events stored, offsets {offsets:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// State and last emitted result per person (not the version, which
/// depends on how events were batched).
async fn outcome(url: &str) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    Ok(store(url)
        .await?
        .dump()
        .await?
        .into_iter()
        .map(|(id, (_, state, emitted))| (id, (state, emitted)))
        .collect())
}

fn stop(mut child: Child) -> anyhow::Result<()> {
    // SIGTERM: graceful shutdown.
    Command::new("kill").arg(child.id().to_string()).status()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "projector did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A workload of 120 people: hires, moves, terminations, rehires.
fn workload() -> Vec<LifecycleEvent> {
    let now = now_ms();
    let mut events = Vec::new();
    for i in 0..120 {
        let id = format!("C{i:03}");
        let department = if i % 3 == 0 {
            "Customer Support"
        } else {
            "Sales"
        };
        events.push(hire(&id, now - 10 * DAY, department, "Agent"));
        if i % 2 == 0 {
            events.push(title_move(&id, now - 5 * DAY, "Team Manager"));
        }
        if i % 5 == 0 {
            events.push(terminate(&id, now - 2 * DAY, false));
        }
        if i % 10 == 0 {
            events.push(event(
                &id,
                now - DAY,
                LifecyclePayload::Rehire(Rehire {
                    attributes: attributes(department, "Returner"),
                }),
            ));
        }
    }
    events
}

/// Killed mid-batch (before its commit) and restarted, the projector ends
/// with exactly the state and emitted changes of an uninterrupted run; a
/// rebuild from the log reproduces that state; a rules change re-evaluates
/// everyone and emits only those whose result changed.
#[tokio::test(flavor = "multi_thread")]
async fn crash_rebuild_and_rules_change() -> anyhow::Result<()> {
    let crashed_db = PgDatabase::fresh().await?;
    let clean_db = SqliteFile::new()?;
    let setup = Setup::new(crashed_db.url(), "batch_max = 40").await?;
    let events = workload();
    let refs: Vec<&LifecycleEvent> = events.iter().collect();
    setup.publish(LIFECYCLE, &refs).await?;
    let expected = i64::try_from(events.len())?;

    // Crash on the 4th batch commit, then restart.
    let mut crashing = setup.start(&[("FAILPOINTS", "projector.before_commit@4")])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = crashing.try_wait()? {
            break status;
        }
        anyhow::ensure!(Instant::now() < deadline, "the failpoint never fired");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "aborted at the failpoint");
    let partial = store(crashed_db.url()).await?.dump().await?.len();
    assert!(
        partial > 0 && partial < 120,
        "three batches committed: {partial} persons"
    );
    let restarted = setup.start(&[])?;
    caught_up(crashed_db.url(), expected).await?;
    stop(restarted)?;

    // An uninterrupted run over the same log into another store, publishing
    // to other topics.
    let clean_config = setup.dir.path().join("clean.toml");
    let topics = r#"
[topics]
directory_changes = "clean.changes"
directory_priority = "clean.changes.priority"
"#;
    std::fs::write(
        &clean_config,
        config_text(
            &setup.broker.kafka_toml(),
            &clean_db.url(),
            "batch_max = 40",
            topics,
            RULES,
        ),
    )?;
    let clean = setup.start_with(&clean_config, &[])?;
    caught_up(&clean_db.url(), expected).await?;
    stop(clean)?;

    let crashed_outcome = outcome(crashed_db.url()).await?;
    assert_eq!(crashed_outcome.len(), 120);
    assert_eq!(
        crashed_outcome,
        outcome(&clean_db.url()).await?,
        "same state as uninterrupted"
    );

    // What the crashed run emitted: per person strictly increasing versions
    // (a repeat only as an identical record), ending in the same state.
    let crashed_changes = setup.changes(CHANGES)?;
    let clean_changes = setup.changes("clean.changes")?;
    for (id, list) in &crashed_changes {
        for pair in list.windows(2) {
            assert!(
                pair[1].version > pair[0].version || pair[1] == pair[0],
                "{id}: {} then {}",
                summary(&pair[0]),
                summary(&pair[1])
            );
        }
        let a = list.last().unwrap();
        let b = clean_changes[id].last().unwrap();
        assert_eq!(
            (a.lifecycle_state, &a.profile, &a.groups, &a.apps),
            (b.lifecycle_state, &b.profile, &b.groups, &b.apps),
            "{id}"
        );
    }
    assert_eq!(crashed_changes.len(), 120);

    // Rebuild the clean store from the log: same state, versions go on.
    let before = store(&clean_db.url()).await?.dump().await?;
    let rebuilt = setup.hrsync_with(
        &clean_config,
        &["projector", "rebuild", "--idle-seconds", "3"],
    )?;
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    let after = store(&clean_db.url()).await?.dump().await?;
    assert_eq!(before.len(), after.len());
    let printed = String::from_utf8_lossy(&rebuilt.stdout);
    assert!(
        printed.contains(&format!("rebuilt: {} persons", after.len())),
        "{printed}"
    );
    for (id, (version, state, emitted)) in &before {
        let (v, s, e) = &after[id];
        assert_eq!((state, emitted), (s, e), "{id} rebuilt differently");
        assert!(
            v >= version,
            "{id}: version went back from {version} to {v}"
        );
    }

    // A new rule: only Customer Support people (and nobody else) change.
    let rules = format!(
        "{RULES}\n[[projector.rules.groups]]\nname = \"Support Tools\"\nrule = 'person.department == \"Customer Support\" && state == \"ACTIVE\"'\napps = [\"freshdesk\"]\n"
    );
    std::fs::write(
        &clean_config,
        config_text(
            &setup.broker.kafka_toml(),
            &clean_db.url(),
            "batch_max = 40",
            topics,
            &rules,
        ),
    )?;
    let seen_before = setup.changes("clean.changes")?;
    let rerun = setup.start_with(&clean_config, &[])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let expected_changed: Vec<String> = after
        .iter()
        .filter(|(_, (_, state, _))| state.contains("Customer Support"))
        .map(|(id, _)| id.clone())
        .collect();
    loop {
        let now = setup.changes("clean.changes")?;
        let changed: Vec<String> = now
            .iter()
            .filter(|(id, list)| list.len() > seen_before.get(*id).map_or(0, Vec::len))
            .map(|(id, _)| id.clone())
            .collect();
        let active_support: Vec<&String> = expected_changed
            .iter()
            .filter(|id| {
                last(&now, id).is_some_and(|c| c.lifecycle_state == LifecycleState::Active)
            })
            .collect();
        if changed.len() == active_support.len() && !changed.is_empty() {
            assert!(
                changed.iter().all(|id| expected_changed.contains(id)),
                "{changed:?}"
            );
            for id in &changed {
                assert!(apps(last(&now, id).unwrap()).contains(&"freshdesk"), "{id}");
            }
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "rules change: changed {changed:?}, expected the active Customer Support people {active_support:?}"
        );
    }
    stop(rerun)?;
    Ok(())
}
