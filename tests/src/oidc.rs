//! A real OAuth 2.0 authorization server for tests of hrsync as a resource
//! server: `tests/oidc-provider/issuer.mjs` (oidc-provider from npm, run by
//! Node.js), issuing JWT access tokens with an audience and scopes, rotating
//! its signing keys on request, and signing arbitrary claims for tests of
//! tokens no client would be given.
//!
//! `scripts/test` installs the npm packages (`npm ci --prefix
//! tests/oidc-provider`); a missing Node.js or package fails the test with
//! a message saying so.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// The audience the issuer's tokens name unless another is asked for.
pub const HRSYNC_AUDIENCE: &str = "https://hrsync.test/api";

/// The running issuer, killed when dropped.
#[derive(Debug)]
pub struct Issuer {
    child: Child,
    issuer: String,
    http: reqwest::Client,
}

/// The fixture's directory.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

impl Issuer {
    /// Starts the issuer on a free port.
    ///
    /// # Errors
    /// Node.js or the npm packages are missing, or it does not start.
    pub fn start() -> anyhow::Result<Self> {
        let fixture = fixture();
        if !fixture.join("node_modules/oidc-provider").is_dir() {
            bail!(
                "the oidc-provider package is not installed: run `npm ci --prefix {}` \
                 (scripts/test does)",
                fixture.display()
            );
        }
        let mut child = Command::new("node")
            .arg(fixture.join("issuer.mjs"))
            .current_dir(&fixture)
            .stdout(Stdio::piped())
            // Why it refused a token request, into the test's output.
            .stderr(Stdio::inherit())
            .spawn()
            .context(
                "starting `node tests/oidc-provider/issuer.mjs` (is Node.js 20+ installed?)",
            )?;
        let stdout = child.stdout.take().context("the issuer's stdout")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let mut started = Issuer {
            child,
            issuer: String::new(),
            http: reqwest::Client::new(),
        };
        let line = receiver
            .recv_timeout(Duration::from_secs(30))
            .context("the issuer did not start within 30 s")?;
        started.issuer = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("the issuer printed {line:?}"))?
            .to_owned();
        Ok(started)
    }

    /// Its issuer identifier (`iss`), `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// An access token for `client` (`admin`, `viewer`, `pusher`, `brief`;
    /// see issuer.mjs) with `scope`, for `audience`.
    ///
    /// # Errors
    /// The issuer refused the request; the error holds its answer.
    pub async fn token(&self, client: &str, scope: &str, audience: &str) -> anyhow::Result<String> {
        let secret = format!("{client}-secret");
        let answer = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("resource", audience),
            ])
            .send()
            .await?;
        let status = answer.status();
        let body: Value = answer.json().await?;
        if !status.is_success() {
            bail!("the issuer refused a token for {client} ({scope}): {status} {body}");
        }
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no access_token in {body}"))
    }

    /// Makes a new key the signing key and returns its `kid`; with `retire`
    /// the older keys leave the published set.
    ///
    /// # Errors
    /// The issuer did not answer.
    pub async fn rotate(&self, retire: bool) -> anyhow::Result<String> {
        let query = if retire { "?retire=1" } else { "" };
        let body: Value = self
            .http
            .post(format!("{}/test/rotate{query}", self.issuer))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        body["kid"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no kid in {body}"))
    }

    /// A JWT of `claims` signed by the current key, with `header` members
    /// over the defaults (`"kid": null` leaves the key id out).
    ///
    /// # Errors
    /// The issuer did not answer.
    pub async fn sign(&self, header: Value, claims: Value) -> anyhow::Result<String> {
        let body: Value = self
            .http
            .post(format!("{}/test/sign", self.issuer))
            .json(&serde_json::json!({ "header": header, "claims": claims }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        body["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no token in {body}"))
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
