//! The configured endpoints, ready to use: hook endpoints (which events
//! each takes, by type and CEL condition, and its signing key), SSF
//! receivers (a `session-revoked` SET on each deactivation) and apps'
//! revocation calls (on each deactivation of a person with an account
//! there), each with its HTTP client.

use std::sync::Arc;
use std::time::Duration;

use cel::{Context, Env, Program, Value};
use hrsync_config::Secret;
use hrsync_domain::{DirectoryChange, WorkerAttributes};
use hrsync_expr::{check_references, parse_reason, person, string};

use crate::config::{HookConfig, HooksConfig};
use crate::event::{body, EventType, Seen};
use crate::revoke::{Call, RevocationConfig, Values};
use crate::sign::SigningKey;
use crate::ssf::{ReceiverConfig, Transmitter};

/// The variables a condition can read.
const VARIABLES: [&str; 6] = [
    "event",
    "person",
    "state",
    "previous_state",
    "groups",
    "apps",
];

/// What a hook's condition reads of the person an event is about.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Their attributes (`person`).
    pub attributes: &'a WorkerAttributes,
    /// Their lifecycle state now.
    pub state: &'a str,
    /// Before the change (`""` for a person seen first; the same as
    /// `state` for an account's event).
    pub previous_state: &'a str,
    /// Their groups.
    pub groups: &'a [String],
    /// Their apps.
    pub apps: &'a [String],
}

/// The event type stored for a SET.
const SESSION_REVOKED: &str = "session-revoked";
/// The event type stored for an app's revocation call.
const REVOCATION: &str = "revocation-call";

/// An endpoint that cannot be set up; the message names it and never holds
/// its secret.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {reason}")]
pub struct EndpointError {
    at: String,
    reason: String,
}

/// One endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Its name.
    pub name: String,
    /// Where deliveries go.
    pub url: reqwest::Url,
    /// Its client (the endpoint's timeout).
    pub client: reqwest::Client,
    kind: Kind,
}

/// What an endpoint is sent.
enum Kind {
    /// Lifecycle events, signed as Standard Webhooks says.
    Hook {
        secret: Secret,
        events: Vec<EventType>,
        condition: Option<(String, Program)>,
        env: Arc<Env>,
    },
    /// `session-revoked` SETs on deactivations (RFC 8935 push).
    Ssf {
        audience: String,
        token: Option<Secret>,
        transmitter: Arc<Transmitter>,
        /// The app whose sessions it holds, if named.
        app: Option<String>,
    },
    /// An app's own call that ends a person's sessions or tokens.
    Revocation(RevocationConfig),
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Hook {
                events, condition, ..
            } => f
                .debug_struct("Hook")
                .field("events", events)
                .field("condition", &condition.as_ref().map(|(text, _)| text))
                .finish_non_exhaustive(),
            Kind::Ssf { audience, .. } => f
                .debug_struct("Ssf")
                .field("audience", audience)
                .finish_non_exhaustive(),
            Kind::Revocation(config) => f
                .debug_struct("Revocation")
                .field("app", &config.app)
                .field("method", &config.method)
                .field("url", &config.url)
                .finish_non_exhaustive(),
        }
    }
}

impl Endpoint {
    fn new(
        name: &str,
        url: &str,
        timeout_ms: u64,
        kind: Kind,
        at: &str,
    ) -> Result<Self, EndpointError> {
        let fail = |reason: String| EndpointError {
            at: at.to_owned(),
            reason,
        };
        Ok(Endpoint {
            name: name.to_owned(),
            url: reqwest::Url::parse(url).map_err(|e| fail(format!("url: {e}")))?,
            client: reqwest::Client::builder()
                .timeout(Duration::from_millis(timeout_ms))
                .build()
                .map_err(|e| fail(format!("HTTP client: {e}")))?,
            kind,
        })
    }

    /// A hook endpoint: compiles its condition and checks its secret.
    fn hook(config: &HookConfig, env: Arc<Env>) -> Result<Self, EndpointError> {
        let at = format!("hooks.endpoints[{}]", config.name);
        let fail = |reason: String| EndpointError {
            at: at.clone(),
            reason,
        };
        let condition = match &config.condition {
            Some(text) => {
                let program = env
                    .compile(text)
                    .map_err(|errors| fail(format!("condition: {}", parse_reason(&errors))))?;
                check_references(program.expression(), &env, &VARIABLES)
                    .map_err(|e| fail(format!("condition: {e}")))?;
                Some((text.clone(), program))
            }
            None => None,
        };
        let kind = Kind::Hook {
            secret: config.secret.clone(),
            events: config
                .events
                .iter()
                .filter_map(|e| EventType::parse(e))
                .collect(),
            condition,
            env,
        };
        let endpoint = Endpoint::new(&config.name, &config.url, config.timeout_ms, kind, &at)?;
        signing_key(&config.secret).map_err(fail)?;
        Ok(endpoint)
    }

