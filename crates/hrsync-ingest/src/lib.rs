//! The ingest stage: HR data in, lifecycle events out.
//!
//! - [`source`]: per-source column mapping and safety limits.
//! - [`snapshot`]: parsing and validating CSV / JSON Lines exports.

pub mod snapshot;
pub mod source;

pub mod store;

#[cfg(test)]
mod tests;
