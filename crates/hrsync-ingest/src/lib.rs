//! The ingest stage: HR data in, lifecycle events out.
//!
//! - [`source`]: per-source column mapping and safety limits.
//! - [`snapshot`]: parsing and validating CSV / JSON Lines exports.
//! - [`diff`]: snapshot against baseline → hire, move, terminate, rehire and
//!   leave events.
//! - [`store`]: baselines and the outbox, in SQL.
//! - [`import`]: the durable import pipeline (outbox → Kafka → baseline).
//! - [`push`]: the push API for HR webhooks.
//! - [`config`]: the `[ingest]` configuration section.

pub mod config;
pub mod diff;
pub mod import;
pub mod push;
pub mod snapshot;
pub mod source;
pub mod store;

#[cfg(test)]
mod diff_tests;
#[cfg(test)]
mod tests;
