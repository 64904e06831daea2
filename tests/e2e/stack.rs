//! The parts of an end-to-end run: SCIM apps, `hrsync` role processes over
//! one broker and one PostgreSQL database (a fresh one on the shared server,
//! or one the test gives), and polling.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hrsync_provisioner::scim::ScimClient;
use hrsync_tests::{Broker, FaultProxy, PgDatabase, ScimServer};
use serde_json::{json, Value};

pub(crate) const PUSH_TOKEN: &str = "e2e-push-token-5c1d";

/// Polls `check` until it is true, for up to a minute.
pub(crate) async fn eventually<F, Fut>(what: &str, check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    eventually_within(what, Duration::from_secs(60), check).await
}

/// Polls `check` until it is true, for up to `limit`.
pub(crate) async fn eventually_within<F, Fut>(
    what: &str,
    limit: Duration,
    check: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    eventually_every(what, limit, Duration::from_millis(100), check).await
}

/// Polls `check` every `every` until it is true, for up to `limit`.
pub(crate) async fn eventually_every<F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = check().await;
        if matches!(last, Ok(true)) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what}: not reached within {limit:?} (last check: {last:?})"
        );
        tokio::time::sleep(every).await;
    }
}

/// Where an app runs.
pub(crate) enum App {
    /// The third-party `scim2-server` (a separate process), behind a proxy
    /// that records the `traceparent` of every request.
    ThirdParty(ScimServer, FaultProxy),
    /// The local SCIM app, served in-process; hrsync reaches it through
    /// `proxy` when there is one.
    Local {
        state: hrsync_scim_app::AppState,
        base: String,
        token: String,
        proxy: Option<FaultProxy>,
        _task: tokio::task::JoinHandle<()>,
    },
}

/// One named app and a client of it.
pub(crate) struct NamedApp {
    pub(crate) name: String,
    pub(crate) app: App,
    client: ScimClient,
}

impl NamedApp {
    /// Where the test reads the app: straight at its server, never through
    /// its proxy's faults.
    fn base_url(&self) -> String {
        match &self.app {
            App::ThirdParty(server, _) => server.base_url(),
            App::Local { base, .. } => base.clone(),
        }
    }

    /// Where hrsync reaches the app: through its proxy if it has one.
    fn hrsync_url(&self) -> String {
        match &self.app {
            App::ThirdParty(_, proxy)
            | App::Local {
                proxy: Some(proxy), ..
            } => proxy.url(),
            App::Local { base, .. } => base.clone(),
        }
    }

    /// The proxy between hrsync and the app, to inject faults with.
    ///
    /// # Panics
    /// When the app has none (a local app started without one).
    pub(crate) fn proxy(&self) -> &FaultProxy {
        match &self.app {
            App::ThirdParty(_, proxy)
            | App::Local {
                proxy: Some(proxy), ..
            } => proxy,
            App::Local { proxy: None, .. } => panic!("app {} has no proxy", self.name),
        }
    }

    fn token(&self) -> &str {
        match &self.app {
            App::ThirdParty(server, _) => server.token(),
            App::Local { token, .. } => token,
        }
    }

    /// The account whose `userName` is `user_name`.
    pub(crate) async fn user(&self, user_name: &str) -> anyhow::Result<Option<Value>> {
        Ok(self.client.find_user("userName", user_name).await?)
    }

    /// Every account the app holds, read page by page.
    pub(crate) async fn users(&self) -> anyhow::Result<Vec<Value>> {
        let client = reqwest::Client::new();
        let mut users: Vec<Value> = Vec::new();
        loop {
            let page = client
                .get(format!(
                    "{}/Users?startIndex={}&count=1000",
                    self.base_url(),
                    users.len() + 1
                ))
                .bearer_auth(self.token())
                .send()
                .await?
                .error_for_status()?
                .json::<Value>()
                .await?;
            let resources = page["Resources"].as_array().cloned().unwrap_or_default();
            let total = page["totalResults"].as_u64().unwrap_or(0) as usize;
            if resources.is_empty() {
                anyhow::ensure!(
                    users.len() >= total,
                    "paging ended at {} of {total}",
                    users.len()
                );
                return Ok(users);
            }
            users.extend(resources);
        }
    }

