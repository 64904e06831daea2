//! The push API: HR webhooks `POST` single lifecycle events as JSON.
//!
//! `POST /v1/events` with `Authorization: Bearer <token>` (an OAuth access
//! token granting `oauth.scopes.events_write`, or the static
//! `ingest.push.token`) and optionally
//! `Idempotency-Key: <key>`. The body names the event `type` (`hire`,
//! `move`, `terminate`, `rehire`, `leave_started`, `leave_ended`), the
//! `employee_id`, the worker's `time_zone`, optionally `effective_at`
//! (RFC 3339; default now) and `source_system` (default from the config),
//! and the type's fields: `attributes` (hire, rehire), `changes` (move; a
//! `null` value clears), `immediate` / `last_day_worked` / `reason`
//! (terminate), `leave_type` / `expected_return` (leave started), `reason`
//! (leave ended). The answer is `202 {"event_id", "priority"}`; every
//! rejection is a JSON `{"error", "path"}` naming the JSON path.
//!
//! With an idempotency key the encoded event is stored before it is
//! published; a retry with the same key and body answers the same event id
//! (and publishes that same event again if the first attempt may not have
//! reached the broker); the same key with another body is a 409.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use hrsync_bus::{OutgoingRecord, Producer};
use hrsync_domain::{
    Attribute, AttributeChange, EmployeeId, EmploymentType, Hire, LeaveEnded, LeaveStarted,
    LifecycleEvent, LifecyclePayload, Move, Rehire, SourceSystem, Terminate, TimeZone, Timestamp,
    WorkerAttributes,
};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::store::{IngestStore, PushRecord};

/// What the push API needs.
#[derive(Debug, Clone)]
pub struct PushService {
    /// Where idempotency records live.
    pub store: IngestStore,
    /// The producer.
    pub producer: Producer,
    /// The lifecycle topic.
    pub topic: String,
    /// The priority lane.
    pub priority_topic: String,
    /// Who may push: OAuth access tokens, a static token, or both.
    pub authorizer: hrsync_auth::Authorizer,
    /// The scope an access token must grant to push (`oauth.scopes.events_write`).
    pub scope: String,
    /// Default `source_system`.
    pub source_system: String,
    /// Largest accepted body.
    pub body_limit_bytes: usize,
    /// Events accepted per client per minute (`ingest.push.rate_per_minute`).
    pub rate_per_minute: Option<u32>,
}

/// Pushed events refused because their client reached its rate.
pub const RATE_LIMITED: &str = "hrsync_push_rate_limited_total";

/// The API's routes.
pub fn router(service: PushService) -> Router {
    let limit = service.body_limit_bytes;
    Router::new()
        .route("/v1/events", post(post_event))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::new(service))
}

/// A rejection: status, message and the JSON path it concerns.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    error: String,
    path: Option<String>,
    /// Seconds a refused client should wait (`Retry-After`).
    retry_after: Option<i64>,
}

