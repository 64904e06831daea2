//! A private PostgreSQL server for one test: its own data directory and
//! port, so a test can stop (or crash) and start it without touching the
//! shared server at 127.0.0.1:5432 that other tests use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::process::free_port;

/// How [`PgServer::stop`] stops the server (`pg_ctl stop -m MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnects every client, rolls back open transactions and shuts
    /// down cleanly (a checkpoint is written).
    Fast,
    /// Kills the server without a checkpoint, as a crash or a power loss
    /// would: the next start recovers from the write-ahead log.
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// The OS user the server runs as when the tests run as root (PostgreSQL
/// refuses to run as root).
const SERVER_USER: &str = "postgres";

/// A PostgreSQL server of its own (`initdb` into a temporary directory,
/// trust authentication, listening on 127.0.0.1 on a free port), stopped
/// and removed on drop.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Whether commands run as [`SERVER_USER`] (the tests run as root).
    as_server_user: bool,
    running: bool,
}

impl PgServer {
    /// Creates a cluster with `initdb` and starts it.
    ///
    /// # Errors
    /// The PostgreSQL server binaries are not installed (the message says
    /// which package to install), or `initdb` or the start failed (the
    /// message holds their output).
    pub fn start() -> anyhow::Result<Self> {
        let bin = server_bin()?;
        let as_server_user = is_root();
        let dir = tempfile::Builder::new().prefix("hrsync-pg-").tempdir()?;
        if as_server_user {
            // The server runs as `postgres`: it must own its directory (and
            // reach it: a tempdir is 0700).
            let status = Command::new("chown")
                .args([SERVER_USER, "--"])
                .arg(dir.path())
                .status()
                .context("running chown")?;
            if !status.success() {
                bail!(
                    "cannot give {} to the `{SERVER_USER}` OS user (chown: {status}); \
                     the private PostgreSQL server runs as that user when the tests run as root",
                    dir.path().display()
                );
            }
        }
        let mut server = PgServer {
            bin,
            dir,
            port: free_port()?,
            as_server_user,
            running: false,
        };
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        server.start_again()?;
        Ok(server)
    }

    /// Starts the server again after [`PgServer::stop`], on the same port
    /// and data directory, and waits until it accepts connections (after a
    /// crash, once recovery is done).
    ///
    /// # Errors
    /// `pg_ctl start` failed; the message holds the server's log.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let data = self.data_dir();
        let log = self.log_path();
        // fsync off: a test's data need not survive a power loss, and the
        // machine's disk is shared with builds. (An immediate stop is not a
        // power loss: the WAL written so far is in the OS's page cache.)
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories='{}' \
             -c fsync=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
            ],
        )
        .map_err(|e| anyhow!("{e}\nserver log:\n{}", self.log_tail()))?;
        self.running = true;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("PostgreSQL started but does not listen on {addr}"))?;
        Ok(())
    }

    /// Stops the server (`pg_ctl stop -m MODE`) and waits until it is gone.
    ///
    /// # Errors
    /// `pg_ctl stop` failed.
    pub fn stop(&mut self, mode: StopMode) -> anyhow::Result<()> {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_arg().as_ref(),
            ],
        )?;
        self.running = false;
        Ok(())
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL of database `database` (user `postgres`, no
    /// password).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Runs PostgreSQL tool `tool` with `args`, as [`SERVER_USER`] when the
    /// tests run as root.
    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
        let program = self.bin.join(tool);
        let mut command = if self.as_server_user {
            let mut c = Command::new("runuser");
            c.args(["-u", SERVER_USER, "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "{tool} failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            if let Err(e) = self.stop(StopMode::Immediate) {
                eprintln!("warning: the private PostgreSQL server did not stop: {e}");
            }
        }
    }
}

/// The newest installed PostgreSQL's server binaries: `IT_PG_BIN`, else the
/// highest version under `/usr/lib/postgresql/*/bin` (Debian's layout).
fn server_bin() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("IT_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    newest.map(|(_, bin)| bin).ok_or_else(|| {
        anyhow!(
            "no PostgreSQL server binaries (initdb, pg_ctl) under {}/*/bin. Install them \
             (Debian/Ubuntu: `apt-get install postgresql`; `bash scripts/test` does) or set \
             IT_PG_BIN to the directory holding initdb and pg_ctl",
            root.display()
        )
    })
}

fn is_root() -> bool {
    // (No libc dependency for one call: `id -u` answers the same.)
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
