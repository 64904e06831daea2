//! Signatures as the Standard Webhooks specification defines them: HMAC
//! SHA-256 over `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the
//! base64 after the secret's `whsec_` prefix, sent as
//! `webhook-signature: v1,<base64>`.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The secret's prefix.
const PREFIX: &str = "whsec_";

/// A signing key.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// A secret that is not `whsec_` and base64 (the message never holds it).
#[derive(Debug, thiserror::Error)]
#[error("the signing secret must be `whsec_` followed by base64 (as Standard Webhooks receivers take it): {0}")]
pub struct KeyError(&'static str);

impl SigningKey {
    /// The key of `secret` (`whsec_<base64>`).
    ///
    /// # Errors
    /// [`KeyError`] when it is not that, or the key is shorter than 24
    /// bytes (the specification asks for 24 to 64).
    pub fn from_secret(secret: &str) -> Result<Self, KeyError> {
        let encoded = secret
            .strip_prefix(PREFIX)
            .ok_or(KeyError("it does not start with whsec_"))?;
        // With its padding or without, as the reference libraries take it.
        let key = STANDARD
            .decode(encoded)
            .or_else(|_| STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| KeyError("what follows whsec_ is not base64"))?;
        if key.len() < 24 {
            return Err(KeyError("the key is shorter than 24 bytes"));
        }
        Ok(SigningKey(key))
    }

    /// The `webhook-signature` header's value for `body` sent as `id` at
    /// `timestamp` (Unix seconds).
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_hmac_sha256_of_id_timestamp_and_body() {
        // The example of the Standard Webhooks specification's reference
        // libraries: this secret, id, timestamp and body sign to this value.
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("key");
        let signature = key.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_secret_without_its_prefix_or_too_short_is_refused() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
            "whsec_c2hvcnQ=",
        ] {
            let error = SigningKey::from_secret(bad).expect_err(bad).to_string();
            assert!(
                !error.contains(bad),
                "the message holds the secret: {error}"
            );
        }
    }
}
