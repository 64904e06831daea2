//! The configured endpoints, ready to use: which events each takes (types
//! and a CEL condition), its signing key and its HTTP client.

use std::sync::Arc;
use std::time::Duration;

use cel::{Context, Env, Program, Value};
use hrsync_domain::DirectoryChange;
use hrsync_expr::{check_references, parse_reason, person, string};

use crate::config::HookConfig;
use crate::event::{EventType, Seen};
use crate::sign::SigningKey;

/// The variables a condition can read.
const VARIABLES: [&str; 6] = [
    "event",
    "person",
    "state",
    "previous_state",
    "groups",
    "apps",
];

/// An endpoint that cannot be set up; the message names it and never holds
/// its secret.
#[derive(Debug, thiserror::Error)]
#[error("hooks.endpoints[{hook}]: {reason}")]
pub struct EndpointError {
    hook: String,
    reason: String,
}

/// One endpoint.
pub struct Endpoint {
    /// Its name.
    pub name: String,
    /// Where deliveries go.
    pub url: reqwest::Url,
    config: HookConfig,
    events: Vec<EventType>,
    condition: Option<Program>,
    env: Arc<Env>,
    /// Its client (the endpoint's timeout).
    pub client: reqwest::Client,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("events", &self.events)
            .field("condition", &self.config.condition)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Compiles `config`'s condition and checks its secret.
    ///
    /// # Errors
    /// A condition that is not CEL or reads what does not exist; a secret
    /// that cannot be read or is not `whsec_` and base64.
    pub fn new(config: &HookConfig, env: Arc<Env>) -> Result<Self, EndpointError> {
        let fail = |reason: String| EndpointError {
            hook: config.name.clone(),
            reason,
        };
        let condition = match &config.condition {
            Some(text) => {
                let program = env
                    .compile(text)
                    .map_err(|errors| fail(format!("condition: {}", parse_reason(&errors))))?;
                check_references(program.expression(), &env, &VARIABLES)
                    .map_err(|e| fail(format!("condition: {e}")))?;
                Some(program)
            }
            None => None,
        };
        let endpoint = Endpoint {
            name: config.name.clone(),
            url: reqwest::Url::parse(&config.url).map_err(|e| fail(format!("url: {e}")))?,
            events: config
                .events
                .iter()
                .filter_map(|e| EventType::parse(e))
                .collect(),
            condition,
            env,
            client: reqwest::Client::builder()
                .timeout(Duration::from_millis(config.timeout_ms))
                .build()
                .map_err(|e| fail(format!("HTTP client: {e}")))?,
            config: config.clone(),
        };
        endpoint.key().map_err(fail)?;
        Ok(endpoint)
    }

    /// Its signing key, read from its secret now (an env or file secret
    /// may have been rotated).
    ///
    /// # Errors
    /// The secret cannot be read or is not a key (the message names why,
    /// never the value).
    pub fn key(&self) -> Result<SigningKey, String> {
        let secret = self
            .config
            .secret
            .expose()
            .map_err(|e| format!("secret: {e}"))?;
        SigningKey::from_secret(&secret).map_err(|e| format!("secret: {e}"))
    }

    /// Whether it takes `event` for `change` (after `previous`). A
    /// condition that fails or is not a bool is logged and counts as false.
    pub fn wants(
        &self,
        event: EventType,
        previous: Option<&Seen>,
        change: &DirectoryChange,
    ) -> bool {
        if !self.events.is_empty() && !self.events.contains(&event) {
            return false;
        }
        let Some(program) = &self.condition else {
            return true;
        };
        let mut context = Context::with_env(Arc::clone(&self.env));
        context.add_variable_as_val("event", string(event.as_str()));
        context.add_variable_as_val("person", Box::new(person(&change.profile.attributes)));
        context.add_variable_as_val("state", string(change.lifecycle_state.as_str()));
        context.add_variable_as_val(
            "previous_state",
            string(previous.map_or("", |p| p.state.as_str())),
        );
        context.add_variable_from_value("groups", change.groups.clone());
        let apps: Vec<String> = change.apps.iter().map(|a| a.app.clone()).collect();
        context.add_variable_from_value("apps", apps);
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
}

/// Every configured endpoint.
///
/// # Errors
/// The first that cannot be set up.
pub fn endpoints(configs: &[HookConfig]) -> Result<Vec<Endpoint>, EndpointError> {
    let env = Arc::new(hrsync_expr::env());
    configs
        .iter()
        .map(|c| Endpoint::new(c, Arc::clone(&env)))
        .collect()
}