    /// How many accounts the app holds.
    pub(crate) async fn count(&self) -> anyhow::Result<usize> {
        if let App::Local { state, .. } = &self.app {
            return Ok(state.user_count());
        }
        let page = reqwest::Client::new()
            .get(format!("{}/Users?count=1", self.base_url()))
            .bearer_auth(self.token())
            .send()
            .await?
            .error_for_status()?
            .json::<Value>()
            .await?;
        Ok(page["totalResults"].as_u64().unwrap_or(0) as usize)
    }

    /// The display names of the groups `user_id` is a member of.
    async fn groups_of(&self, user_id: &str) -> anyhow::Result<Vec<String>> {
        let page = reqwest::Client::new()
            .get(format!("{}/Groups?count=1000", self.base_url()))
            .bearer_auth(self.token())
            .send()
            .await?
            .error_for_status()?
            .json::<Value>()
            .await?;
        let mut names: Vec<String> = page["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| {
                g["members"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["value"] == user_id))
            })
            .filter_map(|g| g["displayName"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }
}

/// The apps of a run, and whether groups are pushed to them.
pub(crate) struct ScimApps(Vec<NamedApp>, bool);

impl ScimApps {
    /// One `scim2-server` per name.
    pub(crate) async fn third_party(names: &[&str]) -> anyhow::Result<Self> {
        let mut apps = Vec::new();
        for name in names {
            let server = ScimServer::start()?;
            let proxy = FaultProxy::start(&server.base_url()).await?;
            let client =
                ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
                    .map_err(anyhow::Error::msg)?;
            apps.push(NamedApp {
                name: (*name).to_owned(),
                app: App::ThirdParty(server, proxy),
                client,
            });
        }
        Ok(ScimApps(apps, true))
    }

    /// One local SCIM app per name, in-process. Like every local app here it
    /// accepts duplicate `userName`s (the `duplicate-user-names` quirk), so
    /// that a create hrsync gets applied twice shows as a second account
    /// instead of a 409 the app resolves for it.
    pub(crate) async fn local(names: &[&str]) -> anyhow::Result<Self> {
        Self::local_with(names, false).await
    }

    /// One local SCIM app per name, in-process, each reached by hrsync
    /// through a [`FaultProxy`] ([`NamedApp::proxy`]).
    pub(crate) async fn local_behind_proxies(names: &[&str]) -> anyhow::Result<Self> {
        Self::local_with(names, true).await
    }

