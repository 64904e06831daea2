//! Lifecycle events through hrsync-bus and the codec, against a real
//! Kafka-protocol broker (tansu): trace continuation and the dead-letter
//! topic.

use std::time::Duration;

use hrsync_bus::{
    ensure_topics, Consumer, ConsumerSettings, DlqPublisher, Handler, KafkaConfig, Outcome,
    OutgoingRecord, Producer, Record, TopicSpec,
};
use hrsync_domain::{
    EmployeeId, EmploymentType, Hire, LifecycleEvent, LifecyclePayload, SourceSystem, TimeZone,
    Timestamp, WorkerAttributes,
};
use hrsync_telemetry::propagation::trace_id;
use hrsync_tests::{unique, Broker};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What the test handler saw for one record.
#[derive(Debug)]
enum Seen {
    Event {
        event: Box<LifecycleEvent>,
        trace_id: Option<String>,
    },
    Poison(String),
}

/// Decodes lifecycle events; undecodable records are poison.
struct DecodingHandler(mpsc::UnboundedSender<Seen>);

impl Handler for DecodingHandler {
    async fn handle(&mut self, record: &Record) -> Outcome {
        match hrsync_schema::decode_lifecycle(record.payload.as_deref().unwrap_or_default()) {
            Ok(event) => {
                let trace_id = trace_id(&tracing::Span::current());
                let _ = self.0.send(Seen::Event {
                    event: Box::new(event),
                    trace_id,
                });
                Outcome::Done
            }
            Err(error) => {
                let reason = format!("undecodable lifecycle event: {error}");
                let _ = self.0.send(Seen::Poison(reason.clone()));
                Outcome::Poison(reason)
            }
        }
    }
}

/// Hands every record over as is.
struct CollectingHandler(mpsc::UnboundedSender<Record>);

impl Handler for CollectingHandler {
    async fn handle(&mut self, record: &Record) -> Outcome {
        let _ = self.0.send(record.clone());
        Outcome::Done
    }
}

/// Runs a consumer group member in the background until the returned token
/// is cancelled.
fn spawn_consumer<H: Handler + 'static>(
    kafka: &KafkaConfig,
    settings: ConsumerSettings,
    handler: H,
    dlq: DlqPublisher,
) -> anyhow::Result<(CancellationToken, tokio::task::JoinHandle<()>)> {
    let mut settings = settings;
    settings.session_timeout = Duration::from_secs(6);
    let consumer = Consumer::new(kafka, settings)?;
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        consumer
            .run(handler, &dlq, token)
            .await
            .expect("consumer loop");
    });
    Ok((shutdown, task))
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("nothing arrived within 60 s")
        .expect("channel open")
}

fn hire(employee: &str) -> LifecycleEvent {
    let mut attributes = WorkerAttributes::new("Ada", "Lovelace", EmploymentType::Employee);
    attributes.department = Some("Customer Support".to_owned());
    attributes.work_email = Some("ada@example.com".to_owned());
    attributes
        .custom
        .insert("badge".to_owned(), "B-17".to_owned());
    LifecycleEvent::new(
        SourceSystem::new("workday").unwrap(),
        EmployeeId::new(employee).unwrap(),
        Timestamp::from_millis(1_790_000_000_000).unwrap(),
        Timestamp::from_millis(1_790_200_000_000).unwrap(),
        TimeZone::new("Europe/Berlin").unwrap(),
        LifecyclePayload::Hire(Hire { attributes }),
    )
    .unwrap()
}

