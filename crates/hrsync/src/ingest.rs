//! `hrsync ingest ...`: the ingest role's commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use hrsync_ingest::diff;
use hrsync_ingest::import::{ImportError, ImportOptions, ImportReport, Importer, PublishSettings};
use hrsync_ingest::source::SourceConfig;
use hrsync_ingest::store::IngestStore;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::roles::Ready;

/// Exit code of a malformed snapshot or a model violation.
pub(crate) const EXIT_INVALID: i32 = 2;
/// Exit code of a snapshot refused by the safety limits.
pub(crate) const EXIT_REFUSED: i32 = 3;

#[derive(Debug, Subcommand)]
pub(crate) enum IngestCommand {
    /// Import one HR export (CSV or JSON Lines) of a configured source:
    /// publish the hires, moves and terminations it implies, then make it
    /// the source's baseline.
    Import {
        /// The source's name (`[[ingest.sources]] name`).
        #[arg(long)]
        source: String,
        /// The export.
        file: PathBuf,
        /// Print the events it would publish, by type; publish nothing.
        #[arg(long)]
        dry_run: bool,
        /// Import even if it exceeds the source's safety limits.
        #[arg(long)]
        force: bool,
    },
    /// Serve the push API (`POST /v1/events`) for HR webhooks, and the
    /// metrics endpoint, until SIGTERM or Ctrl-C.
    Serve,
}

/// Runs an ingest command; returns the process exit code.
pub(crate) async fn run(config: &Config, command: IngestCommand) -> anyhow::Result<i32> {
    match command {
        IngestCommand::Import {
            source,
            file,
            dry_run,
            force,
        } => import(config, &source, &file, ImportOptions { dry_run, force }).await,
        // `main` runs it through `roles::run`, with the endpoints.
        IngestCommand::Serve => serve(config, crate::roles::on_signal(), &Ready::detached())
            .await
            .map(|()| 0),
    }
}

