//! One writer at a time, with the fast lane served first.
//!
//! The main consumer, the timer and (on SQLite) the outbox publisher take
//! turns in arrival order; the priority lane overtakes every one of them
//! that is still waiting, so a termination waits for the writer holding the
//! gate when it arrives and no other (if that writer is itself on the
//! priority lane, for at most one normal writer more).
//!
//! Built from three FIFO mutexes (tokio's are fair), the classic
//! priority-mutex arrangement: `normal` lets one normal writer at a time
//! contend at all, `next` is where the contenders queue, `turn` is held
//! while writing. A priority writer queues on `next` beside at most one
//! normal writer and, holding `next`, is the only one waiting on `turn`.

use tokio::sync::{Mutex, MutexGuard};

/// Who wants to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Terminations, suspensions, app removals.
    Priority,
    /// Everything else.
    Normal,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct WriteGate {
    normal: Mutex<()>,
    next: Mutex<()>,
    turn: Mutex<()>,
}

/// Held while writing; dropping it lets the next writer in.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    // Field order is drop order: the turn first, then the normal slot.
    _turn: MutexGuard<'a, ()>,
    _normal: Option<MutexGuard<'a, ()>>,
}

impl WriteGate {
    /// Waits for this lane's turn.
    pub(crate) async fn enter(&self, lane: Lane) -> Turn<'_> {
        let normal = match lane {
            Lane::Priority => None,
            Lane::Normal => Some(self.normal.lock().await),
        };
        let next = self.next.lock().await;
        let turn = self.turn.lock().await;
        drop(next);
        Turn {
            _turn: turn,
            _normal: normal,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// Lets every spawned task run until it blocks.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// Lets each writer queue, in the order given, behind one holding the
    /// gate on `holder`'s lane, then releases the gate and returns the
    /// order in which they got their turns.
    async fn turn_order(holder: Lane, writers: &[(&'static str, Lane)]) -> Vec<&'static str> {
        let gate = Arc::new(WriteGate::default());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let holder = gate.enter(holder).await;
        let mut tasks = Vec::new();
        for &(name, lane) in writers {
            let gate = gate.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let _turn = gate.enter(lane).await;
                order.lock().unwrap().push(name);
            }));
            settle().await;
        }
        drop(holder);
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("no writer starves")
                .unwrap();
        }
        Arc::try_unwrap(order)
            .expect("every writer is done")
            .into_inner()
            .unwrap()
    }

    #[tokio::test]
    async fn priority_overtakes_every_waiting_normal_writer() {
        let order = turn_order(
            Lane::Normal,
            &[
                ("normal 1", Lane::Normal),
                ("normal 2", Lane::Normal),
                ("normal 3", Lane::Normal),
                ("priority", Lane::Priority),
            ],
        )
        .await;
        assert_eq!(order, ["priority", "normal 1", "normal 2", "normal 3"]);
    }

    #[tokio::test]
    async fn priority_writers_keep_their_order_and_normal_ones_get_through() {
        let order = turn_order(
            Lane::Priority,
            &[
                ("normal", Lane::Normal),
                ("priority 1", Lane::Priority),
                ("priority 2", Lane::Priority),
            ],
        )
        .await;
        // The normal writer queued on `next` before the priority writers:
        // it goes first, then they follow in order.
        assert_eq!(order, ["normal", "priority 1", "priority 2"]);
    }
}
