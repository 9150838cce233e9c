//! The server's counters and their Prometheus text exposition (`GET /metrics`).
//!
//! Counted here: requests by route template and status (every route, refusals included),
//! envelopes queued or refused by the door (by reason), live subscribers now and in total,
//! subscriptions closed by reason, and — when the stages run in this process and write through
//! [`crate::push::NotifyingTable`] — the intake → feed latency of every published entry (a
//! histogram) and intake's refusals by reason. At scrape time every stage queue's depth is read
//! from the queue port, and a [`MetricsSource`] the run mode supplies adds its own series (the
//! embedded server: per-stage throughput, store size, the world's populations and prices).
//! Counters live in memory and restart at zero with the process, as Prometheus expects.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use worldfleet_domain::names::STAGES;

use crate::ServeState;

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    envelopes_queued: AtomicU64,
    envelopes_failed: AtomicU64,
    envelopes_refused: Mutex<BTreeMap<&'static str, u64>>,
    subscribers_active: AtomicU64,
    subscriptions_total: AtomicU64,
    subscriptions_closed: Mutex<BTreeMap<&'static str, u64>>,
    connections_refused: AtomicU64,
    feed_latency: LatencyHistogram,
    subscriber_lag: LatencyHistogram,
    rejections: Mutex<BTreeMap<String, u64>>,
}

/// Upper bounds, in milliseconds, of the intake → feed latency histogram's buckets.
pub const LATENCY_BUCKETS_MS: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000,
];

/// A Prometheus histogram of milliseconds with fixed buckets, lock-free.
#[derive(Debug, Default)]
struct LatencyHistogram {
    /// Observations at or under each bound of [`LATENCY_BUCKETS_MS`] (not cumulative).
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    count: AtomicU64,
    sum_ms: AtomicU64,
}

impl LatencyHistogram {
    fn record(&self, millis: u64) {
        if let Some(index) = LATENCY_BUCKETS_MS.iter().position(|bound| millis <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(millis, Ordering::Relaxed);
    }

    fn render(&self, text: &mut String, name: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS_MS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                text,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1000.0
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(text, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            text,
            "{name}_sum {}",
            self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(text, "{name}_count {count}");
    }
}

/// Series a run mode adds to `/metrics` at scrape time (what the server alone cannot see).
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Appends Prometheus text, `# HELP` and `# TYPE` lines included.
    async fn render(&self, text: &mut String);
}

impl Metrics {
    /// Counts one answered request.
    pub fn record_request(&self, method: &str, route: &str, status: u16) {
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
    }

