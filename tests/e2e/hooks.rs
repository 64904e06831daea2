//! The hooks role over the real pipeline: events pushed to the push API
//! reach webhook receivers (`examples/hook-receiver/receiver.py`, which checks every
//! signature with the `standardwebhooks` package), retried through errors,
//! `Retry-After` and a kill of the sending process, in order per person.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use hrsync_tests::{Issuer, HRSYNC_AUDIENCE};

use crate::stack::{eventually_within, lucys_hire, Processes, ScimApps};

/// A receiver from `examples/`, run by the venv's Python: prints
/// `listening on PORT`, then one JSON line per request.
struct Example {
    child: Child,
    port: u16,
    /// Every line it printed.
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Example {
    /// Runs `SCRIPT PORT ARGS...` (a path from the repository's root).
    fn start(script: &str, args: &[&str]) -> anyhow::Result<Self> {
        let python = hrsync_tests::tools_dir().join("venv/bin/python");
        anyhow::ensure!(
            python.is_file(),
            "{} is missing: run scripts/test, which makes it",
            python.display()
        );
        let port = hrsync_tests::free_port()?;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(script);
        let mut child = Command::new(python)
            .arg(path)
            .arg(port.to_string())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready, listening) = std::sync::mpsc::channel();
        let lines = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("listening on") {
                    let _ = ready.send(());
                } else if let Ok(request) = serde_json::from_str::<Value>(&line) {
                    lines.lock().expect("requests").push(request);
                }
            }
        });
        listening
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| anyhow::anyhow!("{script} did not start"))?;
        Ok(Example { child, port, seen })
    }

    fn seen(&self) -> Vec<Value> {
        self.seen.lock().expect("requests").clone()
    }
}

/// The hook receiver example.
struct Receiver {
    example: Example,
    secret: String,
}

impl Receiver {
    /// Starts one with its own secret, answering `faults` first.
    fn start(faults: &Value) -> anyhow::Result<Self> {
        // 32 hex digits are 32 base64 characters: a 24-byte key.
        let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
        let example = Example::start("examples/hook-receiver/receiver.py", &[&secret])?;
        let receiver = Receiver { example, secret };
        receiver.set_faults_blocking(faults)?;
        Ok(receiver)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hrsync", self.example.port)
    }

