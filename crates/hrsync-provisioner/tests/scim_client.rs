//! The SCIM client against the real third-party `scim2-server` (PyPI).

use std::time::Duration;

use hrsync_provisioner::scim::{
    filter_value, parse_retry_after, PatchOp, ScimClient, ScimError, ENTERPRISE_SCHEMA, USER_SCHEMA,
};
use hrsync_tests::ScimServer;
use serde_json::json;

fn user(user_name: &str, external_id: &str) -> serde_json::Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "userName": user_name,
        "externalId": external_id,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "displayName": "Ada Lovelace",
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "title": "Agent",
        "active": true,
        ENTERPRISE_SCHEMA: {"department": "Customer Support", "employeeNumber": "E1"}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_client_speaks_to_a_real_server() -> anyhow::Result<()> {
    let server = ScimServer::start()?;
    let client = ScimClient::new(&server.base_url(), server.token(), Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;

    let capabilities = client.capabilities().await?;
    assert!(
        capabilities.patch && capabilities.filter,
        "{capabilities:?}"
    );

    // Not there yet: no match.
    assert_eq!(client.find_user("userName", "ada@example.com").await?, None);

    // Create, then match by userName (and by a value needing escaping).
    let created = client
        .create("Users", &user("ada@example.com", "p-1"))
        .await?;
    let id = created["id"].as_str().unwrap().to_owned();
    let found = client
        .find_user("userName", "ada@example.com")
        .await?
        .unwrap();
    assert_eq!(found["id"], id.as_str());
    assert_eq!(found["externalId"], "p-1");
    let tricky = r#"o"brien\x@example.com"#;
    let quoted = client.create("Users", &user(tricky, "p-2")).await?;
    let found = client.find_user("userName", tricky).await?.unwrap();
    assert_eq!(found["id"], quoted["id"]);
    assert_eq!(filter_value(tricky), r#""o\"brien\\x@example.com""#);

    // A second account with the same userName is refused by the server.
    let duplicate = client
        .create("Users", &user("ada@example.com", "p-3"))
        .await
        .unwrap_err();
    assert_eq!(duplicate.status(), Some(409), "{duplicate}");
    assert!(!duplicate.is_retryable());

    // PATCH an attribute (scim2-server answers 204 without a body).
    client
        .patch(
            "Users",
            &id,
            &[PatchOp::replace("title", json!("Support Manager"))],
        )
        .await?;
    let now = client.get("Users", &id).await?.unwrap();
    assert_eq!(now["title"], "Support Manager");

    // Deactivate with PATCH, reactivate with GET + PUT.
    client.set_active(&id, false, true).await?;
    assert_eq!(client.get("Users", &id).await?.unwrap()["active"], false);
    client.set_active(&id, true, false).await?;
    let back = client.get("Users", &id).await?.unwrap();
    assert_eq!(back["active"], true);
    assert_eq!(
        back["title"], "Support Manager",
        "PUT kept the other attributes"
    );

    // Unknown ids are None, not errors.
    assert_eq!(client.get("Users", "does-not-exist").await?, None);

    // A wrong token is a clear 401 that is not retried.
    let wrong = ScimClient::new(&server.base_url(), "wrong-token", Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;
    let denied = wrong.get("Users", &id).await.unwrap_err();
    assert_eq!(denied.status(), Some(401));
    assert!(!denied.is_retryable());
    assert!(!denied.to_string().contains(server.token()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_failures_are_retryable_and_name_no_url() -> anyhow::Result<()> {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let client = ScimClient::new(
        &format!("http://127.0.0.1:{port}/scim/v2"),
        "t",
        Duration::from_secs(2),
    )
    .map_err(anyhow::Error::msg)?;
    let error = client
        .find_user("userName", "secret.person@example.com")
        .await
        .unwrap_err();
    assert!(error.is_retryable());
    assert!(
        matches!(
            error,
            ScimError::Transport {
                maybe_applied: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.to_string().contains("secret.person"), "{error}");
    Ok(())
}

#[test]
fn retry_after_reads_seconds_and_http_dates() {
    assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
    let later = chrono::Utc::now() + chrono::Duration::seconds(30);
    let wait = parse_retry_after(&later.to_rfc2822()).unwrap();
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon"), None);
}
