//! Which request gets which fault: the rates, and a seeded draw per request.
//!
//! One uniform draw per request is compared with the cumulative rates, in the order of
//! [`Fault::ALL`], so the kinds are exclusive and each rate is the fraction of eligible
//! requests that get that fault. A partial batch is only possible for a batch call
//! (`BatchWriteItem`, `BatchGetItem`); for any other request its slice of the draw is no fault.

use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Answered at once with the service's throttling error (DynamoDB:
    /// `ProvisionedThroughputExceededException` or `ThrottlingException`; SQS:
    /// `RequestThrottled`), HTTP 400; not forwarded.
    Throttle,
    /// Answered at once with HTTP 500 and the service's internal-error code; not forwarded.
    ServerError,
    /// Held past the client's timeout, then the connection is closed; not forwarded.
    Timeout,
    /// Forwarded and applied upstream, then the response is held past the client's timeout
    /// and dropped: the client cannot tell whether its request took effect.
    LostResponse,
    /// Batch calls only: part of the batch is forwarded (possibly none of it) and the rest
    /// comes back as `UnprocessedItems` / `UnprocessedKeys`.
    Unprocessed,
}

impl Fault {
    /// Every kind, in the order the draw is compared with the rates.
    pub const ALL: [Fault; 5] = [
        Fault::Throttle,
        Fault::ServerError,
        Fault::Timeout,
        Fault::LostResponse,
        Fault::Unprocessed,
    ];

    /// A short name for reports (`throttle`, `server_error`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Fault::Throttle => "throttle",
            Fault::ServerError => "server_error",
            Fault::Timeout => "timeout",
            Fault::LostResponse => "lost_response",
            Fault::Unprocessed => "unprocessed",
        }
    }

    /// Index into per-kind arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// How often each fault is injected: fractions of the requests each applies to.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultRates {
    /// Fraction of all requests throttled.
    pub throttle: f64,
    /// Fraction of all requests answered 500.
    pub server_error: f64,
    /// Fraction of all requests held until the client times out, never forwarded.
    pub timeout: f64,
    /// Fraction of all requests applied upstream whose response is then dropped.
    pub lost_response: f64,
    /// Fraction of batch calls (`BatchWriteItem`, `BatchGetItem`) only partly processed.
    pub unprocessed: f64,
}

impl FaultRates {
    /// No faults: the proxy only forwards.
    pub const NONE: FaultRates = FaultRates {
        throttle: 0.0,
        server_error: 0.0,
        timeout: 0.0,
        lost_response: 0.0,
        unprocessed: 0.0,
    };

    /// `total` of all requests faulted, split 40 % throttles, 20 % 500s, 15 % timeouts and
    /// 25 % lost responses; and `total` of batch calls only partly processed on top.
    pub fn mixed(total: f64) -> FaultRates {
        FaultRates {
            throttle: total * 0.40,
            server_error: total * 0.20,
            timeout: total * 0.15,
            lost_response: total * 0.25,
            unprocessed: total,
        }
    }

    /// Only `fault`, at `rate`.
    pub fn only(fault: Fault, rate: f64) -> FaultRates {
        let mut rates = FaultRates::NONE;
        *rates.rate_mut(fault) = rate;
        rates
    }

    /// The rate of one kind.
    pub fn rate(&self, fault: Fault) -> f64 {
        match fault {
            Fault::Throttle => self.throttle,
            Fault::ServerError => self.server_error,
            Fault::Timeout => self.timeout,
            Fault::LostResponse => self.lost_response,
            Fault::Unprocessed => self.unprocessed,
        }
    }

    fn rate_mut(&mut self, fault: Fault) -> &mut f64 {
        match fault {
            Fault::Throttle => &mut self.throttle,
            Fault::ServerError => &mut self.server_error,
            Fault::Timeout => &mut self.timeout,
            Fault::LostResponse => &mut self.lost_response,
            Fault::Unprocessed => &mut self.unprocessed,
        }
    }

    /// Refuses rates outside `[0, 1]` or summing past 1 (a draw cannot pick two kinds).
    pub fn validate(&self) -> Result<(), String> {
        let mut sum = 0.0;
        for fault in Fault::ALL {
            let rate = self.rate(fault);
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{} rate {rate} is not in [0, 1]", fault.name()));
            }
            sum += rate;
        }
        if sum > 1.0 + 1e-9 {
            return Err(format!("fault rates sum to {sum}, over 1"));
        }
        Ok(())
    }
}

