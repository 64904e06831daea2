//! Running roles: `hrsync run --role ingest|projector|provisioner|all`, and
//! the single-role commands (`ingest serve`, `projector run`, `provisioner
//! run`) that are the same with one role.
//!
//! One process serves `/metrics`, `/healthz` and `/readyz` on
//! `telemetry.listen` for all its roles; `/readyz` answers 200 once every
//! role is set up (store migrated, topics there, consumers or the push API
//! started). SIGTERM or Ctrl-C stops every role gracefully: the push API
//! finishes its requests, the projector its batch (offsets are stored with
//! the state), the provisioner the changes in flight (their offsets are then
//! committed). A role that fails stops the others, and the process exits
//! non-zero.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// A role of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Role {
    /// The push API for HR webhooks.
    Ingest,
    /// Lifecycle events to profile state and directory changes.
    Projector,
    /// Directory changes to SCIM calls.
    Provisioner,
    /// The admin API and console (`[admin]` and `[oauth]` configured;
    /// `all` includes it only then).
    Admin,
    /// Lifecycle events to webhook endpoints (`[hooks]` configured; `all`
    /// includes it only then).
    Hooks,
    /// Every role in one process.
    All,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Projector => "projector",
            Role::Provisioner => "provisioner",
            Role::Admin => "admin",
            Role::Hooks => "hooks",
            Role::All => "all",
        }
    }
}

/// Marks the process ready once each of its roles said so.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    waiting: Arc<AtomicUsize>,
    readiness: hrsync_telemetry::Readiness,
}

impl Ready {
    /// For callers without an endpoint.
    pub(crate) fn detached() -> Self {
        Ready {
            waiting: Arc::new(AtomicUsize::new(usize::MAX)),
            readiness: hrsync_telemetry::Readiness::default(),
        }
    }

    /// Waits for `roles` roles (after [`Role::All`] is expanded) and then
    /// sets `readiness`.
    pub(crate) fn new(roles: &[Role], readiness: hrsync_telemetry::Readiness) -> Self {
        Ready {
            waiting: Arc::new(AtomicUsize::new(expand(roles).len())),
            readiness,
        }
    }

    /// Whether every role said it is set up.
    pub(crate) fn is_ready(&self) -> bool {
        self.readiness.get()
    }

    /// The process's readiness, for roles that hold it unready while a
    /// part of them is stuck.
    pub(crate) fn readiness(&self) -> hrsync_telemetry::Readiness {
        self.readiness.clone()
    }

    /// One role is set up.
    pub(crate) fn role_ready(&self, role: &str) {
        tracing::info!(role, "role ready");
        if self.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.readiness.set(true);
        }
    }
}

/// A token cancelled on SIGTERM or Ctrl-C.
pub(crate) fn on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        crate::ingest::shutdown_signal().await;
        tracing::info!("shutting down: finishing the work in flight");
        signal.cancel();
    });
    shutdown
}

/// `roles` with [`Role::All`] expanded, each once.
fn expand(roles: &[Role]) -> Vec<Role> {
    let mut expanded: Vec<Role> = roles
        .iter()
        .flat_map(|r| match r {
            Role::All => vec![
                Role::Ingest,
                Role::Projector,
                Role::Provisioner,
                Role::Admin,
                Role::Hooks,
            ],
            one => vec![*one],
        })
        .collect();
    expanded.sort();
    expanded.dedup();
    expanded
}

/// Runs `roles` until SIGTERM or Ctrl-C, with the observability endpoints.
pub(crate) async fn run(
    config: &Config,
    telemetry: &hrsync_telemetry::TelemetryGuard,
    roles: &[Role],
) -> anyhow::Result<()> {
    // Asked for by name, the admin role has nothing to do without its
    // section: say so rather than exit at once (`all` just skips it).
    if roles.contains(&Role::Admin) && config.admin.is_none() {
        anyhow::bail!(
            "--role admin serves the admin API, which needs [admin] (its listener) and [oauth] \
             (the issuer of accepted tokens) in the config"
        );
    }
    if roles.contains(&Role::Hooks) && config.hooks.is_none() {
        anyhow::bail!(
            "--role hooks delivers lifecycle events to webhook endpoints, which needs [hooks] \
             (its store) and [[hooks.endpoints]] in the config"
        );
    }
    let readiness = hrsync_telemetry::Readiness::default();
    let server = hrsync_telemetry::serve(
        config.telemetry.listen,
        telemetry.metrics(),
        readiness.clone(),
    )
    .await
    .with_context(|| {
        format!(
            "serving metrics on {} (telemetry.listen)",
            config.telemetry.listen
        )
    })?;
    tracing::info!(addr = %server.addr, roles = ?expand(roles).iter().map(|r| r.name()).collect::<Vec<_>>(), "hrsync starting");
    let ready = Ready::new(roles, readiness);
    run_until(config, roles, on_signal(), &ready).await?;
    tracing::info!("hrsync stopped");
    Ok(())
}

/// Runs `roles` in this task until `shutdown` is cancelled, without the
/// observability endpoints (`hrsync demo` hosts them this way). A role that
/// fails cancels `shutdown`, so the others stop too, and its error is
/// returned.
pub(crate) async fn run_until(
    config: &Config,
    roles: &[Role],
    shutdown: CancellationToken,
    ready: &Ready,
) -> anyhow::Result<()> {
    let running = expand(roles).into_iter().map(|role| {
        let shutdown = shutdown.clone();
        async move {
            let result = match role {
                Role::Ingest => crate::ingest::serve(config, shutdown.clone(), ready).await,
                Role::Projector => crate::projector::serve(config, shutdown.clone(), ready).await,
                Role::Provisioner => {
                    crate::provisioner::serve(config, shutdown.clone(), ready).await
                }
                Role::Admin => crate::admin::serve(config, shutdown.clone(), ready).await,
                Role::Hooks => crate::hooks::serve(config, shutdown.clone(), ready).await,
                Role::All => unreachable!("expanded above"),
            };
            if let Err(error) = &result {
                tracing::error!(
                    role = role.name(),
                    error = format!("{error:#}"),
                    "role failed; stopping the others"
                );
                shutdown.cancel();
            }
            result.with_context(|| format!("{} role", role.name()))
        }
    });
    let results = futures::future::join_all(running).await;
    for result in results {
        result?;
    }
    Ok(())
}
