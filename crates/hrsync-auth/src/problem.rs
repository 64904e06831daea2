//! RFC 9457 problem details: every refusal of hrsync's HTTP APIs is an
//! `application/problem+json` body with `type`, `title`, `status` and a
//! `detail` naming what was wrong, plus members of the problem's own.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// The media type of a problem answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One refusal.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    detail: String,
    members: Map<String, Value>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem with `status` and a `detail` for a person to read.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            status,
            detail: detail.into(),
            members: Map::new(),
            headers: Vec::new(),
        }
    }

    /// 400: the request itself is malformed (a query parameter, a header).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404: nothing by that name.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// 422: the body parses but cannot be used; `pointer` names where
    /// (a JSON path such as `$.attributes.given_name`).
    pub fn unprocessable(pointer: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail).with("path", pointer)
    }

    /// 503: a part hrsync needs cannot answer now; try again later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What it says.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Adds a member of the problem's own (RFC 9457 §3.2).
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.members.insert(name.to_owned(), value.into());
        self
    }

    /// Adds a response header (`WWW-Authenticate`, `Retry-After`).
    #[must_use]
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The body, as sent.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".to_owned(), Value::from("about:blank"));
        body.insert(
            "title".to_owned(),
            Value::from(self.status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".to_owned(), Value::from(self.status.as_u16()));
        body.insert("detail".to_owned(), Value::from(self.detail.clone()));
        for (name, value) in &self.members {
            body.insert(name.clone(), value.clone());
        }
        Value::Object(body)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_names_its_status_detail_and_own_members() {
        let problem = Problem::unprocessable("$.employee_id", "is missing");
        assert_eq!(
            problem.body(),
            serde_json::json!({
                "type": "about:blank",
                "title": "Unprocessable Entity",
                "status": 422,
                "detail": "is missing",
                "path": "$.employee_id",
            })
        );
        let response = Problem::unavailable("keys unreachable").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    }
}
