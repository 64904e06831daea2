//! hrsync as a resource server against a real OAuth 2.0 issuer
//! (`oidc-provider` from npm, run by `tests/oidc-provider/issuer.mjs`):
//! tokens for the right and the wrong audience, without the scope, expired,
//! not yet valid, from another issuer, signed by a rotated-in key, by a
//! retired key and by a key never published.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hrsync_auth::{Authorizer, OAuthConfig, Rejection, RoleClaim, Verifier};
use hrsync_tests::{Issuer, HRSYNC_AUDIENCE};
use serde_json::json;

fn config(issuer: &Issuer) -> OAuthConfig {
    OAuthConfig {
        // Rotation is checked at once, not after the default pause.
        unknown_key_refetch_seconds: 0,
        ..OAuthConfig::new(issuer.issuer(), HRSYNC_AUDIENCE)
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    headers.insert(header::AUTHORIZATION, value);
    headers
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn refused_because(result: Result<hrsync_auth::Principal, Rejection>, words: &str) {
    match result {
        Err(Rejection::Invalid(reason)) => assert!(reason.contains(words), "{reason}"),
        other => panic!("expected a refusal saying {words:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_checked_for_audience_scope_and_time() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let verifier = Arc::new(Verifier::new(config(&issuer))?);
    assert_eq!(verifier.warm().await.map_err(anyhow::Error::msg)?, 1);
    let authorizer = Authorizer::oauth(verifier.clone());

    // The right audience and scope: the subject and client are known.
    let token = issuer
        .token("admin", "hrsync:read hrsync:admin", HRSYNC_AUDIENCE)
        .await?;
    let principal = authorizer
        .authorize(&bearer(&token), "hrsync:admin")
        .await?;
    assert_eq!(principal.subject, "admin");
    assert_eq!(principal.client_id.as_deref(), Some("admin"));
    assert!(principal.has("hrsync:read") && !principal.has("hrsync:events.write"));

    // A token for another resource server is not hrsync's to accept.
    let other = issuer
        .token("admin", "hrsync:read", "https://other.test/")
        .await?;
    refused_because(
        authorizer.authorize(&bearer(&other), "hrsync:read").await,
        "another audience",
    );

    // A viewer may read but not act; the refusal names the scope.
    let viewer = issuer
        .token("viewer", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    authorizer
        .authorize(&bearer(&viewer), "hrsync:read")
        .await?;
    let refusal = authorizer
        .authorize(&bearer(&viewer), "hrsync:admin")
        .await
        .unwrap_err();
    assert_eq!(
        refusal,
        Rejection::InsufficientScope {
            scope: "hrsync:admin".to_owned()
        }
    );
    let answer = axum::response::IntoResponse::into_response(refusal);
    assert_eq!(answer.status(), 403);
    assert!(answer.headers()[header::WWW_AUTHENTICATE]
        .to_str()?
        .contains("scope=\"hrsync:admin\""));

    // No token at all.
    assert_eq!(
        authorizer.authorize(&HeaderMap::new(), "hrsync:read").await,
        Err(Rejection::Missing)
    );

    // Time: expired beyond the leeway is refused, within it accepted; a
    // token not valid yet is refused.
    let claims = |exp: u64, extra: serde_json::Value| {
        let mut claims = json!({
            "iss": issuer.issuer(), "aud": HRSYNC_AUDIENCE, "sub": "robot",
            "client_id": "robot", "scope": "hrsync:read", "iat": now() - 600, "exp": exp,
        });
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        claims
    };
    let expired = issuer
        .sign(json!({}), claims(now() - 120, json!({})))
        .await?;
    refused_because(verifier.verify(&expired).await, "expired");
    let within_leeway = issuer.sign(json!({}), claims(now() - 5, json!({}))).await?;
    assert_eq!(verifier.verify(&within_leeway).await?.subject, "robot");
    let early = issuer
        .sign(
            json!({}),
            claims(now() + 600, json!({ "nbf": now() + 300 })),
        )
        .await?;
    refused_because(verifier.verify(&early).await, "not valid yet");

    // Another issuer, no subject, no audience.
    let foreign = issuer
        .sign(
            json!({}),
            claims(now() + 600, json!({ "iss": "https://evil.test/" })),
        )
        .await?;
    refused_because(verifier.verify(&foreign).await, "another issuer");
    let mut anonymous = claims(now() + 600, json!({}));
    anonymous.as_object_mut().unwrap().remove("sub");
    let anonymous = issuer.sign(json!({}), anonymous).await?;
    refused_because(verifier.verify(&anonymous).await, "no sub claim");

    // A token the issuer really issued, expired by the clock: `brief` tokens
    // live 2 s; without leeway it is refused once they are over.
    let strict = Verifier::new(OAuthConfig {
        leeway_seconds: 0,
        ..config(&issuer)
    })?;
    let brief = issuer
        .token("brief", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    strict.verify(&brief).await?;
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    refused_because(strict.verify(&brief).await, "expired");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_tokens_are_refused() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let verifier = Verifier::new(config(&issuer))?;
    let claims = json!({
        "iss": issuer.issuer(), "aud": HRSYNC_AUDIENCE, "sub": "mallory",
        "scope": "hrsync:admin", "exp": now() + 600,
    });
    let good = issuer.sign(json!({}), claims.clone()).await?;
    verifier.verify(&good).await?;

    // The signature of another token's claims.
    let (head_and_claims, _) = good.rsplit_once('.').unwrap();
    let other = issuer.sign(json!({}), json!({ "sub": "x" })).await?;
    let (_, signature) = other.rsplit_once('.').unwrap();
    refused_because(
        verifier
            .verify(&format!("{head_and_claims}.{signature}"))
            .await,
        "signature does not verify",
    );
    // `alg: none` and HMAC are never accepted, whatever the key.
    let (_, rest) = good.split_once('.').unwrap();
    for alg in ["none", "HS256"] {
        let header = base64url(&json!({ "alg": alg, "typ": "JWT" }).to_string());
        refused_because(verifier.verify(&format!("{header}.{rest}")).await, "");
    }
    // A key id the issuer never published.
    let stranger = issuer
        .sign(json!({ "kid": "stranger" }), claims.clone())
        .await?;
    refused_because(
        verifier.verify(&stranger).await,
        "key \"stranger\", which the issuer does not publish",
    );
    // Not a JWT at all.
    refused_because(verifier.verify("opaque-token").await, "not a JWT");
    Ok(())
}

fn base64url(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_rotation_needs_nothing_from_hrsync() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let verifier = Verifier::new(config(&issuer))?;
    let before = issuer
        .token("admin", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    verifier.verify(&before).await?;

    // The issuer signs with a new key: the token names a key id hrsync has
    // not seen, so it reads the keys again and accepts it.
    let kid = issuer.rotate(false).await?;
    let after = issuer
        .token("admin", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    assert!(header_of(&after).contains(&kid));
    verifier.verify(&after).await?;
    verifier.verify(&before).await?;

    // The issuer retires every older key. Once hrsync's cached keys are
    // older than key_max_age_seconds it reads them again, and a token
    // signed by a retired key is refused.
    let short_lived_cache = Verifier::new(OAuthConfig {
        key_max_age_seconds: 1,
        ..config(&issuer)
    })?;
    short_lived_cache.verify(&before).await?;
    issuer.rotate(true).await?;
    short_lived_cache.verify(&before).await?;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    refused_because(short_lived_cache.verify(&before).await, "does not publish");
    let newest = issuer
        .token("admin", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    short_lived_cache.verify(&newest).await?;
    Ok(())
}

/// The token's header, decoded, as text.
fn header_of(token: &str) -> String {
    let header = token.split('.').next().unwrap_or_default();
    String::from_utf8(URL_SAFE_NO_PAD.decode(header).unwrap_or_default()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_issuer_is_a_503_not_a_401() -> anyhow::Result<()> {
    let port = hrsync_tests::free_port()?;
    let verifier = Verifier::new(OAuthConfig::new(
        format!("http://127.0.0.1:{port}"),
        HRSYNC_AUDIENCE,
    ))?;
    let issuer = Issuer::start()?;
    let token = issuer
        .token("admin", "hrsync:read", HRSYNC_AUDIENCE)
        .await?;
    let refusal = verifier.verify(&token).await.unwrap_err();
    assert!(
        matches!(refusal, Rejection::KeysUnavailable(_)),
        "{refusal:?}"
    );
    let answer = axum::response::IntoResponse::into_response(refusal);
    assert_eq!(answer.status(), 503);
    Ok(())
}

/// An issuer that cannot grant custom scopes per user puts groups or roles
/// in the token instead: `[oauth.roles]` maps their values to hrsync's
/// scopes, for a flat claim and for a nested one.
#[tokio::test(flavor = "multi_thread")]
async fn roles_in_a_claim_grant_hrsyncs_scopes() -> anyhow::Result<()> {
    let issuer = Issuer::start()?;
    let with_roles = |claim: &str| {
        Verifier::new(OAuthConfig {
            roles: Some(RoleClaim {
                claim: claim.to_owned(),
                read: vec!["hrsync-viewers".to_owned()],
                admin: vec!["hrsync-admins".to_owned()],
                events_write: vec!["hr-feed".to_owned()],
            }),
            ..config(&issuer)
        })
    };
    let token = |extra: serde_json::Value| {
        let mut claims = json!({
            "iss": issuer.issuer(), "aud": HRSYNC_AUDIENCE, "sub": "cleo",
            "iat": now(), "exp": now() + 300,
        });
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        issuer.sign(json!({}), claims)
    };
    let groups = Arc::new(with_roles("groups")?);
    let authorizer = Authorizer::oauth(groups.clone());

    let admin = token(json!({ "groups": ["staff", "hrsync-admins"] })).await?;
    let principal = authorizer
        .authorize(&bearer(&admin), "hrsync:admin")
        .await?;
    assert!(principal.has("hrsync:read"), "{principal:?}");
    assert!(!principal.has("hrsync:events.write"));

    let viewer = token(json!({ "groups": "hrsync-viewers", "scope": "openid" })).await?;
    let principal = groups.verify(&viewer).await?;
    assert_eq!(
        principal
            .scopes
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["hrsync:read", "openid"]
    );
    assert_eq!(
        authorizer.authorize(&bearer(&viewer), "hrsync:admin").await,
        Err(Rejection::InsufficientScope {
            scope: "hrsync:admin".to_owned()
        })
    );
    // Values are matched whole, and the claim must be the configured one.
    for other in [
        json!({ "groups": ["hrsync-admins-old"] }),
        json!({ "roles": ["hrsync-admins"] }),
        json!({ "groups": 7 }),
    ] {
        let principal = groups.verify(&token(other.clone()).await?).await?;
        assert!(principal.scopes.is_empty(), "{other}: {principal:?}");
    }

    // A nested claim, as Keycloak writes realm roles.
    let nested = with_roles("realm_access.roles")?;
    let feed = token(json!({ "realm_access": { "roles": ["hr-feed"] } })).await?;
    let principal = nested.verify(&feed).await?;
    assert!(principal.has("hrsync:events.write") && !principal.has("hrsync:read"));

    // A role mapping that grants nothing, or names no claim, is refused.
    let mut config = config(&issuer);
    config.roles = Some(RoleClaim {
        claim: "groups".to_owned(),
        read: vec![],
        admin: vec![],
        events_write: vec![],
    });
    assert_eq!(
        Verifier::new(config.clone()).unwrap_err().key,
        "oauth.roles"
    );
    config.roles = Some(RoleClaim {
        claim: "realm_access.".to_owned(),
        read: vec!["x".to_owned()],
        admin: vec![],
        events_write: vec![],
    });
    assert_eq!(Verifier::new(config).unwrap_err().key, "oauth.roles.claim");
    Ok(())
}