impl ApiError {
    fn bad(path: &str, error: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: error.into(),
            path: Some(path.to_owned()),
            retry_after: None,
        }
    }

    fn status(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            path: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error });
        if let Some(path) = self.path {
            body["path"] = Value::String(path);
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

async fn post_event(
    State(service): State<Arc<PushService>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // The HR system's trace (a W3C `traceparent` header) continues here and
    // travels with the event: the producer writes it into the record's
    // headers, and every later stage continues it.
    let span = tracing::info_span!("push.event", subject = tracing::field::Empty);
    hrsync_telemetry::propagation::continue_from(
        &span,
        headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    );
    let subject = match service.authorizer.authorize(&headers, &service.scope).await {
        Ok(principal) => {
            span.record("subject", principal.subject.as_str());
            principal.subject
        }
        Err(rejection) => {
            tracing::info!(parent: &span, reason = %rejection, "push refused");
            return rejection.into_response();
        }
    };
    handle_event(&service, &subject, &headers, body)
        .instrument(span)
        .await
        .into_response()
}

async fn handle_event(
    service: &Arc<PushService>,
    subject: &str,
    headers: &HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let service = service.clone();
    let key = idempotency_key(headers)?;
    let digest = format!("{:x}", Sha256::digest(&body));
    if let Some(key) = key {
        if let Some(record) = service.store.push_record(key).await.map_err(unavailable)? {
            return replay(&service, key, record, &digest).await;
        }
    }
    let now = Utc::now();
    let event = event_from_body(&body, &service.source_system, now)?;
    let priority = match &event.payload {
        LifecyclePayload::Terminate(t) => {
            t.immediate || event.effective_at.as_millis() <= now.timestamp_millis()
        }
        _ => false,
    };
    if !priority {
        within_rate(&service, subject, now).await?;
    }
    let payload = hrsync_schema::encode_lifecycle(&event).map_err(|e| {
        ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding: {e}"))
    })?;
    let event_id = event.event_id.to_string();
    let record_key = event.employee_id.as_str().to_owned();
    if let Some(key) = key {
        let record = PushRecord {
            idempotency_key: key.to_owned(),
            request_digest: digest,
            event_id: event_id.clone(),
            record_key: record_key.clone(),
            payload: payload.clone(),
            priority,
            published_at_ms: None,
        };
        if !service
            .store
            .insert_push_record(&record, now.timestamp_millis())
            .await
            .map_err(unavailable)?
        {
            // A concurrent request with the same key won the race: answer as
            // a retry would.
            return Err(ApiError::status(
                StatusCode::CONFLICT,
                "a request with this Idempotency-Key is in progress; retry",
            ));
        }
    }
    publish(&service, &record_key, &payload, priority).await?;
    if let Some(key) = key {
        service
            .store
            .mark_push_published(key, Utc::now().timestamp_millis())
            .await
            .map_err(unavailable)?;
    }
    tracing::info!(%event_id, kind = %event.kind(), priority, "pushed event published");
    Ok(accepted(&event_id, priority, false))
}

/// Counts a new event against its client's rate (a retry answered from its
/// idempotency key is not new; a termination in effect now is never
/// refused, so a leaver's cut-off never waits behind a flood): 429 with
/// `Retry-After` once the minute's events are taken.
async fn within_rate(
    service: &PushService,
    subject: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let Some(per_minute) = service.rate_per_minute else {
        return Ok(());
    };
    let now_ms = now.timestamp_millis();
    if service
        .store
        .take_push_rate(subject, per_minute, now_ms)
        .await
        .map_err(unavailable)?
    {
        return Ok(());
    }
    metrics::counter!(RATE_LIMITED, "subject" => subject.to_owned()).increment(1);
    let retry_after = ((60_000 - now_ms.rem_euclid(60_000)) + 999) / 1000;
    tracing::warn!(
        subject,
        per_minute,
        "push refused: the client's rate is reached"
    );
    Err(ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        error: format!(
            "this client has had {per_minute} events accepted this minute \
             (ingest.push.rate_per_minute); retry after {retry_after} s"
        ),
        path: None,
        retry_after: Some(retry_after),
    })
}

/// The `Idempotency-Key` header, if the request has one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255);
    key.map(Some).ok_or_else(|| {
        ApiError::status(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
    })
}

/// The answer to a request whose `Idempotency-Key` was seen before: the
/// first answer again, publishing first if that request did not get to.
async fn replay(
    service: &PushService,
    key: &str,
    record: PushRecord,
    digest: &str,
) -> Result<Response, ApiError> {
    if record.request_digest != digest {
        return Err(ApiError::status(
            StatusCode::CONFLICT,
            "Idempotency-Key was already used with a different request body",
        ));
    }
    if record.published_at_ms.is_none() {
        publish(
            service,
            &record.record_key,
            &record.payload,
            record.priority,
        )
        .await?;
        service
            .store
            .mark_push_published(key, Utc::now().timestamp_millis())
            .await
            .map_err(unavailable)?;
    }
    Ok(accepted(&record.event_id, record.priority, true))
}

fn accepted(event_id: &str, priority: bool, replayed: bool) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({ "event_id": event_id, "priority": priority, "replayed": replayed })),
    )
        .into_response()
}

