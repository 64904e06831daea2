//! hrsync as an OpenID Shared Signals Framework transmitter: on a
//! deactivation (a termination, a leave) a CAEP `session-revoked` Security
//! Event Token (RFC 8417), signed with hrsync's key, pushed to each
//! configured receiver (RFC 8935), so that live sessions and tokens of the
//! person are cut where the receiver can. The keys are published at
//! `{issuer}/jwks.json`, with the transmitter's metadata at
//! `/.well-known/ssf-configuration`, on `listen`.

use std::net::SocketAddr;
use std::sync::Arc;

use hrsync_config::Secret;
use hrsync_domain::{Attribute, DirectoryChange};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The CAEP event type sent.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

/// RFC 8935 push delivery, as SSF names it.
const PUSH_DELIVERY: &str = "urn:ietf:rfc:8935";

/// `[hooks.ssf]`: the transmitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsfConfig {
    /// The SETs' `iss`, and the public base URL of `listen`: the keys are
    /// at `{issuer}/jwks.json`.
    pub issuer: String,
    /// Where the keys and the metadata are served.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The signing key, PEM (PKCS#8): Ed25519 for `EdDSA`, RSA for `RS256`.
    pub signing_key: Secret,
    /// `EdDSA` (default) or `RS256`.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// The key's `kid`.
    pub key_id: String,
    /// The receivers.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8082))
}

fn default_algorithm() -> String {
    "EdDSA".to_owned()
}

/// `[[hooks.ssf.receivers]]`: one receiver's push endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Its name (in metrics, logs and the store; not that of a hook
    /// endpoint).
    pub name: String,
    /// Its push endpoint.
    pub url: String,
    /// The SETs' `aud` for it.
    pub audience: String,
    /// The app (`[[provisioner.apps]]` name) whose sessions it holds, if
    /// any: its SETs then name the person by their account's SCIM id there
    /// too, once the provisioner has created or linked it.
    #[serde(default)]
    pub app: Option<String>,
    /// A bearer token its endpoint asks for, if any.
    #[serde(default)]
    pub token: Option<Secret>,
    /// How long one attempt may take.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// A transmitter that cannot be set up (never holding the key).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SsfError(String);

/// Signs SETs and publishes its keys.
pub struct Transmitter {
    issuer: String,
    key: EncodingKey,
    header: Header,
    jwks: Value,
}

impl std::fmt::Debug for Transmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmitter")
            .field("issuer", &self.issuer)
            .field("kid", &self.header.kid)
            .finish_non_exhaustive()
    }
}

impl Transmitter {
    /// The transmitter of `config`.
    ///
    /// # Errors
    /// The key cannot be read or is not of the algorithm's kind.
    pub fn new(config: &SsfConfig) -> Result<Self, SsfError> {
        let pem = config
            .signing_key
            .expose()
            .map_err(|e| SsfError(format!("signing_key: {e}")))?;
        let (algorithm, key) = match config.algorithm.as_str() {
            "EdDSA" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(pem.as_bytes())),
            "RS256" => (Algorithm::RS256, EncodingKey::from_rsa_pem(pem.as_bytes())),
            other => {
                return Err(SsfError(format!(
                    "algorithm {other:?} is not EdDSA or RS256"
                )))
            }
        };
        let key = key.map_err(|e| {
            SsfError(format!(
                "signing_key is not a PKCS#8 PEM {} key: {e}",
                config.algorithm
            ))
        })?;
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, algorithm)
            .map_err(|e| SsfError(format!("signing_key: {e}")))?;
        jwk.common.key_id = Some(config.key_id.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let mut header = Header::new(algorithm);
        header.typ = Some("secevent+jwt".to_owned());
        header.kid = Some(config.key_id.clone());
        Ok(Transmitter {
            issuer: config.issuer.trim_end_matches('/').to_owned(),
            key,
            header,
            jwks: json!({ "keys": [jwk] }),
        })
    }

    /// The `session-revoked` SET for `change` to `audience`, with `jti`;
    /// the subject also by `scim_id`, the person's account in the
    /// receiver's app, where known.
    ///
    /// # Errors
    /// Signing failed.
    pub fn session_revoked(
        &self,
        audience: &str,
        change: &DirectoryChange,
        jti: &str,
        scim_id: Option<&str>,
    ) -> Result<String, SsfError> {
        let claims = json!({
            "iss": self.issuer,
            "aud": audience,
            "iat": hrsync_domain::Timestamp::now().as_millis() / 1000,
            "jti": jti,
            "txn": change.caused_by.first().map(ToString::to_string),
            "sub_id": subject(change, scim_id),
            "events": {
                SESSION_REVOKED: {
                    "event_timestamp": change.changed_at.as_millis() / 1000,
                    "initiating_entity": "policy",
                    "reason_admin": {
                        "en": format!("{} in HR", match change.lifecycle_state {
                            hrsync_domain::LifecycleState::Suspended => "On leave",
                            _ => "Terminated",
                        }),
                    },
                },
            },
        });
        jsonwebtoken::encode(&self.header, &claims, &self.key)
            .map_err(|e| SsfError(format!("signing a SET: {e}")))
    }

    /// The published keys (public parts only).
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// The transmitter's metadata (`/.well-known/ssf-configuration`).
    pub fn metadata(&self) -> Value {
        json!({
            "spec_version": "1_0",
            "issuer": self.issuer,
            "jwks_uri": format!("{}/jwks.json", self.issuer),
            "delivery_methods_supported": [PUSH_DELIVERY],
            "events_supported": [SESSION_REVOKED],
            "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6749"}],
        })
    }
}