    fn set_faults_blocking(&self, faults: &Value) -> anyhow::Result<()> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.example.port))?;
        let body = faults.to_string();
        std::io::Write::write_all(
            &mut stream,
            format!(
                "POST /faults HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )?;
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer)?;
        anyhow::ensure!(
            answer.starts_with("HTTP/1.0 204") || answer.starts_with("HTTP/1.1 204"),
            "{answer}"
        );
        Ok(())
    }

    /// Every delivery seen.
    fn seen(&self) -> Vec<Value> {
        self.example.seen()
    }

    /// The deliveries it took (signature verified, answered 2xx), each id
    /// once, in the order taken.
    fn taken(&self) -> Vec<Value> {
        let mut ids = HashSet::new();
        self.seen()
            .into_iter()
            .filter(|d| d["verified"] == true && d["status"].as_u64().is_some_and(|s| s < 300))
            .filter(|d| ids.insert(d["id"].as_str().unwrap_or_default().to_owned()))
            .collect()
    }

    /// The event types it took for `employee_id`, in order.
    fn types_for(&self, employee_id: &str) -> Vec<String> {
        self.taken()
            .iter()
            .filter(|d| d["employee_id"] == employee_id)
            .map(|d| d["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// `[[hooks.endpoints]]` for it, with `extra` TOML lines.
    fn endpoint(&self, name: &str, extra: &str) -> String {
        format!(
            "[[hooks.endpoints]]\nname = \"{name}\"\nurl = \"{}\"\nsecret = \"{}\"\ntimeout_ms = 2000\n{extra}\n",
            self.url(),
            self.secret
        )
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `error` with what `receiver` saw and the end of the hooks' log.
fn explained(
    error: anyhow::Error,
    receiver: &Example,
    stack: &Processes,
    hooks: usize,
) -> anyhow::Error {
    error.context(format!(
        "the receiver saw {:?}\nthe hooks' log ends:\n{}",
        receiver.seen(),
        stack.log_tail(hooks)
    ))
}

/// `[hooks]` on the stack's database, retrying fast.
/// Hires Lucy (Customer Support) and Ada (Sales), and waits until the
/// hooks know both slack accounts (from the provisioner's audit).
async fn hire_lucy_and_ada(stack: &Processes) -> anyhow::Result<()> {
    let ada = json!({"type": "hire", "employee_id": "E8", "time_zone": "UTC",
        "attributes": {"given_name": "Ada", "family_name": "Byron",
            "work_email": "ada@example.com", "employment_type": "employee",
            "department": "Sales"}});
    for event in [lucys_hire(), ada] {
        stack.push(event).await?;
    }
    let pool = sqlx::PgPool::connect(stack.db_url().expect("a PostgreSQL stack")).await?;
    let known = eventually_within(
        "both slack accounts known to the hooks",
        Duration::from_secs(60),
        || async {
            let known: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM hook_account WHERE app = 'slack'")
                    .fetch_one(&pool)
                    .await?;
            Ok(known == 2)
        },
    )
    .await;
    pool.close().await;
    known
}

fn hooks_section(stack: &Processes, max_attempts: u32, endpoints: &[String]) -> String {
    format!(
        "[hooks]\ndatabase_url = \"{}\"\nmax_attempts = {max_attempts}\nfirst_backoff_ms = 100\nmax_backoff_ms = 1000\n\n{}",
        stack.db_url().expect("a PostgreSQL stack"),
        endpoints.join("\n")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_joiner_mover_leaver_reaches_the_receivers_signed_in_order_through_errors(
) -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let apps = ScimApps::local(&["slack"]).await?;
    let mut stack =
        Processes::start_admin(&apps, &["ingest", "projector"], issuer.issuer(), "").await?;
    // The first deliveries to `tickets` are refused: 500 twice, then 429
    // with Retry-After, then one is answered after the endpoint's 2 s
    // timeout; `leavers` takes only Customer Support's leavers.
    let tickets = Receiver::start(&json!([
        {"status": 500}, {"status": 500}, {"status": 429, "retry_after": "1"},
        {"delay_ms": 3000}
    ]))?;
    let leavers = Receiver::start(&json!([]))?;
    let wrong_team = Receiver::start(&json!([]))?;
    stack.add_config(&hooks_section(
        &stack,
        8,
        &[
            tickets.endpoint("tickets", ""),
            leavers.endpoint(
                "leavers",
                "events = [\"person.left\"]\ncondition = 'person.department == \"Customer Support\"'",
            ),
            wrong_team.endpoint("wrong-team", "condition = 'person.department == \"Sales\"'"),
        ],
    ))?;
    let hooks = stack.start_another("hooks")?;
    stack.wait_ready(hooks).await?;

    // Each event waits for the one before to reach tickets: events the
    // projector applies in one batch are one change of state, and hooks
    // see the state (a hire and a termination applied together are a
    // leaver).
    let moved = json!({"type": "move", "employee_id": "E7", "time_zone": "Europe/London",
        "changes": {"title": "Support Manager"}});
    let left = json!({"type": "terminate", "employee_id": "E7",
        "time_zone": "Europe/London", "immediate": true});
    let story = ["person.joined", "person.moved", "person.left"];
    for (n, event) in [lucys_hire(), moved, left].into_iter().enumerate() {
        stack.push(event).await?;
        eventually_within(story[n], Duration::from_secs(60), || async {
            Ok(tickets.types_for("E7").len() > n)
        })
        .await
        .map_err(|e| explained(e, &tickets.example, &stack, hooks))?;
    }
    assert_eq!(tickets.types_for("E7"), story);
    let seen = tickets.seen();
    assert!(
        seen.iter().all(|d| d["verified"] == true),
        "every signature verifies: {seen:?}"
    );
    // The refused attempts were of a delivery taken later, under the same
    // webhook-id.
    let refused: Vec<&Value> = seen.iter().filter(|d| d["status"] != 204).collect();
    assert_eq!(refused.len(), 3, "{seen:?}");
    // The one answered too late came again: seven requests for three events.
    assert_eq!(seen.len(), 7, "{seen:?}");
    let taken_ids: HashSet<&str> = seen
        .iter()
        .filter(|d| d["status"] == 204)
        .filter_map(|d| d["id"].as_str())
        .collect();
    for refusal in &refused {
        assert!(
            taken_ids.contains(refusal["id"].as_str().unwrap_or_default()),
            "{seen:?}"
        );
    }

    eventually_within(
        "leavers took the leaver",
        Duration::from_secs(30),
        || async { Ok(leavers.types_for("E7") == ["person.left"]) },
    )
    .await?;
    // Nothing else reaches them: the move and the hire were not theirs.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(leavers.taken().len(), 1, "{:?}", leavers.seen());
    assert!(wrong_team.seen().is_empty(), "{:?}", wrong_team.seen());

    let metrics = stack.metrics(hooks).await?;
    assert!(
        metrics.contains(
            "hrsync_hook_deliveries_total{hook=\"tickets\",lane=\"main\",outcome=\"retry\"}"
        ) || metrics.contains(
            "hrsync_hook_deliveries_total{hook=\"tickets\",lane=\"priority\",outcome=\"retry\"}"
        ),
        "{metrics}"
    );

    // The admin API lists what each endpoint was owed and what became of it.
    let admin = stack.start_another("admin")?;
    stack.wait_ready(admin).await?;
    let reader = issuer
        .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    let http = reqwest::Client::new();
    let list = |query: &'static str| {
        let (http, reader) = (http.clone(), reader.clone());
        let url = format!("{}/api/v1/hooks/deliveries{query}", stack.admin);
        async move {
            let answer = http.get(url).bearer_auth(reader).send().await?;
            let status = answer.status().as_u16();
            anyhow::Ok((status, answer.json::<Value>().await?))
        }
    };
    let (status, page) = list("?hook=tickets&employee_id=E7").await?;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let types: Vec<&str> = items
        .iter()
        .filter_map(|i| i["event_type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["person.left", "person.moved", "person.joined"],
        "newest first: {page}"
    );
    assert!(
        items
            .iter()
            .all(|i| i["status"] == "delivered" && i["done_at"].is_string()),
        "{page}"
    );
    let attempts: i64 = items.iter().filter_map(|i| i["attempts"].as_i64()).sum();
    assert_eq!(
        attempts, 7,
        "three refused, one timed out, three taken: {page}"
    );
    assert_eq!(items[0]["priority"], true);
    let (_, dead) = list("?status=dead").await?;
    assert_eq!(dead["items"], json!([]));
    let (status, _) = list("?status=lost").await?;
    assert_eq!(status, 400);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_owed_by_a_killed_sender_arrive_after_its_restart_and_dead_ones_after_a_redrive(
) -> anyhow::Result<()> {
    let apps = ScimApps::local(&["slack"]).await?;
    let mut stack = Processes::start(&apps, &["ingest", "projector"]).await?;
    let receiver = Receiver::start(&json!([]))?;
    // `broken` answers 503 until told otherwise: its deliveries die after
    // two attempts.
    let broken = Receiver::start(&Value::from(vec![json!({"status": 503}); 100]))?;
    stack.add_config(&hooks_section(
        &stack,
        2,
        &[
            receiver.endpoint("receiver", ""),
            broken.endpoint("broken", "events = [\"person.joined\"]"),
        ],
    ))?;
    let hooks = stack.start_another("hooks")?;
    stack.wait_ready(hooks).await?;

    let people: Vec<String> = (1..=4).map(|n| format!("H{n}")).collect();
    for id in &people {
        stack
            .push(
                json!({"type": "hire", "employee_id": id, "time_zone": "UTC",
                "attributes": {"given_name": "Hook", "family_name": id,
                    "work_email": format!("{}@example.com", id.to_lowercase()),
                    "employment_type": "employee", "department": "Sales"}}),
            )
            .await?;
    }
    eventually_within("every joiner taken", Duration::from_secs(60), || async {
        Ok(people.iter().all(|id| !receiver.types_for(id).is_empty()))
    })
    .await
    .map_err(|e| explained(e, &receiver.example, &stack, hooks))?;
    // The movers' deliveries hang at the receiver (5 s each): the sender
    // is killed while they are in flight, so each is owed after its
    // restart.
    receiver.set_faults_blocking(&Value::from(vec![json!({"delay_ms": 5000}); people.len()]))?;
    for id in &people {
        stack
            .push(
                json!({"type": "move", "employee_id": id, "time_zone": "UTC",
                "changes": {"title": "Account Executive"}}),
            )
            .await?;
    }
    eventually_within(
        "a mover's delivery in flight",
        Duration::from_secs(60),
        || async { Ok(receiver.seen().iter().any(|d| d["type"] == "person.moved")) },
    )
    .await
    .map_err(|e| explained(e, &receiver.example, &stack, hooks))?;
    stack.kill(hooks)?;
    stack.restart(hooks).await?;

    eventually_within(
        "every person's joiner and mover",
        Duration::from_secs(60),
        || async { Ok(people.iter().all(|id| receiver.types_for(id).len() >= 2)) },
    )
    .await
    .map_err(|e| explained(e, &receiver.example, &stack, hooks))?;
    for id in &people {
        assert_eq!(
            receiver.types_for(id),
            ["person.joined", "person.moved"],
            "{id}: in order, once each"
        );
    }
    // What was in flight at the kill comes again, under its webhook-id (the
    // receiver prints a delivery as it arrives, so the first arrival is
    // seen before the kill).
    eventually_within(
        "a delivery in flight at the kill sent again",
        Duration::from_secs(60),
        || async {
            let mut arrivals: HashMap<String, usize> = HashMap::new();
            for delivery in receiver.seen() {
                *arrivals
                    .entry(delivery["id"].as_str().unwrap_or_default().to_owned())
                    .or_default() += 1;
            }
            Ok(arrivals.values().any(|n| *n > 1))
        },
    )
    .await
    .map_err(|e| explained(e, &receiver.example, &stack, hooks))?;
    for id in &people {
        assert_eq!(
            receiver.types_for(id),
            ["person.joined", "person.moved"],
            "{id}: once each"
        );
    }

    // `broken`'s deliveries died; once it answers again, a redrive sends them.
    eventually_within(
        "broken's deliveries dead",
        Duration::from_secs(30),
        || async {
            let metrics = stack.metrics(hooks).await?;
            Ok(metrics.contains(&format!(
                "hrsync_hook_deliveries_owed{{hook=\"broken\",status=\"dead\"}} {}",
                people.len()
            )))
        },
    )
    .await?;
    assert!(broken.taken().is_empty());
    broken.set_faults_blocking(&json!([]))?;
    let said = stack.command(&["hooks", "redrive", "--hook", "broken"])?;
    assert!(
        said.contains(&format!("{} dead deliveries", people.len())),
        "{said}"
    );
    eventually_within(
        "broken took them after the redrive",
        Duration::from_secs(30),
        || async { Ok(broken.taken().len() == people.len()) },
    )
    .await
    .map_err(|e| explained(e, &broken.example, &stack, hooks))?;
    let per_person: HashMap<String, usize> =
        broken.taken().iter().fold(HashMap::new(), |mut m, d| {
            *m.entry(d["employee_id"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
            m
        });
    assert!(per_person.values().all(|n| *n == 1), "{per_person:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leaver_and_a_leave_revoke_sessions_at_an_ssf_receiver_that_checks_hrsyncs_keys(
) -> anyhow::Result<()> {
    let apps = ScimApps::local(&["slack"]).await?;
    let mut stack = Processes::start(&apps, &["ingest", "projector", "provisioner"]).await?;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("ssf-key.pem");
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()?;
    anyhow::ensure!(made.success(), "openssl genpkey: {made}");
    let keys_port = hrsync_tests::free_port()?;
    let issuer = format!("http://127.0.0.1:{keys_port}");
    let audience = "https://sessions.test";
    let receiver = Example::start(
        "examples/ssf-receiver/receiver.py",
        &[
            &format!("{issuer}/jwks.json"),
            &issuer,
            audience,
            "receiver-token",
        ],
    )?;
    // slack's own receiver: its SETs name the person's slack account too.
    let slack_audience = "https://slack.test";
    let slack = Example::start(
        "examples/ssf-receiver/receiver.py",
        &[&format!("{issuer}/jwks.json"), &issuer, slack_audience],
    )?;
    stack.add_config(&format!(
        "{}\n[hooks.ssf]\nissuer = \"{issuer}\"\nlisten = \"127.0.0.1:{keys_port}\"\n\
         signing_key = {{ file = \"{}\" }}\nkey_id = \"hrsync-test-1\"\n\n\
         [[hooks.ssf.receivers]]\nname = \"sessions\"\nurl = \"http://127.0.0.1:{}/events\"\n\
         audience = \"{audience}\"\ntoken = \"receiver-token\"\n\n\
         [[hooks.ssf.receivers]]\nname = \"slack-sessions\"\nurl = \"http://127.0.0.1:{}/events\"\n\
         audience = \"{slack_audience}\"\napp = \"slack\"\n",
        hooks_section(&stack, 8, &[]),
        key.display(),
        receiver.port,
        slack.port
    ))?;
    let hooks = stack.start_another("hooks")?;
    stack.wait_ready(hooks).await?;

    // The transmitter's metadata names where its keys are.
    let metadata: Value = reqwest::get(format!("{issuer}/.well-known/ssf-configuration"))
        .await?
        .json()
        .await?;
    assert_eq!(metadata["jwks_uri"], format!("{issuer}/jwks.json"));
    assert_eq!(
        metadata["delivery_methods_supported"],
        json!(["urn:ietf:rfc:8935"])
    );

    // A joiner revokes nothing; a leave and a termination each do. Both
    // accounts are known to the hooks before the deactivations.
    hire_lucy_and_ada(&stack)
        .await
        .map_err(|e| explained(e, &receiver, &stack, hooks))?;
    stack
        .push(json!({"type": "leave_started", "employee_id": "E8",
            "time_zone": "UTC", "leave_type": "parental"}))
        .await?;
    stack
        .push(json!({"type": "terminate", "employee_id": "E7",
            "time_zone": "Europe/London", "immediate": true}))
        .await?;
    let revoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
    eventually_within("both sessions revoked", Duration::from_secs(60), || async {
        Ok(receiver.seen().len() >= 2 && slack.seen().len() >= 2)
    })
    .await
    .map_err(|e| explained(e, &receiver, &stack, hooks))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = receiver.seen();
    assert!(
        seen.iter().all(|s| s["status"] == 202),
        "{seen:?}\n{}",
        stack.log_tail(hooks)
    );
    let jtis: HashSet<&str> = seen.iter().filter_map(|s| s["jti"].as_str()).collect();
    assert_eq!(jtis.len(), 2, "one SET per deactivation: {seen:?}");
    for set in &seen {
        assert_eq!(set["verified"], true, "{set:?}");
        assert_eq!(set["status"], 202, "{set:?}");
        assert_eq!(set["typ"], "secevent+jwt");
        assert_eq!(
            (&set["iss"], &set["aud"]),
            (&json!(issuer), &json!(audience))
        );
        assert_eq!(set["events"], json!([revoked]));
    }
    let subjects: HashSet<String> = seen
        .iter()
        .map(|s| s["sub_id"]["email"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: HashSet<String> = ["lucy@example.com", "ada@example.com"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(subjects, expected);
    let reasons: Vec<&Value> = seen.iter().map(|s| &s["reason"]["en"]).collect();
    assert!(reasons.contains(&&json!("Terminated in HR")), "{reasons:?}");
    assert!(reasons.contains(&&json!("On leave in HR")), "{reasons:?}");
    // slack's receiver: the same person by e-mail and by the SCIM id of
    // their slack account.
    let lucy = apps
        .get("slack")
        .user("lucy@example.com")
        .await?
        .expect("Lucy's slack account");
    let lucys_set = slack
        .seen()
        .into_iter()
        .find(|s| s["sub_id"]["identifiers"][0]["email"] == "lucy@example.com")
        .expect("a SET for Lucy at slack's receiver");
    assert_eq!(lucys_set["verified"], true, "{lucys_set:?}");
    assert_eq!(
        lucys_set["sub_id"],
        json!({"format": "aliases", "identifiers": [
            {"format": "email", "email": "lucy@example.com"},
            {"format": "opaque", "id": lucy["id"]},
        ]}),
        "{lucys_set:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_account_an_app_creates_or_deactivates_is_an_event_of_its_person() -> anyhow::Result<()>
{
    let apps = ScimApps::local(&["slack"]).await?;
    let mut stack = Processes::start(&apps, &["ingest", "projector", "provisioner"]).await?;
    let receiver = Receiver::start(&json!([]))?;
    // The condition reads the person as last seen, for their accounts'
    // events too (a leaver has no apps left).
    stack.add_config(&hooks_section(
        &stack,
        8,
        &[receiver.endpoint(
            "accounts",
            "events = [\"account.created\", \"account.deactivated\", \"person.left\"]\n\
             condition = 'person.department == \"Customer Support\"'",
        )],
    ))?;
    let hooks = stack.start_another("hooks")?;
    stack.wait_ready(hooks).await?;

    stack.push(lucys_hire()).await?;
    eventually_within(
        "slack's account created",
        Duration::from_secs(60),
        || async { Ok(receiver.types_for("E7") == ["account.created"]) },
    )
    .await
    .map_err(|e| explained(e, &receiver.example, &stack, hooks))?;
    stack
        .push(json!({"type": "terminate", "employee_id": "E7",
            "time_zone": "Europe/London", "immediate": true}))
        .await?;
    eventually_within(
        "the leaver and the account deactivated",
        Duration::from_secs(60),
        || async { Ok(receiver.types_for("E7").len() == 3) },
    )
    .await
    .map_err(|e| explained(e, &receiver.example, &stack, hooks))?;
    let types: HashSet<String> = receiver.types_for("E7").into_iter().collect();
    let expected: HashSet<String> = ["account.created", "account.deactivated", "person.left"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(types, expected);
    assert!(receiver.seen().iter().all(|d| d["verified"] == true));
    let account = apps.account("lucy@example.com").await?;
    assert_eq!(
        account[0].1.as_ref().map(|a| a.0),
        Some(false),
        "deactivated in slack"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leaver_and_a_leave_get_the_apps_own_revocation_calls_naming_their_accounts(
) -> anyhow::Result<()> {
    let apps = ScimApps::local(&["slack"]).await?;
    let mut stack = Processes::start(&apps, &["ingest", "projector", "provisioner"]).await?;
    let api = Example::start("tests/receivers/session_api.py", &[])?;
    // Two calls, as apps' APIs differ: a DELETE by account id in the path,
    // and a POST with a JSON body.
    stack.add_config(&format!(
        "{}\n[[hooks.revocations]]\nname = \"slack-logout\"\napp = \"slack\"\n\
         method = \"DELETE\"\nurl = \"http://127.0.0.1:{port}/users/{{scim_id}}/sessions\"\n\
         token = \"admin-token\"\n\n\
         [[hooks.revocations]]\nname = \"slack-tokens\"\napp = \"slack\"\n\
         url = \"http://127.0.0.1:{port}/tokens.revoke\"\n\
         body = '{{{{\"user\": \"{{scim_id}}\", \"email\": \"{{email}}\"}}}}'\n",
        hooks_section(&stack, 8, &[]),
        port = api.port
    ))?;
    let hooks = stack.start_another("hooks")?;
    stack.wait_ready(hooks).await?;

    hire_lucy_and_ada(&stack).await?;
    // Joiners are owed no call.
    assert_eq!(api.seen(), Vec::<Value>::new());
    stack
        .push(json!({"type": "terminate", "employee_id": "E7",
            "time_zone": "Europe/London", "immediate": true}))
        .await?;
    stack
        .push(json!({"type": "leave_started", "employee_id": "E8",
            "time_zone": "UTC", "leave_type": "parental"}))
        .await?;
    eventually_within("two calls per person", Duration::from_secs(60), || async {
        Ok(api.seen().len() >= 4)
    })
    .await
    .map_err(|e| e.context(stack.log_tail(hooks)))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut seen = api.seen();
    assert_eq!(seen.len(), 4, "{seen:?}");
    let slack = apps.get("slack");
    for (email, user_name) in [
        ("lucy@example.com", "lucy@example.com"),
        ("ada@example.com", "ada@example.com"),
    ] {
        let id = slack
            .user(user_name)
            .await?
            .and_then(|u| u["id"].as_str().map(str::to_owned))
            .expect("an account in slack");
        let delete = json!({"method": "DELETE", "path": format!("/users/{id}/sessions"),
            "authorization": "Bearer admin-token", "body": null});
        let post = json!({"method": "POST", "path": "/tokens.revoke", "authorization": null,
            "body": {"user": id, "email": email}});
        for call in [delete, post] {
            let at = seen.iter().position(|s| *s == call);
            assert!(at.is_some(), "{call} not among {seen:?}");
            seen.remove(at.unwrap_or_default());
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_deliveries_are_redriven_through_the_admin_api_by_an_admin_only() -> anyhow::Result<()>
{
    let issuer = Issuer::start()?;
    let apps = ScimApps::local(&["slack"]).await?;
    let mut stack =
        Processes::start_admin(&apps, &["ingest", "projector"], issuer.issuer(), "").await?;
    // Every attempt refused: the one attempt allowed runs out.
    let receiver = Receiver::start(&Value::from(vec![json!({"status": 503}); 10]))?;
    stack.add_config(&hooks_section(
        &stack,
        1,
        &[receiver.endpoint("tickets", "")],
    ))?;
    for role in ["hooks", "admin"] {
        let i = stack.start_another(role)?;
        stack.wait_ready(i).await?;
    }
    let http = reqwest::Client::new();
    let token = |scope: &'static str, client: &'static str| {
        let issuer = &issuer;
        async move { issuer.token(client, scope, HRSYNC_AUDIENCE).await }
    };
    let (admin, reader) = (
        token("hrsync:read hrsync:admin", "admin").await?,
        token("hrsync:read", "viewer").await?,
    );
    let count = |status: &'static str| {
        let (http, reader) = (http.clone(), reader.clone());
        let url = format!(
            "{}/api/v1/hooks/deliveries?hook=tickets&status={status}",
            stack.admin
        );
        async move {
            let page: Value = http
                .get(url)
                .bearer_auth(reader)
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(page["items"].as_array().map_or(0, Vec::len))
        }
    };

    stack.push(lucys_hire()).await?;
    eventually_within("the delivery dead", Duration::from_secs(60), || async {
        Ok(count("dead").await? == 1)
    })
    .await?;
    receiver.set_faults_blocking(&json!([]))?;
    let redrive = |token: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/hooks/redrive", stack.admin);
        async move {
            let answer = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"hook": "tickets"}))
                .send()
                .await?;
            let status = answer.status().as_u16();
            anyhow::Ok((status, answer.json::<Value>().await.unwrap_or(Value::Null)))
        }
    };
    let (status, _) = redrive(reader.clone()).await?;
    assert_eq!(status, 403, "a reader may not redrive");
    let (status, revived) = redrive(admin).await?;
    assert_eq!(status, 200, "{revived}");
    assert_eq!(revived["revived"], 1, "{revived}");
    eventually_within(
        "delivered after the redrive",
        Duration::from_secs(30),
        || async { Ok(count("delivered").await? == 1 && receiver.taken().len() == 1) },
    )
    .await?;
    let actions: Value = http
        .get(format!(
            "{}/api/v1/actions?action=hooks.redrive",
            stack.admin
        ))
        .bearer_auth(&reader)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(actions["items"][0]["subject"], "admin", "{actions}");
    assert_eq!(actions["items"][0]["target"], "tickets", "{actions}");
    Ok(())
}
