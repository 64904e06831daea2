//! The token endpoint's `private_key_jwt` client authentication (RFC 7523)
//! over HTTP: assertions signed here with fresh keys, each check of the
//! endpoint shown refusing what it must, and the access token it issues
//! accepted by the SCIM endpoints.

use std::time::Duration;

use hrsync_scim_app::{router, AppState, ClientCredential, ClientPublicKey, OAuthClient, Options};
use hrsync_tests::KeyPair;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const CLIENT: &str = "hrsync";

/// The app with one OAuth client registered with `public_pem`.
async fn app(public_pem: &str) -> anyhow::Result<(AppState, String)> {
    let key = ClientPublicKey::from_pem(public_pem).map_err(anyhow::Error::msg)?;
    let state = AppState::with_options(
        "static-token-not-used",
        Options {
            oauth: Some(OAuthClient {
                client_id: CLIENT.into(),
                credential: ClientCredential::PublicKey(key),
                token_lifetime: Duration::from_secs(60),
            }),
            ..Options::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((state, base))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Signs `claims` with `private_pem` (RSA: RS256, EC: ES256).
fn sign(private_pem: &str, algorithm: Algorithm, claims: &Value) -> anyhow::Result<String> {
    let key = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(private_pem.as_bytes())?,
        _ => EncodingKey::from_rsa_pem(private_pem.as_bytes())?,
    };
    Ok(jsonwebtoken::encode(&Header::new(algorithm), claims, &key)?)
}

/// Valid claims for the app at `base`.
fn claims(base: &str) -> Value {
    json!({
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": format!("{base}/oauth/token"),
        "jti": uuid::Uuid::new_v4().to_string(),
        "iat": now(),
        "exp": now() + 60,
    })
}

/// Posts a token request with `assertion`; the status and JSON answer.
async fn request(base: &str, form: &[(&str, &str)]) -> anyhow::Result<(StatusCode, Value)> {
    let response = reqwest::Client::new()
        .post(format!("{base}/oauth/token"))
        .form(form)
        .send()
        .await?;
    let status = response.status();
    Ok((status, response.json().await?))
}

async fn present(base: &str, assertion: &str) -> anyhow::Result<(StatusCode, Value)> {
    request(
        base,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ],
    )
    .await
}

/// Asserts a 401 `invalid_client` whose description contains `why`.
fn refused(answer: &(StatusCode, Value), why: &str) {
    assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "{why}: {}", answer.1);
    assert_eq!(answer.1["error"], "invalid_client", "{}", answer.1);
    let description = answer.1["error_description"].as_str().unwrap_or_default();
    assert!(description.contains(why), "{why}: {description}");
}

#[tokio::test]
async fn a_signed_assertion_gets_a_token_the_scim_endpoints_accept() -> anyhow::Result<()> {
    for (key, algorithm) in [
        (KeyPair::rsa()?, Algorithm::RS256),
        (KeyPair::rsa()?, Algorithm::PS256),
        (KeyPair::p256()?, Algorithm::ES256),
        (KeyPair::p384()?, Algorithm::ES384),
    ] {
        let (state, base) = app(&key.public_pem).await?;
        let assertion = sign(&key.private_pem, algorithm, &claims(&base))?;
        let (status, body) = present(&base, &assertion).await?;
        assert_eq!(status, StatusCode::OK, "{algorithm:?}: {body}");
        assert_eq!(body["token_type"], "Bearer");
        let token = body["access_token"].as_str().expect("a token");
        let users = reqwest::Client::new()
            .get(format!("{base}/Users"))
            .bearer_auth(token)
            .send()
            .await?;
        assert_eq!(users.status(), StatusCode::OK, "{algorithm:?}");
        assert_eq!(state.access_tokens_issued(), 1);

        // The base URL (the issuer) is an audience too.
        let mut to_issuer = claims(&base);
        to_issuer["aud"] = json!([base.clone(), "https://elsewhere.example"]);
        let (status, body) =
            present(&base, &sign(&key.private_pem, algorithm, &to_issuer)?).await?;
        assert_eq!(status, StatusCode::OK, "{algorithm:?}: {body}");
    }
    Ok(())
}

