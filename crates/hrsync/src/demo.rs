//! `hrsync demo`: the whole pipeline on this machine, with no Docker and no
//! configuration, telling the joiner → mover → leaver story from the HR side.
//!
//! It spawns a `tansu` Kafka-protocol broker (in memory, on a free port),
//! serves two local SCIM apps (`hrsync-scim-app`) in this process, runs the
//! ingest, projector and provisioner roles in this process over SQLite files
//! in a temporary directory, then posts HR events to the push API. After each
//! event it waits until both apps hold what the story says they should (read
//! back over SCIM) and prints it; if they do not within 15 s, the demo fails,
//! saying what they hold instead. The termination step measures
//! how long after the push API's `202` each app shows the account inactive.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{Datelike, Days, NaiveTime, TimeZone as _, Utc};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::roles::{self, Ready, Role};

/// The settings of the story; addresses, stores and tokens are filled in at
/// start-up.
const DEMO_TOML: &str = include_str!("demo.toml");

/// The tansu version the demo and the tests are run with.
const TANSU_VERSION: &str = "0.6.0";

/// How long a step may take to show in both apps before the demo fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// The first step also waits for the consumers to join their groups.
const FIRST_STEP_TIMEOUT: Duration = Duration::from_secs(45);

/// `hrsync demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Show the roles' info logs (default: warnings and errors only).
    #[arg(long, short)]
    verbose: bool,
    /// The tansu broker executable (default: ~/.cache/hrsync/tools/bin/tansu,
    /// then PATH).
    #[arg(long, env = "TANSU_BIN", value_name = "PATH")]
    tansu: Option<PathBuf>,
}

/// Runs the demo; an error means the story did not play out.
pub(crate) fn run(args: DemoArgs) -> anyhow::Result<()> {
    let telemetry = hrsync_telemetry::TelemetryConfig {
        log_format: hrsync_telemetry::LogFormat::Human,
        // librdkafka warns at start-up that the producer and consumer
        // settings of `[kafka.properties]` do not apply to the other kind of
        // client; that is noise here.
        log_filter: if args.verbose {
            "info"
        } else {
            "warn,librdkafka=error"
        }
        .to_owned(),
        ..hrsync_telemetry::TelemetryConfig::default()
    };
    let _telemetry = hrsync_telemetry::init(&telemetry)?;
    let tansu = find_tansu(args.tansu)?;
    let version = std::process::Command::new(&tansu)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if !version.contains(TANSU_VERSION) {
        eprintln!(
            "note: {} is {version:?}; the demo is tested with tansu {TANSU_VERSION}",
            tansu.display()
        );
    }
    crate::runtime()?.block_on(async {
        // Ctrl-C or SIGTERM ends the story early, but still stops the roles,
        // the apps and the broker in order.
        let interrupted = CancellationToken::new();
        tokio::spawn({
            let interrupted = interrupted.clone();
            async move {
                crate::ingest::shutdown_signal().await;
                interrupted.cancel();
            }
        });
        demo(&tansu, &interrupted).await
    })
}

