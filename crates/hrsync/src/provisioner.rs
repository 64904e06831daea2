//! `hrsync provisioner ...`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use hrsync_provisioner::run::{self, Provisioner, Topics};
use hrsync_provisioner::sweep::{self, Options, OrphanPolicy};
use serde_json::json;
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
    /// Reconcile every account of APP with the desired state: classify each
    /// (in sync, drifted, unlinked match, missing, orphan), fix them (link,
    /// create, re-apply, deactivate orphans per the app's `orphans`), print
    /// a summary and write a JSON report. Exits non-zero if a fix failed.
    Reconcile {
        /// The app, as in `[[provisioner.apps]]`.
        app: String,
        /// Classify only: change nothing in the app or the link store.
        #[arg(long)]
        dry_run: bool,
        /// What to do with orphans in this run (default: the app's
        /// `orphans` setting).
        #[arg(long, value_parser = ["report", "deactivate"])]
        orphans: Option<String>,
        /// Where to write the JSON report (default:
        /// `hrsync-reconcile-APP-<UTC time>.json` in the current directory).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Print the JSON report on stdout instead of writing a file (the
        /// summary goes to stderr).
        #[arg(long, conflicts_with = "report")]
        json: bool,
    },
}

fn topics(config: &Config) -> Topics {
    Topics::from(&config.topics)
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
pub(crate) async fn provisioner(config: &Config) -> anyhow::Result<Provisioner> {
    let db = crate::open_store(
        &config.provisioner.database_url,
        config.provisioner.max_connections,
        "provisioner",
    )
    .await?;
    crate::ensure_topics(config).await?;
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
    let outcome = provisioner
        .provision_now(&args.person, args.app.as_deref())
        .await;
    let detail = match &outcome {
        Ok((change, results)) => json!({
            "version": change.version,
            "app": args.app,
            "failed": results.iter().filter(|r| r.result.is_err()).map(|r| &r.app).collect::<Vec<_>>(),
        }),
        Err(e) => json!({ "app": args.app, "error": e.to_string() }),
    };
    let ok = outcome
        .as_ref()
        .is_ok_and(|(_, results)| results.iter().all(|r| r.result.is_ok()));
    crate::actions::record(
        provisioner.store(),
        "provision_now",
        &args.person,
        ok,
        detail,
    )
    .await;
    // The audit written and the person's lease given up before the
    // process ends.
    provisioner.close().await;
    let (change, results) = outcome.map_err(anyhow::Error::msg)?;
    println!(
        "{} ({}) version {}: {}",
        change.person_id, change.employee_id, change.version, change.lifecycle_state
    );
    let mut failed = 0;
    for result in &results {
        match &result.result {
            Ok(ops) => {
                for op in ops {
                    println!("  {}: {}", result.app, op);
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

/// `provisioner reconcile`: runs it, prints the summary and writes the
/// report. Fails if a fix failed (after writing the report).
async fn reconcile(
    config: &Config,
    provisioner: &Provisioner,
    app: &str,
    dry_run: bool,
    orphans: Option<String>,
    report: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let configured = config
        .provisioner
        .apps
        .iter()
        .find(|a| a.name == app)
        .with_context(|| format!("no app named {app:?} in [[provisioner.apps]]"))?;
    let orphans = match orphans.as_deref() {
        Some("deactivate") => OrphanPolicy::Deactivate,
        Some(_) => OrphanPolicy::Report,
        None => configured.orphans,
    };
    let outcome = sweep::reconcile_app(provisioner, app, &Options::new(dry_run, orphans)).await;
    if !dry_run {
        let detail = match &outcome {
            Ok(done) => json!({ "orphans": format!("{orphans:?}"), "failures": done.failures() }),
            Err(e) => json!({ "error": e.to_string() }),
        };
        let ok = outcome.as_ref().is_ok_and(|done| done.failures() == 0);
        crate::actions::record(provisioner.store(), "reconcile", app, ok, detail).await;
    }
    let outcome = outcome.context("reconcile")?;
    let text = serde_json::to_string_pretty(&outcome)?;
    if json {
        eprint!("{}", outcome.summary());
        println!("{text}");
    } else {
        print!("{}", outcome.summary());
        let path = report.unwrap_or_else(|| {
            PathBuf::from(format!(
                "hrsync-reconcile-{app}-{}.json",
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            ))
        });
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("writing the report to {}", path.display()))?;
        println!("report: {}", path.display());
    }
    let failed = outcome.failures();
    anyhow::ensure!(
        failed == 0,
        "{failed} fix(es) failed in {app}; the report names each with its error"
    );
    Ok(())
}

/// `provisioner release APP`: untrips the guard, applies what it held,
/// prints each change, and records the action.
async fn release(provisioner: &Provisioner, app: &str) -> anyhow::Result<()> {
    let outcome = provisioner.release(app).await;
    let detail = match &outcome {
        Ok(done) => json!({
            "released": done.len(),
            "still_held": done.iter().filter(|(_, r)| r.result.is_err()).count(),
        }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    crate::actions::record(
        provisioner.store(),
        "guard.release",
        app,
        outcome.is_ok(),
        detail,
    )
    .await;
    let released = outcome.map_err(anyhow::Error::msg)?;
    for (change, result) in &released {
        match &result.result {
            Ok(ops) => {
                for op in ops {
                    println!("{} v{}: {}", change.person_id, change.version, op);
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
    Ok(())
}

pub(crate) async fn run_provisioner(
    config: &Config,
    command: ProvisionerCommand,
) -> anyhow::Result<()> {
    let (provisioner, done) = match command {
        // `main` runs it through `roles::run`, with the endpoints.
        ProvisionerCommand::Run => {
            return serve(config, crate::roles::on_signal(), &Ready::detached()).await;
        }
        ProvisionerCommand::Redrive { idle_seconds } => {
            return redrive(config, std::time::Duration::from_secs(idle_seconds)).await;
        }
        ProvisionerCommand::Release { app } => {
            let provisioner = provisioner(config).await?;
            let released = release(&provisioner, &app).await;
            (provisioner, released)
        }
        ProvisionerCommand::Reconcile {
            app,
            dry_run,
            orphans,
            report,
            json,
        } => {
            let provisioner = provisioner(config).await?;
            let reconciled =
                reconcile(config, &provisioner, &app, dry_run, orphans, report, json).await;
            (provisioner, reconciled)
        }
    };
    // The audit written and the leases given up before the process ends.
    provisioner.close().await;
    done
}

/// `provisioner redrive`: replays the dead-letter topic until it is quiet
/// for `idle`, and records the action.
async fn redrive(config: &Config, idle: std::time::Duration) -> anyhow::Result<()> {
    let provisioner = Arc::new(provisioner(config).await?);
    let topics = topics(config);
    let outcome = run::redrive(
        provisioner.clone(),
        &config.kafka,
        &config.provisioner,
        &topics,
        idle,
    )
    .await;
    if let Err(busy @ run::RedriveError::Busy) = outcome {
        provisioner.close().await;
        return Err(busy).context("redrive");
    }
    let detail = match &outcome {
        Ok(replayed) => json!({ "replayed": replayed }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    crate::actions::record(
        provisioner.store(),
        "dlq.redrive",
        &topics.dlq,
        outcome.is_ok(),
        detail,
    )
    .await;
    provisioner.close().await;
    let replayed = outcome.context("redrive")?;
    println!("redrive: {replayed} dead-lettered change(s) replayed");
    Ok(())
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
