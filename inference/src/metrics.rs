//! Prometheus metrics, kept as plain atomics and rendered in the text exposition format.
//! The queue depth gauge is what the autoscaling policy tracks.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A cumulative histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    upper_bounds: &'static [f64],
    bucket_counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum of observations in millionths, so it can live in an integer atomic.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(upper_bounds: &'static [f64]) -> Self {
        Histogram {
            upper_bounds,
            bucket_counts: upper_bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        for (bound, bucket) in self.upper_bounds.iter().zip(&self.bucket_counts) {
            if value <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6).max(0.0) as u64, Ordering::Relaxed);
    }

    /// Observations recorded so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of all observations.
    pub fn sum(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, bucket) in self.upper_bounds.iter().zip(&self.bucket_counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum());
        let _ = writeln!(out, "{name}_count {count}");
    }
}

const BATCH_SIZE_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
const BATCH_TOKEN_BOUNDS: &[f64] = &[
    16.0, 64.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];
const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// All metrics of one server.
#[derive(Debug)]
pub struct Metrics {
    /// Requests admitted to the pool and not yet taken into a running batch.
    pub queue_depth: AtomicI64,
    /// Requests admitted and not yet answered (bounded by `max_in_flight`).
    pub in_flight: AtomicI64,
    /// Requests (jobs) per batch run by the model thread.
    pub batch_requests: Histogram,
    /// Sequences (texts) per batch run by the model thread.
    pub batch_size: Histogram,
    /// Tokens per batch run by the model thread.
    pub batch_tokens: Histogram,
    /// Time from receiving a request to having its answer, in seconds.
    pub request_duration: Histogram,
    /// Requests refused with 429 because the in-flight bound was reached.
    pub rejected_overloaded: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            queue_depth: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            batch_requests: Histogram::new(BATCH_SIZE_BOUNDS),
            batch_size: Histogram::new(BATCH_SIZE_BOUNDS),
            batch_tokens: Histogram::new(BATCH_TOKEN_BOUNDS),
            request_duration: Histogram::new(LATENCY_BOUNDS),
            rejected_overloaded: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Records the end-to-end duration of one request.
    pub fn observe_request(&self, elapsed: Duration) {
        self.request_duration.observe(elapsed.as_secs_f64());
    }

    /// Renders every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let gauges = [
            (
                "worldfleet_inference_queue_depth",
                "Requests waiting for the model thread.",
                self.queue_depth.load(Ordering::Relaxed),
            ),
            (
                "worldfleet_inference_in_flight",
                "Requests admitted and not yet answered.",
                self.in_flight.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        let name = "worldfleet_inference_rejected_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests refused with 429 (in-flight bound)."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(
            out,
            "{name} {}",
            self.rejected_overloaded.load(Ordering::Relaxed)
        );
        self.batch_requests.render(
            &mut out,
            "worldfleet_inference_batch_requests",
            "Requests merged into one model batch.",
        );
        self.batch_size.render(
            &mut out,
            "worldfleet_inference_batch_size",
            "Texts in one model batch.",
        );
        self.batch_tokens.render(
            &mut out,
            "worldfleet_inference_batch_tokens",
            "Tokens in one model batch.",
        );
        self.request_duration.render(
            &mut out,
            "worldfleet_inference_request_duration_seconds",
            "Time from request received to answer ready.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::new(&[1.0, 10.0]);
        histogram.observe(0.5);
        histogram.observe(5.0);
        histogram.observe(50.0);
        let mut out = String::new();
        histogram.render(&mut out, "h", "help");
        assert!(out.contains("h_bucket{le=\"1\"} 1\n"));
        assert!(out.contains("h_bucket{le=\"10\"} 2\n"));
        assert!(out.contains("h_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("h_count 3\n"));
        assert!((histogram.sum() - 55.5).abs() < 1e-6);
    }
}
