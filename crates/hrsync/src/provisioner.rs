//! `hrsync provisioner ...`.

use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use hrsync_provisioner::run::{self, Provisioner, Topics};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub(crate) enum ProvisionerCommand {
    /// Consume directory changes (priority lane first) and make every app's
    /// accounts match, until SIGTERM or Ctrl-C.
    Run,
    /// Replay the provisioner's dead-letter topic; changes that fail again
    /// go back to it. Stops once the topic is quiet.
    Redrive {
        /// Quiet seconds that count as done.
        #[arg(long, default_value_t = 5)]
        idle_seconds: u64,
    },
    /// Let the deactivations held by APP's deprovision guard through, and
    /// untrip it.
    Release {
        /// The app, as in `[[provisioner.apps]]`.
        app: String,
    },
}

pub(crate) async fn run_provisioner(
    config: &Config,
    command: ProvisionerCommand,
) -> anyhow::Result<()> {
    let db = crate::open_store(
        &config.provisioner.database_url,
        config.provisioner.max_connections,
        "provisioner",
    )
    .await?;
    let specs = config.topics.specs(&config.kafka);
    hrsync_bus::ensure_topics(&config.kafka, &specs)
        .await
        .context("creating topics")?;
    let producer = hrsync_bus::Producer::new(&config.kafka).context("creating the producer")?;
    let provisioner = Provisioner::new(
        db,
        &config.provisioner,
        Some((producer, config.topics.audit.clone())),
    )
    .await
    .context("setting up the apps")?;
    let topics = Topics {
        changes: config.topics.directory_changes.clone(),
        priority: config.topics.directory_priority.clone(),
        audit: config.topics.audit.clone(),
        dlq: config.topics.provisioner_dlq.clone(),
    };
    if let ProvisionerCommand::Redrive { idle_seconds } = command {
        let replayed = run::redrive(
            Arc::new(provisioner),
            &config.kafka,
            &config.provisioner,
            &topics,
            std::time::Duration::from_secs(idle_seconds),
        )
        .await
        .context("redrive")?;
        println!("redrive: {replayed} dead-lettered change(s) replayed");
        return Ok(());
    }
    if let ProvisionerCommand::Release { app } = command {
        let released = provisioner
            .release(&app)
            .await
            .map_err(anyhow::Error::msg)?;
        for (change, result) in &released {
            match &result.result {
                Ok(ops) => println!("{} v{}: {ops:?}", change.person_id, change.version),
                Err(error) => println!(
                    "{} v{}: still held: {error}",
                    change.person_id, change.version
                ),
            }
        }
        println!(
            "{app}: guard released, {} held change(s) applied",
            released.len()
        );
        return Ok(());
    }
    tracing::info!(apps = provisioner.apps().len(), "provisioner starting");
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        crate::ingest::shutdown_signal().await;
        signal.cancel();
    });
    run::run(
        Arc::new(provisioner),
        &config.kafka,
        &config.provisioner,
        &topics,
        shutdown,
    )
    .await
    .context("provisioner")?;
    Ok(())
}