#[tokio::test]
async fn expired_replayed_forged_and_misaddressed_assertions_are_refused() -> anyhow::Result<()> {
    let key = KeyPair::rsa()?;
    let other = KeyPair::rsa()?;
    let (state, base) = app(&key.public_pem).await?;
    let signed = |claims: &Value| sign(&key.private_pem, Algorithm::RS256, claims);
    let with = |field: &str, value: Value| {
        let mut claims = claims(&base);
        claims[field] = value;
        claims
    };

    // Signed by another key.
    let forged = sign(&other.private_pem, Algorithm::RS256, &claims(&base))?;
    refused(
        &present(&base, &forged).await?,
        "signature does not verify with the client's registered key",
    );
    // An EC signature for an RSA key.
    let ec = KeyPair::p256()?;
    refused(
        &present(
            &base,
            &sign(&ec.private_pem, Algorithm::ES256, &claims(&base))?,
        )
        .await?,
        "alg ES256 does not fit",
    );
    // Expired a minute ago (beyond the few seconds of leeway).
    refused(
        &present(&base, &signed(&with("exp", json!(now() - 60)))?).await?,
        "has expired",
    );
    // Not valid yet.
    refused(
        &present(&base, &signed(&with("nbf", json!(now() + 120)))?).await?,
        "not valid yet",
    );
    // Valid for longer than the endpoint remembers a jti.
    refused(
        &present(&base, &signed(&with("exp", json!(now() + 3600)))?).await?,
        "valid too long",
    );
    refused(
        &present(
            &base,
            &signed(&with("aud", json!("https://other.example/token")))?,
        )
        .await?,
        "aud is not this token endpoint",
    );
    refused(
        &present(&base, &signed(&with("iss", json!("someone-else")))?).await?,
        "iss is not the client id",
    );
    refused(
        &present(&base, &signed(&with("sub", json!("someone-else")))?).await?,
        "sub is not the client id",
    );
    let mut no_jti = claims(&base);
    no_jti.as_object_mut().expect("claims").remove("jti");
    refused(&present(&base, &signed(&no_jti)?).await?, "no jti");
    let mut no_exp = claims(&base);
    no_exp.as_object_mut().expect("claims").remove("exp");
    refused(&present(&base, &signed(&no_exp)?).await?, "no exp claim");
    refused(&present(&base, "not.a.jwt").await?, "not a signed JWT");

    // Replayed: the first use passes, the second is refused.
    let once = signed(&claims(&base))?;
    assert_eq!(present(&base, &once).await?.0, StatusCode::OK);
    refused(&present(&base, &once).await?, "used before");

    // The secret methods, or no assertion, are refused for this client.
    refused(
        &request(
            &base,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT),
                ("client_secret", "guess"),
            ],
        )
        .await?,
        "private_key_jwt only",
    );
    refused(
        &request(
            &base,
            &[("grant_type", "client_credentials"), ("client_id", CLIENT)],
        )
        .await?,
        "send client_assertion_type",
    );
    // A client_id beside the assertion must name the same client.
    let fresh = signed(&claims(&base))?;
    refused(
        &request(
            &base,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "someone-else"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &fresh),
            ],
        )
        .await?,
        "unknown client",
    );
    assert_eq!(
        state.access_tokens_issued(),
        1,
        "only the one good assertion"
    );
    Ok(())
}

#[test]
fn a_public_key_is_required_to_register_a_client() -> anyhow::Result<()> {
    for key in [KeyPair::p256()?, KeyPair::rsa()?] {
        assert!(ClientPublicKey::from_pem(&key.public_pem).is_ok());
        // A private key is not what the server holds.
        assert!(ClientPublicKey::from_pem(&key.private_pem).is_err());
    }
    assert!(ClientPublicKey::from_pem("not a key").is_err());
    Ok(())
}
