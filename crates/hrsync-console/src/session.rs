//! Sign-ins under way and signed-in sessions, kept in the store
//! (`console_login`, `console_session`), so that every admin process on it
//! serves every browser: a sign-in may start at one and come back to
//! another, a session opened by one is found (and ended) by all, and a
//! restart signs no one out.
//!
//! The browser holds only random ids, in `HttpOnly` cookies. A session is
//! found by the SHA-256 of its cookie, so what the table holds cannot be
//! replayed as a cookie; it holds no token either: the console acts with
//! the principal the access token was verified as at sign-in, until the
//! token's expiry.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hrsync_auth::{Identity, Principal};
use hrsync_store::Db;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "hrsync_console";
/// The prefix of the cookie that ties a sign-in's callback to the browser
/// that started it (one per sign-in; its value is the sign-in's `state`).
pub(crate) const LOGIN_COOKIE: &str = "hrsync_console_login";
/// How long a sign-in may take at the issuer.
pub(crate) const LOGIN_TTL: Duration = Duration::from_secs(600);
/// The most sign-ins under way kept (anyone may start one); the oldest go
/// first.
const MAX_LOGINS: i64 = 10_000;

/// 32 random bytes, URL-safe base64 (43 characters).
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of `verifier` (RFC 7636).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The key a session is stored under: the hex SHA-256 of its cookie value.
fn digest(id: &str) -> String {
    Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn login_ttl_ms() -> i64 {
    i64::try_from(LOGIN_TTL.as_millis()).unwrap_or(i64::MAX)
}

/// A sign-in sent to the issuer, waiting for its callback.
#[derive(Debug, Clone)]
pub(crate) struct PendingLogin {
    pub(crate) verifier: String,
    pub(crate) nonce: String,
    pub(crate) return_to: String,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) principal: Principal,
    pub(crate) identity: Identity,
    pub(crate) csrf_token: String,
    /// When it ends, seconds since the epoch.
    pub(crate) expires_at: i64,
}

/// A session as the store keeps it (JSON).
#[derive(Serialize, Deserialize)]
struct Stored {
    subject: String,
    client_id: Option<String>,
    scopes: BTreeSet<String>,
    token_expires_at: Option<u64>,
    name: Option<String>,
    email: Option<String>,
    csrf_token: String,
}

impl Stored {
    fn of(session: &Session) -> Self {
        Stored {
            subject: session.principal.subject.clone(),
            client_id: session.principal.client_id.clone(),
            scopes: session.principal.scopes.clone(),
            token_expires_at: session.principal.expires_at,
            name: session.identity.name.clone(),
            email: session.identity.email.clone(),
            csrf_token: session.csrf_token.clone(),
        }
    }

    fn session(self, expires_at: i64) -> Session {
        Session {
            principal: Principal {
                subject: self.subject.clone(),
                client_id: self.client_id,
                scopes: self.scopes,
                expires_at: self.token_expires_at,
            },
            identity: Identity {
                subject: self.subject,
                name: self.name,
                email: self.email,
            },
            csrf_token: self.csrf_token,
            expires_at,
        }
    }
}

/// Both tables, in the store of `db`.
#[derive(Debug, Clone)]
pub(crate) struct Sessions {
    db: Db,
}

impl Sessions {
    pub(crate) fn new(db: Db) -> Self {
        Sessions { db }
    }

