//! OAuth 2.0 client credentials with `private_key_jwt` client
//! authentication (RFC 7523) against the local SCIM app's token endpoint,
//! configured as an operator writes it: the provisioner gets its access
//! token with a signed assertion and provisions an account with it; a key
//! the app does not know is refused with a clear error; a key that is
//! missing or unusable stops start-up with an error naming the setting,
//! never the key.

use std::path::Path;
use std::time::Duration;

use hrsync_domain::LifecycleState::Active;
use hrsync_provisioner::config::ProvisionerConfig;
use hrsync_provisioner::limit::Limits;
use hrsync_provisioner::reconcile::Operation;
use hrsync_provisioner::run::Provisioner;
use hrsync_provisioner::scim::{ScimClient, ScimError};
use hrsync_scim_app::{AppState, ClientCredential, ClientPublicKey, OAuthClient, Options};
use hrsync_tests::{directory_change, KeyPair, SqliteFile};

/// The local SCIM app with an OAuth client registered with `public_pem`.
async fn app(public_pem: &str) -> anyhow::Result<(AppState, String)> {
    let key = ClientPublicKey::from_pem(public_pem).map_err(anyhow::Error::msg)?;
    let state = AppState::with_options(
        "static-token-not-used",
        Options {
            oauth: Some(OAuthClient {
                client_id: "hrsync".into(),
                credential: ClientCredential::PublicKey(key),
                token_lifetime: Duration::from_secs(300),
            }),
            ..Options::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = hrsync_scim_app::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((state, base))
}

/// The `[provisioner]` section with one app, "lattice" at `base`, whose
/// OAuth client signs with the key in `key_file`; `extra` lines go into
/// its `oauth` table. Parsed and checked as `hrsync` does.
fn operator_config(
    db_url: &str,
    base: &str,
    key_file: &Path,
    extra: &str,
) -> anyhow::Result<ProvisionerConfig> {
    let toml = format!(
        r#"
database_url = "{db_url}"

[[apps]]
name = "lattice"
base_url = "{base}"
push_groups = false

[apps.oauth]
token_url = "{base}/oauth/token"
client_id = "hrsync"
client_auth = "private_key_jwt"
private_key = {{ file = "{}" }}
{extra}
"#,
        key_file.display()
    );
    let config: ProvisionerConfig = toml::from_str(&toml)?;
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

fn key_file(dir: &tempfile::TempDir, name: &str, pem: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.path().join(name);
    std::fs::write(&path, pem)?;
    Ok(path)
}

/// The base64 lines of a PEM block: none may show up in an error.
fn key_material(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|line| !line.starts_with("-----") && line.len() >= 16)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_is_provisioned_with_a_token_got_by_private_key_jwt() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rsa = KeyPair::rsa()?;
    let p256 = KeyPair::p256()?;
    let p384 = KeyPair::p384()?;
    // (key pair, the private key as the operator holds it, extra settings);
    // the algorithm defaults by key type (RS256, ES256, ES384 by the curve).
    let cases = [
        (&rsa, rsa.private_pem.clone(), ""),
        (&p256, p256.private_pem.clone(), "key_id = \"hrsync-2026\""),
        (&p384, p384.private_pem.clone(), ""),
        (
            &rsa,
            rsa.rsa_private_pem_pkcs1()?,
            "algorithm = \"PS256\"\nscope = \"scim\"",
        ),
    ];
    for (i, (pair, private_pem, extra)) in cases.iter().enumerate() {
        let (state, base) = app(&pair.public_pem).await?;
        let file = key_file(&dir, &format!("key-{i}.pem"), private_pem)?;
        let db = SqliteFile::new()?;
        let config = operator_config(&db.url(), &base, &file, extra)?;
        let store = hrsync_store::Db::connect(&db.url(), 2).await?;
        store.migrate().await?;
        let provisioner = Provisioner::new(store, &config, None).await?;
        let change = directory_change("E1", "Ada Lovelace", 1, Active, &["lattice"], &[]);
        let results = provisioner.apply(&change, None).await;
        assert!(
            matches!(
                results[0].result.as_deref(),
                Ok([Operation::Created { .. }])
            ),
            "case {i} ({extra}): {results:?}"
        );
        assert_eq!(state.user_count(), 1, "case {i}");
        // One token served the discovery request and the create.
        assert_eq!(state.access_tokens_issued(), 1, "case {i}");

        // Each new token is got with a new assertion: the app refuses a
        // `jti` it has seen, so three renewals pass only with three.
        let client = ScimClient::with(
            &base,
            config.apps[0].credentials().map_err(anyhow::Error::msg)?,
            Duration::from_secs(5),
            Limits::default(),
        )
        .map_err(anyhow::Error::msg)?;
        for renewal in 0..3 {
            state.revoke_access_tokens();
            client.capabilities().await?;
            assert_eq!(state.access_tokens_issued(), 2 + renewal, "case {i}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_the_app_does_not_know_is_refused_with_a_clear_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let registered = KeyPair::rsa()?;
    let ours = KeyPair::rsa()?;
    let (state, base) = app(&registered.public_pem).await?;
    let file = key_file(&dir, "ours.pem", &ours.private_pem)?;
    let db = SqliteFile::new()?;

    // Straight from the client: a 401 from the token endpoint, not retried,
    // saying why, without the key.
    let config = operator_config(&db.url(), &base, &file, "")?;
    let client = ScimClient::with(
        &base,
        config.apps[0].credentials().map_err(anyhow::Error::msg)?,
        Duration::from_secs(5),
        Limits::default(),
    )
    .map_err(anyhow::Error::msg)?;
    let error = client.capabilities().await.unwrap_err();
    assert!(
        matches!(error, ScimError::Status { status: 401, .. }),
        "{error}"
    );
    assert!(!error.is_retryable());
    let shown = error.to_string();
    assert!(shown.contains("OAuth token endpoint"), "{shown}");
    assert!(shown.contains("invalid_client"), "{shown}");
    assert!(
        shown.contains("signature does not verify with the client's registered key"),
        "{shown}"
    );
    for line in key_material(&ours.private_pem) {
        assert!(!shown.contains(line), "{shown}");
    }

    // Through the provisioner: the change fails with the same reason and no
    // account is made.
    let store = hrsync_store::Db::connect(&db.url(), 2).await?;
    store.migrate().await?;
    let provisioner = Provisioner::new(store, &config, None).await?;
    let change = directory_change("E1", "Ada Lovelace", 1, Active, &["lattice"], &[]);
    let results = provisioner.apply(&change, None).await;
    let failure = results[0].result.as_ref().unwrap_err().to_string();
    assert!(failure.contains("invalid_client"), "{failure}");
    assert_eq!(state.user_count(), 0);
    assert_eq!(state.access_tokens_issued(), 0);

    // An audience that is not the token endpoint is refused just as clearly.
    let (state, base) = app(&ours.public_pem).await?;
    let config = operator_config(
        &db.url(),
        &base,
        &file,
        "audience = \"https://login.example/other\"",
    )?;
    let client = ScimClient::with(
        &base,
        config.apps[0].credentials().map_err(anyhow::Error::msg)?,
        Duration::from_secs(5),
        Limits::default(),
    )
    .map_err(anyhow::Error::msg)?;
    let shown = client.capabilities().await.unwrap_err().to_string();
    assert!(shown.contains("aud is not this token endpoint"), "{shown}");
    assert_eq!(state.access_tokens_issued(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_unusable_private_key_stops_start_up_naming_the_setting() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let rsa = KeyPair::rsa()?;
    let p256 = KeyPair::p256()?;
    let base = "http://127.0.0.1:9";
    let db = SqliteFile::new()?;
    let truncated = {
        let mut lines: Vec<&str> = rsa.private_pem.lines().collect();
        lines.drain(3..8);
        lines.join("\n")
    };
    let sec1 = p256.ec_private_pem_sec1()?;
    // (file content, extra settings, the key named, what the error says)
    let cases: Vec<(Option<&str>, &str, &str, &str)> = vec![
        (None, "", "oauth.private_key", "cannot be read"),
        (
            Some("not a key at all"),
            "",
            "oauth.private_key",
            "not a PEM private key",
        ),
        (
            Some(&rsa.public_pem),
            "",
            "oauth.private_key",
            "a `PUBLIC KEY` block",
        ),
        (Some(&sec1), "", "oauth.private_key", "convert it to PKCS#8"),
        (
            Some(&truncated),
            "",
            "oauth.private_key",
            "cannot be read as an RSA or EC",
        ),
        (
            Some(&rsa.private_pem),
            "algorithm = \"ES256\"",
            "oauth.algorithm",
            "algorithm ES256 cannot sign with this RSA key",
        ),
        (
            Some(&p256.private_pem),
            "algorithm = \"ES384\"",
            "oauth.algorithm",
            "algorithm ES384 cannot sign with this EC key",
        ),
    ];
    for (i, (content, extra, key, why)) in cases.into_iter().enumerate() {
        let file = match content {
            Some(pem) => key_file(&dir, &format!("case-{i}.pem"), pem)?,
            None => dir.path().join("absent.pem"),
        };
        let config = operator_config(&db.url(), base, &file, extra)?;
        let store = hrsync_store::Db::connect(&db.url(), 2).await?;
        store.migrate().await?;
        let error = Provisioner::new(store, &config, None)
            .await
            .expect_err("start-up must fail")
            .to_string();
        assert!(
            error.contains(&format!("provisioner.apps[lattice].{key}: ")),
            "case {i}: {error}"
        );
        assert!(error.contains(why), "case {i}: {error}");
        for pem in [&rsa.private_pem, &p256.private_pem, &sec1] {
            for line in key_material(pem) {
                assert!(!error.contains(line), "case {i}: {error}");
            }
        }
    }

    // Settings that need no secret are checked when the configuration is
    // loaded, before anything starts.
    let file = key_file(&dir, "good.pem", &rsa.private_pem)?;
    let error = operator_config(&db.url(), base, &file, "algorithm = \"HS256\"")
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(
            "provisioner.apps[lattice].oauth.algorithm: algorithm \"HS256\" is not one of"
        ),
        "{error}"
    );
    let error = operator_config(&db.url(), base, &file, "client_secret = \"s3cret\"")
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "provisioner.apps[lattice].oauth.client_secret is not used with client_auth = \"private_key_jwt\"; remove it"
    );
    Ok(())
}
