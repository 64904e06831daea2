//! Sign-in with OpenID Connect: the authorization code flow with PKCE
//! (S256), `state` tied to the browser by a cookie, and a `nonce` checked
//! in the ID token. The access token is asked for hrsync's audience (an
//! RFC 8707 `resource`) and checked like any bearer token of the admin API;
//! the session keeps the principal it was verified as (not the token), and
//! the browser gets a session cookie.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hrsync_auth::IssuerMetadata;
use serde::Deserialize;

use crate::session::{
    self, pkce_challenge, random_id, Session, LOGIN_COOKIE, LOGIN_TTL, SESSION_COOKIE,
};
use crate::{page, Console};

/// `GET /console/login` parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    return_to: Option<String>,
}

/// Where a sign-in may lead back to: a console page, never elsewhere.
fn safe_return(to: Option<&str>) -> String {
    match to {
        Some(to)
            if to.starts_with("/console/")
                && !to.starts_with("/console/login")
                && !to.contains(['\\', '\r', '\n'])
                && !to.contains("//") =>
        {
            to.to_owned()
        }
        _ => "/console/".to_owned(),
    }
}

/// `GET /console/login`: sends the browser to the issuer.
pub(crate) async fn login(
    State(console): State<Arc<Console>>,
    Query(query): Query<LoginQuery>,
) -> Response {
    let metadata = match console.metadata().await {
        Ok(metadata) => metadata,
        Err(error) => return unavailable(&error),
    };
    let Some(authorize) = metadata.authorization_endpoint else {
        return unavailable("the issuer's metadata names no authorization_endpoint");
    };
    let (state, verifier, nonce) = (random_id(), random_id(), random_id());
    let mut url = match reqwest::Url::parse(&authorize) {
        Ok(url) => url,
        Err(e) => return unavailable(&format!("authorization_endpoint {authorize:?}: {e}")),
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &console.config.client_id)
        .append_pair("redirect_uri", &console.config.redirect_uri())
        .append_pair("scope", &console.scopes())
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &pkce_challenge(&verifier))
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &console.oauth.audience);
    let started = console
        .sessions
        .start_login(
            &state,
            &verifier,
            &nonce,
            &safe_return(query.return_to.as_deref()),
        )
        .await;
    if let Err(error) = started {
        return crate::store_failed(&error);
    }
    let cookie = console.cookie(&login_cookie(&state), &state, LOGIN_TTL.as_secs());
    let mut response = Redirect::to(url.as_str()).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// The cookie that ties the sign-in of `state` to the browser: one per
/// sign-in, so sign-ins started in two tabs do not replace each other's.
fn login_cookie(state: &str) -> String {
    format!("{LOGIN_COOKIE}_{}", state.get(..16).unwrap_or(state))
}

/// `GET /console/callback` parameters: a code, or the issuer's refusal.
#[derive(Debug, Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
struct Tokens {
    access_token: String,
    id_token: Option<String>,
}

/// `GET /console/callback`: exchanges the code, checks both tokens, opens
/// the session.
pub(crate) async fn callback(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    if let Some(error) = &query.error {
        let detail = query.error_description.as_deref().unwrap_or_default();
        return failed(
            StatusCode::FORBIDDEN,
            &format!("the issuer refused the sign-in: {error} {detail}"),
        );
    }
    let (Some(code), Some(state)) = (&query.code, &query.state) else {
        return failed(
            StatusCode::BAD_REQUEST,
            "the callback carries no code and state",
        );
    };
    let started_here = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::cookie(c, &login_cookie(state)))
        .is_some_and(|c| hrsync_auth::same_secret(c, state));
    if !started_here {
        return failed(
            StatusCode::BAD_REQUEST,
            "this sign-in was not started in this browser, or took longer than 10 minutes",
        );
    }
    let pending = match console.sessions.finish_login(state).await {
        Ok(pending) => pending,
        Err(error) => return crate::store_failed(&error),
    };
    let Some(pending) = pending else {
        return failed(
            StatusCode::BAD_REQUEST,
            "this sign-in was not started in this browser, or took longer than 10 minutes",
        );
    };
    let tokens = match exchange(&console, code, &pending.verifier).await {
        Ok(tokens) => tokens,
        Err(error) => {
            tracing::warn!(%error, "console sign-in: the code exchange failed");
            return failed(StatusCode::BAD_GATEWAY, &error);
        }
    };
    match open_session(&console, tokens, &pending.nonce).await {
        Ok(cookie_value) => {
            let mut response = Redirect::to(&pending.return_to).into_response();
            let headers = response.headers_mut();
            let max_age = console.config.session_max_seconds;
            headers.append(
                header::SET_COOKIE,
                console.cookie(SESSION_COOKIE, &cookie_value, max_age),
            );
            headers.append(
                header::SET_COOKIE,
                console.cookie(&login_cookie(state), "", 0),
            );
            response
        }
        Err((status, why)) => failed(status, &why),
    }
}

