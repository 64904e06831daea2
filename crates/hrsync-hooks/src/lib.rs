//! hrsync's hooks role: your own automation on joiner, mover and leaver.
//!
//! The role reads the same directory changes as the provisioner (the
//! priority lane and the main topic, in consumer groups of its own), finds
//! the lifecycle event each change means for the person (hired, joined,
//! moved, leave started or ended, left; [`event`]), and delivers it to every
//! configured endpoint that wants it (event types and a CEL condition;
//! [`endpoint`]) as a JSON POST signed as the Standard Webhooks
//! specification says ([`sign`]).
//!
//! Deliveries are durable ([`store`]): recorded before the change's offset
//! is committed, sent in order per endpoint and person, retried with
//! backoff and the endpoint's `Retry-After`, dead after their attempts until
//! redriven ([`store::redrive`]). Terminations and leaves take the fast
//! lane: their own consumer and sender, never behind a backlog ([`run`]).
//!
//! On a deactivation (a termination, a leave) it also sends each
//! configured SSF receiver a CAEP `session-revoked` Security Event Token,
//! signed with hrsync's key, through the same durable deliveries ([`ssf`]),
//! and makes each configured app's own session or token revocation call
//! for the person's account there ([`revoke`]).
//!
//! - `config`: `[hooks]` and `[[hooks.endpoints]]`.

pub mod account;
pub mod config;
pub mod endpoint;
pub mod event;
pub mod revoke;
pub mod run;
pub mod sign;
pub mod ssf;
pub mod store;

pub use config::{HookConfig, HooksConfig};
pub use run::{Hooks, RunError, Topics};
