//! The projector's run loop (`hrsync_projector::run`) on the real broker:
//! how it shapes its transactions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hrsync_bus::Producer;
use hrsync_domain::{
    EmployeeId, EmploymentType, Hire, LifecycleEvent, LifecyclePayload, SourceSystem, TimeZone,
    Timestamp, WorkerAttributes,
};
use hrsync_projector::config::ProjectorConfig;
use hrsync_projector::project::Projector;
use hrsync_projector::run::{self, Mode};
use hrsync_store::Db;
use hrsync_tests::{projector_topics, publish_lifecycle, Broker, PgDatabase, SqliteFile};
use tokio_util::sync::CancellationToken;

fn hire(employee: &str) -> anyhow::Result<LifecycleEvent> {
    let now = chrono::Utc::now().timestamp_millis();
    Ok(LifecycleEvent::new(
        SourceSystem::new("workday")?,
        EmployeeId::new(employee)?,
        Timestamp::from_millis(now)?,
        Timestamp::from_millis(now - 86_400_000)?,
        TimeZone::new("Europe/Berlin")?,
        LifecyclePayload::Hire(Hire {
            attributes: WorkerAttributes::new("Given", "Family", EmploymentType::Employee),
        }),
    )?)
}

/// With a single writer (SQLite) an immediate termination on the priority
/// lane waits for the main lane's transaction in progress, so a main-lane
/// transaction holds at most 250 events there, whatever `batch_max` says:
/// a backlog of 600 hires, waiting in full before the projector starts and
/// collected for up to 3 s per batch, is applied in three transactions or
/// more, not in one.
#[tokio::test(flavor = "multi_thread")]
async fn on_sqlite_main_lane_transactions_stay_short() -> anyhow::Result<()> {
    const HIRES: usize = 600;
    let broker = Broker::start()?;
    let kafka = broker.kafka_config();
    let topics = projector_topics(&kafka, 3).await?;
    let hires: Vec<LifecycleEvent> = (0..HIRES)
        .map(|i| hire(&format!("E{i:04}")))
        .collect::<anyhow::Result<_>>()?;
    publish_lifecycle(&Producer::new(&kafka)?, &topics.lifecycle, &hires).await?;

    let file = SqliteFile::new()?;
    let db = Db::connect(&file.url(), 4).await?;
    db.migrate().await?;
    let config = ProjectorConfig {
        batch_max: 1000,
        batch_linger_ms: 3000,
        ..ProjectorConfig::default()
    };
    let commits = Arc::new(AtomicUsize::new(0));
    let counted = commits.clone();
    let projector = Projector::new(db.clone(), config)?.with_before_commit(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    });
    let shutdown = CancellationToken::new();
    let running = spawn_run(projector, &kafka, &topics, &shutdown);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projector_person")
            .fetch_one(db.pool())
            .await?;
        if stored == HIRES as i64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{stored} of {HIRES} hires applied after 60 s\n{}",
            broker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await??;
    let commits = commits.load(Ordering::SeqCst);
    assert!(
        commits >= HIRES.div_ceil(250),
        "{HIRES} events in {commits} main-lane transactions"
    );
    Ok(())
}

/// Runs `projector` (serving) until `shutdown`.
fn spawn_run(
    projector: Projector,
    kafka: &hrsync_bus::KafkaConfig,
    topics: &run::Topics,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), run::RunError>> {
    let (kafka, topics, shutdown) = (kafka.clone(), topics.clone(), shutdown.clone());
    tokio::spawn(
        async move { run::run(projector, None, &kafka, &topics, Mode::Serve, shutdown).await },
    )
}

/// The number of persons stored.
async fn persons(db: &Db) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM projector_person")
        .fetch_one(db.pool())
        .await?)
}

