//! The admin role: the admin API on `admin.listen`, behind `[oauth]`.

use std::sync::Arc;

use anyhow::Context;
use hrsync_projector::project::Projector;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::roles::Ready;

/// The admin API until `shutdown`; without `[admin]` there is nothing to
/// serve and the role is done at once.
pub(crate) async fn serve(
    config: &Config,
    shutdown: CancellationToken,
    ready: &Ready,
) -> anyhow::Result<()> {
    let (Some(admin), Some(oauth)) = (&config.admin, &config.oauth) else {
        tracing::info!("admin API not served: [admin] is not configured");
        ready.role_ready("admin");
        return Ok(());
    };
    let verifier = crate::config::verifier(config)
        .await?
        .context("[admin] needs [oauth]")?;
    let authorizer = hrsync_auth::Authorizer::oauth(verifier.clone());
    let db = crate::open_store(
        &config.projector.database_url,
        config.projector.max_connections,
        "projector",
    )
    .await?;
    let projector = Projector::new(db, config.projector.clone()).context("projector.rules")?;
    let provisioner = Arc::new(crate::provisioner::provisioner(config).await?);
    // A person whose lease this process lost while applying their change
    // (a provision-now, a release) is repaired, as in the provisioner role.
    provisioner.spawn_repairs(shutdown.clone());
    // The history of imports is read in the ingest store.
    let ingest = crate::open_store(
        &config.ingest.database_url,
        config.ingest.max_connections,
        "ingest",
    )
    .await?;
    // The hooks' deliveries are read in the hooks store.
    let hooks = match &config.hooks {
        Some(hooks) => {
            Some(crate::open_store(&hooks.database_url, hooks.max_connections, "hooks").await?)
        }
        None => None,
    };
    let api = hrsync_admin::AdminApi {
        projector: Arc::new(projector),
        provisioner: provisioner.clone(),
        rules: config.projector.rules.clone(),
        ingest: hrsync_ingest::store::IngestStore::new(ingest),
        sources: config.ingest.sources.clone(),
        dead_letters: hrsync_admin::DeadLetters::new(
            config.kafka.clone(),
            config.topics.clone(),
            config.provisioner.clone(),
        ),
        hooks,
    };
    let mut routes = hrsync_admin::router(api, authorizer, &oauth.scopes);
    if let Some(console) = &config.console {
        // Its sessions are kept in the provisioner store, beside the admin
        // actions, so every admin process on it serves every browser.
        let store = provisioner.store().clone();
        let console = hrsync_console::Console::new(
            console.clone(),
            oauth.clone(),
            verifier,
            store,
            routes.clone(),
        );
        routes = routes.merge(hrsync_console::router(console.context("[console]")?));
    }
    let listener = tokio::net::TcpListener::bind(admin.listen)
        .await
        .with_context(|| format!("binding the admin API to {} (admin.listen)", admin.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "admin API listening");
    ready.role_ready("admin");
    axum::serve(listener, routes)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("admin API server")?;
    tracing::info!("admin API stopped");
    provisioner.close().await;
    Ok(())
}
