//! Per-app session and token revocation calls (`[[hooks.revocations]]`):
//! on each deactivation (a termination, a leave), an HTTP call to an app's
//! own API that ends the person's sessions or revokes their tokens (most
//! apps have one: a `DELETE …/users/{id}/sessions`, a `POST
//! …/sessions.reset`), through the same durable, retried deliveries on the
//! fast lane as the hooks.
//!
//! The call is owed only for a person whose account in the app hrsync
//! knows (the provisioner's audit reported creating or linking it), and
//! names it: the URL and the optional JSON body are templates over
//! `{scim_id}`, `{email}`, `{employee_id}` and `{person_id}` (in the URL
//! percent-encoded, in the body as JSON string content). What is stored
//! and sent is the call as made for the person ([`Call`]).

use hrsync_config::Secret;
use hrsync_domain::DirectoryChange;
use serde::{Deserialize, Serialize};

/// `[[hooks.revocations]]`: one app's revocation call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// Its name (in metrics, logs and the store).
    pub name: String,
    /// The app (`[[provisioner.apps]]` name) whose accounts it acts on.
    pub app: String,
    /// `POST` (default), `DELETE`, `PUT` or `PATCH`.
    #[serde(default = "default_method")]
    pub method: String,
    /// The URL, a template (see the module's documentation).
    pub url: String,
    /// A JSON body, a template, if the call takes one.
    #[serde(default)]
    pub body: Option<String>,
    /// A bearer token the app's API asks for, if any.
    #[serde(default)]
    pub token: Option<Secret>,
    /// How long one attempt may take.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_method() -> String {
    "POST".to_owned()
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// The placeholders a template may use.
const PLACEHOLDERS: [&str; 4] = ["scim_id", "email", "employee_id", "person_id"];

/// One call as made for one person: what a delivery stores and sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The HTTP method.
    pub method: String,
    /// The URL.
    pub url: String,
    /// The JSON body, if any.
    pub body: Option<String>,
}

/// The values a template is filled with for one person.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    /// Their account's SCIM id in the app.
    pub scim_id: &'a str,
    /// Their work e-mail ("" without one).
    pub email: &'a str,
    /// Their HR employee id.
    pub employee_id: &'a str,
    /// Their hrsync person id.
    pub person_id: &'a str,
}

impl<'a> Values<'a> {
    /// The values for `change`'s person, whose account is `scim_id`.
    pub fn of(change: &'a DirectoryChange, scim_id: &'a str) -> Self {
        Values {
            scim_id,
            email: change
                .profile
                .attributes
                .work_email
                .as_deref()
                .unwrap_or_default(),
            employee_id: change.employee_id.as_str(),
            person_id: change.person_id.as_str(),
        }
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        match name {
            "scim_id" => Some(self.scim_id),
            "email" => Some(self.email),
            "employee_id" => Some(self.employee_id),
            "person_id" => Some(self.person_id),
            _ => None,
        }
    }
}

impl RevocationConfig {
    /// Checks the method and both templates (with sample values, so the
    /// URL must parse and the body be JSON); the message names the key.
    ///
    /// # Errors
    /// What is wrong, naming `hooks.revocations[NAME].KEY`.
    pub fn check(&self) -> Result<(), String> {
        let at = |key: &str| format!("hooks.revocations[{}].{key}", self.name);
        if !matches!(self.method.as_str(), "POST" | "DELETE" | "PUT" | "PATCH") {
            return Err(format!(
                "{}: {:?} is not POST, DELETE, PUT or PATCH",
                at("method"),
                self.method
            ));
        }
        if self.timeout_ms == 0 {
            return Err(format!("{} must be above 0", at("timeout_ms")));
        }
        let sample = Values {
            scim_id: "2819c223-7f76",
            email: "ada@example.com",
            employee_id: "E1",
            person_id: "p-1",
        };
        self.call(&sample).map_err(|e| e.at(&at))?;
        Ok(())
    }

