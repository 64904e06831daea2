//! `hrsync hooks ...` and the hooks role.

use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use hrsync_hooks::{Hooks, HooksConfig, Topics};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::roles::Ready;

#[derive(Debug, Subcommand)]
pub(crate) enum HooksCommand {
    /// Deliver lifecycle events to the endpoints of `[[hooks.endpoints]]`
    /// until SIGTERM or Ctrl-C.
    Run,
    /// Send the dead deliveries (out of attempts) again, with their
    /// attempts counted afresh, by the running hooks role.
    Redrive {
        /// Only this endpoint's.
        #[arg(long)]
        hook: Option<String>,
    },
}

/// `[hooks]`, which these commands need.
fn section(config: &Config) -> anyhow::Result<&HooksConfig> {
    config.hooks.as_ref().context(
        "the hooks role needs [hooks] with its store and [[hooks.endpoints]] in the config",
    )
}

async fn hooks(config: &Config) -> anyhow::Result<Hooks> {
    let section = section(config)?;
    let db = crate::open_store(&section.database_url, section.max_connections, "hooks").await?;
    Hooks::new(db, section).context("setting up the hooks' endpoints")
}

/// `hrsync hooks redrive`.
pub(crate) async fn run_hooks(config: &Config, command: HooksCommand) -> anyhow::Result<()> {
    match command {
        HooksCommand::Run => unreachable!("run as a role"),
        HooksCommand::Redrive { hook } => {
            if let Some(name) = &hook {
                let section = section(config)?;
                if !section.names(name) {
                    anyhow::bail!(
                        "no hook named {name:?} in [[hooks.endpoints]], \
                         [[hooks.ssf.receivers]] or [[hooks.revocations]]"
                    );
                }
            }
            let hooks = hooks(config).await?;
            let revived = hrsync_hooks::store::redrive(hooks.db(), hook.as_deref()).await?;
            crate::actions::record(
                hooks.db(),
                "hooks.redrive",
                hook.as_deref().unwrap_or("*"),
                true,
                serde_json::json!({ "hook": hook, "deliveries": revived }),
            )
            .await;
            println!("{revived} dead deliveries are pending again");
            Ok(())
        }
    }
}

/// The hooks role until `shutdown`; without `[hooks]` there is nothing to
/// deliver and the role is done at once.
pub(crate) async fn serve(
    config: &Config,
    shutdown: CancellationToken,
    ready: &Ready,
) -> anyhow::Result<()> {
    if config.hooks.is_none() {
        tracing::info!("hooks not delivered: [hooks] is not configured");
        ready.role_ready("hooks");
        return Ok(());
    }
    let hooks = hooks(config).await?;
    crate::ensure_topics(config).await?;
    tracing::info!(
        endpoints = section(config)?.endpoints.len(),
        "hooks starting"
    );
    ready.role_ready("hooks");
    hrsync_hooks::run::run(
        Arc::new(hooks),
        &config.kafka,
        &Topics::from(&config.topics),
        Some(ready.readiness()),
        shutdown,
    )
    .await
    .context("hooks")?;
    Ok(())
}
