//! A `tansu` Kafka-protocol broker on a free port.

use std::net::SocketAddr;
use std::process::Command;

use anyhow::{anyhow, Context};
use hrsync_bus::KafkaConfig;

use crate::process::{find_tool, free_port, ServerProcess};

/// Version of tansu the harness is tested with.
pub const TANSU_VERSION: &str = "0.6.0";

/// A running tansu broker with in-memory storage, or SQLite storage when it
/// must survive a restart. Killed on drop.
#[derive(Debug)]
pub struct Broker {
    process: Option<ServerProcess>,
    port: u16,
    storage: String,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker that keeps its data in memory.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with("memory://tansu/".to_owned())
    }

    /// Starts a broker that keeps its data in a SQLite file, so
    /// [`Broker::restart`] keeps topics, records and committed offsets.
    pub fn start_durable() -> anyhow::Result<Self> {
        Self::start_with("sqlite://tansu.db".to_owned())
    }

    fn start_with(storage: String) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut broker = Broker {
            process: None,
            port: free_port()?,
            storage,
            dir,
        };
        broker.launch()?;
        Ok(broker)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let tansu = find_tool(
            "tansu",
            "TANSU_BIN",
            &crate::tools_dir().join("tools/bin/tansu"),
        )
        .ok_or_else(|| {
            anyhow!(
                "the tansu broker is not installed. Run `bash scripts/test` (it installs it), \
                 or `cargo install tansu --version {TANSU_VERSION} --locked --features \
                 dynostore,libsql --root ~/.cache/hrsync/tools`, or set TANSU_BIN"
            )
        })?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut command = Command::new(tansu);
        command
            .current_dir(self.dir.path())
            .args(["broker", "--storage-engine", &self.storage])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .env_remove("CLUSTER_ID")
            .env("RUST_LOG", "warn");
        let mut process =
            ServerProcess::spawn("tansu", command, self.dir.path().join("tansu.log"))?;
        process
            .wait_listening(
                SocketAddr::from(([127, 0, 0, 1], self.port)),
                ServerProcess::START_TIMEOUT,
            )
            .context("starting the tansu broker")?;
        self.process = Some(process);
        Ok(())
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kafka settings pointing at this broker.
    ///
    /// Producers send one record per batch: tansu 0.6 answers a fetch that
    /// starts inside a record batch with nothing (measured: 100 records
    /// sent as one batch, a fetch from offset 1, 37 or 99 returns no
    /// records; Kafka returns the batch and the client skips ahead). A
    /// consumer resuming from a stored offset inside a batch would then
    /// stall, which is a broker bug, not hrsync's; with one record per
    /// batch every offset starts a batch.
    pub fn kafka_config(&self) -> KafkaConfig {
        let mut config = KafkaConfig::new(self.bootstrap());
        config.default_partitions = 3;
        config
            .properties
            .insert("batch.num.messages".to_owned(), "1".to_owned());
        config
    }

    /// The `[kafka]` section of an hrsync config file for this broker, with
    /// the settings of [`Broker::kafka_config`], and a delivery timeout of
    /// 120 s rather than 30: with one record per batch, a process producing
    /// thousands of records (an import of the fault tests' load) waits on
    /// one broker round trip per record, which took over 30 s for the last
    /// records of an import on CI's two cores while other tests ran.
    pub fn kafka_toml(&self) -> String {
        format!(
            "[kafka]\nbrokers = \"{}\"\ndefault_partitions = 3\ndelivery_timeout_ms = 120000\n\n\
             [kafka.properties]\n\"batch.num.messages\" = \"1\"\n",
            self.bootstrap()
        )
    }

    /// Kills the broker (SIGKILL) and starts it again on the same port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.launch()
    }

    /// Kills the broker (SIGKILL: no flush, no goodbye to its clients) and
    /// leaves it down until [`Broker::start_again`]. A broker started with
    /// [`Broker::start_durable`] keeps its log across this.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts a killed broker again on the same port, with the same
    /// storage; a no-op when it is running.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.process.is_some() {
            return Ok(());
        }
        self.launch()
    }

    /// The broker's recent log lines, for assertion messages.
    pub fn log_tail(&self) -> String {
        self.process
            .as_ref()
            .map(ServerProcess::log_tail)
            .unwrap_or_default()
    }
}
