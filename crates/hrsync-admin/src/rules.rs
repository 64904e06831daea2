//! Group rules: the current ones (`GET /api/v1/rules`) and a preview of a
//! changed set (`POST /api/v1/rules/preview`): who would gain or lose which
//! groups and apps, with counts, nothing applied.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use hrsync_auth::Problem;
use hrsync_projector::project::{PreviewError, PreviewOptions, RulesPreview, PREVIEW_LIMIT};
use hrsync_projector::rules::RulesConfig;
use serde::Deserialize;

use crate::paging::Params;
use crate::{unavailable, AdminApi};

/// `GET /api/v1/rules`: the rules in force, as configured.
pub(crate) async fn current(State(api): State<Arc<AdminApi>>) -> Json<RulesConfig> {
    Json(api.rules.clone())
}

/// The query parameters of a preview.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreviewQuery {
    /// At most this many persons listed (the counts are always complete).
    limit: Option<usize>,
}

/// `POST /api/v1/rules/preview`, the body a rule set in the shape of
/// `[projector.rules]` (`{"groups": [{"name", "rule", "apps"}]}`).
pub(crate) async fn preview(
    State(api): State<Arc<AdminApi>>,
    Params(query): Params<PreviewQuery>,
    body: axum::body::Bytes,
) -> Result<Json<RulesPreview>, Problem> {
    let limit = query.limit.unwrap_or(PREVIEW_LIMIT);
    if limit > PREVIEW_LIMIT {
        return Err(Problem::bad_request(format!(
            "limit={limit}: at most {PREVIEW_LIMIT}"
        )));
    }
    let rules: RulesConfig = serde_json::from_slice(&body).map_err(|e| {
        Problem::unprocessable("$", format!("not a rule set ({{\"groups\": [...]}}): {e}"))
    })?;
    for (i, group) in rules.groups.iter().enumerate() {
        for app in &group.apps {
            if !api.provisioner.app_names().contains(&app.as_str()) {
                return Err(Problem::unprocessable(
                    &format!("$.groups[{i}].apps"),
                    format!(
                        "group {:?} grants {app:?}, which no [[provisioner.apps]] or [[provisioner.manual_apps]] declares",
                        group.name
                    ),
                ));
            }
        }
    }
    let options = PreviewOptions {
        limit,
        ..PreviewOptions::default()
    };
    match api.projector.preview_rules_with(&rules, options).await {
        Ok(preview) => Ok(Json(preview)),
        Err(PreviewError::Rules(e)) => {
            let index = rules.groups.iter().position(|g| g.name == e.group);
            let path =
                index.map_or_else(|| "$.groups".to_owned(), |i| format!("$.groups[{i}].rule"));
            Err(Problem::unprocessable(&path, e.to_string()))
        }
        Err(e) => Err(unavailable(e)),
    }
}
