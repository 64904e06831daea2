//! Provisioning audit records, the records of `provisioning.audit.v1`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::PersonId;
use crate::time::Timestamp;

macro_rules! symbol_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $symbol:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every variant, in schema symbol order.
            pub const ALL: &'static [$name] = &[$(Self::$variant,)+];

            /// The schema symbol.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $symbol,)+
                }
            }

            /// Parses a schema symbol. A symbol this version does not know
            /// maps to `Unknown`, as the schema's enum default does.
            pub fn parse(value: &str) -> Self {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == value)
                    .unwrap_or(Self::Unknown)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

symbol_enum!(
    /// A provisioning operation against one app.
    AuditOperation {
        /// Look up an existing account (`GET /Users?filter=...`).
        Match => "MATCH",
        /// Create an account (`POST /Users`).
        Create => "CREATE",
        /// Link an existing account instead of creating a duplicate.
        Link => "LINK",
        /// Update changed attributes.
        Update => "UPDATE",
        /// Deactivate the account (`active: false`).
        Deactivate => "DEACTIVATE",
        /// Reactivate the account.
        Reactivate => "REACTIVATE",
        /// Create a group.
        GroupCreate => "GROUP_CREATE",
        /// Update a group.
        GroupUpdate => "GROUP_UPDATE",
        /// Add or remove group members.
        GroupMembers => "GROUP_MEMBERS",
        /// The deprovision guard held a deactivation.
        GuardHold => "GUARD_HOLD",
        /// An admin released held deactivations.
        GuardRelease => "GUARD_RELEASE",
        /// An operation added by a later schema version.
        Unknown => "UNKNOWN",
    }
);

symbol_enum!(
    /// How a provisioning operation ended.
    AuditOutcome {
        /// The app accepted it.
        Success => "SUCCESS",
        /// Failed transiently; will be retried.
        Retry => "RETRY",
        /// Failed permanently; sent to the DLQ.
        Failed => "FAILED",
        /// Nothing to do (no change, stale version).
        Skipped => "SKIPPED",
        /// Held by the deprovision guard.
        Held => "HELD",
        /// Handed to people as a task: the app has no SCIM endpoint (a
        /// manual-task app); the task's closing is recorded as a `SUCCESS`.
        Task => "TASK",
        /// An outcome added by a later schema version.
        Unknown => "UNKNOWN",
    }
);

/// The outcome of one provisioning operation, mirroring the
/// `ProvisioningAudit` record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProvisioningAudit {
    /// Unique id of this record.
    pub audit_id: String,
    /// The person the operation was for.
    pub person_id: PersonId,
    /// App name as configured.
    pub app: String,
    /// What was attempted.
    pub operation: AuditOperation,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// HTTP status returned by the app, if a request was sent.
    pub http_status: Option<u16>,
    /// Time the operation took, in milliseconds.
    pub latency_ms: u64,
    /// Attempt number, starting at 1.
    pub attempt: u32,
    /// Directory version applied.
    pub version: u64,
    /// The account's SCIM id, if known.
    pub scim_id: Option<String>,
    /// Error description on failure; never contains credentials.
    pub error: Option<String>,
    /// W3C trace id.
    pub trace_id: Option<String>,
    /// When the operation finished.
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_round_trip_and_unknown_falls_back() {
        for op in AuditOperation::ALL {
            assert_eq!(AuditOperation::parse(op.as_str()), *op);
        }
        for o in AuditOutcome::ALL {
            assert_eq!(AuditOutcome::parse(o.as_str()), *o);
        }
        assert_eq!(AuditOperation::parse("DELETE"), AuditOperation::Unknown);
        assert_eq!(AuditOutcome::parse("PARTIAL"), AuditOutcome::Unknown);
        assert_eq!(AuditOperation::GroupMembers.to_string(), "GROUP_MEMBERS");
    }
}
