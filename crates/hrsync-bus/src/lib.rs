//! Kafka plumbing shared by every hrsync stage, over rdkafka (librdkafka).
//!
//! - [`KafkaConfig`]: brokers, client id and security settings (SASL/SSL),
//!   passed through to librdkafka; secrets stay wrapped until the client is
//!   built.
//! - [`ensure_topics`]: creates missing topics with their configured partition
//!   count and retention at start-up (brokers may not auto-create them);
//!   [`check_lifecycle_retention`] checks that the lifecycle topics keep
//!   every record, [`log_start_offsets`] that none was removed.
//! - [`Producer`]: idempotent (`acks=all`), awaits delivery confirmation, and
//!   writes the current span's W3C trace context into record headers.
//! - [`consumer`]: an at-least-once loop: an offset is stored only after its
//!   record's work is done, committed on shutdown and on partition revoke;
//!   the same with records handled concurrently by key
//!   ([`Consumer::run_concurrent`]); and, for stages that store offsets with
//!   their state, batches read at those offsets
//!   ([`Consumer::at_stored_offsets`]).
//! - [`stall`](StallSettings): every group consumer is watched; one stuck
//!   (no progress while records wait for it) rejoins its group, and gives up
//!   with an error once rejoining does not help.
//! - [`DlqPublisher`]: parks a record that cannot be processed on a
//!   dead-letter topic with its original bytes, key, headers and provenance;
//!   a [`Peeker`] reads a page of one, with which records a group (the
//!   redrive's) has been through.

mod concurrent;
mod config;
pub mod consumer;
mod dlq;
mod error;
mod metrics;
mod peek;
mod producer;
mod record;
mod retention;
mod stall;
mod stored;
mod topics;

pub use concurrent::SharedHandler;
pub use config::KafkaConfig;
pub use consumer::{Consumer, ConsumerSettings, Handler, Outcome};
pub use dlq::{DlqPublisher, DLQ_HEADER_PREFIX};
pub use error::{Error, Result};
pub use peek::{PeekRequest, Peeked, Peeker, Position};
pub use producer::{Delivery, OutgoingRecord, Producer};
pub use record::Record;
pub use retention::{
    check_lifecycle_retention, describe_lifecycle_retention, log_start_offsets, RetentionProblem,
    RetentionReport,
};
pub use stall::StallSettings;
pub use stored::{Batch, BatchSettings, Batches};
pub use topics::{ensure_topics, TopicSpec, TopicsConfig, RETENTION_BYTES, RETENTION_MS};
