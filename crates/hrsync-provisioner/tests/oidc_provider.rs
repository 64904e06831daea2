//! `private_key_jwt` client credentials against a real third-party OpenID
//! provider: `oidc-provider` (npm), run by `tests/oidc-provider/server.mjs`
//! with one client registered by its public key. hrsync gets an access token
//! from the provider's token endpoint and a request bearing it is accepted;
//! a key the provider does not know is refused with a clear error.
//!
//! Needs Node.js and the fixture's npm packages (`scripts/test` installs
//! them with `npm ci --prefix tests/oidc-provider`); without `node` on the
//! `PATH` the test says so loudly and passes without running.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use hrsync_provisioner::config::OAuthConfig;
use hrsync_provisioner::limit::Limits;
use hrsync_provisioner::scim::{ScimClient, ScimError};
use hrsync_tests::KeyPair;

/// The fixture's directory.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc-provider")
}

fn node() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("node"))
            .find(|p| p.is_file())
    })
}

/// The provider, killed when dropped.
struct OidcProvider {
    child: Child,
    issuer: String,
}

impl OidcProvider {
    /// Starts the provider with the client's public key in `public_pem`,
    /// registered under `key_id` if given.
    fn start(
        node: &Path,
        dir: &tempfile::TempDir,
        public_pem: &str,
        key_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        let fixture = fixture();
        if !fixture.join("node_modules/oidc-provider").is_dir() {
            bail!(
                "the oidc-provider package is not installed: run `npm ci --prefix {}` \
                 (scripts/test does)",
                fixture.display()
            );
        }
        let key = dir.path().join("client-public.pem");
        std::fs::write(&key, public_pem)?;
        let mut child = Command::new(node)
            .arg(fixture.join("server.mjs"))
            .arg(&key)
            .args(key_id)
            .current_dir(&fixture)
            .stdout(Stdio::piped())
            // Its warnings about the development-only keys and store, and
            // why it refused a token request, into the test's output.
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node tests/oidc-provider/server.mjs")?;
        let stdout = child.stdout.take().context("the provider's stdout")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let mut provider = OidcProvider {
            child,
            issuer: String::new(),
        };
        let line = receiver
            .recv_timeout(Duration::from_secs(30))
            .context("oidc-provider did not start within 30 s")?;
        provider.issuer = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("oidc-provider printed {line:?}"))?
            .to_owned();
        Ok(provider)
    }

    /// A SCIM client for the provider's stand-in SCIM endpoint, getting its
    /// access token with `private_pem` (and `extra` TOML settings).
    fn client(&self, private_pem: &str, extra: &str) -> anyhow::Result<ScimClient> {
        let toml = format!(
            r#"
token_url = "{issuer}/token"
client_id = "hrsync"
scope = "scim"
client_auth = "private_key_jwt"
private_key = """{private_pem}"""
{extra}
"#,
            issuer = self.issuer,
        );
        let oauth: OAuthConfig = toml::from_str(&toml)?;
        let app = hrsync_provisioner::config::AppConfig {
            token: None,
            oauth: Some(oauth),
            ..hrsync_provisioner::config::AppConfig::new(
                "idp",
                &format!("{}/scim", self.issuer),
                hrsync_config::Secret::inline("unused"),
            )
        };
        ScimClient::with(
            &app.base_url,
            app.credentials().map_err(anyhow::Error::msg)?,
            Duration::from_secs(10),
            Limits::default(),
        )
        .map_err(anyhow::Error::msg)
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_provider_issues_a_token_for_a_private_key_jwt_assertion() -> anyhow::Result<()> {
    let Some(node) = node() else {
        eprintln!(
            "\n*** SKIPPED: `node` is not on the PATH, so the private_key_jwt test against \
             oidc-provider did not run. Install Node.js 20 or later and run scripts/test. ***\n"
        );
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    for (key, key_id) in [
        (KeyPair::rsa()?, None),
        (KeyPair::p256()?, Some("hrsync-ec")),
    ] {
        let provider = OidcProvider::start(&node, &dir, &key.public_pem, key_id)?;
        let extra = key_id.map_or(String::new(), |id| format!("key_id = {id:?}"));
        let extra = extra.as_str();
        let client = provider.client(&key.private_pem, extra)?;
        // The stand-in SCIM endpoint answers only to a token the provider
        // issued to this client.
        let capabilities = client.capabilities().await?;
        assert!(capabilities.patch, "{extra}");

        // Another key: the provider refuses the assertion; the error names
        // the token endpoint and the OAuth error, and is not retried.
        let stranger = KeyPair::rsa()?;
        let error = provider
            .client(&stranger.private_pem, extra)?
            .capabilities()
            .await
            .unwrap_err();
        assert!(
            matches!(error, ScimError::Status { status: 401, .. }),
            "{error}"
        );
        assert!(!error.is_retryable());
        let shown = error.to_string();
        assert!(shown.contains("OAuth token endpoint"), "{shown}");
        assert!(shown.contains("invalid_client"), "{shown}");

        // The provider picks the client's key by the assertion's `kid`: a
        // key id it does not have is refused, the right one accepted.
        if key_id.is_some() {
            let error = provider
                .client(&key.private_pem, "key_id = \"retired\"")?
                .capabilities()
                .await
                .unwrap_err();
            assert!(error.to_string().contains("invalid_client"), "{error}");
        }
    }
    Ok(())
}