/// The seeded draws of one proxy: shared by its connections, so the sequence of decisions is
/// fixed by the seed and the order requests arrive in.
#[derive(Debug)]
pub struct FaultPlan {
    rates: FaultRates,
    rng: Mutex<ChaCha8Rng>,
}

impl FaultPlan {
    /// A plan drawing with `rates` from `seed`.
    pub fn new(rates: FaultRates, seed: u64) -> Self {
        Self {
            rates,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// The rates this plan draws with.
    pub fn rates(&self) -> FaultRates {
        self.rates
    }

    /// The fault for the next request, if any; `batch` says whether it is a batch call that
    /// can be partly processed.
    pub fn decide(&self, batch: bool) -> Option<Fault> {
        let draw: f64 = self.with_rng(|rng| rng.random());
        let mut ceiling = 0.0;
        for fault in Fault::ALL {
            if fault == Fault::Unprocessed && !batch {
                continue;
            }
            ceiling += self.rates.rate(fault);
            if draw < ceiling {
                return Some(fault);
            }
        }
        None
    }

    /// Runs `draw` on the plan's generator (how many batch entries to hold back, which error
    /// code to answer with).
    pub fn with_rng<T>(&self, draw: impl FnOnce(&mut ChaCha8Rng) -> T) -> T {
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        draw(&mut rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(plan: &FaultPlan, batch: bool, draws: usize) -> [usize; 6] {
        let mut counts = [0; 6];
        for _ in 0..draws {
            match plan.decide(batch) {
                Some(fault) => counts[fault.index()] += 1,
                None => counts[5] += 1,
            }
        }
        counts
    }

    #[test]
    fn each_kind_comes_at_its_rate() {
        let rates = FaultRates {
            throttle: 0.04,
            server_error: 0.02,
            timeout: 0.015,
            lost_response: 0.025,
            unprocessed: 0.10,
        };
        let draws = 200_000;
        let counts = tally(&FaultPlan::new(rates, 7), true, draws);
        for fault in Fault::ALL {
            let seen = counts[fault.index()] as f64 / draws as f64;
            let expected = rates.rate(fault);
            // Five standard deviations of a binomial proportion.
            let tolerance = 5.0 * (expected * (1.0 - expected) / draws as f64).sqrt();
            assert!(
                (seen - expected).abs() <= tolerance,
                "{}: {seen} against {expected}",
                fault.name()
            );
        }
        // Not a batch call: no partial batches, and the rest keep their rates.
        let counts = tally(&FaultPlan::new(rates, 7), false, draws);
        assert_eq!(counts[Fault::Unprocessed.index()], 0);
        let faulted: usize = counts[..5].iter().sum();
        let seen = faulted as f64 / draws as f64;
        assert!((seen - 0.10).abs() < 0.005, "{seen}");
    }

    #[test]
    fn zero_rates_never_fault_and_a_rate_of_one_always_does() {
        let plan = FaultPlan::new(FaultRates::NONE, 1);
        assert!((0..10_000).all(|_| plan.decide(true).is_none()));
        for fault in Fault::ALL {
            let plan = FaultPlan::new(FaultRates::only(fault, 1.0), 1);
            assert!((0..1_000).all(|_| plan.decide(true) == Some(fault)));
        }
        let plan = FaultPlan::new(FaultRates::only(Fault::Unprocessed, 1.0), 1);
        assert!((0..1_000).all(|_| plan.decide(false).is_none()));
    }

    #[test]
    fn the_same_seed_gives_the_same_decisions() {
        let rates = FaultRates::mixed(0.3);
        let first = FaultPlan::new(rates, 42);
        let second = FaultPlan::new(rates, 42);
        let a: Vec<_> = (0..1_000).map(|_| first.decide(true)).collect();
        let b: Vec<_> = (0..1_000).map(|_| second.decide(true)).collect();
        assert_eq!(a, b);
        let other = FaultPlan::new(rates, 43);
        let c: Vec<_> = (0..1_000).map(|_| other.decide(true)).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn impossible_rates_are_refused() {
        assert!(FaultRates::mixed(0.1).validate().is_ok());
        assert!(FaultRates::only(Fault::Timeout, 1.5).validate().is_err());
        assert!(FaultRates::only(Fault::Timeout, -0.1).validate().is_err());
        let mut rates = FaultRates::only(Fault::Throttle, 0.6);
        rates.server_error = 0.6;
        assert!(rates.validate().is_err());
        let total: f64 = Fault::ALL
            .iter()
            .map(|fault| FaultRates::mixed(0.1).rate(*fault))
            .sum();
        assert!((total - 0.2).abs() < 1e-12);
    }
}