/// Waits up to `secs` for `wanted` persons to be stored.
async fn until_persons(db: &Db, wanted: i64, secs: u64, broker: &Broker) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let stored = persons(db).await?;
        if stored == wanted {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{stored} of {wanted} persons stored after {secs} s\n{}",
            broker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A projector started while another process holds the store waits as a
/// standby: it applies nothing until the holder lets go, then takes over.
async fn a_second_projector_waits_for_the_store(url: &str) -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let kafka = broker.kafka_config();
    let topics = projector_topics(&kafka, 1).await?;
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    // The other process's claim.
    let holder = Db::connect(url, 1).await?;
    let claim = holder
        .try_claim("projector")
        .await?
        .expect("the store is free");

    let projector = Projector::new(db.clone(), ProjectorConfig::default())?;
    let shutdown = CancellationToken::new();
    let running = spawn_run(projector, &kafka, &topics, &shutdown);
    publish_lifecycle(&Producer::new(&kafka)?, &topics.lifecycle, &[hire("E1")?]).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(persons(&db).await?, 0, "the standby applied an event");
    assert!(!running.is_finished(), "the standby stopped");

    drop(claim);
    until_persons(&db, 1, 30, &broker).await?;
    shutdown.cancel();
    running.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_projector_waits_for_the_store_on_postgres() -> anyhow::Result<()> {
    let pg = PgDatabase::fresh().await?;
    a_second_projector_waits_for_the_store(pg.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_projector_waits_for_the_store_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    a_second_projector_waits_for_the_store(&file.url()).await
}

/// A projector serving from a fresh PostgreSQL store with one hire applied.
struct Serving {
    broker: Broker,
    kafka: hrsync_bus::KafkaConfig,
    topics: run::Topics,
    _pg: PgDatabase,
    db: Db,
    shutdown: CancellationToken,
    running: tokio::task::JoinHandle<Result<(), run::RunError>>,
}

/// A broker with the projector's topics (one partition each) and a fresh,
/// migrated PostgreSQL store.
async fn broker_and_postgres(
) -> anyhow::Result<(Broker, hrsync_bus::KafkaConfig, run::Topics, PgDatabase, Db)> {
    let broker = Broker::start()?;
    let kafka = broker.kafka_config();
    let topics = projector_topics(&kafka, 1).await?;
    let pg = PgDatabase::fresh().await?;
    let db = Db::connect(pg.url(), 4).await?;
    db.migrate().await?;
    Ok((broker, kafka, topics, pg, db))
}

async fn serving() -> anyhow::Result<Serving> {
    let (broker, kafka, topics, pg, db) = broker_and_postgres().await?;
    let projector = Projector::new(db.clone(), ProjectorConfig::default())?;
    let shutdown = CancellationToken::new();
    let running = spawn_run(projector, &kafka, &topics, &shutdown);
    publish_lifecycle(&Producer::new(&kafka)?, &topics.lifecycle, &[hire("E1")?]).await?;
    until_persons(&db, 1, 30, &broker).await?;
    Ok(Serving {
        broker,
        kafka,
        topics,
        _pg: pg,
        db,
        shutdown,
        running,
    })
}

/// On PostgreSQL, when the connection holding the projector's claim breaks
/// (here: terminated by the server) and another process takes the store
/// (here: one queued for the lock), the projector stops with an error
/// instead of writing beside it.
#[tokio::test(flavor = "multi_thread")]
async fn a_projector_whose_store_was_taken_stops() -> anyhow::Result<()> {
    let s = serving().await?;
    // Another process queues for the lock, so it has it the moment the
    // projector's connection ends.
    let mut other = s.db.pool().acquire().await?.detach();
    let queued = tokio::spawn(async move {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(hrsync_store::claim_key("projector"))
            .execute(&mut other)
            .await
            .map(|_| other)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(s.db.pool())
        .await?;
        if waiting == 1 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the other process never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(hrsync_tests::break_claims(&s.db).await?, 1);
    let _other = queued.await??;
    let ended = tokio::time::timeout(Duration::from_secs(15), s.running)
        .await
        .map_err(|_| anyhow::anyhow!("still running 15 s after its store was taken"))??;
    let error = ended.expect_err("stops with an error");
    assert!(matches!(error, run::RunError::ClaimLost), "{error}");
    assert!(s.shutdown.is_cancelled());
    Ok(())
}

/// When the connection holding the claim breaks and nobody else takes the
/// store (a database restart, a network blip), the projector claims it
/// again and goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_projector_whose_claim_broke_claims_the_store_again() -> anyhow::Result<()> {
    let s = serving().await?;
    let holder = || async {
        anyhow::Ok(
            sqlx::query_scalar::<_, i64>(
                "SELECT CAST(pid AS BIGINT) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_all(s.db.pool())
            .await?,
        )
    };
    let before = holder().await?;
    assert_eq!(before.len(), 1);
    assert_eq!(hrsync_tests::break_claims(&s.db).await?, 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = holder().await?;
        if now.len() == 1 && now != before {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline && !s.running.is_finished(),
            "the store was not claimed again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publish_lifecycle(
        &Producer::new(&s.kafka)?,
        &s.topics.lifecycle,
        &[hire("E2")?],
    )
    .await?;
    until_persons(&s.db, 2, 30, &s.broker).await?;
    assert!(!s.running.is_finished(), "the projector stopped");
    s.shutdown.cancel();
    s.running.await??;
    Ok(())
}

/// `/metrics` text: the value of the series named `name` (no labels), if
/// any.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.split(' ').next() == Some(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Runs a projector whose rules read the reporting lines until two hires,
/// one reporting to the other, are stored.
async fn run_two_hires(config: ProjectorConfig) -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let kafka = broker.kafka_config();
    let topics = projector_topics(&kafka, 1).await?;
    let mut report = hire("R1")?;
    if let LifecyclePayload::Hire(h) = &mut report.payload {
        h.attributes.manager_id = Some(EmployeeId::new("M1")?);
    }
    publish_lifecycle(
        &Producer::new(&kafka)?,
        &topics.lifecycle,
        &[hire("M1")?, report],
    )
    .await?;
    let file = SqliteFile::new()?;
    let db = Db::connect(&file.url(), 4).await?;
    db.migrate().await?;
    let config = ProjectorConfig {
        rules: hrsync_projector::rules::RulesConfig {
            groups: vec![hrsync_projector::rules::GroupConfig {
                name: "Managers".to_owned(),
                rule: "is_manager".to_owned(),
                apps: vec!["managers".to_owned()],
                description: None,
                previous_names: Vec::new(),
            }],
        },
        ..config
    };
    let shutdown = CancellationToken::new();
    let running = spawn_run(
        Projector::new(db.clone(), config)?,
        &kafka,
        &topics,
        &shutdown,
    );
    until_persons(&db, 2, 60, &broker).await?;
    shutdown.cancel();
    running.await??;
    Ok(())
}

/// The projector keeps the reporting lines in memory once it holds the
/// store, unless `reporting_lines_in_memory` is off: then it reads them
/// from the store in every batch and never loads them.
#[tokio::test(flavor = "multi_thread")]
async fn the_reporting_lines_are_kept_in_memory_unless_turned_off() -> anyhow::Result<()> {
    let metrics = hrsync_telemetry::init_for_tests();
    let loads = || {
        metric(
            &metrics.render(),
            "hrsync_projector_reporting_lines_loads_total",
        )
    };

    run_two_hires(ProjectorConfig {
        reporting_lines_in_memory: false,
        ..ProjectorConfig::default()
    })
    .await?;
    assert_eq!(loads().unwrap_or(0.0), 0.0, "turned off: never loaded");

    run_two_hires(ProjectorConfig::default()).await?;
    assert!(
        loads().unwrap_or(0.0) >= 1.0,
        "loaded once the store was claimed"
    );
    assert_eq!(
        metric(
            &metrics.render(),
            "hrsync_projector_reporting_lines_persons"
        ),
        Some(1.0),
        "R1 reports to M1"
    );
    Ok(())
}

/// Records the projector cannot take (bytes that are no lifecycle event, an
/// event cut short) go to the projector's DLQ, intact and with the reason;
/// the hire behind them on the same partition is applied, and the stored
/// offset moves past all three.
#[tokio::test(flavor = "multi_thread")]
async fn undecodable_records_go_to_the_dlq_and_the_projector_goes_on() -> anyhow::Result<()> {
    let (broker, kafka, topics, _pg, db) = broker_and_postgres().await?;

    let producer = Producer::new(&kafka)?;
    let junk: Vec<u8> = vec![0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0xFF, 0x00];
    let whole = hrsync_schema::encode_lifecycle(&hire("E2")?)?;
    let cut = whole[..whole.len() / 2].to_vec();
    for payload in [&junk, &cut] {
        producer
            .send(hrsync_bus::OutgoingRecord {
                topic: &topics.lifecycle,
                key: b"E2",
                payload,
                headers: &[("x-source-batch", b"payroll-9")],
            })
            .await?;
    }
    publish_lifecycle(&producer, &topics.lifecycle, &[hire("E2")?]).await?;

    let projector = Projector::new(db.clone(), ProjectorConfig::default())?;
    let shutdown = CancellationToken::new();
    let running = spawn_run(projector, &kafka, &topics, &shutdown);
    until_persons(&db, 1, 30, &broker).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT next_offset FROM projector_offset WHERE topic = $1 AND kafka_partition = 0",
        )
        .bind(&topics.lifecycle)
        .fetch_optional(db.pool())
        .await?;
        if next == Some(3) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "stored offset {next:?}, wanted 3"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await??;

    let parked = hrsync_tests::read_topic(&broker.bootstrap(), &topics.dlq)?;
    assert_eq!(parked.len(), 2, "both bad records parked: {parked:?}");
    let header = |record: &hrsync_tests::TopicRecord, name: &str| {
        record
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    for (record, (sent, offset)) in parked.iter().zip([(&junk, 0), (&cut, 1)]) {
        assert_eq!(&record.payload, sent, "payload parked intact");
        assert_eq!(record.key, b"E2");
        assert_eq!(header(record, "x-source-batch"), "payroll-9");
        assert_eq!(header(record, "hrsync.dlq.stage"), "projector");
        assert_eq!(header(record, "hrsync.dlq.topic"), topics.lifecycle);
        assert_eq!(header(record, "hrsync.dlq.offset"), offset.to_string());
        let reason = header(record, "hrsync.dlq.error");
        assert!(
            reason.starts_with("undecodable or invalid lifecycle event: ") && reason.len() > 40,
            "the reason says why: {reason}"
        );
    }
    Ok(())
}