fn unavailable(error: crate::store::StoreError) -> ApiError {
    tracing::error!(%error, "push store failed");
    ApiError::status(StatusCode::SERVICE_UNAVAILABLE, "store unavailable; retry")
}

async fn publish(
    service: &PushService,
    key: &str,
    payload: &[u8],
    priority: bool,
) -> Result<(), ApiError> {
    let fail = |error: hrsync_bus::Error| {
        tracing::error!(%error, "publishing a pushed event failed");
        ApiError::status(StatusCode::SERVICE_UNAVAILABLE, "broker unavailable; retry")
    };
    if priority {
        service
            .producer
            .send(OutgoingRecord {
                topic: &service.priority_topic,
                key: key.as_bytes(),
                payload,
                headers: &[],
            })
            .await
            .map_err(fail)?;
    }
    service
        .producer
        .send(OutgoingRecord {
            topic: &service.topic,
            key: key.as_bytes(),
            payload,
            headers: &[],
        })
        .await
        .map_err(fail)?;
    Ok(())
}

/// Parses and validates one pushed event; errors name the JSON path.
///
/// # Errors
/// The first problem found, with its path (`$.attributes.given_name`).
pub fn parse_event(
    value: &Value,
    default_source: &str,
    now: DateTime<Utc>,
) -> Result<LifecycleEvent, ApiErrorPublic> {
    parse(value, default_source, now).map_err(|e| ApiErrorPublic {
        error: e.error,
        path: e.path,
    })
}

/// Reads a request body into an event: the body must be JSON, and that JSON
/// a valid event ([`parse_event`]). `now` is the event's `occurred_at` and
/// the default `effective_at`.
///
/// # Errors
/// [`BodyError::NotJson`] (answered 400) naming the line and column where
/// the JSON breaks, or [`BodyError::Invalid`] (answered 422) naming the
/// JSON path.
pub fn event_from_body(
    body: &[u8],
    default_source: &str,
    now: DateTime<Utc>,
) -> Result<LifecycleEvent, BodyError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        BodyError::NotJson(format!(
            "body is not JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    Ok(parse_event(&value, default_source, now)?)
}

/// Why a pushed body is not an event: the answer of [`event_from_body`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is not JSON (HTTP 400); the message names line and column.
    #[error("{0}")]
    NotJson(String),
    /// The JSON is not a valid event (HTTP 422).
    #[error(transparent)]
    Invalid(#[from] ApiErrorPublic),
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::NotJson(message) => ApiError::status(StatusCode::BAD_REQUEST, message),
            BodyError::Invalid(invalid) => invalid.into(),
        }
    }
}

/// A validation failure of [`parse_event`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {error}", path.as_deref().unwrap_or("$"))]
pub struct ApiErrorPublic {
    /// What is wrong.
    pub error: String,
    /// Where.
    pub path: Option<String>,
}

impl From<ApiErrorPublic> for ApiError {
    fn from(e: ApiErrorPublic) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: e.error,
            path: e.path,
            retry_after: None,
        }
    }
}

const KNOWN: &[&str] = &[
    "type",
    "employee_id",
    "source_system",
    "effective_at",
    "time_zone",
    "attributes",
    "changes",
    "immediate",
    "last_day_worked",
    "reason",
    "leave_type",
    "expected_return",
];

