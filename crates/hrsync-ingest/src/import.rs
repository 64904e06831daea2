//! Snapshot import: parse, diff against the baseline, check the safety
//! limits, record the events durably (the outbox), publish them, and only
//! then accept the snapshot as the new baseline.
//!
//! A crash anywhere leaves either nothing recorded (the import simply runs
//! again) or an open import whose remaining events are published by the next
//! run before anything else ([`Importer::resume`]). Events acknowledged but
//! not yet marked in the store are sent again after a crash; their ids are
//! deterministic, so consumers drop the repeats.

use chrono::{DateTime, Utc};
use hrsync_bus::{OutgoingRecord, Producer};
use hrsync_config::failpoint;
use sha2::{Digest, Sha256};

use crate::diff::{self, DiffError, Plan, PlannedEvent, Refusal, Summary};
use crate::snapshot::{self, SnapshotError};
use crate::source::{Format, SourceConfig};
use crate::store::{IngestStore, OpenImport, OutboxEvent, StoreError};

/// Import failures. None of them changes the baseline.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is malformed; every problem is listed with file, line and
    /// column.
    #[error(transparent)]
    Invalid(#[from] SnapshotError),
    /// The file's format is neither given nor recognisable from its name.
    #[error("{file}: unknown format; name it .csv or .jsonl, or set format in the source")]
    UnknownFormat {
        /// The file.
        file: String,
    },
    /// A worker's values do not fit the event model.
    #[error(transparent)]
    Model(#[from] DiffError),
    /// The snapshot exceeds a safety limit and was not forced.
    #[error("snapshot refused ({summary}): {}; check the export, or import it with --force if it is right", reasons.join("; "))]
    Refused {
        /// The limits exceeded.
        reasons: Vec<String>,
        /// What it would have done.
        summary: Summary,
    },
    /// The store failed. When retrying can help (a broken connection, a
    /// restarting database) the message says to run the import again:
    /// events recorded before the failure are published by the next run,
    /// under the same ids.
    #[error("ingest store: {0}{hint}", hint = store_hint(.0))]
    Store(#[from] StoreError),
    /// An event could not be encoded (a bug: the model and schema disagree).
    #[error("encoding event {event_id}: {reason}")]
    Encode {
        /// The event.
        event_id: String,
        /// Encoder message.
        reason: String,
    },
    /// The broker did not acknowledge every event; the import stays open and
    /// resumes on the next run.
    #[error("publishing to Kafka: {0}; the import stays open and resumes on the next run")]
    Publish(#[from] hrsync_bus::Error),
}

/// What to do about a store error: run the import again once the store is
/// back, when retrying can help.
fn store_hint(error: &StoreError) -> &'static str {
    if error.is_retryable() {
        "; the store is unreachable or restarting: run the same import again once it is back \
         (an import that was publishing resumes where it stopped)"
    } else {
        ""
    }
}

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// The lifecycle topic.
    pub topic: String,
    /// The priority lane topic.
    pub priority_topic: String,
    /// Events per confirmed batch.
    pub batch: usize,
}

/// Options of one import.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Plan and report only.
    pub dry_run: bool,
    /// Import even when a safety limit is exceeded.
    pub force: bool,
}

/// What an import did.
#[derive(Debug)]
pub enum ImportReport {
    /// `--dry-run`: the plan, nothing stored or published.
    DryRun(Plan),
    /// The events were published and the snapshot accepted.
    Published {
        /// The import's id.
        import_id: String,
        /// Counts.
        summary: Summary,
    },
    /// Same workers as the baseline: nothing published.
    Unchanged,
}

/// A source's imports.
#[derive(Debug, Clone)]
pub struct Importer {
    store: IngestStore,
    producer: Producer,
    settings: PublishSettings,
}

impl Importer {
    /// An importer over a migrated store.
    pub fn new(store: IngestStore, producer: Producer, settings: PublishSettings) -> Self {
        Importer {
            store,
            producer,
            settings,
        }
    }

    /// Finishes the open import of `source`, if any: publishes its remaining
    /// events and accepts its snapshot. Returns the import finished.
    ///
    /// # Errors
    /// Store or broker failures; the import stays open.
    pub async fn resume(&self, source: &str) -> Result<Option<OpenImport>, ImportError> {
        let Some(open) = self.store.open_import(source).await? else {
            return Ok(None);
        };
        tracing::info!(source, import_id = %open.import_id, "resuming an unfinished import");
        let events = self.store.unpublished(&open.import_id).await?;
        self.publish(&open.import_id, &events).await?;
        self.store.accept(source, &open.import_id, now_ms()).await?;
        Ok(Some(open))
    }

    /// Imports one export of `source`.
    ///
    /// # Errors
    /// See [`ImportError`]; whatever the error, the baseline is unchanged
    /// unless every event was published.
    pub async fn import(
        &self,
        source: &SourceConfig,
        file: &str,
        bytes: &[u8],
        options: ImportOptions,
        now: DateTime<Utc>,
    ) -> Result<ImportReport, ImportError> {
        if options.dry_run {
            return dry_run(&self.store, source, file, bytes, now)
                .await
                .map(ImportReport::DryRun);
        }
        let plan = match plan(self, source, file, bytes, now, options).await? {
            Planned::Report(report) => return Ok(report),
            Planned::Plan(plan) => plan,
        };
        let digest = format!("{:x}", Sha256::digest(bytes));
        let import_id = uuid::Uuid::new_v4().to_string();
        let Plan {
            events,
            next_baseline,
            summary,
        } = plan;
        self.store
            .record_import(
                &source.name,
                &import_id,
                &digest,
                now_ms(),
                &events,
                &next_baseline,
            )
            .await?;
        drop(next_baseline);
        tracing::info!(source = %source.name, %import_id, %summary, "import recorded");
        failpoint("ingest.after_record");
        // Published as recorded, without reading them back.
        self.publish(&import_id, &events).await?;
        drop(events);
        self.store
            .accept(&source.name, &import_id, now_ms())
            .await?;
        tracing::info!(source = %source.name, %import_id, "import accepted");
        Ok(ImportReport::Published { import_id, summary })
    }

