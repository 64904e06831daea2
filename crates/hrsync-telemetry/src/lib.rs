//! Telemetry for every hrsync role.
//!
//! - [`init`] installs the process-wide `tracing` subscriber: human or JSON
//!   logs, and an OpenTelemetry layer so every span has a W3C trace id (exported
//!   over OTLP/HTTP when an endpoint is configured, kept local otherwise).
//! - [`propagation`] carries trace context across Kafka records and HTTP calls
//!   as W3C `traceparent`/`tracestate`.
//! - [`serve`] exposes `/metrics` (Prometheus text format), `/healthz` and
//!   `/readyz` for a role.

mod fresh;
pub mod propagation;
mod server;

use std::net::SocketAddr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use server::{serve, Readiness, ServerHandle};

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Telemetry settings shared by every role (`[telemetry]` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Log line format.
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info,hrsync_bus=debug`.
    pub log_filter: String,
    /// OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318/v1/traces`.
    /// Unset: spans still get trace ids (for logs and propagation) but are not
    /// exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` resource attribute of exported spans.
    pub service_name: String,
    /// Address of the `/metrics`, `/healthz` and `/readyz` server.
    pub listen: SocketAddr,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_format: LogFormat::Human,
            log_filter: "info".to_owned(),
            otlp_endpoint: None,
            service_name: "hrsync".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// Why telemetry could not start. The operator's to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log filter does not parse.
    #[error("telemetry.log_filter is invalid: {0}")]
    Filter(String),
    /// The OTLP exporter could not be built (bad endpoint).
    #[error("telemetry.otlp_endpoint cannot be used: {0}")]
    Otlp(String),
    /// A global subscriber or metrics recorder was installed already.
    #[error("telemetry was already initialised in this process: {0}")]
    AlreadyInitialised(String),
    /// The metrics/health server could not bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address from `telemetry.listen`.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Keeps the tracer provider alive; dropping it flushes pending spans.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    metrics: PrometheusHandle,
}

impl TelemetryGuard {
    /// Handle to render the Prometheus exposition (for [`serve`]).
    pub fn metrics(&self) -> PrometheusHandle {
        self.metrics.clone()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        // Flush what the batch exporter still holds; errors cannot be
        // reported anywhere useful at this point.
        let _ = self.provider.shutdown();
    }
}

/// Installs the global `tracing` subscriber and the Prometheus metrics
/// recorder. Call once, at the start of `main`. Logs go to stderr.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard> {
    init_writing(config, std::io::stderr)
}

/// [`init`] with the log lines written to `writer`.
pub fn init_writing<W>(config: &TelemetryConfig, writer: W) -> Result<TelemetryGuard>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_new(&config.log_filter).map_err(|e| Error::Filter(e.to_string()))?;
    let provider = tracer_provider(config)?;
    // Spans carry the trace from stage to stage, so they are recorded at
    // info whatever the log filter: a quiet log must not break the trace.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("hrsync"))
        .with_filter(fresh::Fresh(tracing_subscriber::filter::LevelFilter::INFO));
    let fmt = match config.log_format {
        LogFormat::Human => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(fresh::Fresh(filter)))
        .with(otel)
        .try_init()
        .map_err(|e| Error::AlreadyInitialised(e.to_string()))?;
    let metrics = install_metrics_recorder()?;
    Ok(TelemetryGuard { provider, metrics })
}

/// For tests: installs a subscriber with trace ids (no export) and the metrics
/// recorder once per process; later calls return the same metrics handle.
pub fn init_for_tests() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let config = TelemetryConfig {
                log_filter: "info".to_owned(),
                ..TelemetryConfig::default()
            };
            let guard = init(&config).unwrap_or_else(|e| panic!("test telemetry: {e}"));
            let handle = guard.metrics();
            // Keep the provider for the life of the test process.
            std::mem::forget(guard);
            handle
        })
        .clone()
}

fn tracer_provider(config: &TelemetryConfig) -> Result<SdkTracerProvider> {
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let builder = match &config.otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| Error::Otlp(e.to_string()))?;
            builder.with_batch_exporter(exporter)
        }
        None => builder,
    };
    Ok(builder.build())
}

/// Histograms with buckets (the others are exported as summaries), so that
/// dashboards can aggregate them across instances and compute SLO shares.
fn install_metrics_recorder() -> Result<PrometheusHandle> {
    let bucketed =
        |e: metrics_exporter_prometheus::BuildError| Error::AlreadyInitialised(e.to_string());
    PrometheusBuilder::new()
        // HR effective time to app acknowledged: seconds to an hour.
        .set_buckets_for_metric(
            Matcher::Full("hrsync_termination_latency_seconds".to_owned()),
            &[
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
            ],
        )
        .map_err(bucketed)?
        // One SCIM request.
        .set_buckets_for_metric(
            Matcher::Full("hrsync_provisioner_scim_request_seconds".to_owned()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )
        .map_err(bucketed)?
        .install_recorder()
        .map_err(|e| Error::AlreadyInitialised(e.to_string()))
}
