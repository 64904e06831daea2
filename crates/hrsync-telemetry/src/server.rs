//! The per-process observability endpoint: `/metrics`, `/healthz`, `/readyz`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;

use crate::{Error, Result};

/// Readiness flag a role flips once it can do its work (connected, topics
/// present, partitions assigned), and the problems that make a ready process
/// unready for a while (a consumer found stuck, until it moves again).
/// `/healthz` only says the process runs.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    problems: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Readiness {
    /// Marks the process ready (or not).
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the process is ready: set up, and no problem held.
    pub fn get(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.problems().is_empty()
    }

    /// Holds the process unready for `reason` until [`Readiness::clear`] is
    /// called with the same `key` (a later hold under it replaces the
    /// reason).
    pub fn hold(&self, key: &str, reason: impl Into<String>) {
        self.lock().insert(key.to_owned(), reason.into());
    }

    /// Drops the problem held under `key`, if any.
    pub fn clear(&self, key: &str) {
        self.lock().remove(key);
    }

    /// The problems held, `key: reason` each.
    pub fn problems(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|(key, reason)| format!("{key}: {reason}"))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A panic while holding it cannot leave the map half-written.
        self.problems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running observability server.
#[derive(Debug)]
pub struct ServerHandle {
    /// The bound address (useful when port 0 was configured).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    readiness: Readiness,
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` until the
/// returned handle is dropped.
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    readiness: Readiness,
) -> Result<ServerHandle> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(AppState { metrics, readiness });
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "observability server stopped");
        }
    });
    Ok(ServerHandle { addr, task })
}

async fn render_metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}

async fn ready(State(state): State<AppState>) -> (StatusCode, String) {
    if state.readiness.get() {
        return (StatusCode::OK, "ready".to_owned());
    }
    let mut body = "not ready".to_owned();
    for problem in state.readiness.problems() {
        body.push('\n');
        body.push_str(&problem);
    }
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let handle = crate::init_for_tests();
        metrics::counter!("hrsync_telemetry_selftest_total").increment(3);
        let readiness = Readiness::default();
        let server = serve(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            handle,
            readiness.clone(),
        )
        .await
        .expect("bind");
        let base = format!("http://{}", server.addr);
        let client = reqwest::Client::new();

        let body = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        assert!(body.contains("hrsync_telemetry_selftest_total 3"), "{body}");

        let get = |path: &'static str| {
            let request = client.get(format!("{base}{path}")).send();
            async move {
                let response = request.await.expect(path);
                let status = response.status().as_u16();
                (status, response.text().await.expect("body"))
            }
        };
        assert_eq!(get("/healthz").await.0, 200);
        assert_eq!(get("/readyz").await.0, 503);
        readiness.set(true);
        assert_eq!(get("/readyz").await.0, 200);

        // A problem held makes it unready, named in the body, until cleared.
        readiness.hold("consumer hrsync-provisioner", "stuck for 20 s");
        let (status, body) = get("/readyz").await;
        assert_eq!(status, 503);
        assert!(
            body.contains("consumer hrsync-provisioner: stuck for 20 s"),
            "{body}"
        );
        readiness.clear("consumer hrsync-provisioner");
        assert_eq!(get("/readyz").await.0, 200);
    }
}
