//! Turning counted requests and units into dollars, for benchmarks that report cost per
//! million events. Prices are published us-east-1 on-demand list prices; see the README for
//! when they were taken — check them before quoting a result.

use serde::Serialize;
use worldfleet_ports::UsageSnapshot;

/// Dollar prices per million requests or request units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PriceList {
    /// When the prices were taken (ISO date).
    pub taken_on: &'static str,
    /// SQS FIFO, per million requests (each 64 KB chunk of a payload is a request).
    pub sqs_fifo_per_million_requests: f64,
    /// SQS standard, per million requests.
    pub sqs_standard_per_million_requests: f64,
    /// DynamoDB on-demand, per million write request units.
    pub dynamodb_per_million_write_units: f64,
    /// DynamoDB on-demand, per million read request units.
    pub dynamodb_per_million_read_units: f64,
}

/// us-east-1 on-demand list prices (first tier, free tiers ignored).
pub const US_EAST_1_ON_DEMAND: PriceList = PriceList {
    taken_on: "2026-11-21",
    sqs_fifo_per_million_requests: 0.50,
    sqs_standard_per_million_requests: 0.40,
    dynamodb_per_million_write_units: 0.625,
    dynamodb_per_million_read_units: 0.125,
};

/// Usage and cost per event of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostPerEvent {
    pub queue_requests: f64,
    pub table_write_units: f64,
    pub table_read_units: f64,
    /// Dollars per million events: queues, tables and the sum.
    pub queue_dollars_per_million: f64,
    pub table_dollars_per_million: f64,
    pub total_dollars_per_million: f64,
}

impl PriceList {
    /// What `usage` cost per event over `events` events (`None` for zero events);
    /// `fifo` picks the SQS FIFO price.
    pub fn per_event(
        &self,
        usage: &UsageSnapshot,
        events: u64,
        fifo: bool,
    ) -> Option<CostPerEvent> {
        if events == 0 {
            return None;
        }
        let per_event = |count: u64| count as f64 / events as f64;
        let queue_requests = per_event(usage.queue_requests);
        let table_write_units = per_event(usage.table_write_units);
        let table_read_units = per_event(usage.table_read_units);
        let queue_price = if fifo {
            self.sqs_fifo_per_million_requests
        } else {
            self.sqs_standard_per_million_requests
        };
        // Per event × price per million units = dollars per million events.
        let queue_dollars_per_million = queue_requests * queue_price;
        let table_dollars_per_million = table_write_units * self.dynamodb_per_million_write_units
            + table_read_units * self.dynamodb_per_million_read_units;
        Some(CostPerEvent {
            queue_requests,
            table_write_units,
            table_read_units,
            queue_dollars_per_million,
            table_dollars_per_million,
            total_dollars_per_million: queue_dollars_per_million + table_dollars_per_million,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_per_million_events() {
        let usage = UsageSnapshot {
            queue_requests: 600,
            table_write_units: 300,
            table_read_units: 200,
            ..UsageSnapshot::default()
        };
        let cost = US_EAST_1_ON_DEMAND.per_event(&usage, 100, true).unwrap();
        assert_eq!(cost.queue_requests, 6.0);
        assert!((cost.queue_dollars_per_million - 3.0).abs() < 1e-9);
        assert!((cost.table_dollars_per_million - (3.0 * 0.625 + 2.0 * 0.125)).abs() < 1e-9);
        assert!(US_EAST_1_ON_DEMAND.per_event(&usage, 0, true).is_none());
    }
}