    /// Records a sign-in under `state`; forgets the ones that took too
    /// long, and the oldest beyond [`MAX_LOGINS`].
    pub(crate) async fn start_login(
        &self,
        state: &str,
        verifier: &str,
        nonce: &str,
        return_to: &str,
    ) -> sqlx::Result<()> {
        let now = now_ms();
        let ttl_ms = login_ttl_ms();
        sqlx::query("DELETE FROM console_login WHERE started_at_ms < $1")
            .bind(now - ttl_ms)
            .execute(self.db.pool())
            .await?;
        sqlx::query(
            "DELETE FROM console_login WHERE started_at_ms < (SELECT started_at_ms \
             FROM console_login ORDER BY started_at_ms DESC LIMIT 1 OFFSET $1)",
        )
        .bind(MAX_LOGINS - 1)
        .execute(self.db.pool())
        .await?;
        sqlx::query(
            "INSERT INTO console_login (state, verifier, nonce, return_to, started_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(state)
        .bind(verifier)
        .bind(nonce)
        .bind(return_to)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Takes the sign-in started under `state`, if it is recent enough (at
    /// most once, whichever process asks).
    pub(crate) async fn finish_login(&self, state: &str) -> sqlx::Result<Option<PendingLogin>> {
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "DELETE FROM console_login WHERE state = $1 \
             RETURNING verifier, nonce, return_to, started_at_ms",
        )
        .bind(state)
        .fetch_optional(self.db.pool())
        .await?;
        let ttl_ms = login_ttl_ms();
        Ok(row.filter(|(.., started)| now_ms() - started < ttl_ms).map(
            |(verifier, nonce, return_to, _)| PendingLogin {
                verifier,
                nonce,
                return_to,
            },
        ))
    }

    /// Stores `session`; returns the cookie value that finds it. Sessions
    /// ended before `now` are forgotten.
    pub(crate) async fn open(&self, session: &Session, now: i64) -> sqlx::Result<String> {
        sqlx::query("DELETE FROM console_session WHERE expires_at <= $1")
            .bind(now)
            .execute(self.db.pool())
            .await?;
        let id = random_id();
        let stored = serde_json::to_string(&Stored::of(session))
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query(
            "INSERT INTO console_session (digest, session, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(digest(&id))
        .bind(stored)
        .bind(session.expires_at)
        .execute(self.db.pool())
        .await?;
        Ok(id)
    }

    /// The live session of cookie value `id`.
    pub(crate) async fn find(&self, id: &str, now: i64) -> sqlx::Result<Option<Session>> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT session, expires_at FROM console_session \
             WHERE digest = $1 AND expires_at > $2",
        )
        .bind(digest(id))
        .bind(now)
        .fetch_optional(self.db.pool())
        .await?;
        let Some((stored, expires_at)) = row else {
            return Ok(None);
        };
        let stored: Stored =
            serde_json::from_str(&stored).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok(Some(stored.session(expires_at)))
    }

    /// Ends the session of cookie value `id`.
    pub(crate) async fn close(&self, id: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM console_session WHERE digest = $1")
            .bind(digest(id))
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub(crate) fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn session(expires_at: i64) -> Session {
        Session {
            principal: Principal {
                subject: "ada".to_owned(),
                client_id: Some("console".to_owned()),
                scopes: std::iter::once("hrsync:read".to_owned()).collect(),
                expires_at: Some(200),
            },
            identity: Identity {
                subject: "ada".to_owned(),
                name: Some("Ada Admin".to_owned()),
                email: None,
            },
            csrf_token: random_id(),
            expires_at,
        }
    }

    /// Two processes' tables over one store: what one opens, the other
    /// finds and ends; a sign-in finishes once, at either.
    async fn shared_by_two(url: &str) -> anyhow::Result<()> {
        let db = Db::connect(url, 2).await?;
        db.migrate().await?;
        let (one, two) = (
            Sessions::new(db.clone()),
            Sessions::new(Db::connect(url, 2).await?),
        );
        let opened = session(100);
        let id = one.open(&opened, 10).await?;
        assert_eq!(id.len(), 43);
        let found = two.find(&id, 99).await?.expect("found by the other");
        assert_eq!(found.principal, opened.principal);
        assert_eq!(found.identity, opened.identity);
        assert_eq!(found.csrf_token, opened.csrf_token);
        assert_eq!(found.expires_at, 100);
        assert!(two.find("another", 99).await?.is_none());
        assert!(two.find(&id, 100).await?.is_none(), "ended at 100");
        // The cookie value is not what is stored.
        let stored: Vec<String> = sqlx::query_scalar("SELECT digest FROM console_session")
            .fetch_all(db.pool())
            .await?;
        assert!(!stored.contains(&id) && stored.contains(&digest(&id)));
        let id = one.open(&session(100), 10).await?;
        two.close(&id).await?;
        assert!(one.find(&id, 11).await?.is_none(), "signed out");

        one.start_login("s1", "v", "n", "/console/").await?;
        let pending = two.finish_login("s1").await?.expect("pending");
        assert_eq!(
            (pending.verifier.as_str(), pending.nonce.as_str()),
            ("v", "n")
        );
        assert!(one.finish_login("s1").await?.is_none(), "finished once");
        assert!(one.finish_login("unknown").await?.is_none());
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sessions_are_shared_on_postgres() -> anyhow::Result<()> {
        let pg = hrsync_tests::PgDatabase::fresh().await?;
        shared_by_two(pg.url()).await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sessions_are_shared_on_sqlite() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
        shared_by_two(&url).await
    }

    #[test]
    fn pkce_and_cookies() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let header = "a=1; hrsync_console=abc; hrsync_console_login=xyz";
        assert_eq!(cookie(header, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(header, LOGIN_COOKIE), Some("xyz"));
        assert_eq!(cookie(header, "b"), None);
    }
}
