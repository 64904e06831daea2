//! Per-app settings against real SCIM servers: attribute mapping by CEL
//! expressions with the enterprise manager, groups renamed in place and
//! provision-now against the third-party `scim2-server` (PyPI); OAuth 2.0
//! client credentials against the local SCIM app's token endpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hrsync_domain::LifecycleState::{Active, Deprovisioned};
use hrsync_provisioner::auth::{ClientAuthentication, ClientCredentials, Credentials};
use hrsync_provisioner::config::{AppConfig, ProvisionerConfig};
use hrsync_provisioner::limit::Limits;
use hrsync_provisioner::mapping::Mapping;
use hrsync_provisioner::reconcile::{reconcile, App, Operation};
use hrsync_provisioner::run::Provisioner;
use hrsync_provisioner::scim::{ScimClient, ScimError, ENTERPRISE_SCHEMA, USER_SCHEMA};
use hrsync_tests::{directory_change, PgDatabase, ScimServer, SqliteFile};
use serde_json::json;

fn client(server: &ScimServer) -> anyhow::Result<ScimClient> {
    ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
        .map_err(anyhow::Error::msg)
}

async fn user(client: &ScimClient, user_name: &str) -> anyhow::Result<serde_json::Value> {
    let mut found = client.find("Users", "userName", user_name).await?;
    anyhow::ensure!(found.len() == 1, "{user_name}: {found:?}");
    Ok(found.remove(0))
}

