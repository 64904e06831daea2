//! The admin API: what hrsync knows, for admins and the console, as JSON
//! under `/api/v1` on a listener of its own.
//!
//! Every route but the OpenAPI document needs a bearer access token from the
//! configured issuer granting the read scope (`oauth.scopes.read`); the
//! document itself (`GET /api/v1/openapi.json`, also committed as
//! `crates/hrsync-admin/openapi.json`) holds no data. Refusals and errors are
//! RFC 9457 problem details.

mod actions;
mod apps;
mod audit;
mod dlq;
mod hooks;
mod imports;
mod paging;
mod persons;
mod rules;
mod tasks;
mod terminations;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use hrsync_auth::{require_scope, Authorizer, Problem, RequireScope, Scopes};
use hrsync_ingest::source::SourceConfig;
use hrsync_ingest::store::IngestStore;
use hrsync_projector::project::Projector;
use hrsync_projector::rules::RulesConfig;
use hrsync_provisioner::run::Provisioner;
use serde::{Deserialize, Serialize};

pub use actions::{record_action, Actor};
pub use dlq::DeadLetters;

/// The OpenAPI document of this API, as committed and served.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The `[admin]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address the admin API listens on.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
        }
    }
}

/// What the admin API reads and acts through.
#[derive(Debug, Clone)]
pub struct AdminApi {
    /// The projector's store and rules: persons, their events and groups.
    pub projector: Arc<Projector>,
    /// The provisioner over its link store: accounts, the audit, the apps'
    /// health; guard release and provision-now; the admin action log.
    pub provisioner: Arc<Provisioner>,
    /// The group rules in force, as configured.
    pub rules: RulesConfig,
    /// The ingest store: the history of snapshot imports, and each
    /// source's baseline that a dry run compares an export with.
    pub ingest: IngestStore,
    /// The HR sources, `[[ingest.sources]]`.
    pub sources: Vec<SourceConfig>,
    /// The dead-letter topics, and the provisioner's redrive of its own.
    pub dead_letters: DeadLetters,
    /// The hooks' store (deliveries to hook endpoints and SSF receivers),
    /// when `[hooks]` is configured.
    pub hooks: Option<hrsync_store::Db>,
}

/// The API's routes: `authorizer` checks every request but the OpenAPI
/// document, against `scopes` (reading needs `read`, acting `admin`).
pub fn router(api: AdminApi, authorizer: Authorizer, scopes: &Scopes) -> Router {
    let api = Arc::new(api);
    let read = RequireScope::new(authorizer.clone(), scopes.read.clone());
    let act = RequireScope::new(authorizer, scopes.admin.clone());
    let reading = Router::new()
        .route("/api/v1/persons", get(persons::search))
        .route("/api/v1/persons/{employee_id}", get(persons::get_person))
        .route("/api/v1/audit", get(audit::search))
        .route("/api/v1/apps", get(apps::list))
        .route("/api/v1/apps/{app}", get(apps::one))
        .route("/api/v1/actions", get(actions::search))
        .route("/api/v1/terminations", get(terminations::latest))
        .route("/api/v1/imports", get(imports::history))
        .route("/api/v1/hooks/deliveries", get(hooks::deliveries))
        .route("/api/v1/tasks", get(tasks::list))
        .route("/api/v1/manual-apps", get(tasks::manual_apps))
        .route("/api/v1/tasks/{task_id}", get(tasks::one))
        .route(
            "/api/v1/imports/{source}/dry-run",
            post(imports::dry_run).layer(DefaultBodyLimit::max(imports::DRY_RUN_BODY_LIMIT)),
        )
        .route(
            "/api/v1/apps/{app}/reconcile/progress",
            get(apps::reconcile_progress),
        )
        .route("/api/v1/dlq/{stage}", get(dlq::list))
        .route("/api/v1/rules", get(rules::current))
        .route("/api/v1/rules/preview", post(rules::preview))
        .route_layer(axum::middleware::from_fn_with_state(read, require_scope))
        .with_state(api.clone());
    let acting = Router::new()
        .route(
            "/api/v1/persons/{employee_id}/provision",
            post(persons::provision),
        )
        .route("/api/v1/apps/{app}/guard/release", post(apps::release))
        .route("/api/v1/apps/{app}/reconcile", post(apps::reconcile))
        .route("/api/v1/dlq/provisioner/redrive", post(dlq::redrive))
        .route("/api/v1/tasks/{task_id}/close", post(tasks::close))
        .route("/api/v1/hooks/redrive", post(hooks::redrive))
        .route_layer(axum::middleware::from_fn_with_state(act, require_scope))
        .with_state(api);
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .merge(reading)
        .merge(acting)
        .fallback(|| async { Problem::not_found("no such endpoint") })
}

/// A store (or app) that cannot answer now: logged with its cause, answered
/// as a 503 that says only that.
pub(crate) fn unavailable(error: impl std::fmt::Display) -> Problem {
    tracing::warn!(%error, "admin API request failed");
    Problem::unavailable("a store hrsync reads cannot answer now; try again shortly")
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_openapi_document_is_json_and_names_every_route() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().unwrap();
        for path in [
            "/api/v1/openapi.json",
            "/api/v1/persons",
            "/api/v1/persons/{employee_id}",
            "/api/v1/persons/{employee_id}/provision",
            "/api/v1/audit",
            "/api/v1/apps",
            "/api/v1/apps/{app}",
            "/api/v1/apps/{app}/guard/release",
            "/api/v1/apps/{app}/reconcile",
            "/api/v1/apps/{app}/reconcile/progress",
            "/api/v1/actions",
            "/api/v1/terminations",
            "/api/v1/imports",
            "/api/v1/imports/{source}/dry-run",
            "/api/v1/dlq/{stage}",
            "/api/v1/dlq/provisioner/redrive",
            "/api/v1/rules",
            "/api/v1/rules/preview",
            "/api/v1/tasks",
            "/api/v1/manual-apps",
            "/api/v1/tasks/{task_id}",
            "/api/v1/tasks/{task_id}/close",
            "/api/v1/hooks/deliveries",
            "/api/v1/hooks/redrive",
        ] {
            assert!(paths.contains_key(path), "{path} is not documented");
        }
    }
}
