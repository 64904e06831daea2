use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Errors of the Kafka layer. [`Error::is_retryable`] says whether trying
/// again later can help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kafka settings are unusable (operator's fault).
    #[error("kafka config: {0}")]
    Config(String),
    /// A secret referenced by the Kafka settings could not be read.
    #[error("kafka config: {0}")]
    Secret(#[from] hrsync_config::SecretError),
    /// The librdkafka client could not be created.
    #[error("cannot create kafka client: {0}")]
    Client(KafkaError),
    /// The broker refused or failed to create a topic.
    #[error("cannot create topic {topic}: {code}")]
    CreateTopic {
        /// Topic name.
        topic: String,
        /// Broker's error code.
        code: RDKafkaErrorCode,
    },
    /// The broker did not describe a topic's settings (it is missing, or
    /// the client may not `DESCRIBE_CONFIGS` it).
    #[error("cannot read the settings of topic {topic} (DescribeConfigs): {code}; the client needs the DESCRIBE_CONFIGS permission on it")]
    DescribeTopic {
        /// Topic name.
        topic: String,
        /// Broker's error code.
        code: RDKafkaErrorCode,
    },
    /// A lifecycle topic lets the broker remove records (operator's fault:
    /// the message names the topic, setting, value and the fix).
    #[error("{0}")]
    LifecycleRetention(String),
    /// The topic does not exist.
    #[error("topic {0} not found; run `hrsync topics ensure`")]
    UnknownTopic(String),
    /// A record was not acknowledged by the broker.
    #[error("delivery to {topic} failed: {source}")]
    Delivery {
        /// Topic name.
        topic: String,
        /// Cause reported by librdkafka.
        source: KafkaError,
    },
    /// A group consumer stayed stuck (no progress while records waited for
    /// it) through every rejoin allowed; restarting the process may help.
    #[error("consumer group {group} is stuck: {reason}; {rejoins} rejoin(s) did not help")]
    Stalled {
        /// The consumer group.
        group: String,
        /// What was seen.
        reason: String,
        /// Rejoins tried.
        rejoins: u32,
    },
    /// Any other client error (metadata, subscribe, commit, ...).
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

impl Error {
    /// Whether retrying the same call later may succeed (broker down, timeouts,
    /// leader changes), as opposed to configuration or authorization errors.
    pub fn is_retryable(&self) -> bool {
        let code = match self {
            Error::Config(_)
            | Error::Secret(_)
            | Error::Client(_)
            | Error::LifecycleRetention(_)
            | Error::UnknownTopic(_) => return false,
            Error::Stalled { .. } => return true,
            Error::CreateTopic { code, .. } | Error::DescribeTopic { code, .. } => Some(*code),
            Error::Delivery { source, .. } | Error::Kafka(source) => source.rdkafka_error_code(),
        };
        !matches!(
            code,
            Some(
                RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::GroupAuthorizationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::InvalidConfig
                    | RDKafkaErrorCode::InvalidPartitions
                    | RDKafkaErrorCode::InvalidReplicationFactor
                    | RDKafkaErrorCode::InvalidArgument,
            )
        )
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