/// The person as SSF identifies a subject (RFC 9493): by their work
/// e-mail, the identifier apps share, else by the person's stable id
/// (opaque); with their account's SCIM id in the receiver's app, where
/// known, as `aliases` of both (the SCIM id opaque).
fn subject(change: &DirectoryChange, scim_id: Option<&str>) -> Value {
    let email = Attribute::parse("work_email")
        .ok()
        .and_then(|a| change.profile.attributes.text(&a).map(str::to_owned));
    let person = match email {
        Some(email) => json!({"format": "email", "email": email}),
        None => json!({"format": "opaque", "id": change.person_id.as_str()}),
    };
    match scim_id {
        Some(id) => json!({
            "format": "aliases",
            "identifiers": [person, {"format": "opaque", "id": id}],
        }),
        None => person,
    }
}

/// Serves the keys and the metadata on `listen` until `shutdown`.
///
/// # Errors
/// The listener cannot be bound.
pub async fn serve(
    listen: SocketAddr,
    transmitter: Arc<Transmitter>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::routing::get;
    let keys = transmitter.clone();
    let app = axum::Router::new()
        .route(
            "/jwks.json",
            get(move || {
                let keys = keys.clone();
                async move { axum::Json(keys.jwks().clone()) }
            }),
        )
        .route(
            "/.well-known/ssf-configuration",
            get(move || {
                let transmitter = transmitter.clone();
                async move { axum::Json(transmitter.metadata()) }
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "SSF keys and metadata served");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn ed25519_pem() -> String {
        let made = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519"])
            .output()
            .expect("openssl makes an Ed25519 key");
        String::from_utf8(made.stdout).expect("PEM")
    }

    #[test]
    fn a_set_verifies_with_the_published_key_and_names_the_person() {
        let config = SsfConfig {
            issuer: "https://hrsync.test/ssf/".to_owned(),
            listen: default_listen(),
            signing_key: Secret::inline(ed25519_pem()),
            algorithm: default_algorithm(),
            key_id: "k1".to_owned(),
            receivers: Vec::new(),
        };
        let transmitter = Transmitter::new(&config).expect("a transmitter");
        let mut change = crate::event::sample(hrsync_domain::LifecycleState::Deprovisioned);
        change.profile.attributes.work_email = Some("ada@example.com".to_owned());
        let set = transmitter
            .session_revoked("https://receiver.test", &change, "msg_1", None)
            .expect("signed");

        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(transmitter.jwks()["keys"][0].clone()).expect("a JWK");
        assert_eq!(jwk.common.key_id.as_deref(), Some("k1"));
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["https://receiver.test"]);
        validation.set_issuer(&["https://hrsync.test/ssf"]);
        validation.required_spec_claims.clear();
        let token = jsonwebtoken::decode::<Value>(
            &set,
            &DecodingKey::from_jwk(&jwk).expect("a key"),
            &validation,
        )
        .expect("verifies");
        assert_eq!(token.header.typ.as_deref(), Some("secevent+jwt"));
        let claims = token.claims;
        assert_eq!(claims["jti"], "msg_1");
        assert_eq!(
            claims["sub_id"],
            json!({"format": "email", "email": "ada@example.com"})
        );
        let event = &claims["events"][SESSION_REVOKED];
        assert_eq!(event["initiating_entity"], "policy");
        assert_eq!(
            event["event_timestamp"],
            change.changed_at.as_millis() / 1000
        );
        assert_eq!(
            transmitter.metadata()["jwks_uri"],
            "https://hrsync.test/ssf/jwks.json"
        );
    }

    #[test]
    fn the_subject_names_the_account_in_the_receivers_app_where_known() {
        let mut change = crate::event::sample(hrsync_domain::LifecycleState::Deprovisioned);
        change.profile.attributes.work_email = Some("ada@example.com".to_owned());
        assert_eq!(
            subject(&change, Some("2819c223")),
            json!({"format": "aliases", "identifiers": [
                {"format": "email", "email": "ada@example.com"},
                {"format": "opaque", "id": "2819c223"},
            ]})
        );
        change.profile.attributes.work_email = None;
        assert_eq!(
            subject(&change, None),
            json!({"format": "opaque", "id": change.person_id.as_str()})
        );
    }

    #[test]
    fn a_key_of_the_wrong_kind_is_refused_without_showing_it() {
        let pem = ed25519_pem();
        let config = SsfConfig {
            issuer: "https://hrsync.test/ssf".to_owned(),
            listen: default_listen(),
            signing_key: Secret::inline(pem.clone()),
            algorithm: "RS256".to_owned(),
            key_id: "k1".to_owned(),
            receivers: Vec::new(),
        };
        let error = Transmitter::new(&config)
            .expect_err("not an RSA key")
            .to_string();
        assert!(error.contains("RS256"), "{error}");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!error.contains(&body), "{error}");
    }
}
