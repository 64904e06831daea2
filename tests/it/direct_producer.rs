//! Another team's producer, `examples/python-producer/produce_hire.py`
//! (confluent-kafka + fastavro), publishes lifecycle events straight onto a
//! topic of a real Kafka-protocol broker (tansu). hrsync's consumer reads them
//! and its codec decodes exactly the events the script reports it sent: same
//! key, bytes, fingerprint, fields and deterministic event ids.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use hrsync_bus::{
    ensure_topics, Consumer, ConsumerSettings, DlqPublisher, Handler, KafkaConfig, Outcome,
    OutgoingRecord, Producer, Record, TopicSpec,
};
use hrsync_domain::{
    Attribute, AttributeValue, EmployeeId, EventId, EventKind, Hire, LifecycleEvent,
    LifecyclePayload, NaiveDate, SourceSystem, Terminate, TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_schema::Contract;
use hrsync_tests::{tools_dir, unique, Broker};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One record as the script reports it on stdout after the broker
/// acknowledged it.
#[derive(Debug)]
struct Sent {
    partition: i32,
    offset: i64,
    key: String,
    /// `0x`-prefixed CRC-64-AVRO fingerprint the script computed.
    fingerprint: String,
    /// The record value as produced.
    value: Vec<u8>,
    /// The event as JSON (`payload.type` names the union branch).
    event: Value,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// The Python of the harness's venv, where `scripts/test` installs the
/// example's requirements.
fn venv_python() -> anyhow::Result<PathBuf> {
    let python = tools_dir().join("venv/bin/python");
    ensure!(
        python.is_file(),
        "{} is missing. Run `bash scripts/test`: it creates the venv and installs \
         examples/python-producer/requirements.txt into it",
        python.display()
    );
    Ok(python)
}

fn hex_bytes(hex: &str) -> anyhow::Result<Vec<u8>> {
    ensure!(hex.len().is_multiple_of(2), "odd-length hex {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).with_context(|| format!("hex {hex:?}")))
        .collect()
}

fn text<'a>(value: &'a Value, field: &str) -> anyhow::Result<&'a str> {
    value[field]
        .as_str()
        .with_context(|| format!("{field} is not a string in {value}"))
}

fn optional(value: &Value, field: &str) -> anyhow::Result<Option<String>> {
    match &value[field] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => bail!("{field} is neither null nor a string: {other}"),
    }
}

fn integer(value: &Value, field: &str) -> anyhow::Result<i64> {
    value[field]
        .as_i64()
        .with_context(|| format!("{field} is not an integer in {value}"))
}

fn parse_sent(line: &str, topic: &str) -> anyhow::Result<Sent> {
    let json: Value =
        serde_json::from_str(line).with_context(|| format!("script printed {line:?}"))?;
    ensure!(text(&json, "topic")? == topic, "wrong topic in {json}");
    Ok(Sent {
        partition: i32::try_from(integer(&json, "partition")?)?,
        offset: integer(&json, "offset")?,
        key: text(&json, "key")?.to_owned(),
        fingerprint: text(&json, "fingerprint")?.to_owned(),
        value: hex_bytes(text(&json, "value_hex")?)?,
        event: json["event"].clone(),
    })
}

/// Runs the example against `broker` and returns what it reports it sent.
async fn run_example(
    broker: &Broker,
    topic: &str,
    employee: &str,
    source: &str,
) -> anyhow::Result<Vec<Sent>> {
    let python = venv_python()?;
    let script = repo_root().join("examples/python-producer/produce_hire.py");
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(&script)
        .args(["--brokers", &broker.bootstrap(), "--topic", topic])
        .args(["--employee-id", employee, "--source-system", source])
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .context("produce_hire.py did not finish within 90 s")?
        .with_context(|| format!("starting {}", python.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "produce_hire.py failed ({}):\n{stderr}\n(ModuleNotFoundError means the venv lacks the \
         example's requirements: run `bash scripts/test`)\nbroker log:\n{}",
        output.status,
        broker.log_tail()
    );
    let stdout = String::from_utf8(output.stdout)?;
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| parse_sent(line, topic))
        .collect()
}

