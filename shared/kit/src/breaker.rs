//! A circuit breaker for calls to a remote service (the inference pool, a model API).
//!
//! Closed: calls go through and consecutive failures are counted. At
//! [`BreakerConfig::failure_threshold`] failures it opens: calls are refused at once (the caller
//! falls back) for [`BreakerConfig::open_for`]. Then it lets exactly one probe through
//! (half-open); the probe's success closes it, its failure opens it again. Time comes from a
//! [`Clock`] so the schedule is testable.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use worldfleet_ports::Clock;

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit refuses calls before it lets one probe through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

/// The breaker's state, as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; `failures` consecutive failures so far.
    Closed { failures: u32 },
    /// Calls are refused until `until_ms`.
    Open { until_ms: u64 },
    /// One probe is out; other calls are refused until it reports.
    HalfOpen,
}

/// A thread-safe circuit breaker; clones share state.
#[derive(Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<BreakerState>>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            state: Arc::new(Mutex::new(BreakerState::Closed { failures: 0 })),
        }
    }

    /// The state now (an open breaker whose time is up still reads open until a call probes).
    pub fn state(&self) -> BreakerState {
        *self.lock()
    }

    /// Whether a call may go out now. `true` from an open breaker whose time is up makes that
    /// call the half-open probe: the caller must report its outcome.
    pub fn try_acquire(&self) -> bool {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed { .. } => true,
            BreakerState::HalfOpen => false,
            BreakerState::Open { until_ms } => {
                if self.clock.now_ms() >= until_ms {
                    *state = BreakerState::HalfOpen;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Reports a call that succeeded: the circuit closes.
    pub fn record_success(&self) {
        *self.lock() = BreakerState::Closed { failures: 0 };
    }

    /// Reports a call that failed (timed out, refused, answered 5xx or 429).
    pub fn record_failure(&self) {
        let mut state = self.lock();
        let failures = match *state {
            BreakerState::Closed { failures } => failures + 1,
            // A failed probe, or a late failure of a call admitted before the circuit opened.
            BreakerState::HalfOpen | BreakerState::Open { .. } => self.config.failure_threshold,
        };
        *state = if failures >= self.config.failure_threshold {
            let until_ms = self.clock.now_ms() + self.config.open_for.as_millis() as u64;
            tracing::warn!(
                failures,
                open_for_ms = self.config.open_for.as_millis() as u64,
                "circuit open: calls fall back until the probe succeeds"
            );
            BreakerState::Open { until_ms }
        } else {
            BreakerState::Closed { failures }
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // The state is a plain value, valid whatever a panicking holder did.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use worldfleet_ports::ManualClock;

    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_once() {
        let clock = ManualClock::new(1_000);
        let breaker = CircuitBreaker::new(
            BreakerConfig {
                failure_threshold: 2,
                open_for: Duration::from_millis(500),
            },
            Arc::new(clock.clone()),
        );
        assert!(breaker.try_acquire());
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Closed { failures: 1 });
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Open { until_ms: 1_500 });
        assert!(!breaker.try_acquire());
        clock.advance(500);
        assert!(
            breaker.try_acquire(),
            "the first call after the wait probes"
        );
        assert!(!breaker.try_acquire(), "only one probe at a time");
        breaker.record_failure();
        assert!(!breaker.try_acquire(), "a failed probe reopens the circuit");
        clock.advance(500);
        assert!(breaker.try_acquire());
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
        assert!(breaker.try_acquire());
    }

    #[test]
    fn success_resets_the_count() {
        let breaker = CircuitBreaker::new(
            BreakerConfig {
                failure_threshold: 2,
                open_for: Duration::from_secs(1),
            },
            Arc::new(ManualClock::new(0)),
        );
        breaker.record_failure();
        breaker.record_success();
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Closed { failures: 1 });
    }
}
