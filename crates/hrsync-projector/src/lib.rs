//! hrsync projector stage: keeps the canonical profile of every person and
//! turns lifecycle events into desired directory state.
//!
//! - [`state`]: a person's state as a fold over their events, in effective
//!   time order; the lifecycle state as a function of that and the clock.
//! - [`rules`]: group memberships and app assignments from CEL expressions
//!   over a person's profile.
//! - [`explain`]: why a person is in each group: each rule with what it
//!   read of them.
//! - [`project`]: batches of events: load, fold, evaluate, write, with
//!   the consumed offsets and the directory changes (outbox) in the same
//!   transaction.
//! - `store`: all of the SQL: persons and their cache, events, offsets,
//!   the reporting lines (from the store or, in the process that has the
//!   store to itself, from memory), the outbox and its packs.
//! - `feed`: committed outbox rows handed to the publisher in memory.
//! - `gate`: one writer at a time, the fast lane first.
//! - [`error`]: the errors of all of them.
//! - [`run`]: the consumers (priority lane and main topic), the timer of
//!   time-driven transitions, and the outbox publisher.
//! - [`config`]: the `[projector]` configuration section.

pub mod config;
pub mod error;
pub mod explain;
mod feed;
mod gate;
pub mod project;
pub mod rules;
pub mod run;
pub mod state;
#[cfg(test)]
mod state_tests;
mod store;
