//! `hrsync provisioner run` end to end: directory changes on a real
//! Kafka-protocol broker (tansu) become SCIM calls to the real third-party
//! `scim2-server`, with an audit record per operation.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hrsync_bus::{OutgoingRecord, Producer, TopicSpec};
use hrsync_domain::{
    AppAssignment, AuditOperation, AuditOutcome, DirectoryChange, EmployeeId, EmploymentType,
    LifecycleState, PersonId, Profile, TimeZone, Timestamp, WorkerAttributes,
};
use hrsync_provisioner::scim::ScimClient;
use hrsync_tests::{read_topic_until_quiet, Broker, ScimServer, SqliteFile};

const CHANGES: &str = "directory.changes.v1";
const PRIORITY: &str = "directory.changes.priority.v1";
const AUDIT: &str = "provisioning.audit.v1";
const DLQ: &str = "hrsync.provisioner.dlq";

fn change(
    person: &str,
    version: u64,
    state: LifecycleState,
    title: &str,
    apps: &[&str],
) -> DirectoryChange {
    let mut attributes = WorkerAttributes::new("Given", person, EmploymentType::Employee);
    attributes.work_email = Some(format!("{person}@example.com"));
    attributes.title = Some(title.into());
    DirectoryChange {
        person_id: PersonId::new(format!("p-{person}")).unwrap(),
        employee_id: EmployeeId::new(person).unwrap(),
        version,
        lifecycle_state: state,
        profile: Profile {
            attributes,
            time_zone: TimeZone::new("UTC").unwrap(),
            start_at: None,
            terminate_at: None,
        },
        groups: vec![],
        apps: apps
            .iter()
            .map(|a| AppAssignment {
                app: (*a).to_owned(),
                groups: vec![],
            })
            .collect(),
        caused_by: vec![],
        priority: state == LifecycleState::Deprovisioned,
        changed_at: Timestamp::from_millis(1_790_000_000_000).unwrap(),
    }
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn publish(
    producer: &Producer,
    topic: &str,
    changes: &[DirectoryChange],
) -> anyhow::Result<()> {
    for change in changes {
        producer
            .send(OutgoingRecord {
                topic,
                key: change.person_id.as_str().as_bytes(),
                payload: &hrsync_schema::encode_directory_change(change)?,
                headers: &[],
            })
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_changes_reach_the_scim_app() -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let server = ScimServer::start()?;
    let store = SqliteFile::new()?;
    let kafka = broker.kafka_config();
    let specs: Vec<TopicSpec> = [CHANGES, PRIORITY, AUDIT, DLQ]
        .into_iter()
        .map(|t| TopicSpec::new(t, 3))
        .collect();
    hrsync_bus::ensure_topics(&kafka, &specs).await?;
    let producer = Producer::new(&kafka)?;
    use LifecycleState::*;

    // Ada: created, promoted. Bob: his termination (v3, fast lane) overtakes
    // the create and update still queued on the main topic.
    publish(
        &producer,
        PRIORITY,
        &[change("bob", 3, Deprovisioned, "Agent", &[])],
    )
    .await?;
    publish(
        &producer,
        CHANGES,
        &[
            change("ada", 1, Active, "Agent", &["zendesk"]),
            change("bob", 1, Active, "Agent", &["zendesk"]),
            change("ada", 2, Active, "Support Manager", &["zendesk"]),
            change("bob", 2, Active, "Lead", &["zendesk"]),
        ],
    )
    .await?;
    producer
        .send(OutgoingRecord {
            topic: CHANGES,
            key: b"p-x",
            payload: b"not avro",
            headers: &[],
        })
        .await?;

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("hrsync.toml");
    std::fs::write(
        &config,
        format!(
            r#"{kafka}
[telemetry]
log_format = "human"
log_filter = "warn"
listen = "127.0.0.1:0"

[provisioner]
database_url = "{store}"

[[provisioner.apps]]
name = "zendesk"
base_url = "{base}"
token = {{ env = "ZENDESK_TOKEN" }}
"#,
            kafka = broker.kafka_toml(),
            store = store.url(),
            base = server.base_url(),
        ),
    )?;
    let _provisioner = Kill(
        Command::new(env!("CARGO_BIN_EXE_hrsync"))
            .arg("--config")
            .arg(&config)
            .args(["provisioner", "run"])
            .env("ZENDESK_TOKEN", server.token())
            .stdout(Stdio::null())
            .spawn()?,
    );

    let client = ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ada = client.find_user("userName", "ada@example.com").await?;
        if ada
            .as_ref()
            .is_some_and(|u| u["title"] == "Support Manager")
        {
            let ada = ada.unwrap();
            assert_eq!(ada["active"], true);
            assert_eq!(ada["externalId"], "p-ada");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "ada not provisioned: {ada:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Bob's deprovisioning (v3) was applied; whatever ran before it, nothing
    // with a lower version created, updated or reactivated his account after.
    let deadline = Instant::now() + Duration::from_secs(60);
    let audit = loop {
        let audit: Vec<_> =
            read_topic_until_quiet(&broker.bootstrap(), AUDIT, Duration::from_secs(2))?
                .iter()
                .map(|r| hrsync_schema::decode_audit(&r.payload))
                .collect::<Result<_, _>>()?;
        if audit
            .iter()
            .any(|a| a.person_id.as_str() == "p-bob" && a.version == 3)
        {
            break audit;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "bob's v3 never applied: {audit:?}"
        );
    };
    let bob: Vec<_> = audit
        .iter()
        .filter(|a| a.person_id.as_str() == "p-bob")
        .collect();
    let v3 = bob.iter().position(|a| a.version == 3).unwrap();
    for later in &bob[v3 + 1..] {
        assert!(
            later.outcome == AuditOutcome::Skipped,
            "after the deprovisioning: {later:?}"
        );
    }
    if let Some(account) = client.find_user("userName", "bob@example.com").await? {
        assert_eq!(account["active"], false, "bob's account stays deactivated");
    }
    // Ada's create and update are audited.
    let ada_ops: Vec<AuditOperation> = audit
        .iter()
        .filter(|a| a.person_id.as_str() == "p-ada")
        .map(|a| a.operation)
        .collect();
    assert!(ada_ops.contains(&AuditOperation::Create), "{ada_ops:?}");
    assert!(ada_ops.contains(&AuditOperation::Update), "{ada_ops:?}");
    assert!(audit.iter().all(|a| a.app == "zendesk" && a.attempt >= 1));
    // The undecodable record is on the DLQ.
    let dlq = read_topic_until_quiet(&broker.bootstrap(), DLQ, Duration::from_secs(1))?;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].payload, b"not avro");
    Ok(())
}

/// A change the app refused (HTTP 400) is dead-lettered with its context;
/// once the app accepts it, `provisioner redrive` applies it.
#[tokio::test(flavor = "multi_thread")]
async fn dead_lettered_changes_are_redriven() -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let server = ScimServer::start()?;
    let proxy = hrsync_tests::FaultProxy::start(&server.base_url()).await?;
    let store = SqliteFile::new()?;
    let kafka = broker.kafka_config();
    let specs: Vec<TopicSpec> = [CHANGES, PRIORITY, AUDIT, DLQ]
        .into_iter()
        .map(|t| TopicSpec::new(t, 3))
        .collect();
    hrsync_bus::ensure_topics(&kafka, &specs).await?;
    let producer = Producer::new(&kafka)?;
    proxy.inject(
        Some("POST"),
        hrsync_tests::Fault::Status {
            status: 400,
            retry_after: None,
        },
    );
    publish(
        &producer,
        CHANGES,
        &[change(
            "carol",
            1,
            LifecycleState::Active,
            "Agent",
            &["zendesk"],
        )],
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("hrsync.toml");
    std::fs::write(
        &config,
        format!(
            "{kafka}\n[telemetry]\nlog_format = \"human\"\nlog_filter = \"warn\"\nlisten = \"127.0.0.1:0\"\n\n[provisioner]\ndatabase_url = \"{store}\"\n\n[[provisioner.apps]]\nname = \"zendesk\"\nbase_url = \"{base}\"\ntoken = {{ env = \"ZENDESK_TOKEN\" }}\nuse_patch = true\n",
            kafka = broker.kafka_toml(),
            store = store.url(),
            base = proxy.url(),
        ),
    )?;
    let hrsync = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hrsync"));
        command
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("ZENDESK_TOKEN", server.token());
        command
    };
    let running = Kill(
        hrsync(&["provisioner", "run"])
            .stdout(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let parked = loop {
        let dlq = read_topic_until_quiet(&broker.bootstrap(), DLQ, Duration::from_millis(700))?;
        if !dlq.is_empty() {
            break dlq;
        }
        anyhow::ensure!(Instant::now() < deadline, "nothing dead-lettered");
    };
    drop(running);
    let error = parked[0]
        .headers
        .iter()
        .find(|(k, _)| k == "hrsync.dlq.error")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    assert!(
        error.contains("p-carol") && error.contains("zendesk") && error.contains("400"),
        "{error}"
    );
    let client = ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;
    assert!(client
        .find_user("userName", "carol@example.com")
        .await?
        .is_none());

    // While another process replays the dead letters, a redrive refuses
    // to start (the two would share the consumer group), recording nothing.
    let db = hrsync_store::Db::connect(&store.url(), 1).await?;
    let other = db
        .try_claim(hrsync_provisioner::run::REDRIVE_CLAIM)
        .await?
        .expect("no redrive is running");
    let output = hrsync(&["provisioner", "redrive", "--idle-seconds", "3"]).output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        stderr.contains("another redrive of the provisioner's dead letters is running"),
        "{stderr}"
    );
    other.release().await;

    // The app accepts it now: redrive applies it.
    let output = hrsync(&["provisioner", "redrive", "--idle-seconds", "3"])
        .env("USER", "ops-alice")
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("1 dead-lettered change(s) replayed"),
        "{stdout}"
    );
    // The redrive is an admin action, recorded with who ran it.
    let recorded = hrsync_store::actions::search(
        &db,
        &hrsync_store::actions::ActionFilter {
            limit: 10,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(
        (
            recorded[0].action.as_str(),
            recorded[0].subject.as_str(),
            recorded[0].via.as_str(),
            recorded[0].outcome.as_str(),
        ),
        ("dlq.redrive", "ops-alice", "cli", "ok")
    );
    assert!(
        recorded[0].detail.contains("\"replayed\":1"),
        "{recorded:?}"
    );
    let carol = client.find_user("userName", "carol@example.com").await?;
    assert_eq!(
        carol.map(|c| c["active"].clone()),
        Some(serde_json::json!(true))
    );
    Ok(())
}

/// A create refused as a conflict with an account the app's match chain
/// cannot find (here it matches by `externalId`, the existing account holds
/// the `userName` under another one) is dead-lettered once, with an error
/// naming the attributes and not the value, after a single create: no
/// retry loop. Once the account is corrected in the app, redrive links it.
#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_no_account_matches_is_dead_lettered_once() -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let server = ScimServer::start()?;
    let proxy = hrsync_tests::FaultProxy::start(&server.base_url()).await?;
    let store = SqliteFile::new()?;
    let kafka = broker.kafka_config();
    let specs: Vec<TopicSpec> = [CHANGES, PRIORITY, AUDIT, DLQ]
        .into_iter()
        .map(|t| TopicSpec::new(t, 3))
        .collect();
    hrsync_bus::ensure_topics(&kafka, &specs).await?;
    let client = ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;
    let existing = client
        .create(
            "Users",
            &serde_json::json!({
                "schemas": [hrsync_provisioner::scim::USER_SCHEMA],
                "userName": "dana@example.com",
                "externalId": "someone-else",
            }),
        )
        .await?;
    let existing_id = existing["id"].as_str().unwrap_or_default().to_owned();
    publish(
        &Producer::new(&kafka)?,
        CHANGES,
        &[change(
            "dana",
            1,
            LifecycleState::Active,
            "Agent",
            &["zendesk"],
        )],
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("hrsync.toml");
    std::fs::write(
        &config,
        format!(
            "{kafka}\n[telemetry]\nlog_format = \"human\"\nlog_filter = \"warn\"\nlisten = \"127.0.0.1:0\"\n\n[provisioner]\ndatabase_url = \"{store}\"\n\n[[provisioner.apps]]\nname = \"zendesk\"\nbase_url = \"{base}\"\ntoken = {{ env = \"ZENDESK_TOKEN\" }}\nmatch_attributes = [\"externalId\"]\npush_groups = false\n",
            kafka = broker.kafka_toml(),
            store = store.url(),
            base = proxy.url(),
        ),
    )?;
    let hrsync = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hrsync"));
        command
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("ZENDESK_TOKEN", server.token());
        command
    };
    let running = Kill(
        hrsync(&["provisioner", "run"])
            .stdout(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dlq = read_topic_until_quiet(&broker.bootstrap(), DLQ, Duration::from_millis(700))?;
        if !dlq.is_empty() {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "nothing dead-lettered");
    }
    // Given time to loop, it does not: one record, one create.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let parked = read_topic_until_quiet(&broker.bootstrap(), DLQ, Duration::from_millis(700))?;
    drop(running);
    assert_eq!(parked.len(), 1, "dead-lettered once");
    let creates = proxy
        .seen()
        .iter()
        .filter(|r| r.starts_with("POST /Users"))
        .count();
    assert_eq!(creates, 1, "{:?}", proxy.seen());
    let error = parked[0]
        .headers
        .iter()
        .find(|(k, _)| k == "hrsync.dlq.error")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    assert!(
        error.contains("HTTP 409")
            && error.contains("whose userName conflicts")
            && error.contains("no account matches by externalId"),
        "{error}"
    );
    assert!(!error.contains("dana@example.com"), "no value: {error}");
    assert_eq!(
        client
            .find("Users", "userName", "dana@example.com")
            .await?
            .len(),
        1
    );

    // The admin gives the account its person id: redrive links it.
    client
        .patch(
            "Users",
            &existing_id,
            &[hrsync_provisioner::scim::PatchOp::replace(
                "externalId",
                serde_json::json!("p-dana"),
            )],
        )
        .await?;
    let output = hrsync(&["provisioner", "redrive", "--idle-seconds", "3"]).output()?;
    assert!(output.status.success(), "{output:?}");
    let dana = client.get("Users", &existing_id).await?.unwrap_or_default();
    assert_eq!(dana["title"], "Agent", "linked and updated: {dana}");
    assert_eq!(
        client
            .find("Users", "userName", "dana@example.com")
            .await?
            .len(),
        1
    );
    Ok(())
}
