//! `hrsync projector ...` and `hrsync user show`.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use hrsync_projector::project::Projector;
use hrsync_projector::run::{self, Mode, Topics};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::roles::Ready;

#[derive(Debug, Subcommand)]
pub(crate) enum ProjectorCommand {
    /// Consume hr.lifecycle.v1 (and its priority lane), keep every person's
    /// profile, and publish directory changes, until SIGTERM or Ctrl-C.
    Run,
    /// Empty the profile store and replay the lifecycle log from the
    /// beginning; stops once caught up. Publishes nothing; versions continue
    /// above those emitted before. Refuses, leaving the store as it is, when
    /// a partition of the lifecycle topic no longer starts at offset 0.
    Rebuild {
        /// Quiet seconds that count as caught up.
        #[arg(long, default_value_t = 5)]
        idle_seconds: u64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Print a person's profile, lifecycle, groups, apps and last events.
    Show {
        /// HR employee id.
        employee_id: String,
    },
}

async fn projector(config: &Config) -> anyhow::Result<Projector> {
    let db = crate::open_store(
        &config.projector.database_url,
        config.projector.max_connections,
        "projector",
    )
    .await?;
    Projector::new(db, config.projector.clone()).context("projector.rules")
}

/// Creates the missing topics, then checks that the lifecycle topics keep
/// every record (stopping here if not, unless the config allows it).
async fn prepare_topics(config: &Config) -> anyhow::Result<()> {
    crate::ensure_topics(config).await?;
    hrsync_bus::check_lifecycle_retention(&config.kafka, &config.topics).await?;
    Ok(())
}

/// The projector until `shutdown`: the batch in flight is finished and
/// stored with its offsets. It is ready once it holds its store: a standby
/// (another projector holds it) stays unready until it takes over.
pub(crate) async fn serve(
    config: &Config,
    shutdown: CancellationToken,
    ready: &Ready,
) -> anyhow::Result<()> {
    let projector = projector(config).await?;
    prepare_topics(config).await?;
    let claim = run::claim_store(&projector, &shutdown)
        .await
        .context("projector")?;
    // None: shut down while waiting as a standby.
    let Some(claim) = claim else {
        return Ok(());
    };
    ready.role_ready("projector");
    run::run(
        projector,
        Some(claim),
        &config.kafka,
        &Topics::from(&config.topics),
        Mode::Serve,
        shutdown,
    )
    .await
    .context("projector")?;
    Ok(())
}

pub(crate) async fn run_projector(
    config: &Config,
    command: ProjectorCommand,
) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    match command {
        // `main` runs it through `roles::run`, with the endpoints.
        ProjectorCommand::Run => {
            return serve(config, crate::roles::on_signal(), &Ready::detached()).await;
        }
        ProjectorCommand::Rebuild { idle_seconds } => {
            let projector = projector(config).await?;
            prepare_topics(config).await?;
            // Not while a projector serves from this store: wait for it.
            let Some(claim) = run::claim_store(&projector, &shutdown)
                .await
                .context("claiming the store")?
            else {
                return Ok(());
            };
            // Nothing is emptied unless the log still holds every event.
            run::check_replayable(&config.kafka, &Topics::from(&config.topics)).await?;
            projector
                .begin_rebuild()
                .await
                .context("emptying the store")?;
            run::run(
                projector.clone(),
                Some(claim),
                &config.kafka,
                &Topics::from(&config.topics),
                Mode::Replay {
                    idle: Duration::from_secs(idle_seconds),
                },
                shutdown,
            )
            .await
            .context("replaying the lifecycle log")?;
            projector
                .finish_rebuild()
                .await
                .context("finishing the rebuild")?;
            let people = projector.person_count().await?;
            println!("rebuilt: {people} persons");
        }
    }
    Ok(())
}

pub(crate) async fn run_user(config: &Config, command: UserCommand) -> anyhow::Result<i32> {
    let UserCommand::Show { employee_id } = command;
    let projector = projector(config).await?;
    let Some(view) = projector.person(&employee_id).await? else {
        eprintln!("no person with employee id {employee_id:?}");
        return Ok(1);
    };
    let state = &view.state;
    let now = chrono::Utc::now().timestamp_millis();
    let time = |ms: Option<i64>| {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
    };
    println!(
        "employee {}  person {}  version {}",
        state.employee_id, view.person_id, view.version
    );
    println!(
        "lifecycle {} (emitted {})",
        state
            .lifecycle_at(now)
            .map_or("unknown (no hire yet)", |l| l.as_str()),
        view.lifecycle.as_deref().unwrap_or("-")
    );
    println!("time zone {}", state.time_zone);
    println!("employed from {}", time(state.employed_from_ms));
    println!(
        "terminates {}{}",
        time(state.terminate_at_ms),
        if state.terminate_immediate {
            " (immediate)"
        } else {
            ""
        }
    );
    if let Some(attributes) = &state.attributes {
        println!("attributes:");
        for (attribute, value) in attributes.values() {
            let owner = state
                .owners
                .get(attribute.as_str().as_ref())
                .map_or(String::new(), |o| format!("  (from {o})"));
            println!("  {} = {value}{owner}", attribute.as_str());
        }
    }
    for (label, names) in [("groups", &view.groups), ("apps", &view.apps)] {
        let names = if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        };
        println!("{label}: {names}");
    }
    println!("last events:");
    for event in &view.recent {
        println!(
            "  {}  {:<13}  from {:<12}  effective {}",
            event.event_id,
            event.kind,
            event.source,
            time(Some(event.effective_ms))
        );
    }
    Ok(0)
}