    /// Publishes `events`, the unacknowledged events of `import_id` in
    /// order: first every priority copy (so urgent terminations never wait
    /// behind the bulk), then the lifecycle topic in order, batch by batch,
    /// marking each batch in the store once the broker has acknowledged all
    /// of it.
    async fn publish(&self, import_id: &str, events: &[OutboxEvent]) -> Result<(), ImportError> {
        if events.is_empty() {
            return Ok(());
        }
        let priority: Vec<OutgoingRecord<'_>> = events
            .iter()
            .filter(|e| e.priority)
            .map(|e| self.record(&self.settings.priority_topic, e))
            .collect();
        for batch in priority.chunks(self.settings.batch) {
            self.producer.send_batch(batch).await?;
        }
        if !priority.is_empty() {
            tracing::info!(
                import_id,
                events = priority.len(),
                "priority lane published"
            );
        }
        for (index, batch) in events.chunks(self.settings.batch).enumerate() {
            let records: Vec<OutgoingRecord<'_>> = batch
                .iter()
                .map(|e| self.record(&self.settings.topic, e))
                .collect();
            self.producer.send_batch(&records).await?;
            failpoint("ingest.before_mark");
            let last = batch.last().map_or(0, |e| e.seq);
            self.store
                .mark_published_through(import_id, last, now_ms())
                .await?;
            tracing::debug!(
                import_id,
                batch = index,
                through = last,
                "batch acknowledged"
            );
            failpoint("ingest.after_batch");
        }
        Ok(())
    }

    fn record<'a>(&self, topic: &'a str, event: &'a OutboxEvent) -> OutgoingRecord<'a> {
        OutgoingRecord {
            topic,
            key: event.key.as_bytes(),
            payload: &event.payload,
            headers: &[],
        }
    }
}

enum Planned {
    Report(ImportReport),
    Plan(Plan<OutboxEvent>),
}

/// Plans an import of `bytes` against `source`'s last accepted snapshot in
/// `store`, recording and publishing nothing: what a dry run reports (the
/// plan says whether a real import would be refused). Needs no broker, and does not finish an import of `source` left open (a real
/// import would finish it first, so its plan can differ).
///
/// # Errors
/// The snapshot is invalid or in an unknown format, or the store failed.
pub async fn dry_run(
    store: &IngestStore,
    source: &SourceConfig,
    file: &str,
    bytes: &[u8],
    now: DateTime<Utc>,
) -> Result<Plan, ImportError> {
    let snapshot = snapshot::parse(source, file, bytes, format_of(source, file)?)?;
    let baseline = store.baseline(&source.name).await?;
    Ok(diff::diff(source, &baseline, snapshot, now)?)
}

/// The format `file` is read in: the source's, or the file name's extension.
fn format_of(source: &SourceConfig, file: &str) -> Result<Format, ImportError> {
    source
        .format
        .or_else(|| snapshot::format_of(file))
        .ok_or_else(|| ImportError::UnknownFormat {
            file: file.to_owned(),
        })
}

async fn plan(
    importer: &Importer,
    source: &SourceConfig,
    file: &str,
    bytes: &[u8],
    now: DateTime<Utc>,
    options: ImportOptions,
) -> Result<Planned, ImportError> {
    let snapshot = snapshot::parse(source, file, bytes, format_of(source, file)?)?;
    // An earlier import of this source that did not finish goes first: the
    // new snapshot must be compared with its result.
    importer.resume(&source.name).await?;
    let baseline = importer.store.baseline(&source.name).await?;
    let mut seq = 0;
    let plan = diff::diff_into(source, &baseline, snapshot, now, |planned| {
        let event = encode(seq, &planned)?;
        seq += 1;
        Ok::<_, ImportError>(event)
    })?;
    if !options.force {
        if let Err(Refusal { reasons }) = plan.check_limits(source) {
            return Err(ImportError::Refused {
                reasons,
                summary: plan.summary,
            });
        }
    }
    if plan.events.is_empty() && plan.next_baseline == baseline {
        return Ok(Planned::Report(ImportReport::Unchanged));
    }
    Ok(Planned::Plan(plan))
}

/// A planned event as the outbox keeps it, `seq`-th of its import.
fn encode(seq: i64, planned: &PlannedEvent) -> Result<OutboxEvent, ImportError> {
    let event = &planned.event;
    let payload = hrsync_schema::encode_lifecycle(event).map_err(|e| ImportError::Encode {
        event_id: event.event_id.to_string(),
        reason: e.to_string(),
    })?;
    Ok(OutboxEvent {
        seq,
        event_id: event.event_id.to_string(),
        key: event.employee_id.as_str().to_owned(),
        payload,
        priority: planned.priority,
    })
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_error_retrying_can_help_says_to_run_the_import_again() {
        let broken = ImportError::Store(StoreError::from(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset",
        ))));
        let message = broken.to_string();
        assert!(message.contains("run the same import again"), "{message}");
        let corrupt = ImportError::Store(StoreError::Corrupt {
            source_name: "hris".to_owned(),
            employee_id: "E1".to_owned(),
            reason: "not JSON".to_owned(),
        });
        let message = corrupt.to_string();
        assert!(!message.contains("run the same import again"), "{message}");
    }
}