    /// An SSF receiver.
    fn ssf(config: &ReceiverConfig, transmitter: Arc<Transmitter>) -> Result<Self, EndpointError> {
        let at = format!("hooks.ssf.receivers[{}]", config.name);
        if let Some(token) = &config.token {
            token.expose().map_err(|e| EndpointError {
                at: at.clone(),
                reason: format!("token: {e}"),
            })?;
        }
        let kind = Kind::Ssf {
            audience: config.audience.clone(),
            token: config.token.clone(),
            transmitter,
            app: config.app.clone(),
        };
        Endpoint::new(&config.name, &config.url, config.timeout_ms, kind, &at)
    }

    /// An app's revocation call: checks its templates and its token.
    fn revocation(config: &RevocationConfig) -> Result<Self, EndpointError> {
        let at = format!("hooks.revocations[{}]", config.name);
        let fail = |reason: String| EndpointError {
            at: at.clone(),
            reason,
        };
        config.check().map_err(&fail)?;
        if let Some(token) = &config.token {
            token.expose().map_err(|e| fail(format!("token: {e}")))?;
        }
        // The URL is the call's, per person; this one only names the host.
        let host = config.url.split(['{', '?']).next().unwrap_or_default();
        let kind = Kind::Revocation(config.clone());
        Endpoint::new(&config.name, host, config.timeout_ms, kind, &at)
    }

