//! Sign-ins under way and signed-in sessions, kept in the process's memory
//! (one admin process serves the console; a restart signs everyone out).
//!
//! The browser holds only random ids, in `HttpOnly` cookies; the access
//! token stays here. A session is found by the SHA-256 of its cookie, so
//! what this table holds cannot be replayed as a cookie.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hrsync_auth::{Identity, Principal};
use parking_lot::Mutex;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "hrsync_console";
/// The prefix of the cookie that ties a sign-in's callback to the browser
/// that started it (one per sign-in; its value is the sign-in's `state`).
pub(crate) const LOGIN_COOKIE: &str = "hrsync_console_login";
/// How long a sign-in may take at the issuer.
pub(crate) const LOGIN_TTL: Duration = Duration::from_secs(600);
/// The most sign-ins under way, and sessions, kept; the oldest go first.
const MAX_ENTRIES: usize = 10_000;

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

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// A sign-in sent to the issuer, waiting for its callback.
#[derive(Debug, Clone)]
pub(crate) struct PendingLogin {
    pub(crate) verifier: String,
    pub(crate) nonce: String,
    pub(crate) return_to: String,
    started: Instant,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) principal: Principal,
    pub(crate) identity: Identity,
    pub(crate) access_token: String,
    pub(crate) csrf_token: String,
    /// When it ends, seconds since the epoch.
    pub(crate) expires_at: i64,
}

impl Session {
    fn live(&self, now: i64) -> bool {
        now < self.expires_at
    }
}

/// Both tables.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    pending: Mutex<HashMap<String, PendingLogin>>,
    live: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// Records a sign-in under `state`.
    pub(crate) fn start_login(
        &self,
        state: &str,
        verifier: String,
        nonce: String,
        return_to: String,
    ) {
        let mut pending = self.pending.lock();
        pending.retain(|_, p| p.started.elapsed() < LOGIN_TTL);
        if pending.len() >= MAX_ENTRIES {
            if let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(
            state.to_owned(),
            PendingLogin {
                verifier,
                nonce,
                return_to,
                started: Instant::now(),
            },
        );
    }

    /// Takes the sign-in started under `state`, if it is recent enough.
    pub(crate) fn finish_login(&self, state: &str) -> Option<PendingLogin> {
        self.pending
            .lock()
            .remove(state)
            .filter(|p| p.started.elapsed() < LOGIN_TTL)
    }

    /// Stores `session`; returns the cookie value that finds it.
    pub(crate) fn open(&self, session: Session, now: i64) -> String {
        let id = random_id();
        let mut live = self.live.lock();
        live.retain(|_, s| s.live(now));
        if live.len() >= MAX_ENTRIES {
            if let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.expires_at)
                .map(|(k, _)| *k)
            {
                live.remove(&oldest);
            }
        }
        live.insert(digest(&id), session);
        id
    }

    /// The live session of cookie value `id`.
    pub(crate) fn find(&self, id: &str, now: i64) -> Option<Session> {
        let mut live = self.live.lock();
        let key = digest(id);
        match live.get(&key) {
            Some(session) if session.live(now) => Some(session.clone()),
            Some(_) => {
                live.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session of cookie value `id`.
    pub(crate) fn close(&self, id: &str) {
        self.live.lock().remove(&digest(id));
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

    fn session(expires_at: i64) -> Session {
        Session {
            principal: Principal {
                subject: "ada".to_owned(),
                client_id: Some("console".to_owned()),
                scopes: std::iter::once("hrsync:read".to_owned()).collect(),
                expires_at: None,
            },
            identity: Identity {
                subject: "ada".to_owned(),
                name: None,
                email: None,
            },
            access_token: "token".to_owned(),
            csrf_token: random_id(),
            expires_at,
        }
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_ends() {
        let sessions = Sessions::default();
        let id = sessions.open(session(100), 10);
        assert_eq!(id.len(), 43);
        assert!(sessions.find(&id, 99).is_some());
        assert!(sessions.find("another", 99).is_none());
        assert!(sessions.find(&id, 100).is_none(), "ended at 100");
        let id = sessions.open(session(100), 10);
        sessions.close(&id);
        assert!(sessions.find(&id, 11).is_none(), "signed out");
    }

    #[test]
    fn a_sign_in_finishes_once() {
        let sessions = Sessions::default();
        sessions.start_login("s1", "v".to_owned(), "n".to_owned(), "/console/".to_owned());
        assert_eq!(
            sessions.finish_login("s1").map(|p| p.verifier),
            Some("v".to_owned())
        );
        assert!(sessions.finish_login("s1").is_none());
        assert!(sessions.finish_login("unknown").is_none());
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