    async fn local_with(names: &[&str], proxied: bool) -> anyhow::Result<Self> {
        let mut apps = Vec::new();
        for name in names {
            let token = format!("{name}-e2e-token");
            let state = hrsync_scim_app::AppState::with_options(
                token.clone(),
                hrsync_scim_app::Options {
                    quirks: [hrsync_scim_app::Quirk::DuplicateUserNames].into(),
                    ..hrsync_scim_app::Options::default()
                },
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let base = format!("http://{}", listener.local_addr()?);
            let router = hrsync_scim_app::router(state.clone());
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            });
            let client = ScimClient::new(&base, &token, Duration::from_secs(10))
                .map_err(anyhow::Error::msg)?;
            let proxy = if proxied {
                Some(FaultProxy::start(&base).await?)
            } else {
                None
            };
            apps.push(NamedApp {
                name: (*name).to_owned(),
                app: App::Local {
                    state,
                    base,
                    token,
                    proxy,
                    _task: task,
                },
                client,
            });
        }
        Ok(ScimApps(apps, true))
    }

    /// The apps.
    pub(crate) fn all(&self) -> &[NamedApp] {
        &self.0
    }

    /// The `traceparent` headers app `name` received (third-party apps).
    pub(crate) fn traceparents(&self, name: &str) -> Vec<String> {
        match &self.get(name).app {
            App::ThirdParty(_, proxy) => proxy.traceparents(),
            App::Local { .. } => Vec::new(),
        }
    }

    /// The same apps without group push (the local app's groups grow by one
    /// member per PATCH, each rewriting the whole member list: quadratic at
    /// 10,000 members).
    pub(crate) fn without_groups(self) -> Self {
        ScimApps(self.0, false)
    }

    /// The app called `name`.
    pub(crate) fn get(&self, name: &str) -> &NamedApp {
        self.0
            .iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no app {name}"))
    }

    /// Per app: the account of `user_name`, if any, as (active, groups).
    pub(crate) async fn account(
        &self,
        user_name: &str,
    ) -> anyhow::Result<Vec<(String, Option<(bool, Vec<String>)>)>> {
        let mut out = Vec::new();
        for app in &self.0 {
            let account = match app.user(user_name).await? {
                Some(user) => {
                    let id = user["id"].as_str().unwrap_or_default().to_owned();
                    let active = user["active"].as_bool().unwrap_or(true);
                    Some((active, app.groups_of(&id).await?))
                }
                None => None,
            };
            out.push((app.name.clone(), account));
        }
        Ok(out)
    }

    /// Accounts per app.
    pub(crate) async fn counts(&self) -> anyhow::Result<Vec<(String, usize)>> {
        let mut out = Vec::new();
        for app in &self.0 {
            out.push((app.name.clone(), app.count().await?));
        }
        Ok(out)
    }

    /// A rule's `apps` list: those of `apps` this test runs (a rule naming an
    /// app the configuration does not declare stops hrsync at start).
    fn granted(&self, apps: &[&str]) -> String {
        let names: Vec<String> = apps
            .iter()
            .filter(|name| self.0.iter().any(|a| a.name == **name))
            .map(|name| format!("{name:?}"))
            .collect();
        format!("[{}]", names.join(", "))
    }

    /// The apps' `[[provisioner.apps]]` entries. Every app here runs on this
    /// machine for the test, so none has a rate limit (`rate_limit = 0`):
    /// the runs push thousands of workers.
    fn config(&self) -> String {
        self.0
            .iter()
            .map(|a| {
                format!(
                    "[[provisioner.apps]]\nname = \"{}\"\nbase_url = \"{}\"\ntoken = \"{}\"\npush_groups = {}\nrate_limit = 0\n",
                    a.name,
                    a.hrsync_url(),
                    a.token(),
                    self.1
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `hrsync run --role ...` processes sharing a broker, a database and a
/// config file.
pub(crate) struct Processes {
    /// Behind a lock, so a test can kill and restart a process while other
    /// tasks use the stack.
    children: std::sync::Mutex<Vec<Child>>,
    roles: Vec<String>,
    /// Each process's stderr (its log), appended to by its restarts.
    logs: Vec<PathBuf>,
    /// Each process's own `HRSYNC_*` settings (kept for its restarts).
    envs: Vec<Vec<(String, String)>>,
    metrics: Vec<String>,
    push: String,
    /// The admin API's base URL (served only when started with an issuer).
    pub(crate) admin: String,
    config: PathBuf,
    broker: Broker,
    /// The PostgreSQL database of every role, when they keep their state
    /// in one (the audit is read there).
    db_url: Option<String>,
    /// The database made for this run, if any.
    _db: Option<PgDatabase>,
    _dir: tempfile::TempDir,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.children().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Lucy Gray's hire (E7, Customer Support: slack by the example rules).
pub(crate) fn lucys_hire() -> Value {
    serde_json::json!({
        "type": "hire", "employee_id": "E7", "time_zone": "Europe/London",
        "attributes": {"given_name": "Lucy", "family_name": "Gray",
            "work_email": "lucy@example.com", "employment_type": "employee",
            "department": "Customer Support"}})
}

/// The `hrsync` binary, without the test's own `HRSYNC_*` settings (such
/// as `HRSYNC_FAULT_OUTAGE_SECS`): hrsync reads `HRSYNC_*` variables as
/// config keys and refuses unknown ones.
fn hrsync() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hrsync"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HRSYNC_") {
            command.env_remove(name);
        }
    }
    command
}

fn free_port() -> anyhow::Result<u16> {
    hrsync_tests::free_port()
}

/// Where the roles keep their state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stores {
    /// One fresh PostgreSQL database shared by the roles.
    Postgres,
    /// The PostgreSQL database at this URL (a private server's, say),
    /// shared by the roles.
    PostgresAt(String),
    /// A SQLite file per role.
    Sqlite,
}

impl Processes {
    /// Starts one `hrsync run --role R` per role (`all` for one process),
    /// and waits until each is ready (`/readyz`).
    pub(crate) async fn start(apps: &ScimApps, roles: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(Broker::start()?, apps, roles, Stores::Postgres, None).await
    }

    /// [`Processes::start`] with every process exporting its spans to the
    /// OTLP/HTTP endpoint `otlp` (`.../v1/traces`).
    pub(crate) async fn start_traced(
        apps: &ScimApps,
        roles: &[&str],
        otlp: &str,
    ) -> anyhow::Result<Self> {
        let mut processes =
            Self::start_with(Broker::start()?, apps, &[], Stores::Postgres, None).await?;
        for role in roles {
            let env = vec![
                (
                    "HRSYNC_TELEMETRY__OTLP_ENDPOINT".to_owned(),
                    otlp.to_owned(),
                ),
                (
                    "HRSYNC_TELEMETRY__SERVICE_NAME".to_owned(),
                    format!("hrsync-{role}"),
                ),
            ];
            let i = processes.start_another_with(role, env)?;
            processes.wait_ready(i).await?;
        }
        Ok(processes)
    }

    /// [`Processes::start`] with the admin API served (by the process of
    /// role `all` or `admin`) and tokens of `issuer` accepted; `app_settings`
    /// (TOML keys) are added to every `[[provisioner.apps]]` entry.
    pub(crate) async fn start_admin(
        apps: &ScimApps,
        roles: &[&str],
        issuer: &str,
        app_settings: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(
            Broker::start()?,
            apps,
            roles,
            Stores::Postgres,
            Some((issuer, app_settings)),
        )
        .await
    }

    /// [`Processes::start_admin`] with the roles' state in `stores`.
    pub(crate) async fn start_admin_on(
        apps: &ScimApps,
        roles: &[&str],
        stores: Stores,
        issuer: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(Broker::start()?, apps, roles, stores, Some((issuer, ""))).await
    }

    /// [`Processes::start`] with the roles' state in `stores`.
    pub(crate) async fn start_on(
        apps: &ScimApps,
        roles: &[&str],
        stores: Stores,
    ) -> anyhow::Result<Self> {
        Self::start_with(Broker::start()?, apps, roles, stores, None).await
    }

    /// [`Processes::start_on`] over a broker that keeps its log in SQLite, so
    /// that it can be killed and started again
    /// ([`Processes::kill_broker`]) without losing anything it
    /// acknowledged.
    pub(crate) async fn start_durable(
        apps: &ScimApps,
        roles: &[&str],
        stores: Stores,
    ) -> anyhow::Result<Self> {
        Self::start_with(Broker::start_durable()?, apps, roles, stores, None).await
    }

    async fn start_with(
        broker: Broker,
        apps: &ScimApps,
        roles: &[&str],
        stores: Stores,
        admin: Option<(&str, &str)>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let admin_port = free_port()?;
        let app_settings = admin.map_or("", |(_, settings)| settings);
        let admin = admin.map_or_else(String::new, |(issuer, _)| {
            format!(
                "[oauth]\nissuer = \"{issuer}\"\naudience = \"{}\"\n\n\
                 [oauth.roles]\nclaim = \"groups\"\nadmin = [\"hrsync-admins\"]\n\n\
                 [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n\
                 [console]\nclient_id = \"console\"\n\
                 public_url = \"http://127.0.0.1:{admin_port}\"\n\
                 trace_url = \"http://traces.test/trace/{{trace_id}}\"\n",
                hrsync_tests::HRSYNC_AUDIENCE
            )
        });
        let (db, url) = match stores {
            Stores::Postgres => {
                let db = PgDatabase::fresh().await?;
                let url = db.url().to_owned();
                (Some(db), (url.clone(), url.clone(), url))
            }
            Stores::PostgresAt(url) => (None, (url.clone(), url.clone(), url)),
            Stores::Sqlite => {
                let url = |role: &str| {
                    format!(
                        "sqlite://{}?mode=rwc",
                        dir.path().join(format!("{role}.db")).display()
                    )
                };
                (None, (url("ingest"), url("projector"), url("provisioner")))
            }
        };
        let push_port = free_port()?;
        let config = dir.path().join("hrsync.toml");
        std::fs::write(
            &config,
            format!(
                r#"{kafka}
[telemetry]
log_format = "human"
log_filter = "warn"

[ingest]
database_url = "{ingest_db}"

[ingest.push]
listen = "127.0.0.1:{push_port}"
token = {{ env = "PUSH_TOKEN" }}

[[ingest.sources]]
name = "hris"

[projector]
database_url = "{projector_db}"
timer_interval_ms = 200
batch_linger_ms = 5

[projector.prehire_days]
slack = 7

[[projector.rules.groups]]
name = "Everyone"
rule = 'true'
apps = {everyone}

[[projector.rules.groups]]
name = "Customer Support"
rule = 'person.department == "Customer Support"'
apps = {support}

[[projector.rules.groups]]
name = "People Managers"
rule = 'is_manager || person.title.contains("Manager")'
apps = {managers}

[provisioner]
database_url = "{provisioner_db}"
max_backoff_ms = 2000

{apps}

{admin}
"#,
                kafka = broker.kafka_toml(),
                ingest_db = url.0,
                projector_db = url.1,
                provisioner_db = url.2,
                apps = apps.config().replace(
                    "rate_limit = 0\n",
                    &format!("rate_limit = 0\n{app_settings}\n")
                ),
                everyone = apps.granted(&["slack"]),
                support = apps.granted(&["slack", "zendesk"]),
                managers = apps.granted(&["lattice"]),
            ),
        )?;
        let mut processes = Processes {
            children: std::sync::Mutex::new(Vec::new()),
            roles: Vec::new(),
            logs: Vec::new(),
            envs: Vec::new(),
            metrics: Vec::new(),
            push: format!("http://127.0.0.1:{push_port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            config,
            broker,
            db_url: url.0.starts_with("postgres").then(|| url.0.clone()),
            _db: db,
            _dir: dir,
        };
        for role in roles {
            let metrics = format!("http://127.0.0.1:{}", free_port()?);
            let log = processes.config.with_file_name(format!("{role}.log"));
            let child = processes.spawn(role, &metrics, &log, &[])?;
            processes.children().push(child);
            processes.roles.push((*role).to_owned());
            processes.logs.push(log);
            processes.envs.push(Vec::new());
            processes.metrics.push(metrics);
        }
        for i in 0..roles.len() {
            processes.wait_ready(i).await?;
        }
        Ok(processes)
    }

    /// Starts `hrsync run --role ROLE`, serving its endpoints at `metrics`
    /// and appending its log to `log`.
    fn spawn(
        &self,
        role: &str,
        metrics: &str,
        log: &std::path::Path,
        env: &[(String, String)],
    ) -> anyhow::Result<Child> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        Ok(hrsync()
            .arg("--config")
            .arg(&self.config)
            .args(["run", "--role", role])
            .env("PUSH_TOKEN", PUSH_TOKEN)
            // An error ends the log with its causes, not a backtrace that
            // pushes them out of the tail a failure message shows.
            .env("RUST_LIB_BACKTRACE", "0")
            .env(
                "HRSYNC_TELEMETRY__LISTEN",
                metrics.trim_start_matches("http://"),
            )
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?)
    }

    /// Adds `toml` to the end of the config file: processes started from
    /// now on read it (those running keep what they read).
    pub(crate) fn add_config(&self, toml: &str) -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.config)?;
        std::io::Write::write_all(&mut file, format!("\n{toml}\n").as_bytes())?;
        Ok(())
    }

    /// The URL of the PostgreSQL database the roles share, if they do.
    pub(crate) fn db_url(&self) -> Option<&str> {
        self.db_url.as_deref()
    }

    /// Runs `hrsync ARGS...` on the stack's config; its output if it
    /// succeeds.
    pub(crate) fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = hrsync()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "hrsync {}: {}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Starts one more `hrsync run --role ROLE` on the same config without
    /// waiting for it to be ready (a standby is not); returns its index.
    pub(crate) fn start_another(&mut self, role: &str) -> anyhow::Result<usize> {
        self.start_another_with(role, Vec::new())
    }

    /// [`Processes::start_another`] with its own `HRSYNC_*` settings.
    pub(crate) fn start_another_with(
        &mut self,
        role: &str,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<usize> {
        let metrics = format!("http://127.0.0.1:{}", free_port()?);
        let i = self.roles.len();
        let log = self.config.with_file_name(format!("{role}-{i}.log"));
        let child = self.spawn(role, &metrics, &log, &env)?;
        self.children().push(child);
        self.roles.push(role.to_owned());
        self.logs.push(log);
        self.envs.push(env);
        self.metrics.push(metrics);
        Ok(i)
    }

    /// The status process `i` answers `/healthz` and `/readyz` with, if it
    /// answers.
    pub(crate) async fn health(&self, i: usize) -> (Option<u16>, Option<u16>) {
        let status = |path: &str| {
            let url = format!("{}/{path}", self.metrics[i]);
            async move { reqwest::get(url).await.ok().map(|r| r.status().as_u16()) }
        };
        (status("healthz").await, status("readyz").await)
    }

    /// The base URL of the first push API (`[ingest.push] listen`).
    pub(crate) fn push_url(&self) -> &str {
        &self.push
    }

    /// Waits until process `i` answers `/readyz` with 200.
    pub(crate) async fn wait_ready(&self, i: usize) -> anyhow::Result<()> {
        let base = &self.metrics[i];
        eventually_within(
            &format!("{} ready", self.roles[i]),
            Duration::from_secs(120),
            || async {
                Ok(reqwest::get(format!("{base}/readyz"))
                    .await
                    .is_ok_and(|r| r.status().is_success()))
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", self.log_tail(i)))
    }

    /// Kills process `i` with SIGKILL (no shutdown, no flushing, no commit)
    /// and reaps it.
    pub(crate) fn kill(&self, i: usize) -> anyhow::Result<()> {
        let mut children = self.children();
        children[i].kill()?;
        children[i].wait()?;
        Ok(())
    }

    fn children(&self) -> std::sync::MutexGuard<'_, Vec<Child>> {
        self.children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The roles' PostgreSQL database.
    fn pg_url(&self) -> anyhow::Result<&str> {
        self.db_url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("the audit is read from PostgreSQL stores only"))
    }

    /// How process `i` exited, if it has.
    pub(crate) fn exited(&self, i: usize) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.children()[i].try_wait()?)
    }

    /// Starts process `i` again with the same role, config, endpoint and
    /// log, and waits until it is ready.
    pub(crate) async fn restart(&self, i: usize) -> anyhow::Result<()> {
        let child = self.spawn(
            &self.roles[i],
            &self.metrics[i],
            &self.logs[i],
            &self.envs[i],
        )?;
        self.children()[i] = child;
        self.wait_ready(i).await
    }

    /// Kills the broker with SIGKILL; it stays down until
    /// [`Processes::start_broker_again`].
    pub(crate) fn kill_broker(&mut self) {
        self.broker.kill();
    }

    /// Starts the killed broker again on the same port and storage.
    pub(crate) fn start_broker_again(&mut self) -> anyhow::Result<()> {
        self.broker.start_again()
    }

    /// The broker's last log lines, for failure messages.
    pub(crate) fn broker_log_tail(&self) -> String {
        self.broker.log_tail()
    }

    /// Fails when a line any process logged holds one of the run's
    /// [`Processes::secrets`] (without saying which secret).
    pub(crate) fn check_logs_hold_no_secret(&self, apps: &ScimApps) -> anyhow::Result<()> {
        for (i, role) in self.roles.iter().enumerate() {
            let log = self.log(i);
            for secret in self.secrets(apps) {
                anyhow::ensure!(
                    !log.contains(secret),
                    "a line logged by the {role} process holds a secret"
                );
            }
        }
        Ok(())
    }

    /// Everything process `i` (and its restarts) logged.
    pub(crate) fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.logs[i]).unwrap_or_default()
    }

    /// The last lines process `i` logged, for failure messages.
    pub(crate) fn log_tail(&self, i: usize) -> String {
        let log = self.log(i);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The secrets of the run that no log line may hold: the push API's
    /// token and each app's.
    pub(crate) fn secrets<'a>(&'a self, apps: &'a ScimApps) -> Vec<&'a str> {
        let mut secrets = vec![PUSH_TOKEN];
        secrets.extend(apps.0.iter().map(NamedApp::token));
        secrets
    }

    /// Posts one HR event to the push API; expects 202.
    pub(crate) async fn push(&self, event: Value) -> anyhow::Result<Value> {
        self.push_traced(event, None).await
    }

    /// Posts `event` with `Idempotency-Key: key` until the push API answers
    /// 202, as an HR system's webhook retries: through refused connections,
    /// 503s and a key still in progress, for up to `limit`. Returns the
    /// answer and how many attempts it took.
    pub(crate) async fn push_until_accepted(
        &self,
        key: &str,
        event: &Value,
        limit: Duration,
    ) -> anyhow::Result<(Value, usize)> {
        self.push_until_accepted_at(&self.push, key, event, limit)
            .await
    }

    /// [`Processes::push_until_accepted`] to the push API at `base`.
    pub(crate) async fn push_until_accepted_at(
        &self,
        base: &str,
        key: &str,
        event: &Value,
        limit: Duration,
    ) -> anyhow::Result<(Value, usize)> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let deadline = Instant::now() + limit;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let last = match client
                .post(format!("{base}/v1/events"))
                .bearer_auth(PUSH_TOKEN)
                .header("Idempotency-Key", key)
                .json(event)
                .send()
                .await
            {
                Ok(response) if response.status().as_u16() == 202 => {
                    return Ok((response.json().await?, attempts));
                }
                Ok(response) => {
                    let status = response.status();
                    anyhow::ensure!(
                        status.as_u16() == 409 || status.is_server_error(),
                        "push {key}: {status} {}",
                        response.text().await.unwrap_or_default()
                    );
                    format!("{status}")
                }
                Err(error) => error.to_string(),
            };
            anyhow::ensure!(
                Instant::now() < deadline,
                "push {key}: not accepted within {limit:?} (last: {last})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// [`Processes::push`] as part of the HR system's trace `traceparent`.
    pub(crate) async fn push_traced(
        &self,
        event: Value,
        traceparent: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut request = reqwest::Client::new()
            .post(format!("{}/v1/events", self.push))
            .bearer_auth(PUSH_TOKEN)
            .json(&event);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        anyhow::ensure!(status.as_u16() == 202, "push {event}: {status} {body}");
        Ok(body)
    }

    /// Posts one HR event to the push API under `Idempotency-Key: key`;
    /// returns the status and the body, whatever they are.
    pub(crate) async fn push_keyed(
        &self,
        event: &Value,
        key: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/events", self.push))
            .bearer_auth(PUSH_TOKEN)
            .header("Idempotency-Key", key)
            .json(event)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or_default()))
    }

    /// Pushes an immediate termination of `employee_id` and waits until
    /// their account is inactive in every app: the pipeline goes on.
    pub(crate) async fn termination_reaches_every_app(
        &self,
        apps: &ScimApps,
        employee_id: &str,
    ) -> anyhow::Result<()> {
        self.termination_reaches_every_app_within(apps, employee_id, Duration::from_secs(60))
            .await
    }

    /// [`Processes::termination_reaches_every_app`], waiting up to `limit`.
    pub(crate) async fn termination_reaches_every_app_within(
        &self,
        apps: &ScimApps,
        employee_id: &str,
        limit: Duration,
    ) -> anyhow::Result<()> {
        self.push(json!({"type": "terminate", "employee_id": employee_id,
            "time_zone": "Europe/Paris", "immediate": true}))
            .await?;
        eventually_within(
            &format!("the termination of {employee_id} in every app"),
            limit,
            || async {
                Ok(apps
                    .account(employee_id)
                    .await?
                    .iter()
                    .all(|(_, a)| a.as_ref().is_some_and(|(active, _)| !*active)))
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", self.log_tail(0)))
    }

    /// Imports a snapshot of source `hris` with `hrsync ingest import`.
    pub(crate) fn import(&self, csv: &str) -> anyhow::Result<()> {
        let output = self.import_command(csv)?.output()?;
        anyhow::ensure!(
            output.status.success(),
            "import failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// The `hrsync ingest import --source hris` command of snapshot `csv`
    /// (written to a file of its own), for the caller to run.
    pub(crate) fn import_command(&self, csv: &str) -> anyhow::Result<Command> {
        let file = self
            .config
            .with_file_name(format!("{}.csv", hrsync_tests::unique("snapshot")));
        std::fs::write(&file, csv)?;
        let mut command = hrsync();
        command
            .arg("--config")
            .arg(&self.config)
            .args(["ingest", "import", "--source", "hris"])
            .arg(&file)
            .env("PUSH_TOKEN", PUSH_TOKEN);
        Ok(command)
    }

    /// The trace ids of the provisioner's audit records for `app` and
    /// `operation` (`CREATE`, `DEACTIVATE`, ...).
    pub(crate) async fn audit_traces(
        &self,
        app: &str,
        operation: &str,
    ) -> anyhow::Result<Vec<String>> {
        let pool = sqlx::PgPool::connect(self.pg_url()?).await?;
        let traces: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT trace_id FROM provisioner_audit WHERE app = $1 AND operation = $2",
        )
        .bind(app)
        .bind(operation)
        .fetch_all(&pool)
        .await?;
        pool.close().await;
        Ok(traces.into_iter().flatten().collect())
    }

    /// The SCIM ids of the accounts whose creation (or link to an existing
    /// account) the provisioner's audit table records for `app`.
    pub(crate) async fn audited_accounts(
        &self,
        app: &str,
    ) -> anyhow::Result<std::collections::HashSet<String>> {
        let pool = sqlx::PgPool::connect(self.pg_url()?).await?;
        let ids: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT scim_id FROM provisioner_audit WHERE app = $1 \
             AND operation IN ('CREATE', 'LINK') AND outcome = 'SUCCESS'",
        )
        .bind(app)
        .fetch_all(&pool)
        .await?;
        pool.close().await;
        Ok(ids.into_iter().flatten().collect())
    }

    /// How many successful `operation`s (`CREATE`, `DEACTIVATE`, ...) the
    /// provisioner's audit table records for `app`.
    pub(crate) async fn audit_count(&self, app: &str, operation: &str) -> anyhow::Result<i64> {
        let pool = sqlx::PgPool::connect(self.pg_url()?).await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM provisioner_audit WHERE app = $1 AND operation = $2 \
             AND outcome = 'SUCCESS'",
        )
        .bind(app)
        .bind(operation)
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        Ok(count)
    }

    /// For HR worker `employee_id`'s successful `operation` in `app`: the
    /// attempt it succeeded at, and how many failed attempts of that change
    /// the audit table records (every attempt is audited).
    pub(crate) async fn audited_attempts(
        &self,
        app: &str,
        employee_id: &str,
        operation: &str,
    ) -> anyhow::Result<Option<(i64, i64)>> {
        let pool = sqlx::PgPool::connect(self.pg_url()?).await?;
        let attempts: Option<(i64, i64)> = sqlx::query_as(
            "SELECT a.attempt, (SELECT COUNT(*) FROM provisioner_audit f \
               WHERE f.app = a.app AND f.person_id = a.person_id AND f.version = a.version \
               AND f.outcome IN ('RETRY', 'FAILED')) \
             FROM provisioner_audit a JOIN provisioner_person p ON p.person_id = a.person_id \
             WHERE a.app = $1 AND p.employee_id = $2 AND a.operation = $3 \
             AND a.outcome = 'SUCCESS'",
        )
        .bind(app)
        .bind(employee_id)
        .bind(operation)
        .fetch_optional(&pool)
        .await?;
        pool.close().await;
        Ok(attempts)
    }

    /// The `/metrics` text of process `i`.
    pub(crate) async fn metrics(&self, i: usize) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.metrics[i]))
            .await?
            .text()
            .await?)
    }

    /// Sends SIGTERM to process `i` and waits up to `limit` for it to exit;
    /// returns its exit code.
    pub(crate) fn terminate(&self, i: usize, limit: Duration) -> anyhow::Result<Option<i32>> {
        let mut children = self.children();
        let child = &mut children[i];
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "still running {limit:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