/// The push API until `shutdown`; in-flight requests finish.
pub(crate) async fn serve(
    config: &Config,
    shutdown: CancellationToken,
    ready: &Ready,
) -> anyhow::Result<()> {
    let push = &config.ingest.push;
    let mut authorizer = crate::config::authorizer(config).await?;
    if let Some(token) = &push.token {
        authorizer = authorizer.with_static_token(token.expose().context("ingest.push.token")?);
    }
    if !authorizer.is_configured() {
        anyhow::bail!(
            "the push API accepts no credential: configure [oauth] (access tokens) \
             or ingest.push.token (a static token), or both"
        );
    }
    let db = ingest_db(config).await?;
    crate::ensure_topics(config).await?;
    let service = hrsync_ingest::push::PushService {
        store: IngestStore::new(db),
        producer: hrsync_bus::Producer::new(&config.kafka).context("creating the producer")?,
        topic: config.topics.lifecycle.clone(),
        priority_topic: config.topics.lifecycle_priority.clone(),
        authorizer,
        scope: config.events_write_scope(),
        source_system: push.source_system.clone(),
        body_limit_bytes: push.body_limit_bytes,
        rate_per_minute: push.rate_per_minute,
    };
    let listener = tokio::net::TcpListener::bind(push.listen)
        .await
        .with_context(|| {
            format!(
                "binding the push API to {} (ingest.push.listen)",
                push.listen
            )
        })?;
    tracing::info!(addr = %listener.local_addr()?, "push API listening");
    ready.role_ready("ingest");
    axum::serve(listener, hrsync_ingest::push::router(service))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("push API server")?;
    tracing::info!("push API stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The ingest store, migrated.
async fn ingest_db(config: &Config) -> anyhow::Result<hrsync_store::Db> {
    crate::open_store(
        &config.ingest.database_url,
        config.ingest.max_connections,
        "ingest",
    )
    .await
}

async fn importer(config: &Config) -> anyhow::Result<Importer> {
    let db = ingest_db(config).await?;
    let producer = hrsync_bus::Producer::new(&config.kafka).context("creating the producer")?;
    Ok(Importer::new(
        IngestStore::new(db),
        producer,
        PublishSettings {
            topic: config.topics.lifecycle.clone(),
            priority_topic: config.topics.lifecycle_priority.clone(),
            batch: config.ingest.publish_batch,
        },
    ))
}

/// The `[[ingest.sources]]` entry named `name`, or an error listing those
/// configured.
fn source<'c>(config: &'c Config, name: &str) -> anyhow::Result<&'c SourceConfig> {
    config.ingest.source(name).with_context(|| {
        let known: Vec<&str> = config
            .ingest
            .sources
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        format!(
            "no source named {name:?} in [[ingest.sources]] (configured: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )
    })
}

/// A dry run's plan: its summary, then every event by kind, and whether a
/// real import would be refused.
fn print_plan(plan: &diff::Plan, source: &SourceConfig) {
    println!("{}", plan.summary);
    for (kind, events) in diff::by_kind(plan) {
        println!("{kind}: {}", events.len());
        for planned in events {
            println!(
                "  {}  effective {}  id {}{}",
                planned.event.employee_id,
                planned.event.effective_at.as_datetime().to_rfc3339(),
                planned.event.event_id,
                if planned.priority {
                    "  [priority lane]"
                } else {
                    ""
                }
            );
        }
    }
    if let Err(refusal) = plan.check_limits(source) {
        println!(
            "note: a real import would be refused without --force: {}",
            refusal.reasons.join("; ")
        );
    }
}

async fn import(
    config: &Config,
    source_name: &str,
    file: &std::path::Path,
    options: ImportOptions,
) -> anyhow::Result<i32> {
    let source = source(config, source_name)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let file_name = file.display().to_string();
    let result = if options.dry_run {
        // A dry run reads the store only: it works without a broker.
        let store = IngestStore::new(ingest_db(config).await?);
        hrsync_ingest::import::dry_run(&store, source, &file_name, &bytes, chrono::Utc::now())
            .await
            .map(ImportReport::DryRun)
    } else {
        let importer = importer(config).await?;
        crate::ensure_topics(config).await?;
        let result = importer
            .import(source, &file_name, &bytes, options, chrono::Utc::now())
            .await;
        if options.force {
            // Importing past the source's safety limits is an admin action.
            let detail = match &result {
                Ok(ImportReport::Published { import_id, .. }) => {
                    serde_json::json!({ "file": file_name, "import_id": import_id })
                }
                Ok(_) => serde_json::json!({ "file": file_name, "published": false }),
                Err(e) => serde_json::json!({ "file": file_name, "error": e.to_string() }),
            };
            crate::actions::record(
                &ingest_db(config).await?,
                "import.force",
                source_name,
                result.is_ok(),
                detail,
            )
            .await;
        }
        result
    };
    match result {
        Ok(ImportReport::DryRun(plan)) => {
            println!("dry run of {file_name} (source {source_name}): nothing published");
            print_plan(&plan, source);
            Ok(0)
        }
        Ok(ImportReport::Published { import_id, summary }) => {
            println!("imported {file_name} (source {source_name}, import {import_id})");
            println!("{summary}");
            Ok(0)
        }
        Ok(ImportReport::Unchanged) => {
            println!(
                "{file_name}: no changes against the last accepted snapshot; nothing published"
            );
            Ok(0)
        }
        Err(
            error @ (ImportError::Invalid(_)
            | ImportError::Model(_)
            | ImportError::UnknownFormat { .. }),
        ) => {
            eprintln!("{error}");
            Ok(EXIT_INVALID)
        }
        Err(error @ ImportError::Refused { .. }) => {
            eprintln!("{error}");
            Ok(EXIT_REFUSED)
        }
        Err(error) => Err(error.into()),
    }
}
