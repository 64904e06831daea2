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

mod issuer;
mod parts;
mod story;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::roles::{self, Ready, Role};
use parts::{free_port, Broker, Hr, ScimApp};
use story::Story;

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
    /// Keep everything running after the story, with the admin console
    /// served (signed in by a local sign-in made for the demo), until
    /// Ctrl-C.
    #[arg(long)]
    keep: bool,
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
        demo(&tansu, args.keep, &interrupted).await
    })
}

async fn demo(tansu: &Path, keep: bool, interrupted: &CancellationToken) -> anyhow::Result<()> {
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
    let apps = [
        ScimApp::start("slack", &apps_shutdown).await?,
        ScimApp::start("lattice", &apps_shutdown).await?,
    ];
    let mut config = config(&broker, dir.path(), &apps)?;
    let console = if keep {
        Some(serve_console(&mut config, &apps_shutdown).await?)
    } else {
        None
    };
    let hr = introduce(&config, &apps)?;
    crate::ensure_topics(&config).await?;

    let shutdown = CancellationToken::new();
    let ready = Ready::new(&[Role::All], hrsync_telemetry::Readiness::default());
    let running = tokio::spawn({
        let config = config.clone();
        let shutdown = shutdown.clone();
        let ready = ready.clone();
        async move { roles::run_until(&config, &[Role::All], shutdown, &ready).await }
    });
    let story = tell(&hr, &apps, &ready, &shutdown, interrupted).await;
    if let (Ok(()), Some(console)) = (&story, &console) {
        println!(
            "\nStill running: the admin console is at {console}\n\
             (a local sign-in made for the demo signs you in as demo-admin).\n\
             Press Ctrl-C to stop."
        );
        tokio::select! {
            () = interrupted.cancelled() => {}
            () = shutdown.cancelled() => {}
        }
    }

    // Stop everything whatever happened, then report.
    shutdown.cancel();
    let stopped = match tokio::time::timeout(Duration::from_secs(20), running).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(anyhow::anyhow!("the roles' task failed: {join}")),
        Err(_) => Err(anyhow::anyhow!("the roles did not stop within 20 s")),
    };
    // The roles have returned with every Kafka client of theirs closed
    // (consumers, producers, stall watches, the audit writer), so the broker
    // can go without a client logging its loss.
    apps_shutdown.cancel();
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

/// Serves the admin API and console beside the roles, signing in at a
/// local issuer made for the demo ([`issuer`]); returns the console's URL.
async fn serve_console(
    config: &mut Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<String> {
    use hrsync_config::Validate;
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let public_url = format!("http://{admin}");
    let issuer = issuer::start(
        free_port()?,
        format!("{public_url}/console/callback"),
        shutdown.clone(),
    )
    .await?;
    config.oauth = Some(hrsync_auth::OAuthConfig::new(issuer, issuer::AUDIENCE));
    config.admin = Some(hrsync_admin::AdminConfig { listen: admin });
    config.console = Some(hrsync_console::ConsoleConfig {
        client_id: issuer::CLIENT_ID.to_owned(),
        client_secret: None,
        public_url: public_url.clone(),
        scopes: None,
        session_max_seconds: 8 * 3600,
        trace_url: None,
    });
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("the demo's configuration: {e}"))?;
    Ok(format!("{public_url}/console/"))
}

/// Prints the apps (with the groups granting each) and the push API; HR's
/// side of it.
fn introduce(config: &Config, apps: &[ScimApp]) -> anyhow::Result<Hr> {
    for app in apps {
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
        token: push_token(config)?,
    };
    println!("  push API   {}", hr.url);
    Ok(hr)
}

/// Waits for the roles to be ready, then plays the story, unless a role
/// fails or the demo is interrupted first.
async fn tell(
    hr: &Hr,
    apps: &[ScimApp],
    ready: &Ready,
    failed: &CancellationToken,
    interrupted: &CancellationToken,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.is_ready() {
        if failed.is_cancelled() || interrupted.is_cancelled() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if ready.is_ready() {
        println!("  roles      ingest, projector, provisioner: running in this process\n");
        let story = Story {
            hr,
            apps,
            failed,
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
    }
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
    config.ingest.push.listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
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
}
