//! The parts the demo starts: HR's side of the push API, the local SCIM
//! apps and the tansu broker.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::story::Account;

/// The HR system: posts events to the push API.
pub(super) struct Hr {
    pub(super) client: reqwest::Client,
    pub(super) url: String,
    pub(super) token: String,
}

/// The push API's answer to one event.
pub(super) struct Said {
    pub(super) event_id: String,
    /// When the `202` arrived.
    pub(super) at: Instant,
}

impl Hr {
    pub(super) async fn say(&self, body: String) -> anyhow::Result<Said> {
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
pub(super) struct ScimApp {
    pub(super) name: &'static str,
    pub(super) base_url: String,
    pub(super) token: String,
}

impl ScimApp {
    pub(super) async fn start(
        name: &'static str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
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
    pub(super) async fn accounts(&self, client: &reqwest::Client) -> anyhow::Result<Vec<Account>> {
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

/// A spawned tansu broker keeping its data in memory.
pub(super) struct Broker {
    child: tokio::process::Child,
    pub(super) addr: SocketAddr,
}

impl Broker {
    pub(super) async fn start(tansu: &Path, dir: &Path) -> anyhow::Result<Self> {
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

    pub(super) async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// A port nobody listens on right now.
pub(super) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
