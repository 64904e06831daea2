//! Topic retention on a real Kafka-protocol broker (tansu): the lifecycle
//! topics are created keeping every record, the others with their
//! configured retention, and an existing lifecycle topic that lets the
//! broker remove records is refused unless the config allows it.

use std::collections::BTreeMap;
use std::time::Duration;

use hrsync_bus::{
    check_lifecycle_retention, describe_lifecycle_retention, ensure_topics, Error, KafkaConfig,
    TopicSpec, TopicsConfig,
};
use hrsync_tests::Broker;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

/// Each topic's settings as the broker describes them, read with
/// rdkafka's DescribeConfigs directly (not through hrsync's check).
async fn settings(
    kafka: &KafkaConfig,
    topics: &[&str],
) -> anyhow::Result<BTreeMap<String, BTreeMap<String, String>>> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config("test-admin")?.create()?;
    let resources: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let mut by_topic = BTreeMap::new();
    for (topic, result) in topics
        .iter()
        .zip(admin.describe_configs(&resources, &options).await?)
    {
        let resource = result.map_err(|code| anyhow::anyhow!("describing {topic}: {code}"))?;
        by_topic.insert(
            (*topic).to_owned(),
            resource
                .entries
                .into_iter()
                .filter_map(|e| Some((e.name, e.value?)))
                .collect(),
        );
    }
    Ok(by_topic)
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_topics_creates_the_lifecycle_topics_keeping_every_record() -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let kafka = broker.kafka_config();
    let topics = TopicsConfig::default();
    ensure_topics(&kafka, &topics.specs(&kafka)).await?;

    let all = [
        "hr.lifecycle.v1",
        "hr.lifecycle.priority.v1",
        "directory.changes.v1",
        "directory.changes.priority.v1",
        "provisioning.audit.v1",
        "hrsync.ingest.dlq",
        "hrsync.projector.dlq",
        "hrsync.provisioner.dlq",
        "hrsync.hooks.dlq",
    ];
    let read = settings(&kafka, &all).await?;
    let value = |topic: &str, key: &str| read[topic].get(key).map(String::as_str);
    for topic in ["hr.lifecycle.v1", "hr.lifecycle.priority.v1"] {
        assert_eq!(
            value(topic, "retention.ms"),
            Some("-1"),
            "{topic}: {read:?}"
        );
        assert_eq!(
            value(topic, "retention.bytes"),
            Some("-1"),
            "{topic}: {read:?}"
        );
    }
    let thirty_days = "2592000000";
    for topic in [
        "directory.changes.v1",
        "directory.changes.priority.v1",
        "hrsync.ingest.dlq",
        "hrsync.projector.dlq",
        "hrsync.provisioner.dlq",
        "hrsync.hooks.dlq",
    ] {
        assert_eq!(value(topic, "retention.ms"), Some(thirty_days), "{topic}");
    }
    assert_eq!(
        value("provisioning.audit.v1", "retention.ms"),
        Some("31536000000")
    );

    // hrsync's own check reads the same and finds nothing to complain of.
    for report in describe_lifecycle_retention(&kafka, &topics).await? {
        assert!(report.problems.is_empty(), "{report:?}");
        assert!(report.unreported.is_empty(), "{report:?}");
    }
    check_lifecycle_retention(&kafka, &topics).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_retention_reaches_the_created_topics() -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let kafka = broker.kafka_config();
    let topics = TopicsConfig {
        directory_retention_ms: 86_400_000,
        audit_retention_ms: -1,
        dlq_retention_ms: 3_600_000,
        ..TopicsConfig::default()
    };
    ensure_topics(&kafka, &topics.specs(&kafka)).await?;
    let read = settings(
        &kafka,
        &[
            "directory.changes.priority.v1",
            "provisioning.audit.v1",
            "hrsync.provisioner.dlq",
        ],
    )
    .await?;
    let ms = |topic: &str| read[topic].get("retention.ms").map(String::as_str);
    assert_eq!(ms("directory.changes.priority.v1"), Some("86400000"));
    assert_eq!(ms("provisioning.audit.v1"), Some("-1"));
    assert_eq!(ms("hrsync.provisioner.dlq"), Some("3600000"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_lifecycle_topic_with_finite_retention_is_refused_unless_allowed(
) -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let kafka = broker.kafka_config();
    // Created before hrsync, the way a broker's defaults would have it.
    ensure_topics(
        &kafka,
        &[TopicSpec::new("hr.lifecycle.priority.v1", 3)
            .with_config("retention.ms", "604800000")
            .with_config("retention.bytes", "-1")],
    )
    .await?;
    let topics = TopicsConfig::default();
    ensure_topics(&kafka, &topics.specs(&kafka)).await?;

    let reports = describe_lifecycle_retention(&kafka, &topics).await?;
    assert!(reports[0].problems.is_empty(), "{reports:?}");
    assert_eq!(reports[1].topic, "hr.lifecycle.priority.v1");
    assert_eq!(reports[1].problems.len(), 1, "{reports:?}");

    let error = check_lifecycle_retention(&kafka, &topics)
        .await
        .expect_err("finite retention on a lifecycle topic must be refused");
    assert!(matches!(error, Error::LifecycleRetention(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("lifecycle topic hr.lifecycle.priority.v1 has retention.ms=604800000"),
        "{text}"
    );
    assert!(
        text.contains("--entity-name hr.lifecycle.priority.v1 --add-config retention.ms=-1"),
        "{text}"
    );

    let allowed = TopicsConfig {
        allow_finite_lifecycle_retention: true,
        ..TopicsConfig::default()
    };
    check_lifecycle_retention(&kafka, &allowed).await?;
    Ok(())
}
