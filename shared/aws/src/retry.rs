//! Bounded retries with exponential backoff and full jitter.
//!
//! The SDK's own retry layer is off (see [`crate::AwsSettings::sdk_config`]) so each attempt
//! is visible: counted as a request and classified. Whether an error is worth another attempt
//! depends on the operation: a throttled request was never applied and is always retried; a
//! timeout or dropped connection may have been applied, so it is retried only when repeating
//! the request is harmless ([`Repeat::Safe`]).

use std::future::Future;
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
    /// attempts run out (the last error is returned).
    pub async fn run<T, F, Fut>(
        &self,
        operation: &str,
        retry_on: impl Fn(&Error) -> bool,
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
                    let wait = self.backoff(failed);
                    debug!(operation, attempt = failed + 1, ?wait, %error, "retrying");
                    tokio::time::sleep(wait).await;
                    failed += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// [`RetryPolicy::run`] with the standard rule for `repeat`.
    pub async fn run_request<T, F, Fut>(
        &self,
        operation: &str,
        repeat: Repeat,
        attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run(operation, |error| repeat.should_retry(error), attempt)
            .await
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
        let calls = AtomicU32::new(0);
        let result: Result<()> = quick()
            .run_request("test", Repeat::Safe, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::Throttled("slow down".into()))
            })
            .await;
        assert!(matches!(result, Err(Error::Throttled(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        let calls = AtomicU32::new(0);
        let result = quick()
            .run_request("test", Repeat::Safe, || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::Unavailable("reset".into()))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let result: Result<()> = quick()
            .run_request("test", Repeat::Safe, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::InvalidRequest("no".into()))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
