//! Bounded retries with exponential backoff and full jitter.
//!
//! The SDK's own retry layer is off (see [`crate::AwsSettings::sdk_config`]) so each attempt
//! is visible: counted as a request and classified. Whether an error is worth another attempt
//! depends on the operation: a throttled request was never applied and is always retried; a
//! timeout or dropped connection may have been applied, so it is retried only when repeating
//! the request is harmless ([`Repeat::Safe`]). [`RetryCounters`] count what the retries did,
//! so a run can show that faults were met and absorbed (or handed to the caller).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use tracing::debug;
use worldfleet_ports::{Error, Result};

/// Whether repeating a request that may already have been applied is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Reads, unconditional puts and deletes, FIFO sends (deduplicated), deletes of messages,
    /// transactions carrying a client request token.
    Safe,
    /// Conditional writes and counters: a second attempt could fail a condition the first
    /// attempt made false, or add twice. Retried only when throttled.
    Unsafe,
}

impl Repeat {
    /// True when `error` is worth another attempt of a request of this kind.
    pub fn should_retry(self, error: &Error) -> bool {
        match error {
            Error::Throttled(_) => true,
            Error::Timeout(_) | Error::Unavailable(_) => self == Self::Safe,
            _ => false,
        }
    }
}

/// How many attempts, and how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff ceiling before the first retry; doubles each retry.
    pub base_delay: Duration,
    /// Largest backoff ceiling.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the wait after failed attempt `attempt` (0-based): `base * 2^attempt`,
    /// capped at `max_delay`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1_u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait after failed attempt `attempt`: uniform in `[0, ceiling]` ("full jitter").
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ceiling))
    }

    /// Runs `attempt` until it succeeds, fails with an error `retry_on` refuses, or the
    /// attempts run out (the last error is returned). Each retry and each transient failure
    /// handed back is counted in `counters`.
    pub async fn run<T, F, Fut>(
        &self,
        operation: &str,
        retry_on: impl Fn(&Error) -> bool,
        counters: &RetryCounters,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let attempts = self.max_attempts.max(1);
        let mut failed = 0;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) if failed + 1 < attempts && retry_on(&error) => {
                    counters.retrying(&error);
                    let wait = self.backoff(failed);
                    debug!(operation, attempt = failed + 1, ?wait, %error, "retrying");
                    tokio::time::sleep(wait).await;
                    failed += 1;
                }
                Err(error) => {
                    counters.handed_back(&error);
                    return Err(error);
                }
            }
        }
    }

    /// [`RetryPolicy::run`] with the standard rule for `repeat`.
    pub async fn run_request<T, F, Fut>(
        &self,
        operation: &str,
        repeat: Repeat,
        counters: &RetryCounters,
        attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run(
            operation,
            |error| repeat.should_retry(error),
            counters,
            attempt,
        )
        .await
    }
}

/// What an adapter's retries did. Shared by the clones of an adapter; read with
/// [`RetryCounters::snapshot`].
#[derive(Debug, Default)]
pub struct RetryCounters {
    throttled: AtomicU64,
    timed_out: AtomicU64,
    unavailable: AtomicU64,
    unprocessed_rounds: AtomicU64,
    cancelled_transactions: AtomicU64,
    handed_back: AtomicU64,
}

/// A point-in-time copy of [`RetryCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetrySnapshot {
    /// Attempts repeated after a throttling error.
    pub throttled: u64,
    /// Attempts repeated after a timeout (safe requests only).
    pub timed_out: u64,
    /// Attempts repeated after a 5xx or a broken connection (safe requests only).
    pub unavailable: u64,
    /// Batch rounds sent again for what the previous round left unprocessed.
    pub unprocessed_rounds: u64,
    /// Transactions sent again after a cancellation for transient reasons only.
    pub cancelled_transactions: u64,
    /// Transient failures handed to the caller: attempts spent, or an ambiguous failure
    /// (timeout, 5xx) of a request that is not safe to repeat. The caller (a stage's batch,
    /// then the queue's redelivery) decides what happens next.
    pub handed_back: u64,
}

