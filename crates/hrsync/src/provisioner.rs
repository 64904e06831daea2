//! `hrsync provisioner ...`.

use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use hrsync_provisioner::reconcile::Operation;
use hrsync_provisioner::run::{self, Provisioner, Topics};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::roles::Ready;

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

fn topics(config: &Config) -> Topics {
    Topics {
        changes: config.topics.directory_changes.clone(),
        priority: config.topics.directory_priority.clone(),
        audit: config.topics.audit.clone(),
        dlq: config.topics.provisioner_dlq.clone(),
    }
}

/// `hrsync provision-now`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProvisionNow {
    /// The person: person id or HR employee id.
    person: String,
    /// Only this app (as in `[[provisioner.apps]]`).
    #[arg(long)]
    app: Option<String>,
}

/// The provisioner over its store, with the audit topic and the group
/// renames of the rules.
async fn provisioner(config: &Config) -> anyhow::Result<Provisioner> {
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
    let renames = config
        .projector
        .rules
        .groups
        .iter()
        .filter(|g| !g.previous_names.is_empty())
        .map(|g| (g.name.clone(), g.previous_names.clone()))
        .collect();
    Ok(Provisioner::new(
        db,
        &config.provisioner,
        Some((producer, config.topics.audit.clone())),
    )
    .await
    .context("setting up the apps")?
    .with_group_renames(renames))
}

/// Applies one person's newest desired state now, printing each operation.
/// Returns the exit code: 0 if every app succeeded.
pub(crate) async fn provision_now(config: &Config, args: ProvisionNow) -> anyhow::Result<i32> {
    let provisioner = provisioner(config).await?;
    let (change, results) = provisioner
        .provision_now(&args.person, args.app.as_deref())
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "{} ({}) version {}: {}",
        change.person_id, change.employee_id, change.version, change.lifecycle_state
    );
    let mut failed = 0;
    for result in &results {
        match &result.result {
            Ok(ops) => {
                for op in ops {
                    println!("  {}: {}", result.app, describe(op));
                }
            }
            Err(error) => {
                failed += 1;
                println!(
                    "  {}: FAILED after {} attempt(s): {error}",
                    result.app, result.attempts
                );
            }
        }
    }
    Ok(i32::from(failed > 0))
}

/// One operation as a line for people.
fn describe(op: &Operation) -> String {
    match op {
        Operation::Stale => "skipped: a newer change was applied already".to_owned(),
        Operation::Unchanged => "in sync, nothing sent".to_owned(),
        Operation::Linked { scim_id } => format!("linked existing account {scim_id}"),
        Operation::Created { scim_id } => format!("created account {scim_id}"),
        Operation::Updated { attributes } => format!("updated {}", attributes.join(", ")),
        Operation::Deactivated => "deactivated".to_owned(),
        Operation::Reactivated => "reactivated".to_owned(),
        Operation::Held => "deactivation held by the deprovision guard".to_owned(),
        Operation::Parked => "app quarantined: change parked until it answers".to_owned(),
        Operation::GroupRenamed { from, to } => format!("group {from:?} renamed to {to:?}"),
        Operation::Groups { added, removed } => {
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("join {}", added.join(", ")));
            }
            if !removed.is_empty() {
                parts.push(format!("leave {}", removed.join(", ")));
            }
            format!(
                "group memberships requested ({}); the app's group writer applies them",
                parts.join("; ")
            )
        }
    }
}

pub(crate) async fn run_provisioner(
    config: &Config,
    command: ProvisionerCommand,
) -> anyhow::Result<()> {
    let provisioner = provisioner(config).await?;
    let topics = topics(config);
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
                Ok(ops) => {
                    for op in ops {
                        println!("{} v{}: {}", change.person_id, change.version, describe(op));
                    }
                }
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
    // `main` runs it through `roles::run`, with the endpoints.
    serve(config, crate::roles::on_signal(), &Ready::detached()).await
}

/// The provisioner until `shutdown`: the changes in flight are finished and
/// their offsets committed.
pub(crate) async fn serve(
    config: &Config,
    shutdown: CancellationToken,
    ready: &Ready,
) -> anyhow::Result<()> {
    let provisioner = provisioner(config).await?;
    tracing::info!(apps = provisioner.apps().len(), "provisioner starting");
    ready.role_ready("provisioner");
    run::run(
        Arc::new(provisioner),
        &config.kafka,
        &config.provisioner,
        &topics(config),
        Some(ready.readiness()),
        shutdown,
    )
    .await
    .context("provisioner")?;
    Ok(())
}
