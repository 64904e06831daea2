//! Domain types of hrsync: people, HR lifecycle events, directory changes and
//! provisioning audit records.
//!
//! This crate does no I/O and knows nothing about Avro or Kafka; the codec in
//! `hrsync-schema` maps these types one to one onto the `.avsc` contracts in
//! `schemas/`. Every value that crosses a trust boundary (ids, time zones,
//! attribute names) is a validated newtype, so a value of these types is
//! always well formed.

mod attributes;
mod audit;
mod directory;
mod error;
mod event;
mod ids;
mod time;

pub use attributes::{
    Attribute, AttributeChange, AttributeType, AttributeValue, EmploymentType, StandardAttribute,
    WorkerAttributes,
};
pub use audit::{AuditOperation, AuditOutcome, ProvisioningAudit};
pub use directory::{AppAssignment, DirectoryChange, LifecycleState, Profile};
pub use error::{DomainError, Result};
pub use event::{
    EventKind, Hire, LeaveEnded, LeaveStarted, LifecycleEvent, LifecyclePayload, Move, Rehire,
    Terminate,
};
pub use ids::{EmployeeId, EventId, PersonId, SourceSystem, MAX_ID_LEN};
pub use time::{parse_retry_after, TimeZone, Timestamp};

/// Dates (last day worked, expected return) are plain calendar dates,
/// interpreted in the worker's [`TimeZone`]. `Datelike` is re-exported so
/// that users can count days without depending on chrono themselves.
pub use chrono::{Datelike, NaiveDate};
