//! The events of a person's accounts: the provisioner's audit
//! (`provisioning.audit.v1`, keyed by person) read in a consumer group of
//! the hooks' own; each account an app created or deactivated is
//! `account.created` or `account.deactivated` (the fast lane), delivered
//! like the person's other events, in order with them.

use std::sync::Arc;

use hrsync_bus::{Outcome, Record, SharedHandler};
use hrsync_domain::{AuditOperation, AuditOutcome, ProvisioningAudit};
use serde_json::json;

use crate::endpoint::Subject;
use crate::event::{EventType, Kept};
use crate::run::{delivery_id, Hooks, RunError};
use crate::store::{self, NewDelivery};

/// How long an account's event waits for the hooks to read the change it
/// came from.
const WAIT_FOR_CHANGE: std::time::Duration = std::time::Duration::from_secs(60);

/// The event an audit record is, if any: a successful create or
/// deactivation.
pub fn event_of(audit: &ProvisioningAudit) -> Option<EventType> {
    if audit.outcome != AuditOutcome::Success {
        return None;
    }
    match audit.operation {
        AuditOperation::Create => Some(EventType::AccountCreated),
        AuditOperation::Deactivate => Some(EventType::AccountDeactivated),
        _ => None,
    }
}

impl Hooks {
    /// Remembers the account's SCIM id if `audit` created or linked one
    /// (for SETs to receivers of its app), then records the deliveries
    /// `audit` owes. The person's conditions read
    /// them as the hooks last saw them (blank if never seen). Returns how
    /// many were recorded.
    ///
    /// # Errors
    /// The store; [`RunError::NotSeenYet`] while the change the account
    /// came from has not been read (for up to a minute: try again).
    pub async fn record_account(&self, audit: &ProvisioningAudit) -> Result<usize, RunError> {
        let person = audit.person_id.as_str();
        // The account's SCIM id, for the SETs of receivers in its app.
        let made = matches!(
            audit.operation,
            AuditOperation::Create | AuditOperation::Link
        );
        if let (true, AuditOutcome::Success, Some(scim_id)) =
            (made, audit.outcome, audit.scim_id.as_deref())
        {
            store::remember_account(self.db(), person, &audit.app, scim_id).await?;
        }
        let Some(event) = event_of(audit) else {
            return Ok(0);
        };
        let version = i64::try_from(audit.version).unwrap_or(i64::MAX);
        let kept = store::kept(self.db(), person).await?;
        // The account came from a change the hooks read on another topic:
        // wait for it a while, so that conditions read the person as it
        // left them (not at all, for a person hooks never see).
        let unseen = kept.as_ref().is_none_or(|(_, seen)| *seen < version);
        let age_ms = hrsync_domain::Timestamp::now().as_millis() - audit.at.as_millis();
        if unseen && age_ms < WAIT_FOR_CHANGE.as_millis() as i64 {
            return Err(RunError::NotSeenYet);
        }
        let kept: Option<Kept> = kept.and_then(|(json, _)| serde_json::from_str(&json).ok());
        let blank = hrsync_domain::WorkerAttributes::blank();
        let (attributes, state, groups, apps) = match &kept {
            Some(k) => (&k.attributes, k.state.as_str(), &k.groups[..], &k.apps[..]),
            None => (&blank, "", &[][..], &[][..]),
        };
        let subject = Subject {
            attributes,
            state,
            previous_state: state,
            groups,
            apps,
        };
        let employee_id = kept.as_ref().map(|k| k.employee_id.clone());
        let body = json!({
            "type": event.as_str(),
            "timestamp": audit.at.to_string(),
            "data": {
                "person_id": person,
                "employee_id": employee_id,
                "app": audit.app,
                "scim_id": audit.scim_id,
                "version": audit.version,
                "audit_id": audit.audit_id,
            },
        })
        .to_string();
        let deliveries: Vec<NewDelivery> = self
            .endpoints()
            .iter()
            .filter(|e| e.wants(event, &subject))
            .map(|e| NewDelivery {
                delivery_id: delivery_id(&e.name, person, version, &audit.audit_id),
                hook: e.name.clone(),
                person_id: person.to_owned(),
                employee_id: employee_id.clone().unwrap_or_default(),
                version,
                event_type: event.as_str(),
                priority: event.is_priority(),
                body: body.clone(),
                trace_id: audit.trace_id.clone(),
            })
            .collect();
        store::record_deliveries(self.db(), &deliveries).await?;
        self.woken(&deliveries);
        Ok(deliveries.len())
    }
}

/// Decodes audit records and records what they owe.
pub(crate) struct AuditHandler {
    pub(crate) hooks: Arc<Hooks>,
}

impl SharedHandler for AuditHandler {
    async fn handle(&self, record: &Record) -> Outcome {
        let audit = match hrsync_schema::decode_audit(record.payload.as_deref().unwrap_or_default())
        {
            Ok(audit) => audit,
            Err(error) => return Outcome::Poison(format!("undecodable audit record: {error}")),
        };
        match self.hooks.record_account(&audit).await {
            Ok(_) => Outcome::Done,
            Err(error) => Outcome::Retry(format!("recording the hooks' deliveries: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_successful_create_or_deactivation_is_an_event() {
        let audit = |operation, outcome| ProvisioningAudit {
            audit_id: "a-1".to_owned(),
            person_id: hrsync_domain::PersonId::new("p-1").expect("valid"),
            app: "slack".to_owned(),
            operation,
            outcome,
            http_status: Some(201),
            latency_ms: 3,
            attempt: 1,
            version: 2,
            scim_id: Some("u-1".to_owned()),
            error: None,
            trace_id: None,
            at: hrsync_domain::Timestamp::from_millis(1_700_000_000_000).expect("valid"),
        };
        use AuditOperation::{Create, Deactivate, Update};
        use AuditOutcome::{Failed, Success};
        assert_eq!(
            event_of(&audit(Create, Success)),
            Some(EventType::AccountCreated)
        );
        assert_eq!(
            event_of(&audit(Deactivate, Success)),
            Some(EventType::AccountDeactivated)
        );
        assert_eq!(event_of(&audit(Create, Failed)), None);
        assert_eq!(event_of(&audit(Update, Success)), None);
    }
}
