//! The projector's errors, in one place so that every module can name them
//! without importing another (the store, the batch logic and the loops all
//! fail with [`ProjectError`]).

/// Projector errors.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] hrsync_store::Error),
    /// Another process changed a person this batch read; the batch is rolled
    /// back and must be retried.
    #[error("concurrent update of {0}; retrying the batch")]
    Conflict(String),
    /// Stored state no longer parses.
    #[error("stored state of {employee_id} is unreadable: {reason}")]
    Corrupt {
        /// The person.
        employee_id: String,
        /// Why.
        reason: String,
    },
    /// An outbox row no longer decodes.
    #[error("outbox row {seq} is unreadable: {reason}")]
    CorruptOutbox {
        /// The row.
        seq: i64,
        /// Why.
        reason: String,
    },
    /// A directory change could not be built or encoded (a bug).
    #[error("building the directory change of {employee_id}: {reason}")]
    Build {
        /// The person.
        employee_id: String,
        /// Why.
        reason: String,
    },
}

/// Why a preview of proposed rules failed.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// A proposed group is not valid (it names the group and why): the
    /// proposal's fault; previewing it again fails the same way.
    #[error("the proposed rules do not compile: {0}")]
    Rules(#[from] crate::rules::RuleError),
    /// Reading the store failed: see [`ProjectError::is_retryable`].
    #[error("previewing the rules: {0}")]
    Store(#[from] ProjectError),
}

impl PreviewError {
    /// Whether previewing the same rules again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            PreviewError::Rules(_) => false,
            PreviewError::Store(e) => e.is_retryable(),
        }
    }
}

impl From<sqlx::Error> for ProjectError {
    fn from(e: sqlx::Error) -> Self {
        ProjectError::Db(hrsync_store::Error::Query(e))
    }
}

impl ProjectError {
    /// Whether retrying the batch may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProjectError::Conflict(_) => true,
            ProjectError::Db(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Whether another transaction changed what this one read, so that
    /// retrying at once (it has committed) sees the new state: the revision
    /// check, or PostgreSQL's serialization failure or deadlock.
    pub fn is_conflict(&self) -> bool {
        match self {
            ProjectError::Conflict(_) => true,
            ProjectError::Db(hrsync_store::Error::Query(sqlx::Error::Database(e))) => {
                matches!(e.code().as_deref(), Some("40001" | "40P01"))
            }
            _ => false,
        }
    }

    /// A directory change of `employee_id` could not be built (a bug).
    pub(crate) fn build(employee_id: &str, e: impl std::fmt::Display) -> Self {
        ProjectError::Build {
            employee_id: employee_id.to_owned(),
            reason: e.to_string(),
        }
    }

    /// A blocking task of a batch failed without panicking (it was
    /// cancelled: the runtime is shutting down).
    pub(crate) fn task(e: tokio::task::JoinError) -> Self {
        Self::build("(batch)", e)
    }
}

/// Result type of the projector.
pub type Result<T, E = ProjectError> = std::result::Result<T, E>;

/// Why a stored person state cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The column is empty.
    #[error("empty state")]
    Empty,
    /// The first byte names no format this projector writes.
    #[error("unknown state format {0}")]
    UnknownFormat(u8),
    /// The binary state does not decode.
    #[error("binary state (format 1): {0}")]
    Damaged(postcard::Error),
}

/// A `[projector]` setting that cannot be used (the operator's to fix).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `batch_max` is zero.
    #[error("projector.batch_max must be at least 1")]
    BatchMax,
    /// `group_id` is blank.
    #[error("projector.group_id is empty")]
    GroupId,
    /// An attribute of `attribute_sources` is not an attribute.
    #[error("projector.attribute_sources.{attribute}: {reason}")]
    Attribute {
        /// The key as configured.
        attribute: String,
        /// Why it is not one.
        reason: String,
    },
    /// An attribute of `attribute_sources` lists no source.
    #[error("projector.attribute_sources.{0}: list at least one source")]
    NoSources(String),
    /// A group rule does not compile.
    #[error("projector.rules: {0}")]
    Rules(#[from] crate::rules::RuleError),
}

