//! `[hooks]`: the hooks role's store, its consumer group, how deliveries are
//! retried, and the endpoints (`[[hooks.endpoints]]`).

use std::time::Duration;

use hrsync_config::{Inconsistency, Secret, Validate};
use serde::{Deserialize, Serialize};

use crate::event::EventType;
use crate::revoke::RevocationConfig;
use crate::ssf::SsfConfig;

/// The hooks role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// The store of owed deliveries (`sqlite://FILE` or `postgres://…`).
    pub database_url: Secret,
    /// Pool size.
    pub max_connections: u32,
    /// The consumer group of the main topic; the priority lane's is
    /// `<group_id>-priority`. Its own, so hooks see every change the
    /// provisioner sees.
    pub group_id: String,
    /// Where a consumer group with no committed offsets starts reading:
    /// `earliest` (the directory topics' start: nothing published before
    /// the role's first start is missed) or `latest` (only changes from
    /// now on: for hooks added to a running deployment, which would
    /// otherwise receive the retained past's events).
    pub start_at: String,
    /// Attempts per delivery before it is dead (parked until redriven).
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles per attempt, with
    /// jitter, up to `max_backoff_ms`.
    pub first_backoff_ms: u64,
    /// The longest wait between attempts, and the most of an endpoint's
    /// `Retry-After` that is honoured.
    pub max_backoff_ms: u64,
    /// Deliveries in flight at once per lane (priority and main), over all
    /// endpoints.
    pub in_flight: usize,
    /// The endpoints.
    pub endpoints: Vec<HookConfig>,
    /// hrsync as an SSF transmitter: `session-revoked` SETs on
    /// deactivations, to its receivers.
    pub ssf: Option<SsfConfig>,
    /// Apps' own session or token revocation calls, on deactivations
    /// (`[[hooks.revocations]]`).
    pub revocations: Vec<RevocationConfig>,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            database_url: Secret::inline("sqlite://hrsync-hooks.db"),
            max_connections: 8,
            group_id: "hrsync-hooks".to_owned(),
            start_at: "earliest".to_owned(),
            max_attempts: 8,
            first_backoff_ms: 1_000,
            max_backoff_ms: 300_000,
            in_flight: 32,
            endpoints: Vec::new(),
            ssf: None,
            revocations: Vec::new(),
        }
    }
}

impl HooksConfig {
    /// Whether `name` is a hook endpoint, an SSF receiver or a revocation
    /// call.
    pub fn names(&self, name: &str) -> bool {
        self.endpoints.iter().any(|e| e.name == name)
            || self.revocations.iter().any(|r| r.name == name)
            || self
                .ssf
                .iter()
                .flat_map(|s| &s.receivers)
                .any(|r| r.name == name)
    }

    /// The wait after `attempts` failed attempts, before jitter.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doubled = self
            .first_backoff_ms
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(32));
        Duration::from_millis(doubled.min(self.max_backoff_ms))
    }
}

/// One endpoint (`[[hooks.endpoints]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Its name, in metrics, logs and the store.
    pub name: String,
    /// Where deliveries are POSTed (http or https).
    pub url: String,
    /// The signing secret, `whsec_` and base64 (as Standard Webhooks
    /// receivers take it); a plain string, `{ env = "VAR" }` or
    /// `{ file = "PATH" }`.
    pub secret: Secret,
    /// The event types it receives (`person.joined`, ...); empty: every type.
    #[serde(default)]
    pub events: Vec<String>,
    /// A CEL condition over `event` (the type, a string), `person` (the
    /// profile, as in the group rules), `state` and `previous_state` (the
    /// lifecycle states, `previous_state` is `""` for a person seen first),
    /// `groups` and `apps` (lists of names); the endpoint receives an event
    /// only when it is true.
    #[serde(default)]
    pub condition: Option<String>,
    /// How long one attempt may take.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// `url` is an http or https URL.
fn check_url(at: &str, url: &str) -> Result<(), Inconsistency> {
    match reqwest::Url::parse(url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(()),
        Ok(url) => Err(format!("{at}.url: scheme {:?} is not http or https", url.scheme()).into()),
        Err(error) => Err(format!("{at}.url is not a URL: {error}").into()),
    }
}

