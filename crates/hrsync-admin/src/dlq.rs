//! The dead-letter topics: what each stage parked and why
//! (`GET /api/v1/dlq/{stage}`), and the provisioner's redrive
//! (`POST /api/v1/dlq/provisioner/redrive`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use hrsync_auth::{Principal, Problem};
use hrsync_bus::{KafkaConfig, PeekRequest, Peeker, Record, TopicsConfig, DLQ_HEADER_PREFIX};
use hrsync_provisioner::config::ProvisionerConfig;
use hrsync_provisioner::run::{RedriveError, Topics};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::paging::{self, Page, Params};
use crate::{actions, unavailable, AdminApi};

/// What the dead-letter endpoints (and the provisioner's lag) read and
/// replay through.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    /// The Kafka cluster.
    pub(crate) kafka: KafkaConfig,
    /// The topic names (`[topics]`).
    pub(crate) topics: TopicsConfig,
    /// The provisioner's settings: its consumer group, and the redrive's
    /// (`<group_id>-redrive`), whose offsets mark what was replayed.
    pub(crate) provisioner: ProvisionerConfig,
    /// Reads the topics, its clients kept between requests.
    pub(crate) peeker: Arc<Peeker>,
}

impl DeadLetters {
    /// The dead-letter topics of `topics` on `kafka`, the provisioner's
    /// consumer groups as `provisioner` names them.
    pub fn new(kafka: KafkaConfig, topics: TopicsConfig, provisioner: ProvisionerConfig) -> Self {
        DeadLetters {
            peeker: Arc::new(Peeker::new(kafka.clone())),
            kafka,
            topics,
            provisioner,
        }
    }
}

/// How long a redrive waits for another dead letter before it is done.
const REDRIVE_IDLE: Duration = Duration::from_secs(2);

/// Held while a redrive runs in this process.
static REDRIVING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The stages with a dead-letter topic.
const STAGES: [&str; 3] = ["ingest", "projector", "provisioner"];

impl DeadLetters {
    /// The dead-letter topic of `stage`, and the consumer group that
    /// replays it (the provisioner's redrive; the other stages have none).
    fn of(&self, stage: &str) -> Result<(&str, Option<String>), Problem> {
        match stage {
            "ingest" => Ok((&self.topics.ingest_dlq, None)),
            "projector" => Ok((&self.topics.projector_dlq, None)),
            "provisioner" => Ok((
                &self.topics.provisioner_dlq,
                Some(format!("{}-redrive", self.provisioner.group_id)),
            )),
            other => Err(Problem::not_found(format!(
                "no stage {other:?} (stages: {})",
                STAGES.join(", ")
            ))),
        }
    }
}

/// The query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DlqQuery {
    /// `pending` (the default: not replayed yet) or `all`.
    state: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// One page of a dead-letter topic, with its counts.
#[derive(Debug, Serialize)]
pub(crate) struct DlqPage {
    topic: String,
    /// Records the topic holds now (within its retention).
    stored: i64,
    /// Of those, the ones not replayed yet.
    pending: i64,
    #[serde(flatten)]
    page: Page<DeadLetter>,
}

/// One parked record.
#[derive(Debug, Serialize)]
pub(crate) struct DeadLetter {
    partition: i32,
    offset: i64,
    /// Replayed by a redrive already.
    replayed: bool,
    /// The record's key (the employee or person id), as text.
    key: Option<String>,
    /// The stage that parked it.
    stage: Option<String>,
    /// Why it was parked.
    error: Option<String>,
    failed_at: Option<String>,
    /// Where it was read from: `topic[partition]@offset`.
    from: Option<String>,
    payload_bytes: usize,
    /// What the payload holds, decoded when it can be.
    summary: Summary,
}

/// A dead letter's payload, as far as it decodes.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Summary {
    /// A lifecycle event (the projector's input).
    LifecycleEvent {
        employee_id: String,
        event_id: String,
        event: String,
        source: String,
    },
    /// A person's desired state (the provisioner's input).
    DirectoryChange {
        person_id: String,
        employee_id: String,
        version: u64,
        lifecycle: String,
        apps: Vec<String>,
    },
    /// Not decodable as this stage's input.
    Undecodable { reason: String },
}