async fn topics(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<String> {
    let dlq = format!("{topic}.dlq");
    ensure_topics(kafka, &[TopicSpec::new(topic, 3), TopicSpec::new(&dlq, 1)]).await?;
    Ok(dlq)
}

/// A hire event published inside a traced span arrives at a consumer group
/// member decoded to the same value, and the consumer's span continues the
/// producer's trace.
#[tokio::test(flavor = "multi_thread")]
async fn hire_event_round_trips_through_the_broker_with_its_trace() -> anyhow::Result<()> {
    hrsync_telemetry::init_for_tests();
    let broker = Broker::start()?;
    let kafka = broker.kafka_config();
    let topic = unique("hr.lifecycle");
    let dlq_topic = topics(&kafka, &topic).await?;
    let producer = Producer::new(&kafka)?;

    let event = hire("E-1001");
    let payload = hrsync_schema::encode_lifecycle(&event)?;
    let span = tracing::info_span!("ingest.publish", employee = "E-1001");
    let produced_trace = trace_id(&span).expect("the publishing span is traced");
    producer
        .send(OutgoingRecord {
            topic: &topic,
            key: event.employee_id.as_str().as_bytes(),
            payload: &payload,
            headers: &[],
        })
        .instrument(span)
        .await?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let settings = ConsumerSettings::new("projector", &unique("group"), &[&topic]);
    let (shutdown, task) = spawn_consumer(
        &kafka,
        settings,
        DecodingHandler(tx),
        DlqPublisher::new(producer.clone(), &dlq_topic, "projector"),
    )?;
    match next(&mut rx).await {
        Seen::Event {
            event: got,
            trace_id,
        } => {
            assert_eq!(*got, event, "decoded event equals the published one");
            assert!(got.has_derived_id(), "deterministic id survives the trip");
            assert_eq!(
                trace_id.as_deref(),
                Some(produced_trace.as_str()),
                "consumer span continues the producer's trace"
            );
        }
        Seen::Poison(reason) => panic!("hire event was poison: {reason}"),
    }
    shutdown.cancel();
    task.await?;
    Ok(())
}

/// A record that cannot be decoded lands on the dead-letter topic with its
/// key, bytes and headers intact plus where it came from and why; the
/// consumer then goes on with the next record.
#[tokio::test(flavor = "multi_thread")]
async fn poison_record_lands_in_the_dlq_intact_and_the_consumer_moves_on() -> anyhow::Result<()> {
    hrsync_telemetry::init_for_tests();
    let broker = Broker::start()?;
    let kafka = broker.kafka_config();
    let topic = unique("hr.lifecycle");
    let dlq_topic = topics(&kafka, &topic).await?;
    let producer = Producer::new(&kafka)?;

    // Single-object marker and a fingerprint no schema has, then junk.
    let poison: Vec<u8> = [0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0xFF, 0x00, 0x80]
        .into_iter()
        .collect();
    let sent = producer
        .send(OutgoingRecord {
            topic: &topic,
            key: b"E-404",
            payload: &poison,
            headers: &[
                ("x-source-batch", b"payroll-7"),
                ("x-binary", &[0, 159, 255]),
            ],
        })
        .await?;
    // A good record after it, on the same key (same partition, so after it).
    let good = hire("E-404");
    producer
        .send(OutgoingRecord {
            topic: &topic,
            key: b"E-404",
            payload: &hrsync_schema::encode_lifecycle(&good)?,
            headers: &[],
        })
        .await?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let settings = ConsumerSettings::new("projector", &unique("group"), &[&topic]);
    let (shutdown, task) = spawn_consumer(
        &kafka,
        settings,
        DecodingHandler(tx),
        DlqPublisher::new(producer.clone(), &dlq_topic, "projector"),
    )?;
    let reason = match next(&mut rx).await {
        Seen::Poison(reason) => reason,
        other => panic!("expected the poison record first, got {other:?}"),
    };
    assert!(
        reason.contains("fingerprint"),
        "reason names the cause: {reason}"
    );
    match next(&mut rx).await {
        Seen::Event { event, .. } => assert_eq!(*event, good, "consumer moved on"),
        other => panic!("expected the good record after the poison, got {other:?}"),
    }
    shutdown.cancel();
    task.await?;

    // Read the dead-letter topic back.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let settings = ConsumerSettings::new("dlq-reader", &unique("group"), &[&dlq_topic]);
    let (shutdown, task) = spawn_consumer(
        &kafka,
        settings,
        CollectingHandler(tx),
        DlqPublisher::new(producer.clone(), format!("{dlq_topic}.dlq"), "dlq-reader"),
    )?;
    let parked = next(&mut rx).await;
    shutdown.cancel();
    task.await?;

    assert_eq!(parked.key.as_deref(), Some(b"E-404".as_slice()));
    assert_eq!(parked.payload.as_deref(), Some(poison.as_slice()));
    assert_eq!(
        parked.header("x-source-batch"),
        Some(b"payroll-7".as_slice())
    );
    assert_eq!(parked.header("x-binary"), Some([0u8, 159, 255].as_slice()));
    let text = |name: &str| {
        String::from_utf8(
            parked
                .header(name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .to_vec(),
        )
        .unwrap()
    };
    assert_eq!(text("hrsync.dlq.topic"), topic);
    assert_eq!(text("hrsync.dlq.partition"), sent.partition.to_string());
    assert_eq!(text("hrsync.dlq.offset"), sent.offset.to_string());
    assert_eq!(text("hrsync.dlq.stage"), "projector");
    assert_eq!(text("hrsync.dlq.error"), reason);
    assert!(
        chrono::DateTime::parse_from_rfc3339(&text("hrsync.dlq.failed_at")).is_ok(),
        "failed_at is RFC 3339"
    );
    assert!(text("hrsync.dlq.timestamp").parse::<i64>().is_ok());
    Ok(())
}
