//! The third-party `scim2-server` (PyPI) on a free port.

use std::net::SocketAddr;
use std::process::Command;

use anyhow::anyhow;

use crate::process::{find_tool, free_port, ServerProcess};

/// Version of scim2-server the harness is tested with.
pub const SCIM2_SERVER_VERSION: &str = "0.8.3";

/// A running in-memory SCIM 2.0 server requiring a bearer token. Killed on
/// drop.
#[derive(Debug)]
pub struct ScimServer {
    _process: ServerProcess,
    port: u16,
    token: String,
    _dir: tempfile::TempDir,
}

impl ScimServer {
    /// Starts a server with a random bearer token.
    pub fn start() -> anyhow::Result<Self> {
        let binary = find_tool(
            "scim2-server",
            "SCIM2_SERVER_BIN",
            &crate::tools_dir().join("venv/bin/scim2-server"),
        )
        .ok_or_else(|| {
            anyhow!(
                "scim2-server is not installed. Run `bash scripts/test` (it installs it), or \
                 `python3 -m venv ~/.cache/hrsync/venv && ~/.cache/hrsync/venv/bin/pip install \
                 scim2-server=={SCIM2_SERVER_VERSION}`, or set SCIM2_SERVER_BIN"
            )
        })?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let token = crate::unique("token");
        let mut command = Command::new(binary);
        command
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bearer-token", &token]);
        let mut process =
            ServerProcess::spawn("scim2-server", command, dir.path().join("scim2-server.log"))?;
        process.wait_listening(
            SocketAddr::from(([127, 0, 0, 1], port)),
            ServerProcess::START_TIMEOUT,
        )?;
        Ok(ScimServer {
            _process: process,
            port,
            token,
            _dir: dir,
        })
    }

    /// Base URL of the SCIM endpoints (`…/Users`, `…/Groups`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bearer token the server accepts.
    pub fn token(&self) -> &str {
        &self.token
    }
}
