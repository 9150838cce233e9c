//! `GET /`: the live dashboard — one self-contained page (HTML, CSS and script built into the
//! binary, nothing fetched from elsewhere, so it works offline) that scrapes `/metrics` every
//! second and charts events/s per stage, queue depths, intake → feed latency percentiles,
//! rejections by reason, the world's ecology populations and station prices, and feed
//! subscribers over the last five minutes.
//!
//! Like `/metrics`, the page is not behind gateway authentication: it shows counts, never
//! payloads or keys. Keep the server on loopback or behind your network boundary (the default
//! bind is `127.0.0.1`).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The page, as built into the binary.
pub const PAGE: &str = include_str!("dashboard.html");

/// The chart ids the page draws (each a `section#chart-{id}`), in page order.
pub const CHARTS: [&str; 7] = [
    "throughput",
    "queues",
    "latency",
    "rejections",
    "ecology",
    "prices",
    "subscribers",
];

/// `GET /`: the dashboard page.
pub async fn page() -> Response {
    let mut response = PAGE.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_draws_every_chart_and_reads_only_metrics() {
        for id in CHARTS {
            assert!(
                PAGE.contains(&format!("id: \"{id}\"")),
                "chart {id} missing"
            );
        }
        assert!(PAGE.contains("fetch(\"/metrics\""));
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
    }
}
