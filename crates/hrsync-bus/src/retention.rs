//! Keeping the lifecycle log: its topics must never let the broker delete
//! records, and a replay must find the log whole.
//!
//! The lifecycle topics are the source of truth: every other state is
//! rebuilt by replaying them from offset 0. A broker keeps a topic's records
//! for 7 days unless told otherwise (`retention.ms`), so hrsync creates
//! them with `retention.ms` and `retention.bytes` -1, and checks at start
//! that existing ones say so too ([`check_lifecycle_retention`]). Before a
//! replay, [`log_start_offsets`] tells whether any partition lost its first
//! records.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use crate::topics::{RETENTION_BYTES, RETENTION_MS};
use crate::{Error, KafkaConfig, Result, TopicsConfig};

/// The topic setting saying whether old records are deleted or compacted.
const CLEANUP_POLICY: &str = "cleanup.policy";

/// How long the broker may take to answer the checks.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A setting of a lifecycle topic that lets the broker remove records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionProblem {
    /// The setting (`retention.ms`, `retention.bytes`, `cleanup.policy`).
    pub setting: &'static str,
    /// Its value on the topic.
    pub value: String,
    /// The value that keeps every record.
    pub wanted: &'static str,
}

/// What a lifecycle topic's settings say about keeping its records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionReport {
    /// The topic.
    pub topic: String,
    /// Settings that let the broker remove records.
    pub problems: Vec<RetentionProblem>,
    /// Retention settings the broker did not report, so that the check
    /// cannot tell (Kafka reports every setting; some Kafka-protocol
    /// brokers only those given when the topic was created).
    pub unreported: Vec<&'static str>,
}

impl RetentionReport {
    /// Judges a lifecycle topic by its settings as the broker described
    /// them (name and value; `None` where the broker withheld the value).
    /// Records are kept only with `retention.ms` = -1, `retention.bytes` =
    /// -1 and a `cleanup.policy` without `compact` (compaction keeps only
    /// the last event of each employee).
    pub fn judge<'a>(
        topic: &str,
        settings: impl IntoIterator<Item = (&'a str, Option<&'a str>)> + Clone,
    ) -> Self {
        let value = |name: &str| {
            settings
                .clone()
                .into_iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v)
                .map(str::trim)
        };
        let mut report = RetentionReport {
            topic: topic.to_owned(),
            ..RetentionReport::default()
        };
        for setting in [RETENTION_MS, RETENTION_BYTES] {
            match value(setting) {
                Some("-1") => {}
                Some(other) => report.problems.push(RetentionProblem {
                    setting,
                    value: other.to_owned(),
                    wanted: "-1",
                }),
                None => report.unreported.push(setting),
            }
        }
        if let Some(policy) = value(CLEANUP_POLICY) {
            if policy.split(',').any(|p| p.trim() == "compact") {
                report.problems.push(RetentionProblem {
                    setting: CLEANUP_POLICY,
                    value: policy.to_owned(),
                    wanted: "delete",
                });
            }
        }
        report
    }

    /// What is wrong and how to fix it, for an operator: the topic, each
    /// setting with its value, and the `kafka-configs` command that sets
    /// them right on the brokers `bootstrap`.
    pub fn explain(&self, bootstrap: &str) -> String {
        // Each problem's setting as `setting=value`, joined by `separator`.
        let settings = |value: fn(&RetentionProblem) -> &str, separator: &str| {
            self.problems
                .iter()
                .map(|p| format!("{}={}", p.setting, value(p)))
                .collect::<Vec<_>>()
                .join(separator)
        };
        let found = settings(|p| p.value.as_str(), ", ");
        let fix = settings(|p| p.wanted, ",");
        format!(
            "lifecycle topic {topic} has {found}: the broker removes its records, but the \
             lifecycle log is the source of truth that a rebuild replays from offset 0. \
             Fix it with `kafka-configs --bootstrap-server {bootstrap} --alter --entity-type \
             topics --entity-name {topic} --add-config {fix}`, or set \
             topics.allow_finite_lifecycle_retention = true to run anyway with a warning",
            topic = self.topic,
        )
    }
}

/// Reads the settings of both lifecycle topics (DescribeConfigs) and
/// judges them (see [`RetentionReport::judge`]).
///
/// # Errors
/// The broker did not describe a topic (it is missing, or the client may
/// not `DESCRIBE_CONFIGS` it).
#[tracing::instrument(skip_all)]
pub async fn describe_lifecycle_retention(
    config: &KafkaConfig,
    topics: &TopicsConfig,
) -> Result<Vec<RetentionReport>> {
    let admin: AdminClient<DefaultClientContext> = config
        .client_config("admin")?
        .create()
        .map_err(Error::Client)?;
    let names = topics.lifecycle_topics();
    let resources: Vec<ResourceSpecifier<'_>> =
        names.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let results = admin.describe_configs(&resources, &options).await?;
    names
        .iter()
        .zip(results)
        .map(|(topic, result)| {
            let resource = result.map_err(|code| Error::DescribeTopic {
                topic: (*topic).to_owned(),
                code,
            })?;
            Ok(RetentionReport::judge(
                topic,
                resource
                    .entries
                    .iter()
                    .map(|e| (e.name.as_str(), e.value.as_deref())),
            ))
        })
        .collect()
}