async fn demo(tansu: &Path, interrupted: &CancellationToken) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("hrsync-demo-")
        .tempdir()
        .context("creating a temporary directory")?;
    println!("hrsync demo: HR events in, SCIM accounts out, all on this machine\n");

    let mut broker = Broker::start(tansu, dir.path()).await?;
    println!("  broker     tansu at {} (in memory)", broker.addr);
    println!(
        "  stores     SQLite in {} (removed at the end)",
        dir.path().display()
    );

    let apps_shutdown = CancellationToken::new();
    let slack = ScimApp::start("slack", &apps_shutdown).await?;
    let lattice = ScimApp::start("lattice", &apps_shutdown).await?;
    let apps = [slack, lattice];
    let config = config(&broker, dir.path(), &apps)?;
    for app in &apps {
        let groups: Vec<&str> = config
            .projector
            .rules
            .groups
            .iter()
            .filter(|g| g.apps.iter().any(|a| a == app.name))
            .map(|g| g.name.as_str())
            .collect();
        println!(
            "  {:<10} SCIM app at {} (granted by the groups {})",
            app.name,
            app.base_url,
            groups.join(", ")
        );
    }
    let hr = Hr {
        client: reqwest::Client::new(),
        url: format!("http://{}/v1/events", config.ingest.push.listen),
        token: push_token(&config)?,
    };
    println!("  push API   {}", hr.url);

    hrsync_bus::ensure_topics(&config.kafka, &config.topics.specs(&config.kafka))
        .await
        .context("creating the topics")?;
    let shutdown = CancellationToken::new();
    let ready = Ready::new(&[Role::All], hrsync_telemetry::Readiness::default());
    let running = tokio::spawn({
        let config = config.clone();
        let shutdown = shutdown.clone();
        let ready = ready.clone();
        async move { roles::run_until(&config, &[Role::All], shutdown, &ready).await }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.is_ready() {
        if shutdown.is_cancelled() || interrupted.is_cancelled() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let story = if ready.is_ready() {
        println!("  roles      ingest, projector, provisioner: running in this process\n");
        let story = Story {
            hr: &hr,
            apps: &apps,
            failed: &shutdown,
            steps: 0,
        };
        tokio::select! {
            result = story.play() => result,
            () = interrupted.cancelled() => Err(anyhow::anyhow!("interrupted")),
        }
    } else if interrupted.is_cancelled() {
        Err(anyhow::anyhow!("interrupted"))
    } else {
        Err(anyhow::anyhow!("the roles did not start within 30 s"))
    };

    // Stop everything whatever happened, then report.
    shutdown.cancel();
    let stopped = match tokio::time::timeout(Duration::from_secs(20), running).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(anyhow::anyhow!("the roles' task failed: {join}")),
        Err(_) => Err(anyhow::anyhow!("the roles did not stop within 20 s")),
    };
    apps_shutdown.cancel();
    clients_gone(broker.addr, Duration::from_secs(5)).await;
    broker.stop().await;
    match (story, stopped) {
        (Ok(()), Ok(())) => {
            println!(
                "Story told in {:.1} s; broker, roles and apps stopped.",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        // The role's error is the cause; the story only saw its effect.
        (Err(story), Err(role)) => Err(role.context(format!("{story:#}"))),
        (Err(story), Ok(())) => Err(story),
        (Ok(()), Err(role)) => Err(role),
    }
}

// ---------------------------------------------------------------------------
// The story.

const LUCY: &str = "lucy.moreau@acme.example";
const OMAR: &str = "omar.haddad@acme.example";

struct Story<'a> {
    hr: &'a Hr,
    apps: &'a [ScimApp],
    /// Cancelled when a role fails.
    failed: &'a CancellationToken,
    steps: usize,
}

impl Story<'_> {
    async fn play(mut self) -> anyhow::Result<()> {
        let (cs, everyone, managers) = ("Customer Support", "Everyone", "People Managers");
        let lucy_agent = Attributes {
            given_name: "Lucy",
            family_name: "Moreau",
            employment_type: "employee",
            work_email: LUCY,
            department: "Customer Support",
            title: "Support Agent",
        };

        self.step(
            "Lucy Moreau is hired into Customer Support as a Support Agent, starting today",
            HrEvent {
                attributes: Some(lucy_agent.clone()),
                ..HrEvent::new("hire", "E1001")
            },
            &[
                ("slack", vec![account(LUCY, true, &[cs, everyone])]),
                ("lattice", vec![]),
            ],
        )
        .await?;

        self.step(
            "Lucy is promoted to Customer Support Manager: a new group, and a new app",
            HrEvent {
                changes: Some(json!({ "title": "Customer Support Manager" })),
                ..HrEvent::new("move", "E1001")
            },
            &[
                (
                    "slack",
                    vec![account(LUCY, true, &[cs, everyone, managers])],
                ),
                ("lattice", vec![account(LUCY, true, &[managers])]),
            ],
        )
        .await?;

        let start = next_monday_9am_paris();
        self.step(
            &format!(
                "Omar Haddad signs his contract; he starts on {} (a pre-hire: Slack \
                 prepares his account, inactive until then)",
                start.format("%A %-d %B")
            ),
            HrEvent {
                effective_at: Some(start.to_rfc3339()),
                attributes: Some(Attributes {
                    given_name: "Omar",
                    family_name: "Haddad",
                    work_email: OMAR,
                    ..lucy_agent.clone()
                }),
                ..HrEvent::new("hire", "E1002")
            },
            &[
                (
                    "slack",
                    vec![
                        account(LUCY, true, &[cs, everyone, managers]),
                        account(OMAR, false, &[cs, everyone]),
                    ],
                ),
                ("lattice", vec![account(LUCY, true, &[managers])]),
            ],
        )
        .await?;

        self.step(
            "Lucy goes on parental leave: her accounts are suspended",
            HrEvent {
                leave_type: Some("parental"),
                expected_return: Some((Utc::now().date_naive() + Days::new(91)).to_string()),
                ..HrEvent::new("leave_started", "E1001")
            },
            &[
                (
                    "slack",
                    vec![
                        account(LUCY, false, &[cs, everyone, managers]),
                        account(OMAR, false, &[cs, everyone]),
                    ],
                ),
                ("lattice", vec![account(LUCY, false, &[managers])]),
            ],
        )
        .await?;

        self.step(
            "Lucy returns from leave",
            HrEvent::new("leave_ended", "E1001"),
            &[
                (
                    "slack",
                    vec![
                        account(LUCY, true, &[cs, everyone, managers]),
                        account(OMAR, false, &[cs, everyone]),
                    ],
                ),
                ("lattice", vec![account(LUCY, true, &[managers])]),
            ],
        )
        .await?;

        self.step(
            "Lucy is terminated, effective immediately",
            HrEvent {
                immediate: Some(true),
                reason: Some("involuntary"),
                ..HrEvent::new("terminate", "E1001")
            },
            &[
                (
                    "slack",
                    vec![
                        account(LUCY, false, &[]),
                        account(OMAR, false, &[cs, everyone]),
                    ],
                ),
                ("lattice", vec![account(LUCY, false, &[])]),
            ],
        )
        .await?;

        self.step(
            "Lucy is rehired, back in Customer Support as a Support Agent",
            HrEvent {
                attributes: Some(lucy_agent),
                ..HrEvent::new("rehire", "E1001")
            },
            &[
                (
                    "slack",
                    vec![
                        account(LUCY, true, &[cs, everyone]),
                        account(OMAR, false, &[cs, everyone]),
                    ],
                ),
                ("lattice", vec![account(LUCY, false, &[])]),
            ],
        )
        .await?;
        Ok(())
    }

    /// HR says `event`; waits until the apps hold `expected`, then prints
    /// what they hold.
    async fn step(
        &mut self,
        title: &str,
        event: HrEvent,
        expected: &[(&str, Vec<Account>)],
    ) -> anyhow::Result<()> {
        self.steps += 1;
        let n = self.steps;
        println!("{n}. {title}");
        let terminate_now = event.kind == "terminate" && event.immediate == Some(true);
        let body = serde_json::to_string(&event)?;
        println!("   HR said    POST /v1/events {body}");
        let said = self
            .hr
            .say(body)
            .await
            .with_context(|| format!("step {n}"))?;
        println!("   ingest     202 Accepted, event {}", said.event_id);
        let latency = if terminate_now {
            Some(self.deactivation_latency(LUCY, said.at).await?)
        } else {
            None
        };
        let timeout = if n == 1 {
            FIRST_STEP_TIMEOUT
        } else {
            STEP_TIMEOUT
        };
        let holdings = self
            .wait_for(expected, timeout)
            .await
            .with_context(|| format!("step {n}: {title}"))?;
        let synced = said.at.elapsed();
        println!("{}", table(&holdings));
        match latency {
            Some(per_app) => {
                let parts: Vec<String> = per_app
                    .iter()
                    .map(|(app, d)| format!("{app} {} ms", d.as_millis()))
                    .collect();
                let all = per_app.iter().map(|(_, d)| *d).max().unwrap_or_default();
                println!(
                    "   termination latency: {} ms from HR's 202 to every app showing the \
                     account inactive ({})\n",
                    all.as_millis(),
                    parts.join(", ")
                );
            }
            None => println!("   in sync {:.2} s after HR's 202\n", synced.as_secs_f64()),
        }
        Ok(())
    }

    /// Polls every app until `user` is inactive in each; returns, per app,
    /// the time from `since` to the first poll that saw it.
    async fn deactivation_latency(
        &self,
        user: &str,
        since: Instant,
    ) -> anyhow::Result<Vec<(&'static str, Duration)>> {
        let mut seen: BTreeMap<&'static str, Duration> = BTreeMap::new();
        while seen.len() < self.apps.len() {
            self.check_roles()?;
            if since.elapsed() > STEP_TIMEOUT {
                let missing: Vec<&str> = self
                    .apps
                    .iter()
                    .map(|a| a.name)
                    .filter(|a| !seen.contains_key(a))
                    .collect();
                bail!(
                    "{user} still active in {} {} s after the termination",
                    missing.join(", "),
                    STEP_TIMEOUT.as_secs()
                );
            }
            for app in self.apps {
                if seen.contains_key(app.name) {
                    continue;
                }
                let accounts = app.accounts(&self.hr.client).await?;
                if accounts.iter().any(|a| a.user == user && !a.active) {
                    seen.insert(app.name, since.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(self.apps.iter().map(|a| (a.name, seen[a.name])).collect())
    }

    /// Reads every app until it holds what `expected` says, or fails after
    /// `timeout` with what they hold instead.
    async fn wait_for(
        &self,
        expected: &[(&str, Vec<Account>)],
        timeout: Duration,
    ) -> anyhow::Result<Vec<(&'static str, Vec<Account>)>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_roles()?;
            let mut holdings = Vec::new();
            for app in self.apps {
                holdings.push((app.name, app.accounts(&self.hr.client).await?));
            }
            let matches = holdings.len() == expected.len()
                && holdings
                    .iter()
                    .zip(expected)
                    .all(|((app, held), (want_app, want))| app == want_app && held == want);
            if matches {
                return Ok(holdings);
            }
            if Instant::now() > deadline {
                bail!(
                    "after {} s the apps hold\n{}\nbut should hold\n{}",
                    timeout.as_secs(),
                    table(&holdings),
                    table(expected),
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn check_roles(&self) -> anyhow::Result<()> {
        if self.failed.is_cancelled() {
            bail!("a role failed (its error is logged above)");
        }
        Ok(())
    }
}

/// An event as HR posts it to the push API (a struct rather than a
/// `json!` map, so it prints in this order rather than sorted).
#[derive(Debug, Clone, serde::Serialize)]
struct HrEvent {
    #[serde(rename = "type")]
    kind: &'static str,
    employee_id: &'static str,
    time_zone: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<Attributes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    leave_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_return: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    immediate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

impl HrEvent {
    /// An event of `kind` for `employee_id`, in Paris, effective now.
    fn new(kind: &'static str, employee_id: &'static str) -> Self {
        HrEvent {
            kind,
            employee_id,
            time_zone: "Europe/Paris",
            effective_at: None,
            attributes: None,
            changes: None,
            leave_type: None,
            expected_return: None,
            immediate: None,
            reason: None,
        }
    }
}

/// A hire's or rehire's attributes.
#[derive(Debug, Clone, serde::Serialize)]
struct Attributes {
    given_name: &'static str,
    family_name: &'static str,
    employment_type: &'static str,
    work_email: &'static str,
    department: &'static str,
    title: &'static str,
}

/// The start of next week: Monday, 09:00 in Paris.
fn next_monday_9am_paris() -> chrono::DateTime<chrono_tz::Tz> {
    let today = Utc::now()
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive();
    let days = 7 - u64::from(today.weekday().num_days_from_monday());
    let monday = today + Days::new(days);
    chrono_tz::Europe::Paris
        .from_local_datetime(&monday.and_time(NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default()))
        .earliest()
        .unwrap_or_else(|| Utc::now().with_timezone(&chrono_tz::Europe::Paris) + Days::new(7))
}

/// An account as the demo shows it: user, whether active, its groups.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Account {
    user: String,
    active: bool,
    groups: Vec<String>,
}

fn account(user: &str, active: bool, groups: &[&str]) -> Account {
    let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    groups.sort();
    Account {
        user: user.to_owned(),
        active,
        groups,
    }
}

/// Every app's accounts, a line per account.
fn table(holdings: &[(&str, Vec<Account>)]) -> String {
    holdings
        .iter()
        .flat_map(|(app, accounts)| account_lines(app, accounts))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An app's accounts as table lines, one per account.
fn account_lines(app: &str, accounts: &[Account]) -> Vec<String> {
    if accounts.is_empty() {
        return vec![format!("   {app:<10} (no accounts)")];
    }
    accounts
        .iter()
        .enumerate()
        .map(|(i, account)| {
            format!(
                "   {:<10} {:<26} {:<9} {}",
                if i == 0 { app } else { "" },
                account.user,
                if account.active { "active" } else { "inactive" },
                if account.groups.is_empty() {
                    "-".to_owned()
                } else {
                    account.groups.join(", ")
                }
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// HR, the apps and the broker.

/// The HR system: posts events to the push API.
struct Hr {
    client: reqwest::Client,
    url: String,
    token: String,
}

/// The push API's answer to one event.
struct Said {
    event_id: String,
    /// When the `202` arrived.
    at: Instant,
}

impl Hr {
    async fn say(&self, body: String) -> anyhow::Result<Said> {
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .context("posting to the push API")?;
        let at = Instant::now();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != reqwest::StatusCode::ACCEPTED {
            bail!("the push API answered {status}: {body}");
        }
        Ok(Said {
            event_id: body["event_id"].as_str().unwrap_or("?").to_owned(),
            at,
        })
    }
}

/// A local SCIM 2.0 app served from this process.
struct ScimApp {
    name: &'static str,
    base_url: String,
    token: String,
}

impl ScimApp {
    async fn start(name: &'static str, shutdown: &CancellationToken) -> anyhow::Result<Self> {
        let token = uuid::Uuid::new_v4().to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .with_context(|| format!("binding the {name} SCIM app"))?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let router = hrsync_scim_app::router(hrsync_scim_app::AppState::new(token.clone()));
        let stop = shutdown.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(app = name, %error, "SCIM app failed");
            }
        });
        Ok(ScimApp {
            name,
            base_url,
            token,
        })
    }

    /// Every account the app holds, by user name.
    async fn accounts(&self, client: &reqwest::Client) -> anyhow::Result<Vec<Account>> {
        let response = client
            .get(format!("{}/Users", self.base_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("reading {}'s users", self.name))?;
        let list: Value = response
            .json()
            .await
            .with_context(|| format!("reading {}'s users", self.name))?;
        let mut accounts: Vec<Account> = list["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|user| {
                let mut groups: Vec<String> = user["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g["display"].as_str().map(str::to_owned))
                    .collect();
                groups.sort();
                Account {
                    user: user["userName"].as_str().unwrap_or("?").to_owned(),
                    active: user["active"].as_bool().unwrap_or(true),
                    groups,
                }
            })
            .collect();
        accounts.sort_by(|a, b| a.user.cmp(&b.user));
        Ok(accounts)
    }
}

/// Waits (at most `limit`) until no Kafka client holds a connection to
/// `broker`: the roles' background tasks (audit writer, stall watches) end
/// shortly after the roles return, and their clients with them. Stopping
/// the broker before would have librdkafka log errors about a broker that
/// is gone. Reads the kernel's table of TCP connections (Linux); elsewhere
/// it waits a second.
async fn clients_gone(broker: SocketAddr, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        match connections_to(broker) {
            Some(0) => return,
            // Not Linux: give the clients a second.
            None => return tokio::time::sleep(Duration::from_secs(1)).await,
            Some(_) if Instant::now() >= deadline => return,
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Established TCP connections to `addr` (IPv4) on this machine, from
/// `/proc/net/tcp`; `None` where it cannot be read.
fn connections_to(addr: SocketAddr) -> Option<usize> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    // The kernel writes an IPv4 address as the hex of its bytes read as a
    // native integer, then the port in hex.
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    Some(
        table
            .lines()
            .skip(1)
            .filter(|line| {
                let mut fields = line.split_whitespace().skip(2);
                // rem_address, then st (01: established).
                fields.next() == Some(remote.as_str()) && fields.next() == Some("01")
            })
            .count(),
    )
}

/// A spawned tansu broker keeping its data in memory.
struct Broker {
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl Broker {
    async fn start(tansu: &Path, dir: &Path) -> anyhow::Result<Self> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let url = format!("tcp://{addr}");
        let log_path = dir.join("tansu.log");
        let log = std::fs::File::create(&log_path).context("creating tansu.log")?;
        let mut command = tokio::process::Command::new(tansu);
        command
            .current_dir(dir)
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // Settings tansu would otherwise take from the environment.
            .env_remove("CLUSTER_ID")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", tansu.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "tansu exited with {status} before listening on {addr}:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(Broker { child, addr });
            }
            if Instant::now() > deadline {
                bail!(
                    "tansu did not listen on {addr} within 20 s:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// A port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The tansu executable: `--tansu`/`TANSU_BIN`, then where `scripts/demo`
/// and `scripts/test` install it, then `PATH`.
fn find_tansu(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let cached = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/hrsync/tools/bin/tansu"))
        .filter(|p| p.is_file());
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("tansu"))
                .find(|p| p.is_file())
        })
    };
    cached.or_else(on_path).with_context(|| {
        format!(
            "the demo needs the tansu Kafka-protocol broker, which is not installed.\n\
             Run `bash scripts/demo` (it installs it, about 10 minutes once), or:\n  \
             cargo install tansu --version {TANSU_VERSION} --locked --features dynostore,libsql \
             --root ~/.cache/hrsync/tools"
        )
    })
}

/// The demo's configuration: [`DEMO_TOML`] with this run's broker, stores,
/// push API and apps.
fn config(broker: &Broker, dir: &Path, apps: &[ScimApp]) -> anyhow::Result<Config> {
    use hrsync_config::{Secret, Validate};
    let mut config: Config = toml::from_str(DEMO_TOML).context("the demo's configuration")?;
    config.kafka.brokers = broker.addr.to_string();
    let sqlite = |name: &str| {
        Secret::inline(format!(
            "sqlite://{}?mode=rwc",
            dir.join(format!("{name}.db")).display()
        ))
    };
    config.ingest.database_url = sqlite("ingest");
    config.projector.database_url = sqlite("projector");
    config.provisioner.database_url = sqlite("provisioner");
    config.ingest.push.listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    config.ingest.push.token = Some(Secret::inline(uuid::Uuid::new_v4().to_string()));
    for app in &mut config.provisioner.apps {
        let local = apps
            .iter()
            .find(|a| a.name == app.name)
            .with_context(|| format!("no local SCIM app for {}", app.name))?;
        app.base_url.clone_from(&local.base_url);
        app.token = Some(Secret::inline(local.token.clone()));
    }
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("the demo's configuration: {e}"))?;
    Ok(config)
}

fn push_token(config: &Config) -> anyhow::Result<String> {
    config
        .ingest
        .push
        .token
        .as_ref()
        .context("push token")?
        .expose()
        .context("push token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_configuration_parses() {
        let config: Config = toml::from_str(DEMO_TOML).expect("demo.toml parses");
        let apps: Vec<&str> = config
            .provisioner
            .apps
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(apps, ["slack", "lattice"]);
        assert_eq!(config.projector.rules.groups.len(), 3);
    }

    #[test]
    fn next_week_starts_on_a_monday_morning() {
        let start = next_monday_9am_paris();
        assert_eq!(start.weekday(), chrono::Weekday::Mon);
        let days = (start.with_timezone(&Utc) - Utc::now()).num_days();
        assert!((0..=7).contains(&days), "{start}");
    }
}