    /// Counts an envelope handed to the intake queue.
    pub fn envelope_queued(&self) {
        self.envelopes_queued.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an envelope the queue did not take.
    pub fn envelope_failed(&self) {
        self.envelopes_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an envelope the door refused with `reason`.
    pub fn envelope_refused(&self, reason: &'static str) {
        let mut refused = self
            .envelopes_refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *refused.entry(reason).or_default() += 1;
    }

    /// A subscription started.
    pub fn subscriber_opened(&self) {
        self.subscribers_active.fetch_add(1, Ordering::Relaxed);
        self.subscriptions_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A subscription ended with `reason`.
    pub fn subscriber_closed(&self, reason: &'static str) {
        self.subscribers_active.fetch_sub(1, Ordering::Relaxed);
        let mut closed = self
            .subscriptions_closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *closed.entry(reason).or_default() += 1;
    }

    /// A connection beyond the cap was answered 503 and closed.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// An entry accepted `millis` ago was published to its feed.
    pub fn entry_published(&self, millis: u64) {
        self.feed_latency.record(millis);
    }

    /// An entry accepted `millis` ago entered a live subscriber's buffer.
    pub fn entry_to_subscriber(&self, millis: u64) {
        self.subscriber_lag.record(millis);
    }

    /// Intake recorded a refusal with reason code `reason`.
    pub fn rejection_recorded(&self, reason: &str) {
        let mut rejections = self
            .rejections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match rejections.get_mut(reason) {
            Some(count) => *count += 1,
            None => {
                rejections.insert(reason.to_owned(), 1);
            }
        }
    }

    /// Live subscribers now.
    pub fn active_subscribers(&self) -> u64 {
        self.subscribers_active.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4), without the scrape-time gauges.
    pub fn render(&self) -> String {
        let mut text = String::new();
        text.push_str(
            "# HELP worldfleet_serve_requests_total Requests answered, by method, route and \
             status.\n# TYPE worldfleet_serve_requests_total counter\n",
        );
        for ((method, route, status), count) in self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                text,
                "worldfleet_serve_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}",
                escape(route)
            );
        }
        text.push_str(
            "# HELP worldfleet_serve_envelopes_total Envelopes posted to the door, by outcome.\n\
             # TYPE worldfleet_serve_envelopes_total counter\n",
        );
        let _ = writeln!(
            text,
            "worldfleet_serve_envelopes_total{{outcome=\"queued\"}} {}",
            self.envelopes_queued.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            text,
            "worldfleet_serve_envelopes_total{{outcome=\"failed\"}} {}",
            self.envelopes_failed.load(Ordering::Relaxed)
        );
        let refused = self
            .envelopes_refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let _ = writeln!(
            text,
            "worldfleet_serve_envelopes_total{{outcome=\"refused\"}} {}",
            refused.values().sum::<u64>()
        );
        text.push_str(
            "# HELP worldfleet_serve_envelopes_refused_total Envelopes the door refused, by \
             reason code.\n# TYPE worldfleet_serve_envelopes_refused_total counter\n",
        );
        for (reason, count) in &refused {
            let _ = writeln!(
                text,
                "worldfleet_serve_envelopes_refused_total{{reason=\"{reason}\"}} {count}"
            );
        }
        text.push_str(
            "# HELP worldfleet_serve_subscribers Live feed subscriptions now.\n\
             # TYPE worldfleet_serve_subscribers gauge\n",
        );
        let _ = writeln!(
            text,
            "worldfleet_serve_subscribers {}",
            self.subscribers_active.load(Ordering::Relaxed)
        );
        text.push_str(
            "# HELP worldfleet_serve_subscriptions_total Live feed subscriptions opened.\n\
             # TYPE worldfleet_serve_subscriptions_total counter\n",
        );
        let _ = writeln!(
            text,
            "worldfleet_serve_subscriptions_total {}",
            self.subscriptions_total.load(Ordering::Relaxed)
        );
        text.push_str(
            "# HELP worldfleet_serve_subscriptions_closed_total Live feed subscriptions ended, \
             by reason.\n# TYPE worldfleet_serve_subscriptions_closed_total counter\n",
        );
        for (reason, count) in self
            .subscriptions_closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                text,
                "worldfleet_serve_subscriptions_closed_total{{reason=\"{reason}\"}} {count}"
            );
        }
        text.push_str(
            "# HELP worldfleet_serve_connections_refused_total Connections over the cap, \
             answered 503 and closed.\n# TYPE worldfleet_serve_connections_refused_total counter\n",
        );
        let _ = writeln!(
            text,
            "worldfleet_serve_connections_refused_total {}",
            self.connections_refused.load(Ordering::Relaxed)
        );
        text.push_str(
            "# HELP worldfleet_intake_to_feed_seconds From intake's acceptance to the entry's \
             feed page being written, per published entry (stages in this process only).\n\
             # TYPE worldfleet_intake_to_feed_seconds histogram\n",
        );
        self.feed_latency
            .render(&mut text, "worldfleet_intake_to_feed_seconds");
        text.push_str(
            "# HELP worldfleet_serve_subscriber_lag_seconds How far behind live subscribers \
             are: from intake's acceptance of an entry to its entering a subscriber's buffer \
             (SSE and WebSocket, every mode).\n\
             # TYPE worldfleet_serve_subscriber_lag_seconds histogram\n",
        );
        self.subscriber_lag
            .render(&mut text, "worldfleet_serve_subscriber_lag_seconds");
        text.push_str(
            "# HELP worldfleet_rejections_total Envelopes intake refused, by reason code (stages \
             in this process only).\n# TYPE worldfleet_rejections_total counter\n",
        );
        for (reason, count) in self
            .rejections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                text,
                "worldfleet_rejections_total{{reason=\"{}\"}} {count}",
                escape(reason)
            );
        }
        text
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware (on every route): counts the answered request under its route template, so
/// `/v1/feeds/player:p-1` and `/v1/feeds/player:p-2` share one series.
pub async fn count_requests(
    State(state): State<ServeState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    state
        .inner
        .metrics
        .record_request(&method, &route, response.status().as_u16());
    response
}