impl Validate for HooksConfig {
    fn validate(&self) -> Result<(), Inconsistency> {
        if !matches!(self.start_at.as_str(), "earliest" | "latest") {
            return Err(format!(
                "hooks.start_at is {:?}; it is \"earliest\" or \"latest\"",
                self.start_at
            )
            .into());
        }
        if self.max_attempts == 0 {
            return Err("hooks.max_attempts must be at least 1".into());
        }
        if self.in_flight == 0 {
            return Err("hooks.in_flight must be at least 1".into());
        }
        if self.first_backoff_ms == 0 || self.max_backoff_ms < self.first_backoff_ms {
            return Err(format!(
                "hooks.first_backoff_ms ({}) must be above 0 and at most hooks.max_backoff_ms ({})",
                self.first_backoff_ms, self.max_backoff_ms
            )
            .into());
        }
        let mut names = std::collections::HashSet::new();
        let receivers = self.ssf.iter().flat_map(|ssf| &ssf.receivers);
        let named = self
            .endpoints
            .iter()
            .map(|h| (format!("hooks.endpoints[{}]", h.name), &h.name, &h.url))
            .chain(
                receivers.map(|r| (format!("hooks.ssf.receivers[{}]", r.name), &r.name, &r.url)),
            );
        let mut revocations = Vec::new();
        for revocation in &self.revocations {
            revocation.check()?;
            revocations.push((
                format!("hooks.revocations[{}]", revocation.name),
                &revocation.name,
            ));
        }
        for (at, name, url) in named {
            if name.trim().is_empty() {
                return Err(format!("{at}: the name is empty").into());
            }
            if !names.insert(name.clone()) {
                return Err(format!("{at}: another endpoint or receiver has the same name").into());
            }
            check_url(&at, url)?;
        }
        for (at, name) in revocations {
            if name.trim().is_empty() {
                return Err(format!("{at}: the name is empty").into());
            }
            if !names.insert(name.clone()) {
                return Err(format!("{at}: another endpoint or receiver has the same name").into());
            }
        }
        for hook in &self.endpoints {
            let at = format!("hooks.endpoints[{}]", hook.name);
            for event in &hook.events {
                if EventType::parse(event).is_none() {
                    return Err(format!(
                        "{at}.events: unknown event type {event:?}; the types are {}",
                        EventType::NAMES.join(", ")
                    )
                    .into());
                }
            }
            if hook.timeout_ms == 0 {
                return Err(format!("{at}.timeout_ms must be above 0").into());
            }
        }
        if let Some(ssf) = &self.ssf {
            check_url("hooks.ssf.issuer", &ssf.issuer)?;
            if ssf.receivers.is_empty() {
                return Err("hooks.ssf has no receivers ([[hooks.ssf.receivers]])".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> HooksConfig {
        toml::from_str(toml_text).expect("parses")
    }

    #[test]
    fn an_endpoint_with_defaults_is_valid() {
        let hooks = config(
            r#"
            [[endpoints]]
            name = "tickets"
            url = "https://tickets.example.com/hrsync"
            secret = { env = "TICKETS_SECRET" }
            events = ["person.left"]
            "#,
        );
        hooks.validate().expect("valid");
        assert_eq!(hooks.endpoints[0].timeout_ms, 10_000);
    }

    #[test]
    fn unknown_event_types_and_bad_urls_are_named() {
        let hooks = config(
            r#"
            [[endpoints]]
            name = "tickets"
            url = "https://tickets.example.com/hrsync"
            secret = "whsec_c2VjcmV0"
            events = ["person.fired"]
            "#,
        );
        let error = hooks.validate().expect_err("unknown type").to_string();
        assert!(error.contains("hooks.endpoints[tickets].events"), "{error}");
        assert!(error.contains("person.left"), "{error}");
        let hooks = config(
            r#"
            [[endpoints]]
            name = "tickets"
            url = "ftp://tickets.example.com"
            secret = "whsec_c2VjcmV0"
            "#,
        );
        let error = hooks.validate().expect_err("bad scheme").to_string();
        assert!(error.contains("hooks.endpoints[tickets].url"), "{error}");
    }

    #[test]
    fn the_backoff_doubles_up_to_its_ceiling() {
        let hooks = HooksConfig {
            first_backoff_ms: 100,
            max_backoff_ms: 1_000,
            ..HooksConfig::default()
        };
        let waits: Vec<u128> = (1..=6).map(|a| hooks.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000]);
    }
}