/// The event the script describes in JSON, built from hrsync's domain types.
/// The event id is taken as printed (not derived), so the test can check the
/// derivation separately.
fn expected_event(json: &Value) -> anyhow::Result<LifecycleEvent> {
    let payload = &json["payload"];
    let payload = match text(payload, "type")? {
        "hrsync.v1.Hire" => {
            let a = &payload["attributes"];
            let custom: BTreeMap<String, String> = a["custom"]
                .as_object()
                .context("custom is not an object")?
                .iter()
                .map(|(k, v)| Ok((k.clone(), v.as_str().context("custom value")?.to_owned())))
                .collect::<anyhow::Result<_>>()?;
            // Every standard attribute of the domain's list, by name.
            let mut attributes = WorkerAttributes::blank();
            for attribute in Attribute::STANDARD {
                let value = optional(a, &attribute.as_str())?;
                attributes
                    .set(&attribute, AttributeValue::Text(value))
                    .with_context(|| format!("attribute {attribute}"))?;
            }
            attributes.custom = custom;
            LifecyclePayload::Hire(Hire { attributes })
        }
        "hrsync.v1.Terminate" => LifecyclePayload::Terminate(Terminate {
            immediate: payload["immediate"]
                .as_bool()
                .context("immediate is not a boolean")?,
            last_day_worked: optional(payload, "last_day_worked")?
                .map(|d| d.parse::<NaiveDate>())
                .transpose()?,
            reason: optional(payload, "reason")?,
        }),
        other => bail!("the example is not expected to send {other}"),
    };
    Ok(LifecycleEvent {
        event_id: EventId::new(text(json, "event_id")?)?,
        employee_id: EmployeeId::new(text(json, "employee_id")?)?,
        source_system: SourceSystem::new(text(json, "source_system")?)?,
        occurred_at: Timestamp::from_millis(integer(json, "occurred_at")?)?,
        effective_at: Timestamp::from_millis(integer(json, "effective_at")?)?,
        time_zone: TimeZone::new(text(json, "time_zone")?)?,
        payload,
    })
}

/// Hands every record over together with its decoding.
struct DecodingHandler(mpsc::UnboundedSender<(Record, Result<LifecycleEvent, String>)>);

impl Handler for DecodingHandler {
    async fn handle(&mut self, record: &Record) -> Outcome {
        let decoded =
            hrsync_schema::decode_lifecycle(record.payload.as_deref().unwrap_or_default())
                .map_err(|e| e.to_string());
        let _ = self.0.send((record.clone(), decoded));
        Outcome::Done
    }
}

/// Reads `count` records of `topic` from the beginning with hrsync's consumer.
async fn consume(
    kafka: &KafkaConfig,
    topic: &str,
    count: usize,
) -> anyhow::Result<Vec<(Record, Result<LifecycleEvent, String>)>> {
    let mut settings = ConsumerSettings::new("direct-producer-test", &unique("group"), &[topic]);
    settings.session_timeout = Duration::from_secs(6);
    let consumer = Consumer::new(kafka, settings)?;
    // The handler never reports poison, so nothing is ever written here.
    let dlq = DlqPublisher::new(
        Producer::new(kafka)?,
        format!("{topic}.dlq"),
        "direct-producer-test",
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        consumer
            .run(DecodingHandler(tx), &dlq, token)
            .await
            .map(|_| ())
    });
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .with_context(|| format!("only {} of {count} records arrived in 60 s", seen.len()))?
            .context("consumer stopped")?;
        seen.push(next);
    }
    shutdown.cancel();
    task.await??;
    Ok(seen)
}