impl RetrySnapshot {
    /// Every retry of any kind.
    pub fn retries(&self) -> u64 {
        self.throttled
            + self.timed_out
            + self.unavailable
            + self.unprocessed_rounds
            + self.cancelled_transactions
    }
}

impl std::fmt::Display for RetrySnapshot {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} retries (throttled {}, timed out {}, unavailable {}, unprocessed rounds {}, \
             cancelled transactions {}); {} transient failures handed back",
            self.retries(),
            self.throttled,
            self.timed_out,
            self.unavailable,
            self.unprocessed_rounds,
            self.cancelled_transactions,
            self.handed_back
        )
    }
}

impl RetryCounters {
    /// An attempt failed with `error` and is about to be repeated.
    pub fn retrying(&self, error: &Error) {
        let counter = match error {
            Error::Throttled(_) => &self.throttled,
            Error::Timeout(_) => &self.timed_out,
            _ => &self.unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A batch round is about to be sent again for its unprocessed part.
    pub fn unprocessed_round(&self) {
        self.unprocessed_rounds.fetch_add(1, Ordering::Relaxed);
    }

    /// A transaction cancelled for transient reasons is about to be sent again.
    pub fn cancelled_transaction(&self) {
        self.cancelled_transactions.fetch_add(1, Ordering::Relaxed);
    }

    /// `error` is handed to the caller; counted when it is transient.
    pub fn handed_back(&self, error: &Error) {
        if error.is_retryable() {
            self.handed_back.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts so far.
    pub fn snapshot(&self) -> RetrySnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RetrySnapshot {
            throttled: load(&self.throttled),
            timed_out: load(&self.timed_out),
            unavailable: load(&self.unavailable),
            unprocessed_rounds: load(&self.unprocessed_rounds),
            cancelled_transactions: load(&self.cancelled_transactions),
            handed_back: load(&self.handed_back),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.ceiling(0), Duration::from_millis(25));
        assert_eq!(policy.ceiling(3), Duration::from_millis(200));
        assert_eq!(policy.ceiling(40), Duration::from_secs(2));
        for attempt in 0..10 {
            assert!(policy.backoff(attempt) <= policy.ceiling(attempt));
        }
    }

    #[test]
    fn only_safe_requests_repeat_after_a_timeout() {
        let timeout = Error::Timeout("t".into());
        assert!(Repeat::Safe.should_retry(&timeout));
        assert!(!Repeat::Unsafe.should_retry(&timeout));
        assert!(Repeat::Unsafe.should_retry(&Error::Throttled("t".into())));
        assert!(!Repeat::Safe.should_retry(&Error::InvalidRequest("bad".into())));
    }

    #[tokio::test]
    async fn retries_are_bounded_and_stop_on_success() {
        let counters = RetryCounters::default();
        let calls = AtomicU32::new(0);
        let result: Result<()> = quick()
            .run_request("test", Repeat::Safe, &counters, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::Throttled("slow down".into()))
            })
            .await;
        assert!(matches!(result, Err(Error::Throttled(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        let counted = counters.snapshot();
        assert_eq!((counted.throttled, counted.handed_back), (3, 1));

        let calls = AtomicU32::new(0);
        let result = quick()
            .run_request("test", Repeat::Safe, &counters, || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::Unavailable("reset".into()))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(counters.snapshot().unavailable, 2);

        let calls = AtomicU32::new(0);
        let result: Result<()> = quick()
            .run_request("test", Repeat::Safe, &counters, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::InvalidRequest("no".into()))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // An ambiguous failure of a request that must not be repeated goes back at once.
        let result: Result<()> = quick()
            .run_request("test", Repeat::Unsafe, &counters, || async {
                Err(Error::Timeout("lost".into()))
            })
            .await;
        assert!(result.is_err());
        let counted = counters.snapshot();
        assert_eq!((counted.timed_out, counted.handed_back), (0, 2));
        assert_eq!(counted.retries(), 5);
    }
}
