//! Child processes for servers: free ports, logs captured to a file, killed
//! on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A port nobody listens on right now, for a server a test starts.
///
/// Picked below the kernel's ephemeral range (`ip_local_port_range`), so
/// that no outgoing connection takes it as its local port between this
/// check and the server binding it (with many clients at once, a port the
/// kernel handed out for `:0` and freed was seen taken that way: "Address
/// already in use" at the server's start).
pub fn free_port() -> anyhow::Result<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000_u16, ephemeral_low.max(10_001));
    for _ in 0..200 {
        let port = rand::random_range(low..high);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").context("binding an ephemeral port")?;
    Ok(listener.local_addr()?.port())
}

/// Finds an executable: an explicit override, then the harness's cache, then
/// `PATH`.
pub(crate) fn find_tool(name: &str, override_var: &str, cached: &Path) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(override_var) {
        return Some(PathBuf::from(path));
    }
    if cached.is_file() {
        return Some(cached.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// A server process that is killed when dropped.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    log: PathBuf,
    name: &'static str,
}

impl ServerProcess {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub(crate) fn spawn(
        name: &'static str,
        mut command: Command,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(ServerProcess { child, log, name })
    }

    /// Waits until `addr` accepts TCP connections, failing with the server's
    /// log if it exits or does not listen within `timeout`.
    /// How long a started server may take to listen: well under a second
    /// alone, but fixtures have taken over 30 s on CI's two cores while other
    /// tests' servers ran beside them. A server that exits fails at once.
    pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(120);

    pub(crate) fn wait_listening(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} before listening:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {addr} within {timeout:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines the server wrote.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Kills the process at once (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