/// Expressions decide the attributes; the report's account names the
/// manager's account; an attribute HR removes is removed from the account.
async fn mapping_story(db_url: &str) -> anyhow::Result<()> {
    let server = ScimServer::start()?;
    let db = hrsync_store::Db::connect(db_url, 2).await?;
    db.migrate().await?;
    let expressions: BTreeMap<String, String> = [
        (
            "title",
            r#"person.title == "" ? null : person.title + " (" + person.department + ")""#,
        ),
        ("nickName", r#"person.given_name.lowerAscii()"#),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division",
            r#"groups.exists(g, g == "Customer Support") ? "Support" : "Other""#,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let app = App {
        push_groups: false,
        mapping: Arc::new(Mapping::compile(&expressions).map_err(anyhow::Error::msg)?),
        ..App::new("zendesk", client(&server)?)
    };
    let scim = client(&server)?;

    let mut boss = directory_change("E100", "Mia Boss", 1, Active, &["zendesk"], &["Managers"]);
    boss.profile.attributes.title = Some("Head of Support".into());
    boss.profile.attributes.department = Some("Customer Support".into());
    reconcile(&db, &app, &boss).await?;
    let boss_id = user(&scim, "mia@example.com").await?["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut lucy = directory_change(
        "E7",
        "Lucy Gray",
        1,
        Active,
        &["zendesk"],
        &["Customer Support"],
    );
    lucy.profile.attributes.title = Some("Agent".into());
    lucy.profile.attributes.department = Some("Customer Support".into());
    lucy.profile.attributes.manager_id = Some(boss.employee_id.clone());
    reconcile(&db, &app, &lucy).await?;
    let account = user(&scim, "lucy@example.com").await?;
    assert_eq!(account["title"], "Agent (Customer Support)");
    assert_eq!(account["nickName"], "lucy");
    assert_eq!(account[ENTERPRISE_SCHEMA]["division"], "Support");
    assert_eq!(account[ENTERPRISE_SCHEMA]["employeeNumber"], "E7");
    assert_eq!(account[ENTERPRISE_SCHEMA]["manager"]["value"], boss_id);

    // HR removes the title: the expression yields null, the account loses it.
    lucy.version = 2;
    lucy.profile.attributes.title = None;
    let ops = reconcile(&db, &app, &lucy).await?;
    assert_eq!(
        ops,
        vec![Operation::Updated {
            attributes: vec!["title".into()]
        }]
    );
    let account = user(&scim, "lucy@example.com").await?;
    assert!(account.get("title").is_none(), "{account}");
    assert_eq!(account[ENTERPRISE_SCHEMA]["manager"]["value"], boss_id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn mapping_story_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    mapping_story(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn mapping_story_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    mapping_story(&file.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_group_is_renamed_in_place_with_its_members() -> anyhow::Result<()> {
    let server = ScimServer::start()?;
    let file = SqliteFile::new()?;
    let db = hrsync_store::Db::connect(&file.url(), 2).await?;
    db.migrate().await?;
    let scim = client(&server)?;
    let before = App::new("zendesk", client(&server)?);
    let lucy = directory_change("E7", "Lucy Gray", 1, Active, &["zendesk"], &["Support"]);
    let ada = directory_change("E8", "Ada Byron", 1, Active, &["zendesk"], &["Support"]);
    reconcile(&db, &before, &lucy).await?;
    reconcile(&db, &before, &ada).await?;
    assert!(before.flush_groups(&db).await?);
    let old = scim.find("Groups", "displayName", "Support").await?;
    assert_eq!(old.len(), 1);
    let group_id = old[0]["id"].as_str().unwrap().to_owned();

    // The rules now call the group "Customer Care" (previous_names:
    // ["Support"]): everyone's groups change, the SCIM group is renamed.
    let after = App {
        group_renames: Arc::new(HashMap::from([(
            "Customer Care".to_owned(),
            vec!["Support".to_owned()],
        )])),
        ..before.clone()
    };
    let mut lucy = directory_change(
        "E7",
        "Lucy Gray",
        2,
        Active,
        &["zendesk"],
        &["Customer Care"],
    );
    lucy.version = 2;
    let ops = reconcile(&db, &after, &lucy).await?;
    assert_eq!(
        ops,
        vec![Operation::GroupRenamed {
            from: "Support".into(),
            to: "Customer Care".into()
        }]
    );
    let ada = directory_change(
        "E8",
        "Ada Byron",
        2,
        Active,
        &["zendesk"],
        &["Customer Care"],
    );
    assert_eq!(
        reconcile(&db, &after, &ada).await?,
        vec![Operation::Unchanged]
    );
    let renamed = scim.find("Groups", "displayName", "Customer Care").await?;
    assert_eq!(renamed.len(), 1);
    assert_eq!(renamed[0]["id"], group_id.as_str(), "same group, renamed");
    assert!(scim
        .find("Groups", "displayName", "Support")
        .await?
        .is_empty());
    assert!(after.flush_groups(&db).await?);
    let group = scim.get("Groups", &group_id).await?.unwrap();
    assert_eq!(
        group["members"].as_array().map(Vec::len),
        Some(2),
        "{group}"
    );

    // Leaving the renamed group later leaves it; no group of the old name
    // comes back.
    let ada = directory_change("E8", "Ada Byron", 3, Deprovisioned, &[], &[]);
    reconcile(&db, &after, &ada).await?;
    assert!(after.flush_groups(&db).await?);
    let group = scim.get("Groups", &group_id).await?.unwrap();
    assert_eq!(
        group["members"].as_array().map(Vec::len),
        Some(1),
        "{group}"
    );
    assert!(scim
        .find("Groups", "displayName", "Support")
        .await?
        .is_empty());
    Ok(())
}

/// A provisioner over `store` with one app, "zendesk" on `server`, group
/// push off.
async fn zendesk_provisioner(
    server: &ScimServer,
    store: hrsync_store::Db,
) -> anyhow::Result<Provisioner> {
    let config = ProvisionerConfig {
        apps: vec![AppConfig {
            push_groups: false,
            ..AppConfig::new(
                "zendesk",
                &server.base_url(),
                hrsync_config::Secret::inline(server.token()),
            )
        }],
        ..ProvisionerConfig::default()
    };
    Ok(Provisioner::new(store, &config, None).await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_now_puts_right_what_was_changed_in_the_app() -> anyhow::Result<()> {
    let server = ScimServer::start()?;
    let db = PgDatabase::fresh().await?;
    let store = hrsync_store::Db::connect(db.url(), 2).await?;
    store.migrate().await?;
    let provisioner = zendesk_provisioner(&server, store).await?;
    let mut lucy = directory_change("E7", "Lucy Gray", 4, Active, &["zendesk"], &["Support"]);
    lucy.profile.attributes.title = Some("Agent".into());
    let results = provisioner.apply(&lucy, None).await;
    assert!(matches!(
        results[0].result.as_deref(),
        Ok([Operation::Created { .. }])
    ));

    // Someone edits and disables the account in the app by hand.
    let scim = client(&server)?;
    let id = user(&scim, "lucy@example.com").await?["id"]
        .as_str()
        .unwrap()
        .to_owned();
    scim.patch(
        "Users",
        &id,
        &[hrsync_provisioner::scim::PatchOp::replace(
            "title",
            json!("Hacked"),
        )],
    )
    .await?;
    scim.set_active(&id, false, true).await?;
    // Applying the same change again sends nothing: it was applied.
    let again = provisioner.apply(&lucy, None).await;
    assert!(matches!(again[0].result.as_deref(), Ok([Operation::Stale])));

    // provision-now (by employee id) reads the account back and repairs it.
    let (change, results) = provisioner
        .provision_now("E7", Some("zendesk"))
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(change.version, 4);
    let ops = results[0]
        .result
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(
        ops.contains(&Operation::Updated {
            attributes: vec!["title".into()]
        }) && ops.contains(&Operation::Reactivated),
        "{ops:?}"
    );
    let account = scim.get("Users", &id).await?.unwrap();
    assert_eq!(account["title"], "Agent");
    assert_eq!(account["active"], true);

    // Gone from the app: created again.
    // (hrsync never deletes; the test does, as an app admin would.)
    let deleted = reqwest::Client::new()
        .delete(format!("{}/Users/{id}", server.base_url()))
        .bearer_auth(server.token())
        .send()
        .await?;
    anyhow::ensure!(deleted.status().is_success(), "{}", deleted.status());
    let (_, results) = provisioner
        .provision_now("p-E7", None)
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(
        matches!(
            results[0].result.as_deref(),
            Ok([Operation::Created { .. }])
        ),
        "{results:?}"
    );

    let unknown = provisioner
        .provision_now("E404", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("E404") && unknown.contains("has reached"),
        "{unknown}"
    );
    let wrong_app = provisioner
        .provision_now("E7", Some("nope"))
        .await
        .unwrap_err()
        .to_string();
    assert!(wrong_app.contains("nope"), "{wrong_app}");
    Ok(())
}

/// The local SCIM app with an OAuth client, served in-process.
async fn oauth_app(
    lifetime: Duration,
) -> anyhow::Result<(
    hrsync_scim_app::AppState,
    String,
    tokio::task::JoinHandle<()>,
)> {
    let state = hrsync_scim_app::AppState::with_options(
        "static-token-not-used",
        hrsync_scim_app::Options {
            oauth: Some(hrsync_scim_app::OAuthClient {
                client_id: "hrsync".into(),
                credential: hrsync_scim_app::ClientCredential::Secret("s3cret:with spaces".into()),
                token_lifetime: lifetime,
            }),
            ..hrsync_scim_app::Options::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = hrsync_scim_app::router(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((state, base, task))
}

fn oauth_client(base: &str, secret: &str, in_body: bool) -> anyhow::Result<ScimClient> {
    ScimClient::with(
        base,
        Credentials::ClientCredentials(ClientCredentials {
            token_url: format!("{base}/oauth/token"),
            client_id: "hrsync".into(),
            scope: Some("scim".into()),
            authentication: if in_body {
                ClientAuthentication::SecretPost(secret.into())
            } else {
                ClientAuthentication::SecretBasic(secret.into())
            },
        }),
        Duration::from_secs(5),
        Limits::default(),
    )
    .map_err(anyhow::Error::msg)
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_client_credentials_are_cached_renewed_and_refetched_when_rejected(
) -> anyhow::Result<()> {
    let (state, base, task) = oauth_app(Duration::from_secs(2)).await?;
    for in_body in [false, true] {
        let before = state.access_tokens_issued();
        let client = oauth_client(&base, "s3cret:with spaces", in_body)?;
        for i in 0..5 {
            client
                .create(
                    "Users",
                    &json!({"schemas": [USER_SCHEMA], "userName": format!("u{i}-{in_body}")}),
                )
                .await?;
        }
        assert_eq!(
            state.access_tokens_issued() - before,
            1,
            "one token serves every request while it is fresh"
        );
        // Revoked at the server: the 401 makes the client fetch a new one.
        state.revoke_access_tokens();
        client.capabilities().await?;
        assert_eq!(state.access_tokens_issued() - before, 2);
    }
    // Renewed before it expires (lifetime 2 s, renewed a tenth earlier).
    let client = oauth_client(&base, "s3cret:with spaces", false)?;
    client.capabilities().await?;
    let issued = state.access_tokens_issued();
    tokio::time::sleep(Duration::from_millis(1_900)).await;
    client.capabilities().await?;
    assert_eq!(state.access_tokens_issued(), issued + 1);

    // A wrong secret: a clear, non-retryable error without the secret.
    let wrong = oauth_client(&base, "not-the-secret", false)?;
    let error = wrong.capabilities().await.unwrap_err();
    assert!(
        matches!(error, ScimError::Status { status: 401, .. }),
        "{error}"
    );
    assert!(!error.is_retryable());
    let shown = error.to_string();
    assert!(shown.contains("invalid_client"), "{shown}");
    assert!(!shown.contains("not-the-secret"), "{shown}");
    task.abort();
    Ok(())
}

/// A report provisioned before their manager's account exists is sent
/// without the manager reference; once the manager's account is created,
/// the report's account gets it, without a new change for the report.
async fn manager_after_report(db_url: &str) -> anyhow::Result<()> {
    let server = ScimServer::start()?;
    let store = hrsync_store::Db::connect(db_url, 4).await?;
    store.migrate().await?;
    let provisioner = zendesk_provisioner(&server, store).await?;
    let scim = client(&server)?;

    let mut lucy = directory_change("E7", "Lucy Gray", 3, Active, &["zendesk"], &[]);
    lucy.profile.attributes.manager_id = Some(hrsync_domain::EmployeeId::new("E100")?);
    let results = provisioner.apply(&lucy, None).await;
    assert!(matches!(
        results[0].result.as_deref(),
        Ok([Operation::Created { .. }])
    ));
    let account = user(&scim, "lucy@example.com").await?;
    assert!(
        account
            .get(ENTERPRISE_SCHEMA)
            .and_then(|e| e.get("manager"))
            .is_none(),
        "no manager account yet: {account}"
    );

    let boss = directory_change("E100", "Mia Boss", 1, Active, &["zendesk"], &[]);
    provisioner.apply(&boss, None).await;
    let boss_id = user(&scim, "mia@example.com").await?["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let account = user(&scim, "lucy@example.com").await?;
    assert_eq!(account[ENTERPRISE_SCHEMA]["manager"]["value"], boss_id);

    // Lucy's next change is applied as usual (her link is at version 3
    // again, not below it), and sends nothing when nothing changed.
    let results = provisioner.apply(&lucy, None).await;
    assert!(
        matches!(results[0].result.as_deref(), Ok([Operation::Stale])),
        "{:?}",
        results[0].result
    );
    lucy.version = 4;
    let results = provisioner.apply(&lucy, None).await;
    assert!(
        matches!(results[0].result.as_deref(), Ok([Operation::Unchanged])),
        "{:?}",
        results[0].result
    );
    // Applying the manager again changes nothing for the report.
    let again = provisioner.apply(&boss, None).await;
    assert!(matches!(again[0].result.as_deref(), Ok([Operation::Stale])));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manager_created_after_the_report_is_set_on_postgres() -> anyhow::Result<()> {
    let db = PgDatabase::fresh().await?;
    manager_after_report(db.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manager_created_after_the_report_is_set_on_sqlite() -> anyhow::Result<()> {
    let file = SqliteFile::new()?;
    manager_after_report(&file.url()).await
}