/// Hire and immediate Terminate from the Python example arrive unchanged, in
/// order, on one partition; hrsync decodes them to exactly the events the
/// script sent, recognises their ids as its own derivation, and its own
/// producer puts the same key on the same partition. A second run gives the
/// same event ids.
#[tokio::test(flavor = "multi_thread")]
async fn python_producer_events_decode_in_hrsync() -> anyhow::Result<()> {
    hrsync_telemetry::init_for_tests();
    let broker = Broker::start()?;
    let kafka = broker.kafka_config();
    let topic = unique("hr.lifecycle.v1");
    ensure_topics(&kafka, &[TopicSpec::new(&topic, 3)]).await?;
    let employee = unique("E");
    let source = "partner-hr";

    let first = run_example(&broker, &topic, &employee, source).await?;
    let second = run_example(&broker, &topic, &employee, source).await?;
    let kinds = |sent: &[Sent]| -> Vec<String> {
        sent.iter()
            .map(|s| {
                s.event["payload"]["type"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned()
            })
            .collect()
    };
    for run in [&first, &second] {
        assert_eq!(
            kinds(run),
            ["hrsync.v1.Hire", "hrsync.v1.Terminate"],
            "the script sends a hire, then a terminate"
        );
    }

    // The fingerprint fastavro computed from the parsing canonical form is
    // the one hrsync computes for the same schema file.
    let fingerprint = hrsync_schema::fingerprint(Contract::Lifecycle)?;
    for sent in first.iter().chain(&second) {
        assert_eq!(
            sent.fingerprint,
            format!("{fingerprint:#018x}"),
            "Python and hrsync disagree on the CRC-64-AVRO fingerprint of hr.lifecycle.v1"
        );
        assert_eq!(sent.value[..2], hrsync_schema::framing::MARKER);
        assert_eq!(sent.value[2..10], fingerprint.to_le_bytes());
        assert_eq!(sent.key, employee, "key = employee id");
    }

    let records = consume(&kafka, &topic, first.len() + second.len()).await?;
    let mut decoded = Vec::new();
    for sent in first.iter().chain(&second) {
        let (record, event) = records
            .iter()
            .find(|(r, _)| r.partition == sent.partition && r.offset == sent.offset)
            .with_context(|| {
                format!(
                    "no record at the script's {topic}/{}@{}",
                    sent.partition, sent.offset
                )
            })?;
        assert_eq!(record.key_str(), Some(employee.as_str()), "record key");
        assert_eq!(
            record.payload.as_deref(),
            Some(sent.value.as_slice()),
            "bytes arrive unchanged"
        );
        let event = match event {
            Ok(event) => event.clone(),
            Err(error) => panic!("hrsync cannot decode {}: {error}", record.position()),
        };
        assert_eq!(
            event,
            expected_event(&sent.event)?,
            "decoded event equals what the script sent"
        );
        assert!(
            event.has_derived_id(),
            "the script's event id {} is not hrsync's EventId::derive ({})",
            event.event_id,
            event.derived_id()
        );
        decoded.push(event);
    }

    // The events themselves, field by field.
    let (hire, terminate) = (&decoded[0], &decoded[1]);
    for (event, sent) in decoded.iter().zip(first.iter().chain(&second)) {
        assert_eq!(event.employee_id.as_str(), employee);
        assert_eq!(event.source_system.as_str(), source);
        assert_eq!(
            event.time_zone.name(),
            text(&sent.event, "time_zone")?,
            "time zone"
        );
        assert_eq!(
            event.effective_at.as_millis(),
            integer(&sent.event, "effective_at")?
        );
        assert_eq!(
            event.occurred_at.as_millis(),
            integer(&sent.event, "occurred_at")?
        );
    }
    assert_eq!(hire.kind(), EventKind::Hire);
    assert_eq!(terminate.kind(), EventKind::Terminate);
    match &hire.payload {
        LifecyclePayload::Hire(Hire { attributes }) => {
            let sent = &first[0].event["payload"]["attributes"];
            assert_eq!(attributes.given_name, text(sent, "given_name")?);
            assert_eq!(attributes.family_name, text(sent, "family_name")?);
            assert_eq!(attributes.work_email, optional(sent, "work_email")?);
            assert_eq!(
                attributes.employment_type.as_str(),
                text(sent, "employment_type")?
            );
            assert!(!attributes.custom.is_empty(), "custom attributes arrive");
        }
        other => panic!("first event is not a hire: {other:?}"),
    }
    match &terminate.payload {
        LifecyclePayload::Terminate(t) => {
            assert!(t.immediate, "the terminate is immediate");
            assert_eq!(
                t.last_day_worked.map(|d| d.to_string()),
                optional(&first[1].event["payload"], "last_day_worked")?
            );
        }
        other => panic!("second event is not a terminate: {other:?}"),
    }

    // One worker's events share a partition, in send order.
    let partition = first[0].partition;
    assert!(first
        .iter()
        .chain(&second)
        .all(|s| s.partition == partition));
    assert!(first[0].offset < first[1].offset && first[1].offset < second[0].offset);

    // Deterministic ids: the same changes sent again carry the same ids.
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.event["event_id"], b.event["event_id"], "stable event id");
    }
    assert_ne!(hire.event_id, terminate.event_id);

    // hrsync's own producer puts this key on the same partition, so the
    // worker's events from both producers stay in one order.
    let delivery = Producer::new(&kafka)?
        .send(OutgoingRecord {
            topic: &topic,
            key: employee.as_bytes(),
            payload: &hrsync_schema::encode_lifecycle(hire)?,
            headers: &[],
        })
        .await?;
    assert_eq!(
        delivery.partition, partition,
        "hrsync's producer and the example partition keys alike"
    );
    Ok(())
}