/// Why a consumed record is not a lifecycle event the projector can apply
/// (it goes to the dead-letter topic).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a lifecycle event of the schema.
    #[error(transparent)]
    Schema(#[from] hrsync_schema::DecodeError),
    /// The event breaks the model's rules.
    #[error(transparent)]
    Invalid(#[from] hrsync_domain::DomainError),
}

/// Errors of the running projector ([`crate::run`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Kafka failed in a way the loop cannot ride out.
    #[error("kafka: {0}")]
    Kafka(#[from] hrsync_bus::Error),
    /// The store failed permanently.
    #[error("store: {0}")]
    Store(#[from] ProjectError),
    /// The topic has no partitions (does it exist?).
    #[error("topic {0} not found; run `hrsync topics ensure`")]
    NoTopic(String),
    /// The claim on the store could not be taken or checked.
    #[error("claiming the store: {0}")]
    Claim(#[from] hrsync_store::Error),
    /// The connection that held the claim on the store broke, and another
    /// projector holds it now: this one stops writing.
    #[error("another projector claimed the store after the connection holding this one's claim broke; stopping so that one projector writes at a time")]
    ClaimLost,
    /// The broker removed lifecycle records this store has not applied:
    /// going on would skip them.
    #[error("{}", lost_message(topic, gaps))]
    LostRecords {
        /// The lifecycle topic.
        topic: String,
        /// Each partition with a gap: where the store resumes, and where
        /// the log now starts.
        gaps: Vec<Gap>,
    },
    /// The lifecycle log no longer starts at offset 0: the broker removed
    /// records a replay needs (see [`crate::run::check_replayable`]).
    #[error("{}", truncated_message(topic, starts))]
    LogTruncated {
        /// The lifecycle topic.
        topic: String,
        /// Each partition that lost records, with its earliest offset.
        starts: Vec<(i32, i64)>,
    },
}

/// A partition where the store would resume below the log's first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The partition.
    pub partition: i32,
    /// The next offset the store would read (0 for a fresh store).
    pub resume: i64,
    /// The first offset the broker still has.
    pub log_start: i64,
}

impl Gap {
    /// The gap, if resuming at `stored` (`None`: from the beginning) would
    /// skip records removed before `log_start`.
    pub fn find(partition: i32, stored: Option<i64>, log_start: i64) -> Option<Gap> {
        let resume = stored.unwrap_or(0);
        (resume < log_start).then_some(Gap {
            partition,
            resume,
            log_start,
        })
    }
}

fn lost_message(topic: &str, gaps: &[Gap]) -> String {
    let partitions = gaps
        .iter()
        .map(|g| {
            format!(
                "partition {}: the store resumes at offset {}, the log starts at {}",
                g.partition, g.resume, g.log_start
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "lifecycle topic {topic} lost records this store has not applied ({partitions}); the \
         broker removed them (retention), and going on would skip them, leaving the persons \
         whose events they were wrong or missing. The projector stops instead. Restore the \
         records, or set topics.allow_finite_lifecycle_retention = true to go on from the log \
         start without them"
    )
}

fn truncated_message(topic: &str, starts: &[(i32, i64)]) -> String {
    let partitions = starts
        .iter()
        .map(|(partition, start)| format!("partition {partition} starts at offset {start}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "refusing to rebuild: lifecycle topic {topic} no longer starts at offset 0 \
         ({partitions}); the broker removed the records before those (retention), so a \
         replay would lose the persons whose events they were. The store was left as it \
         is. Set retention.ms=-1 and retention.bytes=-1 on the topic so no more are \
         removed, and restore the removed records before rebuilding"
    )
}