/// Exchanges `code` at the issuer's token endpoint.
async fn exchange(console: &Console, code: &str, verifier: &str) -> Result<Tokens, String> {
    let metadata: IssuerMetadata = console.metadata().await?;
    let endpoint = metadata
        .token_endpoint
        .ok_or("the issuer's metadata names no token_endpoint")?;
    let redirect_uri = console.config.redirect_uri();
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier),
        ("resource", console.oauth.audience.as_str()),
    ];
    let mut request = console.http.post(&endpoint);
    let secret = match &console.config.client_secret {
        Some(secret) => Some(
            secret
                .expose()
                .map_err(|e| format!("console.client_secret: {e}"))?,
        ),
        None => None,
    };
    match &secret {
        Some(secret) => request = request.basic_auth(&console.config.client_id, Some(secret)),
        None => form.push(("client_id", console.config.client_id.as_str())),
    }
    let response = request
        .form(&form)
        .send()
        .await
        .map_err(|e| format!("the token endpoint cannot be reached: {}", e.without_url()))?;
    let status = response.status();
    if !status.is_success() {
        // The issuer's error code (`invalid_grant`...), never the body whole.
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let error = body["error"].as_str().unwrap_or("no error code");
        return Err(format!("the token endpoint answered {status}: {error}"));
    }
    response.json::<Tokens>().await.map_err(|e| {
        format!(
            "the token endpoint's answer is not a token response: {}",
            e.without_url()
        )
    })
}

/// Checks the tokens and stores the session; returns its cookie value.
async fn open_session(
    console: &Console,
    tokens: Tokens,
    nonce: &str,
) -> Result<String, (StatusCode, String)> {
    let principal = console
        .verifier
        .verify(&tokens.access_token)
        .await
        .map_err(|e| {
            (
                StatusCode::FORBIDDEN,
                format!("the access token is refused: {e}"),
            )
        })?;
    let id_token = tokens.id_token.ok_or((
        StatusCode::BAD_GATEWAY,
        "the issuer answered no ID token (is `openid` among console.scopes?)".to_owned(),
    ))?;
    let identity = console
        .verifier
        .verify_id_token(&id_token, &console.config.client_id, nonce)
        .await
        .map_err(|e| {
            (
                StatusCode::FORBIDDEN,
                format!("the ID token is refused: {e}"),
            )
        })?;
    if !principal.has(&console.oauth.scopes.read) {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "{} may not use the console: the issuer did not grant the scope {}",
                identity.name.as_deref().unwrap_or(&identity.subject),
                console.oauth.scopes.read
            ),
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let max =
        now.saturating_add(i64::try_from(console.config.session_max_seconds).unwrap_or(i64::MAX));
    let token_end = principal
        .expires_at
        .and_then(|exp| i64::try_from(exp).ok())
        .unwrap_or(max);
    let session = Session {
        principal,
        identity,
        csrf_token: random_id(),
        expires_at: max.min(token_end),
    };
    let id = console
        .sessions
        .open(&session, now)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "console sign-in: the session was not stored");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the session cannot be stored now; try again shortly".to_owned(),
            )
        })?;
    tracing::info!(subject = %session.principal.subject, "console sign-in");
    Ok(id)
}

/// A sign-in that could not finish: a page saying why, with a way back.
fn failed(status: StatusCode, why: &str) -> Response {
    page::message(
        status,
        "Sign-in failed",
        why,
        ("Try again", "/console/login"),
    )
}

fn unavailable(why: &str) -> Response {
    tracing::warn!(error = why, "console sign-in: the issuer cannot be used");
    page::message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is unavailable",
        "The identity provider cannot be reached now; try again shortly.",
        ("Try again", "/console/login"),
    )
}

/// A `Set-Cookie` value.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_leads_back_to_a_console_page_only() {
        assert_eq!(
            safe_return(Some("/console/people/E7?x=1")),
            "/console/people/E7?x=1"
        );
        for elsewhere in [
            None,
            Some("https://evil.test/"),
            Some("//evil.test/console/"),
            Some("/console//evil.test"),
            Some("/console/\\evil"),
            Some("/console/login?return_to=/x"),
            Some("/api/v1/persons"),
        ] {
            assert_eq!(safe_return(elsewhere), "/console/", "{elsewhere:?}");
        }
    }

    #[test]
    fn cookies_are_http_only_and_scoped_to_the_console() {
        let cookie = set_cookie("a", "b", 60, true);
        assert_eq!(
            cookie.to_str().unwrap(),
            "a=b; Path=/console; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
        assert!(!set_cookie("a", "b", 60, false)
            .to_str()
            .unwrap()
            .contains("Secure"));
    }
}