/// Checks that the lifecycle topics keep every record, and stops hrsync
/// if they do not: an error naming the topic, the setting, its value and
/// the fix. With `topics.allow_finite_lifecycle_retention` each problem (and
/// a failure to read the settings) is logged as a warning instead. Settings
/// the broker does not report are logged as a warning either way.
///
/// # Errors
/// [`Error::LifecycleRetention`] for a topic that lets the broker remove
/// records; the error of [`describe_lifecycle_retention`] when the settings
/// cannot be read.
pub async fn check_lifecycle_retention(config: &KafkaConfig, topics: &TopicsConfig) -> Result<()> {
    let allow = topics.allow_finite_lifecycle_retention;
    let reports = match describe_lifecycle_retention(config, topics).await {
        Ok(reports) => reports,
        Err(error) if allow => {
            tracing::warn!(%error, "cannot check the lifecycle topics' retention; going on as topics.allow_finite_lifecycle_retention is set");
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    let mut refused = Vec::new();
    for report in &reports {
        if !report.unreported.is_empty() {
            tracing::warn!(
                topic = %report.topic,
                settings = ?report.unreported,
                "the broker does not report these settings of a lifecycle topic, so hrsync cannot check that it keeps every record"
            );
        }
        if report.problems.is_empty() {
            continue;
        }
        let explained = report.explain(&config.brokers);
        if allow {
            tracing::warn!(
                topic = %report.topic,
                "{explained} (going on: topics.allow_finite_lifecycle_retention is set)"
            );
        } else {
            refused.push(explained);
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Error::LifecycleRetention(refused.join("; ")))
    }
}

/// The first offset still stored in each partition of `topic` (its low
/// watermark), by partition. A partition whose records were never removed
/// starts at 0.
///
/// # Errors
/// The topic does not exist, or the broker did not answer.
#[tracing::instrument(skip(config))]
pub async fn log_start_offsets(config: &KafkaConfig, topic: &str) -> Result<Vec<(i32, i64)>> {
    let admin: AdminClient<DefaultClientContext> = config
        .client_config("admin")?
        .create()
        .map_err(Error::Client)?;
    let topic = topic.to_owned();
    // librdkafka's metadata and watermark calls block: off the runtime.
    tokio::task::spawn_blocking(move || {
        let client = admin.inner();
        let partitions = crate::topics::partition_ids(client, &topic, TIMEOUT)?;
        if partitions.is_empty() {
            return Err(Error::UnknownTopic(topic));
        }
        partitions
            .into_iter()
            .map(|partition| {
                let (low, _high) = client.fetch_watermarks(&topic, partition, TIMEOUT)?;
                Ok((partition, low))
            })
            .collect()
    })
    .await
    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(settings: &[(&str, &str)]) -> RetentionReport {
        RetentionReport::judge(
            "hr.lifecycle.v1",
            settings.iter().map(|(n, v)| (*n, Some(*v))),
        )
    }

    #[test]
    fn kept_forever_is_accepted() {
        let report = judge(&[
            ("retention.ms", "-1"),
            ("retention.bytes", "-1"),
            ("cleanup.policy", "delete"),
            ("segment.ms", "604800000"),
        ]);
        assert_eq!(report.problems, []);
        assert!(report.unreported.is_empty());
    }

    #[test]
    fn kafkas_seven_day_default_is_a_problem_naming_setting_and_value() {
        let report = judge(&[("retention.ms", "604800000"), ("retention.bytes", "-1")]);
        assert_eq!(
            report.problems,
            [RetentionProblem {
                setting: "retention.ms",
                value: "604800000".into(),
                wanted: "-1",
            }]
        );
        let text = report.explain("kafka:9092");
        assert!(
            text.contains("hr.lifecycle.v1 has retention.ms=604800000"),
            "{text}"
        );
        assert!(
            text.contains(
                "kafka-configs --bootstrap-server kafka:9092 --alter --entity-type topics \
                 --entity-name hr.lifecycle.v1 --add-config retention.ms=-1`"
            ),
            "{text}"
        );
        assert!(
            text.contains("topics.allow_finite_lifecycle_retention = true"),
            "{text}"
        );
    }

    #[test]
    fn a_byte_limit_and_compaction_are_problems_too() {
        let report = judge(&[
            ("retention.ms", "-1"),
            ("retention.bytes", "1073741824"),
            ("cleanup.policy", "compact,delete"),
        ]);
        let settings: Vec<_> = report.problems.iter().map(|p| p.setting).collect();
        assert_eq!(settings, ["retention.bytes", "cleanup.policy"]);
        assert!(report
            .explain("b:9092")
            .contains("--add-config retention.bytes=-1,cleanup.policy=delete`"));
    }

    #[test]
    fn settings_the_broker_does_not_report_are_unknown_not_problems() {
        let report = RetentionReport::judge(
            "hr.lifecycle.v1",
            [("retention.ms", Some("-1")), ("retention.bytes", None)],
        );
        assert!(report.problems.is_empty());
        assert_eq!(report.unreported, ["retention.bytes"]);
        let report = judge(&[]);
        assert!(report.problems.is_empty());
        assert_eq!(report.unreported, ["retention.ms", "retention.bytes"]);
    }
}
