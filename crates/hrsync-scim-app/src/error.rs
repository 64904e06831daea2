//! SCIM errors (RFC 7644 §3.12): every failure is answered with the error
//! schema, an HTTP status and, where the RFC defines one, a `scimType`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::schema;

/// A request the app refuses, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {detail}")]
pub(crate) struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
    allow: Option<&'static str>,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
            allow: None,
        }
    }

    /// 400 `invalidFilter`: the filter is malformed or names what cannot be
    /// filtered.
    pub(crate) fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidFilter"), detail)
    }

    /// 400 `invalidPath`: a PATCH path is malformed or names an unknown
    /// attribute.
    pub(crate) fn invalid_path(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidPath"), detail)
    }

    /// 400 `invalidSyntax`: the body is not the JSON structure expected.
    pub(crate) fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidSyntax"), detail)
    }

    /// 400 `invalidValue`: a value is missing or does not fit its attribute.
    pub(crate) fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidValue"), detail)
    }

    /// 400 `noTarget`: a PATCH path matched nothing where it must.
    pub(crate) fn no_target(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("noTarget"), detail)
    }

    /// 400 `mutability`: the request writes a read-only attribute.
    pub(crate) fn mutability(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("mutability"), detail)
    }

    /// 409 `uniqueness`: another resource holds the value.
    pub(crate) fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, Some("uniqueness"), detail)
    }

    /// 404: no such resource or endpoint.
    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, detail)
    }

    /// 401: no or a wrong bearer token.
    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            None,
            "missing or invalid bearer token",
        )
    }

    /// 412: `If-Match` names another version than the current one.
    pub(crate) fn precondition_failed(current: &str) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            format!("the resource changed: its version is now {current}"),
        )
    }

    /// 405, with the methods the endpoint allows.
    pub(crate) fn method_not_allowed(allow: &'static str) -> Self {
        let mut error = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            format!("this endpoint only allows {allow}"),
        );
        error.allow = Some(allow);
        error
    }

    /// An error answered with `status` (body limits, bad query strings).
    pub(crate) fn status(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::new(status, None, detail)
    }

    /// The same error, as an invalid filter (paths inside filters).
    pub(crate) fn into_invalid_filter(self) -> Self {
        Self::new(self.status, Some("invalidFilter"), self.detail)
    }

    /// The same error, as an invalid path (filters inside PATCH paths).
    pub(crate) fn into_invalid_path(self) -> Self {
        Self::new(self.status, Some("invalidPath"), self.detail)
    }

    /// The `scimType`, if any.
    #[cfg(test)]
    pub(crate) fn scim_type(&self) -> Option<&'static str> {
        self.scim_type
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [schema::ERROR],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = scim_type.into();
        }
        let mut response = crate::api::scim_json(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hrsync-scim-app\""),
            );
        }
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}