    /// The call for the person `values` name.
    ///
    /// # Errors
    /// A template with an unknown placeholder or an unclosed brace, a URL
    /// that does not parse, or a body that is not JSON.
    pub fn call(&self, values: &Values<'_>) -> Result<Call, TemplateError> {
        let url = fill(&self.url, values, percent_encoded).map_err(|e| e.key("url"))?;
        let parsed = reqwest::Url::parse(&url).map_err(|e| TemplateError {
            key: "url",
            reason: format!("not a URL once filled in: {e}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(TemplateError {
                key: "url",
                reason: format!("scheme {:?} is not http or https", parsed.scheme()),
            });
        }
        let body = match &self.body {
            Some(template) => {
                let body = fill(template, values, |v| {
                    let quoted = serde_json::Value::String(v.to_owned()).to_string();
                    quoted[1..quoted.len() - 1].to_owned()
                })
                .map_err(|e| e.key("body"))?;
                serde_json::from_str::<serde_json::Value>(&body).map_err(|e| TemplateError {
                    key: "body",
                    reason: format!("not JSON once filled in: {e}"),
                })?;
                Some(body)
            }
            None => None,
        };
        Ok(Call {
            method: self.method.clone(),
            url,
            body,
        })
    }
}

/// A template that cannot be filled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct TemplateError {
    key: &'static str,
    reason: String,
}

impl TemplateError {
    fn key(mut self, key: &'static str) -> Self {
        self.key = key;
        self
    }

    fn at(&self, at: &dyn Fn(&str) -> String) -> String {
        format!("{}: {}", at(self.key), self.reason)
    }
}

/// `value` with every byte but RFC 3986's unreserved characters
/// percent-encoded: safe in a path segment and in a query.
fn percent_encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `template` with each `{name}` replaced by its value, escaped by
/// `escape`; `{{` and `}}` are literal braces (as a JSON body needs).
fn fill(
    template: &str,
    values: &Values<'_>,
    escape: impl Fn(&str) -> String,
) -> Result<String, TemplateError> {
    let fail = |reason: String| TemplateError { key: "", reason };
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(fail("a lone `}` (write `}}` for a brace)".to_owned()));
        }
        let end = tail
            .find('}')
            .ok_or_else(|| fail("a `{` is not closed (write `{{` for a brace)".to_owned()))?;
        let name = &tail[1..end];
        let value = values.get(name).ok_or_else(|| {
            fail(format!(
                "unknown placeholder {{{name}}}; the placeholders are {}",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ))
        })?;
        out.push_str(&escape(value));
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, body: Option<&str>) -> RevocationConfig {
        RevocationConfig {
            name: "slack-sessions".to_owned(),
            app: "slack".to_owned(),
            method: "POST".to_owned(),
            url: url.to_owned(),
            body: body.map(str::to_owned),
            token: None,
            timeout_ms: 10_000,
        }
    }

    const ADA: Values<'static> = Values {
        scim_id: "U 1/2",
        email: "ada\"@example.com",
        employee_id: "E1",
        person_id: "p-1",
    };

    #[test]
    fn the_url_and_body_are_filled_in_escaped_for_where_they_go() {
        let call = config(
            "https://slack.test/users/{scim_id}/sessions?who={email}",
            Some(r#"{{"user": "{scim_id}", "employee": "{employee_id}"}}"#),
        )
        .call(&ADA)
        .expect("fills in");
        assert_eq!(
            call.url,
            "https://slack.test/users/U%201%2F2/sessions?who=ada%22%40example.com"
        );
        let body: serde_json::Value =
            serde_json::from_str(call.body.as_deref().expect("a body")).expect("JSON");
        assert_eq!(body, serde_json::json!({"user": "U 1/2", "employee": "E1"}));
    }

    #[test]
    fn bad_templates_and_methods_are_named() {
        let unknown = config("https://slack.test/{user}", None)
            .check()
            .unwrap_err();
        assert!(
            unknown.contains("hooks.revocations[slack-sessions].url")
                && unknown.contains("unknown placeholder {user}"),
            "{unknown}"
        );
        let not_json = config("https://slack.test/x", Some("{{\"a\": {scim_id}}}"))
            .check()
            .unwrap_err();
        assert!(not_json.contains(".body: not JSON"), "{not_json}");
        let open = config("https://slack.test/{scim_id", None)
            .check()
            .unwrap_err();
        assert!(open.contains("is not closed"), "{open}");
        let mut get = config("https://slack.test/{scim_id}", None);
        get.method = "GET".to_owned();
        assert!(get.check().unwrap_err().contains(".method"));
        assert!(config("https://slack.test/{scim_id}", None).check().is_ok());
    }
}