    /// The type stored for `event` sent here.
    pub fn event_name(&self, event: EventType) -> &'static str {
        match self.kind {
            Kind::Hook { .. } => event.as_str(),
            Kind::Ssf { .. } => SESSION_REVOKED,
            Kind::Revocation(_) => REVOCATION,
        }
    }

    /// Whether it is owed anything for a person with `accounts` (app, SCIM
    /// id): an app's revocation call only for a person with an account
    /// there; the rest always.
    pub fn owed(&self, accounts: &[(String, String)]) -> bool {
        match &self.kind {
            Kind::Revocation(config) => accounts.iter().any(|(app, _)| *app == config.app),
            Kind::Hook { .. } | Kind::Ssf { .. } => true,
        }
    }

    /// Whether it takes `event` of `subject`: a hook by its types and
    /// condition (a condition that fails or is not a bool is logged and
    /// counts as false); an SSF receiver and a revocation call every
    /// deactivation.
    pub fn wants(&self, event: EventType, subject: &Subject<'_>) -> bool {
        let Kind::Hook {
            events,
            condition,
            env,
            ..
        } = &self.kind
        else {
            return event.deactivates();
        };
        if !events.is_empty() && !events.contains(&event) {
            return false;
        }
        let Some((_, program)) = condition else {
            return true;
        };
        let mut context = Context::with_env(Arc::clone(env));
        context.add_variable_as_val("event", string(event.as_str()));
        context.add_variable_as_val("person", Box::new(person(subject.attributes)));
        context.add_variable_as_val("state", string(subject.state));
        context.add_variable_as_val("previous_state", string(subject.previous_state));
        context.add_variable_from_value("groups", subject.groups.to_vec());
        context.add_variable_from_value("apps", subject.apps.to_vec());
        match program.execute(&context) {
            Ok(Value::Bool(wanted)) => wanted,
            Ok(other) => {
                tracing::warn!(hook = %self.name, event = event.as_str(), result_type = %other.type_of(), "the hook's condition is not a bool; not sent");
                false
            }
            Err(error) => {
                tracing::warn!(hook = %self.name, event = event.as_str(), error = hrsync_expr::describe_failure(&error), "the hook's condition failed; not sent");
                false
            }
        }
    }

    /// The app an SSF receiver holds sessions of, if it names one, or a
    /// revocation call acts on.
    pub fn app(&self) -> Option<&str> {
        match &self.kind {
            Kind::Ssf { app, .. } => app.as_deref(),
            Kind::Revocation(config) => Some(&config.app),
            Kind::Hook { .. } => None,
        }
    }

    /// What is sent for `event`: a hook's JSON, an SSF receiver's SET
    /// (signed now, its `jti` the delivery's id; naming the person's
    /// account in the receiver's app among `accounts`, (app, SCIM id), if
    /// there).
    ///
    /// # Errors
    /// A SET that cannot be signed.
    pub fn body(
        &self,
        event: EventType,
        previous: Option<&Seen>,
        change: &DirectoryChange,
        delivery_id: &str,
        accounts: &[(String, String)],
    ) -> Result<String, String> {
        match &self.kind {
            Kind::Hook { .. } => Ok(body(event, previous, change).to_string()),
            Kind::Ssf {
                audience,
                transmitter,
                app,
                ..
            } => {
                let scim_id = app.as_ref().and_then(|app| {
                    accounts
                        .iter()
                        .find(|(a, _)| a == app)
                        .map(|(_, id)| id.as_str())
                });
                transmitter
                    .session_revoked(audience, change, delivery_id, scim_id)
                    .map_err(|e| e.to_string())
            }
            Kind::Revocation(config) => {
                let scim_id = accounts
                    .iter()
                    .find(|(app, _)| *app == config.app)
                    .map(|(_, id)| id.as_str())
                    .ok_or_else(|| format!("no account of the person in {}", config.app))?;
                let call = config
                    .call(&Values::of(change, scim_id))
                    .map_err(|e| e.to_string())?;
                serde_json::to_string(&call).map_err(|e| e.to_string())
            }
        }
    }

    /// The request delivering `body` as `delivery_id`: a hook's signed
    /// (the key read from its secret now: an env or file secret may have
    /// been rotated), an SET pushed as RFC 8935 says, a revocation call as
    /// stored ([`Call`]).
    ///
    /// # Errors
    /// The secret or token cannot be read, or is not a key (the message
    /// names why, never the value).
    pub fn request(
        &self,
        delivery_id: &str,
        body: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        if let Kind::Revocation(config) = &self.kind {
            return self.revocation_request(config, body);
        }
        let request = self
            .client
            .post(self.url.clone())
            .header(
                reqwest::header::USER_AGENT,
                concat!("hrsync/", env!("CARGO_PKG_VERSION")),
            )
            .body(body.to_owned());
        match &self.kind {
            Kind::Hook { secret, .. } => {
                let key = signing_key(secret)?;
                let timestamp = crate::store::now_ms() / 1000;
                Ok(request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("webhook-id", delivery_id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", key.sign(delivery_id, timestamp, body)))
            }
            Kind::Ssf { token, .. } => {
                let request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/secevent+jwt")
                    .header(reqwest::header::ACCEPT, "application/json");
                match token {
                    Some(token) => {
                        Ok(request.bearer_auth(token.expose().map_err(|e| format!("token: {e}"))?))
                    }
                    None => Ok(request),
                }
            }
            Kind::Revocation(_) => unreachable!("answered above"),
        }
    }

    /// An app's revocation call, as stored for the person.
    fn revocation_request(
        &self,
        config: &RevocationConfig,
        stored: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        let call: Call = serde_json::from_str(stored)
            .map_err(|e| format!("a stored call that is not one: {e}"))?;
        let method = reqwest::Method::from_bytes(call.method.as_bytes())
            .map_err(|e| format!("method {:?}: {e}", call.method))?;
        let mut request = self.client.request(method, &call.url).header(
            reqwest::header::USER_AGENT,
            concat!("hrsync/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(body) = call.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        match &config.token {
            Some(token) => {
                Ok(request.bearer_auth(token.expose().map_err(|e| format!("token: {e}"))?))
            }
            None => Ok(request),
        }
    }
}

/// The signing key of a hook's secret.
fn signing_key(secret: &Secret) -> Result<SigningKey, String> {
    let secret = secret.expose().map_err(|e| format!("secret: {e}"))?;
    SigningKey::from_secret(&secret).map_err(|e| format!("secret: {e}"))
}

/// Every configured endpoint (hooks, revocation calls, then SSF
/// receivers), and the SSF transmitter if there is one.
///
/// # Errors
/// The first that cannot be set up.
pub fn endpoints(
    config: &HooksConfig,
) -> Result<(Vec<Endpoint>, Option<Arc<Transmitter>>), EndpointError> {
    let env = Arc::new(hrsync_expr::env());
    let mut endpoints = config
        .endpoints
        .iter()
        .map(|c| Endpoint::hook(c, Arc::clone(&env)))
        .collect::<Result<Vec<_>, _>>()?;
    for revocation in &config.revocations {
        endpoints.push(Endpoint::revocation(revocation)?);
    }
    let Some(ssf) = &config.ssf else {
        return Ok((endpoints, None));
    };
    let transmitter = Arc::new(Transmitter::new(ssf).map_err(|e| EndpointError {
        at: "hooks.ssf".to_owned(),
        reason: e.to_string(),
    })?);
    for receiver in &ssf.receivers {
        endpoints.push(Endpoint::ssf(receiver, transmitter.clone())?);
    }
    Ok((endpoints, Some(transmitter)))
}
