//! `private_key_jwt` client credentials against a real third-party OpenID
//! provider: `oidc-provider` (npm), run by `tests/oidc-provider/server.mjs`
//! with one client registered by its public key. hrsync gets an access token
//! from the provider's token endpoint and a request bearing it is accepted;
//! a key the provider does not know is refused with a clear error.
//!
//! Needs Node.js and the fixture's npm packages (`scripts/test` installs
//! them with `npm ci --prefix tests/oidc-provider`); without them the test
//! fails saying so.

use std::process::Child;
use std::time::Duration;

use hrsync_provisioner::config::OAuthConfig;
use hrsync_provisioner::limit::Limits;
use hrsync_provisioner::scim::{ScimClient, ScimError};
use hrsync_tests::KeyPair;

/// The provider, killed when dropped.
struct OidcProvider {
    child: Child,
    issuer: String,
}

impl OidcProvider {
    /// Starts the provider with the client's public key in `public_pem`,
    /// registered under `key_id` if given.
    fn start(
        dir: &tempfile::TempDir,
        public_pem: &str,
        key_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        let key = dir.path().join("client-public.pem");
        std::fs::write(&key, public_pem)?;
        let mut args = vec![key.as_os_str()];
        args.extend(key_id.map(std::ffi::OsStr::new));
        let (child, issuer) = hrsync_tests::start_fixture("server.mjs", &args)?;
        Ok(OidcProvider { child, issuer })
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
    let dir = tempfile::tempdir()?;
    for (key, key_id) in [
        (KeyPair::rsa()?, None),
        (KeyPair::p256()?, Some("hrsync-ec")),
    ] {
        let provider = OidcProvider::start(&dir, &key.public_pem, key_id)?;
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
