//! `hrsync ingest serve`: the push API, end to end against tansu and
//! PostgreSQL.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hrsync_domain::{EventKind, LifecyclePayload};
use hrsync_tests::{read_topic, Broker, Issuer, PgDatabase, HRSYNC_AUDIENCE};
use serde_json::{json, Value};

const TOKEN: &str = "push-test-token-3f9a";

struct Server {
    child: Child,
    base: String,
    metrics: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start(broker: &Broker, db_url: &str) -> anyhow::Result<Server> {
    start_with(broker, db_url, "")
}

/// The push API with `extra` TOML appended to its configuration.
fn start_with(broker: &Broker, db_url: &str, extra: &str) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let metrics_port = free_port();
    let config = dir.path().join("hrsync.toml");
    std::fs::write(
        &config,
        format!(
            r#"
{kafka}
[telemetry]
log_format = "human"
log_filter = "warn"
listen = "127.0.0.1:{metrics_port}"

[ingest]
database_url = "{db_url}"

[ingest.push]
listen = "127.0.0.1:{port}"
token = {{ env = "PUSH_TOKEN" }}
body_limit_bytes = 4096
source_system = "successfactors"
{extra}
"#,
            kafka = broker.kafka_toml()
        ),
    )?;
    let child = Command::new(env!("CARGO_BIN_EXE_hrsync"))
        .arg("--config")
        .arg(&config)
        .args(["ingest", "serve"])
        .env("PUSH_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .spawn()?;
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        metrics: format!("http://127.0.0.1:{metrics_port}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "push API did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

async fn post(
    server: &Server,
    token: Option<&str>,
    key: Option<&str>,
    body: String,
) -> anyhow::Result<(u16, Value)> {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/events", server.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

fn hire() -> Value {
    json!({
        "type": "hire",
        "employee_id": "P-100",
        "time_zone": "Europe/Vienna",
        "effective_at": "2027-02-01T00:00:00+01:00",
        "attributes": {
            "given_name": "Paula",
            "family_name": "Pichler",
            "employment_type": "employee",
            "department": "Customer Support",
            "work_email": "paula@acme.test",
            "custom.badge": "B-100"
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn pushed_events_are_validated_published_and_idempotent() -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let db = PgDatabase::fresh().await?;
    let server = start(&broker, db.url())?;
    let topic = |name: &str| read_topic(&broker.bootstrap(), name);

    // Authentication.
    let (status, body) = post(&server, None, None, hire().to_string()).await?;
    assert_eq!(status, 401, "{body}");
    let (status, _) = post(&server, Some("wrong"), None, hire().to_string()).await?;
    assert_eq!(status, 401);
    assert!(topic("hr.lifecycle.v1")?.is_empty());

    // A hire with an idempotency key.
    let (status, body) = post(&server, Some(TOKEN), Some("req-1"), hire().to_string()).await?;
    assert_eq!(status, 202, "{body}");
    let event_id = body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(body["priority"], false);
    let records = topic("hr.lifecycle.v1")?;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key, b"P-100");
    let event = hrsync_schema::decode_lifecycle(&records[0].payload)?;
    assert_eq!(event.event_id.to_string(), event_id);
    assert_eq!(event.source_system.as_str(), "successfactors");
    assert_eq!(event.time_zone.name(), "Europe/Vienna");
    assert_eq!(
        event.effective_at.as_datetime().to_rfc3339(),
        "2027-01-31T23:00:00+00:00"
    );
    let LifecyclePayload::Hire(h) = &event.payload else {
        panic!("hire expected")
    };
    assert_eq!(h.attributes.department.as_deref(), Some("Customer Support"));
    assert_eq!(h.attributes.custom["badge"], "B-100");

    // The retry answers the same event and publishes nothing new.
    let (status, body) = post(&server, Some(TOKEN), Some("req-1"), hire().to_string()).await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["event_id"], event_id.as_str());
    assert_eq!(body["replayed"], true);
    assert_eq!(topic("hr.lifecycle.v1")?.len(), 1);
    // The same key with another body is a conflict.
    let mut other = hire();
    other["attributes"]["department"] = json!("Sales");
    let (status, body) = post(&server, Some(TOKEN), Some("req-1"), other.to_string()).await?;
    assert_eq!(status, 409, "{body}");

    // Bad input names the JSON path and publishes nothing.
    let cases = [
        (
            json!({"type": "hire", "employee_id": "P-1", "time_zone": "Mars/Olympus", "attributes": {}}),
            "$.time_zone",
        ),
        (
            json!({"type": "fire", "employee_id": "P-1", "time_zone": "UTC"}),
            "$.type",
        ),
        (
            json!({"type": "hire", "employee_id": "P-1", "time_zone": "UTC",
                   "attributes": {"given_name": "A", "employment_type": "employee"}}),
            "$.attributes.family_name",
        ),
        (
            json!({"type": "move", "employee_id": "P-1", "time_zone": "UTC",
                   "changes": {"given_name": null}}),
            "$.changes.given_name",
        ),
        (
            json!({"type": "terminate", "employee_id": "P-1", "time_zone": "UTC",
                   "last_day_worked": "31/01/2027"}),
            "$.last_day_worked",
        ),
        (
            json!({"type": "terminate", "employee_id": "P-1", "time_zone": "UTC",
                   "attributes": {}}),
            "$.attributes",
        ),
        (
            json!({"type": "move", "employee_id": "P-1", "time_zone": "UTC",
                   "effective_at": "tomorrow", "changes": {"title": "x"}}),
            "$.effective_at",
        ),
    ];
    for (body, path) in cases {
        let (status, answer) = post(&server, Some(TOKEN), None, body.to_string()).await?;
        assert_eq!(status, 422, "{body} -> {answer}");
        assert_eq!(answer["path"], path, "{body} -> {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let (status, answer) = post(&server, Some(TOKEN), None, "{not json".into()).await?;
    assert_eq!(status, 400, "{answer}");
    let huge = json!({"type": "leave_ended", "employee_id": "P-100", "time_zone": "UTC",
                      "reason": "x".repeat(10_000)});
    let (status, _) = post(&server, Some(TOKEN), None, huge.to_string()).await?;
    assert_eq!(status, 413, "body limit");
    assert_eq!(
        topic("hr.lifecycle.v1")?.len(),
        1,
        "no rejected request published"
    );

    // An immediate termination also takes the priority lane.
    let terminate = json!({"type": "terminate", "employee_id": "P-100", "time_zone": "Europe/Vienna",
                           "immediate": true, "reason": "misconduct"});
    let (status, body) = post(&server, Some(TOKEN), Some("req-2"), terminate.to_string()).await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["priority"], true);
    let priority = topic("hr.lifecycle.priority.v1")?;
    assert_eq!(priority.len(), 1);
    let urgent = hrsync_schema::decode_lifecycle(&priority[0].payload)?;
    assert_eq!(urgent.kind(), EventKind::Terminate);
    assert_eq!(
        urgent.event_id.to_string(),
        body["event_id"].as_str().unwrap()
    );
    assert_eq!(topic("hr.lifecycle.v1")?.len(), 2);

    // The role's metrics and health endpoints.
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("{}/metrics", server.metrics))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("hrsync_bus_records_produced_total"),
        "{metrics}"
    );
    let ready = http
        .get(format!("{}/readyz", server.metrics))
        .send()
        .await?;
    assert_eq!(ready.status(), 200);
    assert_eq!(
        http.get(format!("{}/healthz", server.metrics))
            .send()
            .await?
            .text()
            .await?,
        "ok"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_push_api_takes_the_issuers_access_tokens_beside_its_static_token() -> anyhow::Result<()>
{
    let issuer = Issuer::start()?;
    let broker = Broker::start()?;
    let db = PgDatabase::fresh().await?;
    let oauth = format!(
        "[oauth]\nissuer = \"{}\"\naudience = \"{HRSYNC_AUDIENCE}\"\n",
        issuer.issuer()
    );
    let server = start_with(&broker, db.url(), &oauth)?;
    let http = reqwest::Client::new();
    let push = |token: String| {
        http.post(format!("{}/v1/events", server.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(hire().to_string())
            .send()
    };

    // A client granted hrsync:events.write pushes.
    let pusher = issuer
        .token("pusher", "hrsync:events.write", HRSYNC_AUDIENCE)
        .await?;
    let answer = push(pusher).await?;
    assert_eq!(answer.status(), 202, "{}", answer.text().await?);

    // A reader may not: 403, the challenge naming the missing scope, the
    // body a problem document.
    let viewer = issuer
        .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    let answer = push(viewer).await?;
    assert_eq!(answer.status(), 403);
    let challenge = answer.headers()["www-authenticate"].to_str()?.to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"hrsync:events.write\""),
        "{challenge}"
    );
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
    let problem: Value = answer.json().await?;
    assert_eq!(problem["status"], 403);

    // A token for another audience: 401 invalid_token.
    let elsewhere = issuer
        .token("pusher", "hrsync:events.write", "https://other.test/")
        .await?;
    let answer = push(elsewhere).await?;
    assert_eq!(answer.status(), 401);
    assert!(answer.headers()["www-authenticate"]
        .to_str()?
        .contains("invalid_token"));

    // The static token still works beside OAuth.
    let answer = push(TOKEN.to_owned()).await?;
    assert_eq!(answer.status(), 202);
    assert_eq!(
        read_topic(&broker.bootstrap(), "hr.lifecycle.v1")?.len(),
        2,
        "only the two accepted pushes were published"
    );
    Ok(())
}

/// A hire of worker `n`, new each time (no idempotency key needed).
fn hire_of(n: u32) -> String {
    let mut hire = hire();
    hire["employee_id"] = json!(format!("P-{n}"));
    hire["attributes"]["work_email"] = json!(format!("p{n}@acme.test"));
    hire.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_push_api_processes_share_one_rate_of_acceptance() -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let db = PgDatabase::fresh().await?;
    let rate = "rate_per_minute = 3\n";
    let (first, second) = (
        start_with(&broker, db.url(), rate)?,
        start_with(&broker, db.url(), rate)?,
    );
    // The count is per minute: start early in one so it cannot roll over
    // between the requests below.
    let into_minute = chrono::Utc::now().timestamp_millis().rem_euclid(60_000);
    if into_minute > 30_000 {
        tokio::time::sleep(Duration::from_millis(
            u64::try_from(60_500 - into_minute).unwrap_or(0),
        ))
        .await;
    }

    // Three new events in the minute, spread over both processes, then
    // neither accepts a fourth: 429 naming the setting, with Retry-After.
    let (status, accepted) = post(&first, Some(TOKEN), Some("k-1"), hire_of(1)).await?;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(post(&second, Some(TOKEN), None, hire_of(2)).await?.0, 202);
    assert_eq!(post(&first, Some(TOKEN), None, hire_of(3)).await?.0, 202);
    for server in [&second, &first] {
        let refused = reqwest::Client::new()
            .post(format!("{}/v1/events", server.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(hire_of(4))
            .send()
            .await?;
        assert_eq!(refused.status(), 429);
        let wait: u64 = refused.headers()["retry-after"].to_str()?.parse()?;
        assert!((1..=60).contains(&wait), "Retry-After: {wait}");
        let body: Value = refused.json().await?;
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("ingest.push.rate_per_minute"), "{body}");
    }

    // A retry of an accepted event is not a new one: answered as before.
    let (status, replayed) = post(&second, Some(TOKEN), Some("k-1"), hire_of(1)).await?;
    assert_eq!(status, 202, "{replayed}");
    assert_eq!(replayed["event_id"], accepted["event_id"]);
    assert_eq!(replayed["replayed"], true);
    // A termination in effect now is never held back by the rate.
    let leaver = json!({"type": "terminate", "employee_id": "P-2", "time_zone": "Europe/Vienna",
                        "immediate": true});
    let (status, body) = post(&second, Some(TOKEN), None, leaver.to_string()).await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["priority"], true);

    // Three hires and the termination were published; the refused one not.
    let published = read_topic(&broker.bootstrap(), "hr.lifecycle.v1")?;
    let keys: Vec<&[u8]> = published.iter().map(|r| r.key.as_slice()).collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(!keys.contains(&b"P-4".as_slice()), "{keys:?}");
    let metrics = reqwest::get(format!("{}/metrics", first.metrics))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("hrsync_push_rate_limited_total{subject=\"static-token\"} 1"),
        "{metrics}"
    );
    Ok(())
}
