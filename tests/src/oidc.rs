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
        let (child, issuer) = start_fixture("issuer.mjs", &[])?;
        Ok(Issuer {
            child,
            issuer,
            http: reqwest::Client::new(),
        })
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

/// Signs `username` (`ada`, an admin, or `vic`, a viewer) in to the
/// console at `console` (`http://127.0.0.1:PORT`) through this issuer's
/// login form, as a browser would: following redirects, carrying cookies.
/// Returns the `Cookie` header value of the signed-in session.
///
/// # Errors
/// A step answered something a sign-in does not.
pub async fn console_sign_in(console: &str, username: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(&format!("{console}/console/login?return_to=/console/"))?;
    console_sign_in_from(url, Default::default(), username).await
}

/// [`console_sign_in`] from `url` (the console's login, or the issuer's
/// authorization URL it sent a browser to) with the cookies of `jar`, as a
/// browser that started other sign-ins would carry them.
///
/// # Errors
/// A step answered something a sign-in does not.
pub async fn console_sign_in_from(
    mut url: reqwest::Url,
    // Every host here is 127.0.0.1, and cookies do not tell ports apart.
    mut jar: std::collections::BTreeMap<String, String>,
    username: &str,
) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut login_form = false;
    for _ in 0..20 {
        let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let request = if login_form {
            http.post(url.clone()).form(&[("username", username)])
        } else {
            http.get(url.clone())
        };
        let answer = request
            .header(reqwest::header::COOKIE, cookies.join("; "))
            .send()
            .await?;
        for set in answer.headers().get_all(reqwest::header::SET_COOKIE) {
            let pair = set.to_str()?.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() {
                    jar.remove(name);
                } else {
                    jar.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        if let Some(session) = jar.get("hrsync_console") {
            return Ok(format!("hrsync_console={session}"));
        }
        let status = answer.status();
        if status.is_redirection() {
            let location = answer
                .headers()
                .get(reqwest::header::LOCATION)
                .context("a redirect without Location")?
                .to_str()?
                .to_owned();
            url = url.join(&location)?;
            login_form = false;
            continue;
        }
        let body = answer.text().await?;
        let action = body
            .split_once("action=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(action, _)| action.to_owned())
            .with_context(|| format!("{url} answered {status} without a form: {body}"))?;
        url = url.join(&action)?;
        login_form = true;
    }
    bail!("the sign-in of {username} did not finish in 20 steps (at {url})")
}

/// Starts `node tests/oidc-provider/SCRIPT ARGS...` and waits for its
/// `listening on ISSUER` line; returns the process and the issuer.
///
/// # Errors
/// Node.js or the npm packages are missing, or it does not start.
pub fn start_fixture(script: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<(Child, String)> {
    let fixture = fixture();
    if !fixture.join("node_modules/oidc-provider").is_dir() {
        bail!(
            "the oidc-provider package is not installed: run `npm ci --prefix {}` \
             (scripts/test does)",
            fixture.display()
        );
    }
    // Node starts in well under a second, but once printed nothing for
    // 120 s on CI's two cores with other tests' servers beside it: a start
    // that takes a minute is abandoned (with what the process was doing)
    // and made again, once.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut child = Command::new("node")
            .arg(fixture.join(script))
            .args(args)
            .current_dir(&fixture)
            .stdout(Stdio::piped())
            // Why it refused a token request, into the test's output.
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!("starting `node tests/oidc-provider/{script}` (is Node.js 20+ installed?)")
            })?;
        let stdout = child.stdout.take().context("the fixture's stdout")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let Ok(line) = receiver.recv_timeout(Duration::from_secs(60)) else {
            let state = process_state(child.id());
            eprintln!("the {script} fixture printed nothing in 60 s ({state}); starting it again");
            stalled.push(state);
            let _ = child.kill();
            let _ = child.wait();
            continue;
        };
        return match line.trim().strip_prefix("listening on ") {
            Some(issuer) => Ok((child, issuer.to_owned())),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the fixture printed {line:?}")
            }
        };
    }
    bail!(
        "the {script} fixture printed nothing in 60 s, twice ({})",
        stalled.join("; ")
    )
}

/// A process's state and the CPU time it has used, from `/proc`, to tell a
/// process starved of CPU from one waiting on something.
fn process_state(pid: u32) -> String {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return "no /proc entry".to_owned();
    };
    // After the command's `(name)`: state, then 11 fields to utime, stime.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    format!(
        "state {}, {} CPU ticks used",
        fields.first().copied().unwrap_or("?"),
        ticks(11) + ticks(12)
    )
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