/// `GET /api/v1/dlq/{stage}`.
pub(crate) async fn list(
    State(api): State<Arc<AdminApi>>,
    Path(stage): Path<String>,
    Params(query): Params<DlqQuery>,
) -> Result<Json<DlqPage>, Problem> {
    let (topic, done_by) = api.dead_letters.of(&stage)?;
    let only_pending = match query.state.as_deref() {
        None | Some("pending") => true,
        Some("all") => false,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "state={other:?}: pending or all"
            )))
        }
    };
    let limit = paging::limit(query.limit)?;
    let after = paging::cursor(query.cursor.as_deref())?
        .map(|(partition, offset)| {
            Some((i32::try_from(partition).ok()?, offset.parse::<i64>().ok()?))
        })
        .map(|position| {
            position.ok_or_else(|| {
                Problem::bad_request(
                    "cursor: not a cursor this API gave (pass next_cursor as it is)",
                )
            })
        })
        .transpose()?;
    let peeked = api
        .dead_letters
        .peeker
        .peek(PeekRequest {
            topic: topic.to_owned(),
            done_by,
            only_pending,
            after,
            limit: usize::try_from(limit).unwrap_or(1),
        })
        .await
        .map_err(unavailable)?;
    let items = peeked
        .records
        .iter()
        .map(|(record, done)| dead_letter(&stage, record, *done))
        .collect();
    let next = peeked
        .next
        .map(|(partition, offset)| (i64::from(partition), offset.to_string()));
    Ok(Json(DlqPage {
        topic: topic.to_owned(),
        stored: peeked.stored,
        pending: peeked.pending,
        page: Page::with_next(items, next),
    }))
}

fn dead_letter(stage: &str, record: &Record, replayed: bool) -> DeadLetter {
    let header = |name: &str| {
        record
            .header(&format!("{DLQ_HEADER_PREFIX}{name}"))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let from = match (header("topic"), header("partition"), header("offset")) {
        (Some(topic), Some(partition), Some(offset)) => {
            Some(format!("{topic}[{partition}]@{offset}"))
        }
        _ => None,
    };
    let payload = record.payload.as_deref().unwrap_or_default();
    DeadLetter {
        partition: record.partition,
        offset: record.offset,
        replayed,
        key: record
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        stage: header("stage"),
        error: header("error"),
        failed_at: header("failed_at"),
        from,
        payload_bytes: payload.len(),
        summary: summary(stage, payload),
    }
}

/// Decodes `payload` as the input of `stage`.
fn summary(stage: &str, payload: &[u8]) -> Summary {
    let undecodable = |reason: String| Summary::Undecodable { reason };
    match stage {
        "provisioner" => match hrsync_schema::decode_directory_change(payload) {
            Ok(change) => Summary::DirectoryChange {
                person_id: change.person_id.to_string(),
                employee_id: change.employee_id.to_string(),
                version: change.version,
                lifecycle: change.lifecycle_state.as_str().to_owned(),
                apps: change.apps.iter().map(|a| a.app.clone()).collect(),
            },
            Err(e) => undecodable(e.to_string()),
        },
        _ => match hrsync_schema::decode_lifecycle(payload) {
            Ok(event) => Summary::LifecycleEvent {
                employee_id: event.employee_id.to_string(),
                event_id: event.event_id.to_string(),
                event: event.kind().as_str().to_owned(),
                source: event.source_system.as_str().to_owned(),
            },
            Err(e) => undecodable(e.to_string()),
        },
    }
}

/// The outcome of a redrive.
#[derive(Debug, Serialize)]
pub(crate) struct Redriven {
    action_id: String,
    /// Dead letters applied again (those failing again are parked anew).
    replayed: usize,
    /// Dead letters not replayed yet, after this run.
    pending: i64,
}

/// `POST /api/v1/dlq/provisioner/redrive`: applies every parked change of
/// the provisioner again, once; one failing again is parked anew.
pub(crate) async fn redrive(
    State(api): State<Arc<AdminApi>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Redriven>, Problem> {
    let dead = &api.dead_letters;
    // One redrive at a time: a second would share the group and answer
    // with half the count. The store's claim keeps out other processes
    // (admin replicas, the CLI); this lock, requests to an in-memory store.
    let busy = || Problem::conflict(RedriveError::Busy.to_string());
    let Ok(_running) = REDRIVING.try_lock() else {
        return Err(busy());
    };
    let topics = Topics::from(&dead.topics);
    let outcome = hrsync_provisioner::run::redrive(
        api.provisioner.clone(),
        &dead.kafka,
        &dead.provisioner,
        &topics,
        REDRIVE_IDLE,
    )
    .await;
    if let Err(RedriveError::Busy) = outcome {
        return Err(busy());
    }
    let detail = match &outcome {
        Ok(replayed) => json!({ "replayed": replayed }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let action_id = actions::record(
        &api,
        &principal,
        "dlq.redrive",
        &topics.dlq,
        outcome.is_ok(),
        detail,
    )
    .await;
    let replayed = outcome.map_err(unavailable)?;
    let (_, done_by) = dead.of("provisioner")?;
    let pending = dead
        .peeker
        .peek(PeekRequest {
            topic: topics.dlq.clone(),
            done_by,
            only_pending: true,
            after: None,
            limit: 0,
        })
        .await
        .map_err(unavailable)?
        .pending;
    Ok(Json(Redriven {
        action_id,
        replayed,
        pending,
    }))
}