fn parse(
    value: &Value,
    default_source: &str,
    now: DateTime<Utc>,
) -> Result<LifecycleEvent, ApiError> {
    let object = value
        .as_object()
        .ok_or_else(|| ApiError::bad("$", "expected a JSON object"))?;
    if let Some(unknown) = object.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::bad(
            &format!("$.{unknown}"),
            format!("unknown field; expected one of {}", KNOWN.join(", ")),
        ));
    }
    let kind = string(object, "type")?.ok_or_else(|| ApiError::bad("$.type", "required"))?;
    let employee =
        string(object, "employee_id")?.ok_or_else(|| ApiError::bad("$.employee_id", "required"))?;
    let employee_id =
        EmployeeId::new(employee).map_err(|e| ApiError::bad("$.employee_id", e.to_string()))?;
    let source = string(object, "source_system")?.unwrap_or(default_source);
    let source_system =
        SourceSystem::new(source).map_err(|e| ApiError::bad("$.source_system", e.to_string()))?;
    let zone =
        string(object, "time_zone")?.ok_or_else(|| ApiError::bad("$.time_zone", "required"))?;
    let time_zone = TimeZone::new(zone)
        .map_err(|_| ApiError::bad("$.time_zone", format!("{zone:?} is not an IANA time zone")))?;
    let effective = match string(object, "effective_at")? {
        None => now,
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                ApiError::bad(
                    "$.effective_at",
                    format!("{text:?} is not an RFC 3339 time: {e}"),
                )
            })?
            .with_timezone(&Utc),
    };
    check_fields(object, kind)?;
    let payload = payload(object, kind)?;
    let at = |dt: DateTime<Utc>, path: &str| {
        Timestamp::from_millis(dt.timestamp_millis())
            .map_err(|e| ApiError::bad(path, e.to_string()))
    };
    LifecycleEvent::new(
        source_system,
        employee_id,
        at(now, "$")?,
        at(effective, "$.effective_at")?,
        time_zone,
        payload,
    )
    .map_err(|e| ApiError::bad("$", e.to_string()))
}

/// Checks that `kind` is an event type and `object` has only its fields.
fn check_fields(object: &Map<String, Value>, kind: &str) -> Result<(), ApiError> {
    let allowed: &[&str] = match kind {
        "hire" | "rehire" => &["attributes"],
        "move" => &["changes"],
        "terminate" => &["immediate", "last_day_worked", "reason"],
        "leave_started" => &["leave_type", "expected_return"],
        "leave_ended" => &["reason"],
        other => {
            return Err(ApiError::bad(
                "$.type",
                format!(
                    "unknown type {other:?}; expected hire, move, terminate, rehire, \
                     leave_started or leave_ended"
                ),
            ))
        }
    };
    let common = [
        "type",
        "employee_id",
        "source_system",
        "effective_at",
        "time_zone",
    ];
    if let Some(field) = object
        .keys()
        .find(|k| !common.contains(&k.as_str()) && !allowed.contains(&k.as_str()))
    {
        return Err(ApiError::bad(
            &format!("$.{field}"),
            format!("not a field of a {kind} event"),
        ));
    }
    Ok(())
}

/// The payload of an event of type `kind` (checked by [`check_fields`]).
fn payload(object: &Map<String, Value>, kind: &str) -> Result<LifecyclePayload, ApiError> {
    Ok(match kind {
        "hire" => LifecyclePayload::Hire(Hire {
            attributes: attributes(object)?,
        }),
        "rehire" => LifecyclePayload::Rehire(Rehire {
            attributes: attributes(object)?,
        }),
        "move" => LifecyclePayload::Move(Move {
            changes: changes(object)?,
        }),
        "terminate" => LifecyclePayload::Terminate(Terminate {
            immediate: match object.get("immediate") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(ApiError::bad("$.immediate", "expected true or false")),
            },
            last_day_worked: date(object, "last_day_worked")?,
            reason: string(object, "reason")?.map(str::to_owned),
        }),
        "leave_started" => LifecyclePayload::LeaveStarted(LeaveStarted {
            leave_type: string(object, "leave_type")?.map(str::to_owned),
            expected_return: date(object, "expected_return")?,
        }),
        _ => LifecyclePayload::LeaveEnded(LeaveEnded {
            reason: string(object, "reason")?.map(str::to_owned),
        }),
    })
}

fn string<'a>(object: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::bad(&format!("$.{field}"), "expected a string")),
    }
}

fn date(object: &Map<String, Value>, field: &str) -> Result<Option<NaiveDate>, ApiError> {
    string(object, field)?
        .map(|text| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                ApiError::bad(
                    &format!("$.{field}"),
                    format!("{text:?} is not a YYYY-MM-DD date"),
                )
            })
        })
        .transpose()
}

fn entries<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    match object.get(field) {
        Some(Value::Object(map)) => Ok(map),
        None | Some(Value::Null) => Err(ApiError::bad(&format!("$.{field}"), "required")),
        Some(_) => Err(ApiError::bad(&format!("$.{field}"), "expected an object")),
    }
}

