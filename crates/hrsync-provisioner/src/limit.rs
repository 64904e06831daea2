//! Per-app request limits: at most `concurrency` requests in flight and
//! `rate_limit` requests per second, with the fast lane ahead of the rest.
//!
//! A request made while applying a fast-lane change (a termination,
//! suspension or app removal; see [`fast_lane`]) never queues behind
//! creates and updates: it has its own concurrency permits (as many again),
//! and it takes its rate token at once, going into debt if the bucket is
//! empty. The debt is paid by the requests after it, so over any second the
//! app still sees its configured rate; only a burst of terminations can
//! briefly exceed it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

tokio::task_local! {
    static FAST_LANE: bool;
}

/// Runs `work` with every SCIM request it makes on the fast lane (if
/// `fast`).
pub async fn fast_lane<F: Future>(fast: bool, work: F) -> F::Output {
    FAST_LANE.scope(fast, work).await
}

fn on_fast_lane() -> bool {
    FAST_LANE.try_with(|fast| *fast).unwrap_or(false)
}

/// An app's request limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Most requests in flight (per lane).
    pub concurrency: Option<usize>,
    /// Most requests per second.
    pub rate_per_second: Option<f64>,
}

#[derive(Debug)]
pub(crate) struct Limiter {
    normal: Option<Arc<Semaphore>>,
    fast: Option<Arc<Semaphore>>,
    bucket: Option<std::sync::Mutex<Bucket>>,
}

/// A token bucket holding up to one second of requests.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    last: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.rate.max(1.0));
        self.last = now;
    }
}

/// Held while a request is in flight.
#[derive(Debug)]
pub(crate) struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Limiter {
    pub(crate) fn new(limits: Limits) -> Self {
        let semaphore = || {
            limits
                .concurrency
                .map(|n| Arc::new(Semaphore::new(n.max(1))))
        };
        Limiter {
            normal: semaphore(),
            fast: semaphore(),
            bucket: limits.rate_per_second.filter(|r| *r > 0.0).map(|rate| {
                std::sync::Mutex::new(Bucket {
                    tokens: rate.max(1.0),
                    rate,
                    last: Instant::now(),
                })
            }),
        }
    }

    /// Waits until a request may be sent.
    pub(crate) async fn admit(&self) -> Admission {
        let fast = on_fast_lane();
        let semaphore = if fast { &self.fast } else { &self.normal };
        let permit = match semaphore {
            // Never closed, so acquiring cannot fail.
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        };
        if let Some(bucket) = &self.bucket {
            loop {
                let wait = {
                    let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
                    b.refill(Instant::now());
                    if b.tokens >= 1.0 || fast {
                        b.tokens -= 1.0;
                        None
                    } else {
                        Some(Duration::from_secs_f64((1.0 - b.tokens) / b.rate))
                    }
                };
                match wait {
                    None => break,
                    Some(wait) => tokio::time::sleep(wait).await,
                }
            }
        }
        Admission { _permit: permit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_holds_and_the_fast_lane_does_not_wait() {
        let limiter = Limiter::new(Limits {
            concurrency: None,
            rate_per_second: Some(10.0),
        });
        let start = tokio::time::Instant::now();
        for _ in 0..30 {
            limiter.admit().await;
        }
        // 10 from the full bucket, then 20 more at 10 per second.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1_900) && took <= Duration::from_millis(2_100),
            "{took:?}"
        );
        let before = tokio::time::Instant::now();
        fast_lane(true, async {
            for _ in 0..5 {
                limiter.admit().await;
            }
        })
        .await;
        assert_eq!(
            before.elapsed(),
            Duration::ZERO,
            "the fast lane never waits"
        );
        // ... and its debt is paid by the next normal request.
        let before = tokio::time::Instant::now();
        limiter.admit().await;
        assert!(before.elapsed() >= Duration::from_millis(500));
    }

    #[tokio::test]
    async fn concurrency_is_bounded_per_lane() {
        let limiter = Arc::new(Limiter::new(Limits {
            concurrency: Some(2),
            rate_per_second: None,
        }));
        let a = limiter.admit().await;
        let _b = limiter.admit().await;
        let third = tokio::time::timeout(Duration::from_millis(50), limiter.admit()).await;
        assert!(third.is_err(), "a third normal request waits");
        let fast =
            tokio::time::timeout(Duration::from_millis(50), fast_lane(true, limiter.admit())).await;
        assert!(fast.is_ok(), "the fast lane has its own permits");
        drop(a);
        let third = tokio::time::timeout(Duration::from_millis(50), limiter.admit()).await;
        assert!(third.is_ok(), "a permit came back");
    }
}
