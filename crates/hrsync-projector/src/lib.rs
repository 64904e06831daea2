//! hrsync projector stage: keeps the canonical profile of every person and
//! turns lifecycle events into desired directory state.
//!
//! - [`state`]: a person's state as a fold over their events, in effective
//!   time order; the lifecycle state as a function of that and the clock.
//! - [`rules`]: group memberships and app assignments from CEL expressions
//!   over a person's profile.
//! - [`project`]: batches of events into the SQL store, with the consumed
//!   offsets and the directory changes (outbox) in the same transaction.
//! - `lines`: the reporting lines a batch reads besides its own persons,
//!   from the store or, in the process that has the store to itself, from
//!   memory.
//! - `outbox`: the directory changes a transaction wrote, packed a chunk of
//!   persons to a row, until the publisher has sent them.
//! - [`run`]: the consumers (priority lane and main topic), the timer of
//!   time-driven transitions, and the outbox publisher.
//! - [`config`]: the `[projector]` configuration section.

mod batch_tx;
mod cache;
pub mod config;
mod feed;
mod gate;
mod lines;
mod outbox;
pub mod project;
pub mod rules;
pub mod run;
pub mod state;
#[cfg(test)]
mod state_tests;