fn attributes(object: &Map<String, Value>) -> Result<WorkerAttributes, ApiError> {
    let map = entries(object, "attributes")?;
    let mut values: BTreeMap<Attribute, String> = BTreeMap::new();
    for (name, value) in map {
        let path = format!("$.attributes.{name}");
        let attribute = Attribute::parse(name).map_err(|e| ApiError::bad(&path, e.to_string()))?;
        match value {
            Value::Null => {}
            Value::String(s) => {
                values.insert(attribute, s.clone());
            }
            _ => return Err(ApiError::bad(&path, "expected a string or null")),
        }
    }
    let required = |a: Attribute| {
        values
            .get(&a)
            .cloned()
            .ok_or_else(|| ApiError::bad(&format!("$.attributes.{}", a.as_str()), "required"))
    };
    let employment_type =
        EmploymentType::parse(&required(Attribute::EmploymentType)?.to_ascii_uppercase())
            .map_err(|e| ApiError::bad("$.attributes.employment_type", e.to_string()))?;
    let mut worker = WorkerAttributes::new(
        required(Attribute::GivenName)?,
        required(Attribute::FamilyName)?,
        employment_type,
    );
    for (attribute, value) in values {
        if attribute.is_required() {
            continue;
        }
        let path = format!("$.attributes.{}", attribute.as_str());
        worker
            .apply(&AttributeChange::set(attribute, value))
            .map_err(|e| ApiError::bad(&path, e.to_string()))?;
    }
    Ok(worker)
}

fn changes(object: &Map<String, Value>) -> Result<Vec<AttributeChange>, ApiError> {
    let map = entries(object, "changes")?;
    if map.is_empty() {
        return Err(ApiError::bad(
            "$.changes",
            "a move needs at least one change",
        ));
    }
    let mut changes = Vec::with_capacity(map.len());
    for (name, value) in map {
        let path = format!("$.changes.{name}");
        let attribute = Attribute::parse(name).map_err(|e| ApiError::bad(&path, e.to_string()))?;
        let change = match value {
            Value::Null => AttributeChange::clear(attribute),
            Value::String(s) if attribute == Attribute::EmploymentType => {
                AttributeChange::set(attribute, s.to_ascii_uppercase())
            }
            Value::String(s) => AttributeChange::set(attribute, s.clone()),
            _ => return Err(ApiError::bad(&path, "expected a string or null")),
        };
        // Check the change applies to some worker (rejects clearing a
        // required attribute, a bad employment type or manager id).
        let mut probe = WorkerAttributes::new("x", "y", EmploymentType::Employee);
        probe
            .apply(&change)
            .map_err(|e| ApiError::bad(&path, e.to_string()))?;
        changes.push(change);
    }
    changes.sort_by(|a, b| a.attribute.cmp(&b.attribute));
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000, 0).unwrap()
    }

    #[test]
    fn a_body_becomes_an_event_or_a_rejection_naming_where() {
        let event = event_from_body(
            br#"{"type":"terminate","employee_id":"E1042","time_zone":"Europe/Paris","immediate":true}"#,
            "push",
            now(),
        )
        .unwrap();
        assert_eq!(event.employee_id.as_str(), "E1042");
        assert_eq!(event.source_system.as_str(), "push");

        let not_json = event_from_body(b"{\"type\":\n  hire}", "push", now()).unwrap_err();
        assert!(
            matches!(&not_json, BodyError::NotJson(m) if m.starts_with("body is not JSON: ") && m.ends_with("(line 2, column 3)")),
            "{not_json}"
        );
        assert_eq!(ApiError::from(not_json).status, StatusCode::BAD_REQUEST);

        let invalid = event_from_body(
            br#"{"type":"hire","employee_id":"E1","time_zone":"UTC","attributes":{"given_name":"Ann","employment_type":"employee"}}"#,
            "push",
            now(),
        )
        .unwrap_err();
        assert_eq!(invalid.to_string(), "$.attributes.family_name: required");
        let answer = ApiError::from(invalid);
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(answer.path.as_deref(), Some("$.attributes.family_name"));
    }
}
