//! hrsync provisioner stage: makes every app's accounts match the desired
//! state the projector emits, over SCIM 2.0.
//!
//! - [`scim`]: the SCIM 2.0 client, with [`auth`] (bearer token or OAuth 2.0
//!   client credentials) and [`limit`] (per-app rate and concurrency, the
//!   fast lane first).
//! - [`mapping`]: the canonical profile as an app's SCIM User (CEL).
//! - [`matching`]: an app's match chain, which finds the account a person
//!   already has (ignoring case), also after a create that conflicted.
//! - [`reconcile`]: one person's account in one app made to match a
//!   directory change: [`reconcile::plan`] decides (no I/O), the rest
//!   carries the decision out.
//! - [`store`]: the provisioner's SQL (links, people, held changes, the
//!   guard, groups and memberships, reconciliation runs).
//! - [`guard`]: the deprovision guard, which holds an app's deactivations
//!   past its limits until released.
//! - [`run`]: the consumers (priority lane and main topic), retries, audit.
//! - [`sweep`]: app-wide reconciliation: every account of an app
//!   classified against the desired state and fixed, by hand or on a
//!   schedule.
//! - [`terminations`]: the latest terminations and how far each got in
//!   every app, measured from the same HR event time as the termination
//!   latency histogram.
//! - [`manual`]: apps without SCIM, whose accounts people make from
//!   tasks.
//! - [`config`]: the `[provisioner]` configuration section.

pub mod audit;
pub mod auth;
pub mod config;
pub mod groups;
pub mod guard;
pub mod limit;
pub mod manual;
pub mod mapping;
pub mod matching;
pub mod reconcile;
pub mod run;
pub mod scim;
pub mod store;
pub mod sweep;
pub mod terminations;