/// `GET /metrics`: the counters, every stage queue's depth read now, and the run mode's own
/// series.
pub async fn metrics(State(state): State<ServeState>) -> Response {
    let mut text = state.inner.metrics.render();
    text.push_str(
        "# HELP worldfleet_queue_depth Approximate messages in a queue, by state.\n\
         # TYPE worldfleet_queue_depth gauge\n",
    );
    let mut queues: Vec<&str> = Vec::new();
    for stage in &STAGES {
        if !queues.contains(&stage.consumes) {
            queues.push(stage.consumes);
        }
    }
    for queue in queues {
        match state.inner.queue.depth(queue).await {
            Ok(depth) => {
                for (name, value) in [
                    ("visible", depth.visible),
                    ("in_flight", depth.in_flight),
                    ("delayed", depth.delayed),
                ] {
                    let _ = writeln!(
                        text,
                        "worldfleet_queue_depth{{queue=\"{queue}\",state=\"{name}\"}} {value}"
                    );
                }
            }
            Err(error) => tracing::warn!(%error, queue, "metrics: queue depth unavailable"),
        }
    }
    if let Some(source) = &state.inner.source {
        source.render(&mut text).await;
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_its_labels() {
        let metrics = Metrics::default();
        metrics.record_request("GET", "/v1/feeds/{feed}", 200);
        metrics.record_request("GET", "/v1/feeds/{feed}", 200);
        metrics.envelope_queued();
        metrics.envelope_refused("oversized");
        metrics.subscriber_opened();
        let text = metrics.render();
        assert!(text.contains(
            "worldfleet_serve_requests_total{method=\"GET\",route=\"/v1/feeds/{feed}\",status=\"200\"} 2"
        ));
        assert!(text.contains("worldfleet_serve_envelopes_total{outcome=\"queued\"} 1"));
        assert!(text.contains("worldfleet_serve_envelopes_refused_total{reason=\"oversized\"} 1"));
        assert!(text.contains("worldfleet_serve_subscribers 1"));
        metrics.subscriber_closed("client_gone");
        assert!(metrics.render().contains("worldfleet_serve_subscribers 0"));
    }

    #[test]
    fn latency_buckets_are_cumulative_and_in_seconds() {
        let metrics = Metrics::default();
        for millis in [3, 40, 40, 700, 12_000, 900_000] {
            metrics.entry_published(millis);
        }
        metrics.rejection_recorded("bad_signature");
        metrics.rejection_recorded("bad_signature");
        let text = metrics.render();
        for line in [
            "worldfleet_intake_to_feed_seconds_bucket{le=\"0.005\"} 1",
            "worldfleet_intake_to_feed_seconds_bucket{le=\"0.05\"} 3",
            "worldfleet_intake_to_feed_seconds_bucket{le=\"1\"} 4",
            "worldfleet_intake_to_feed_seconds_bucket{le=\"30\"} 5",
            "worldfleet_intake_to_feed_seconds_bucket{le=\"300\"} 5",
            "worldfleet_intake_to_feed_seconds_bucket{le=\"+Inf\"} 6",
            "worldfleet_intake_to_feed_seconds_count 6",
            "worldfleet_rejections_total{reason=\"bad_signature\"} 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
