//! One retry policy for every client (stores, GCS, BigQuery): a bounded
//! number of attempts, exponential backoff with jitter, and a budget on the
//! total time spent, with the caller saying which errors are transient.
//! Anything else (a 400, a 416, a missing file, bad credentials) fails at
//! once: retrying it only delays the error the operator has to read.

use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};

/// Attempts and time budget of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// No retry starts once this much time has passed since the first
    /// attempt began, however many attempts are left.
    pub budget: Duration,
}

/// First delay between attempts.
const MIN_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between attempts.
const MAX_DELAY: Duration = Duration::from_secs(10);

impl RetryPolicy {
    /// A policy of `attempts` attempts within `budget`.
    pub const fn new(attempts: u32, budget: Duration) -> Self {
        RetryPolicy { attempts, budget }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(MIN_DELAY)
            .with_max_delay(MAX_DELAY)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.attempts.max(1) as usize - 1)
            .with_total_delay(Some(self.budget))
    }

    /// Runs `call` until it succeeds, fails with an error `transient` does
    /// not accept, or the attempts or the budget run out; returns its last
    /// result.
    pub async fn run<T, E, F, Fut>(
        &self,
        what: &str,
        transient: impl Fn(&E) -> bool,
        call: F,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let start = Instant::now();
        let budget = self.budget;
        call.retry(self.backoff())
            .when(|e| transient(e) && start.elapsed() < budget)
            .notify(|e, wait| {
                tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "Retrying {what}.");
            })
            .await
    }
}

/// Delay before retry `attempt` (from 1) of loops that are not one call
/// retried (a shard reader backing off from throttling, a multipart upload
/// started again): exponential from 100 ms, capped at 10 s, with equal
/// jitter (half fixed, half random) so that clients failing together do not
/// retry together.
pub fn backoff(attempt: u32) -> Duration {
    let cap = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
    let jitter = fastrand::u64(0..=cap / 2);
    Duration::from_millis(cap / 2 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_only_transient_errors_within_attempts() {
        let calls = AtomicU32::new(0);
        let p = RetryPolicy::new(4, Duration::from_secs(30));
        let r: Result<(), String> = p
            .run(
                "x",
                |e: &String| e == "transient",
                || async {
                    calls.fetch_add(1, Ordering::Relaxed);
                    Err("transient".to_string())
                },
            )
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        calls.store(0, Ordering::Relaxed);
        let r: Result<(), String> = p
            .run(
                "x",
                |e: &String| e == "transient",
                || async {
                    calls.fetch_add(1, Ordering::Relaxed);
                    Err("permanent".to_string())
                },
            )
            .await;
        assert_eq!(r.unwrap_err(), "permanent");
        assert_eq!(
            calls.load(Ordering::Relaxed),
            1,
            "a permanent error is not retried"
        );
    }

    #[tokio::test]
    async fn the_budget_ends_retries() {
        let calls = AtomicU32::new(0);
        let p = RetryPolicy::new(1000, Duration::from_millis(300));
        let t0 = Instant::now();
        let r: Result<(), &str> = p
            .run(
                "x",
                |_| true,
                || async {
                    calls.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err("down")
                },
            )
            .await;
        assert!(r.is_err());
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        assert!(calls.load(Ordering::Relaxed) < 20);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for a in 1..20 {
            let b = backoff(a);
            assert!(b <= Duration::from_secs(10), "{b:?}");
            assert!(b >= Duration::from_millis(100), "{b:?}");
        }
    }
}
