//! Crash injection for the crash-recovery tests.
//!
//! `FAILPOINTS=name` aborts the process the first time the code reaches
//! [`failpoint`]`("name")`; `FAILPOINTS=name@N` the N-th time. The process
//! stops as a kill would stop it: no destructors, no flushing, no commit.
//! Unset (production), a failpoint costs one environment lookup.

use std::sync::atomic::{AtomicU64, Ordering};

static HITS: AtomicU64 = AtomicU64::new(0);

/// Aborts the process here if `FAILPOINTS` names this point (see the module
/// docs).
pub fn failpoint(name: &str) {
    let Ok(spec) = std::env::var("FAILPOINTS") else {
        return;
    };
    let (point, nth) = match spec.split_once('@') {
        Some((point, n)) => (point, n.parse::<u64>().unwrap_or(1)),
        None => (spec.as_str(), 1),
    };
    if point != name {
        return;
    }
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 >= nth {
        eprintln!("failpoint {name} reached: aborting");
        std::process::abort();
    }
}
