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
use hrsync_tests::{projector_topics, publish_lifecycle, Broker, SqliteFile};
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
    let running = {
        let (kafka, topics, shutdown) = (kafka.clone(), topics.clone(), shutdown.clone());
        tokio::spawn(
            async move { run::run(projector, &kafka, &topics, Mode::Serve, shutdown).await },
        )
    };

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
