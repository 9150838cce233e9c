//! What a proxy did: requests, forwards and faults, per operation.

use std::collections::BTreeMap;
use std::fmt;

use crate::plan::Fault;

/// Counts for one operation (or, summed, for a whole run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests received.
    pub requests: u64,
    /// Requests (or parts of batches) sent on to the upstream, lost responses included.
    pub forwarded: u64,
    /// Faults injected, by [`Fault`] in the order of [`Fault::ALL`].
    pub faults: [u64; 5],
    /// Batch entries handed back unprocessed.
    pub entries_held_back: u64,
    /// Forwards that failed to reach the upstream (answered 502).
    pub upstream_errors: u64,
}

impl FaultCounts {
    /// Counts one fault of `kind`.
    pub fn add(&mut self, kind: Fault) {
        self.faults[kind.index()] += 1;
    }

    /// Faults of `kind`.
    pub fn of(&self, kind: Fault) -> u64 {
        self.faults[kind.index()]
    }

    /// Requests that got any fault.
    pub fn faulted(&self) -> u64 {
        self.faults.iter().sum()
    }

    fn absorb(&mut self, other: &FaultCounts) {
        self.requests += other.requests;
        self.forwarded += other.forwarded;
        for (total, count) in self.faults.iter_mut().zip(other.faults) {
            *total += count;
        }
        self.entries_held_back += other.entries_held_back;
        self.upstream_errors += other.upstream_errors;
    }
}

/// A proxy's counts, per operation label (`dynamodb:PutItem`, `sqs:ReceiveMessage`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultReport {
    pub by_operation: BTreeMap<String, FaultCounts>,
}

impl FaultReport {
    /// Every operation summed.
    pub fn total(&self) -> FaultCounts {
        let mut total = FaultCounts::default();
        for counts in self.by_operation.values() {
            total.absorb(counts);
        }
        total
    }

    /// Two proxies' reports as one (e.g. the SQS and the DynamoDB proxy of one run).
    pub fn merged(&self, other: &FaultReport) -> FaultReport {
        let mut merged = self.clone();
        for (operation, counts) in &other.by_operation {
            merged
                .by_operation
                .entry(operation.clone())
                .or_default()
                .absorb(counts);
        }
        merged
    }
}

impl fmt::Display for FaultReport {
    /// One line: `N requests, F faulted (x.x %): throttle a, server_error b, ...`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total();
        let share = if total.requests == 0 {
            0.0
        } else {
            100.0 * total.faulted() as f64 / total.requests as f64
        };
        write!(
            formatter,
            "{} requests, {} faulted ({share:.1} %):",
            total.requests,
            total.faulted()
        )?;
        for (index, fault) in Fault::ALL.iter().enumerate() {
            let separator = if index == 0 { " " } else { ", " };
            write!(
                formatter,
                "{separator}{} {}",
                fault.name(),
                total.of(*fault)
            )?;
        }
        write!(
            formatter,
            " ({} batch entries held back)",
            total.entries_held_back
        )?;
        if total.upstream_errors > 0 {
            write!(formatter, "; {} upstream errors", total.upstream_errors)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_sum_and_merge_per_operation() {
        let mut put = FaultCounts {
            requests: 10,
            forwarded: 8,
            ..FaultCounts::default()
        };
        put.add(Fault::Throttle);
        put.add(Fault::Timeout);
        let mut batch = FaultCounts {
            requests: 4,
            forwarded: 4,
            entries_held_back: 7,
            ..FaultCounts::default()
        };
        batch.add(Fault::Unprocessed);
        let dynamo = FaultReport {
            by_operation: BTreeMap::from([
                ("dynamodb:PutItem".to_owned(), put.clone()),
                ("dynamodb:BatchWriteItem".to_owned(), batch),
            ]),
        };
        let sqs = FaultReport {
            by_operation: BTreeMap::from([("dynamodb:PutItem".to_owned(), put)]),
        };
        let merged = dynamo.merged(&sqs);
        let total = merged.total();
        assert_eq!(total.requests, 24);
        assert_eq!(total.of(Fault::Throttle), 2);
        assert_eq!(total.faulted(), 5);
        assert_eq!(
            merged.to_string(),
            "24 requests, 5 faulted (20.8 %): throttle 2, server_error 0, timeout 2, \
             lost_response 0, unprocessed 1 (7 batch entries held back)"
        );
    }
}
