//! Every `/v1` request must be signed by a known gateway, within the clock window, and within
//! its gateway's request rate; the open routes need nothing.

use axum::body::Body;
use axum::http::Request;
use worldfleet_ports::Clock;
use worldfleet_serve::ServeConfig;

use crate::common::{fixture, fixture_with, key, sample, signed_at};

#[tokio::test]
async fn missing_headers_are_named() {
    let fixture = fixture().await;
    for header in [
        "x-worldfleet-gateway",
        "x-worldfleet-timestamp",
        "x-worldfleet-signature",
    ] {
        let mut request = fixture.signed("GET", "/v1/feeds/player:p-1", b"");
        request.headers_mut().remove(header);
        let (status, answer) = fixture.call_json(request).await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["error"], "missing_header");
        assert!(
            answer["message"].as_str().unwrap().contains(header),
            "{answer}"
        );
    }
    let request = Request::get("/v1/feeds/player:p-1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(fixture.call_json(request).await.0, 401);
}

#[tokio::test]
async fn an_unknown_gateway_is_refused() {
    let fixture = fixture().await;
    let mut request = fixture.signed("GET", "/v1/feeds/player:p-1", b"");
    request
        .headers_mut()
        .insert("x-worldfleet-gateway", "gw-nobody".parse().unwrap());
    let (status, answer) = fixture.call_json(request).await;
    assert_eq!(status, 401);
    assert_eq!(answer["error"], "unknown_gateway");
}

#[tokio::test]
async fn forged_and_altered_requests_are_refused() {
    let fixture = fixture().await;
    let now = fixture.clock.now_ms();
    let body = sample("dialogue");
    // Signed with another key.
    let forged = signed_at(
        "POST",
        "/v1/events",
        body.as_bytes(),
        now,
        b"not the gateway key!",
    );
    let (status, answer) = fixture.call_json(forged).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"], "bad_signature");
    // Signed for another body.
    let mut altered = signed_at("POST", "/v1/events", b"[]", now, &key());
    *altered.body_mut() = Body::from(body.clone());
    assert_eq!(fixture.call_json(altered).await.1["error"], "bad_signature");
    // Signed for another path.
    let mut moved = signed_at("GET", "/v1/feeds/player:p-1", b"", now, &key());
    *moved.uri_mut() = "/v1/feeds/player:p-2".parse().unwrap();
    assert_eq!(fixture.call_json(moved).await.1["error"], "bad_signature");
    // Not hex at all.
    let mut garbage = fixture.signed("GET", "/v1/feeds/player:p-1", b"");
    garbage
        .headers_mut()
        .insert("x-worldfleet-signature", "zz-not-hex".parse().unwrap());
    assert_eq!(fixture.call_json(garbage).await.1["error"], "bad_signature");
    assert!(fixture.intake_messages().await.is_empty());
}

#[tokio::test]
async fn timestamps_outside_the_window_are_refused_and_inside_accepted() {
    let fixture = fixture().await;
    let now = fixture.clock.now_ms();
    for timestamp in [now - 301_000, now + 301_000] {
        let request = signed_at("GET", "/v1/feeds/player:p-1", b"", timestamp, &key());
        let (status, answer) = fixture.call_json(request).await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["error"], "expired_timestamp");
    }
    for timestamp in [now - 299_000, now + 299_000] {
        let request = signed_at("GET", "/v1/feeds/player:p-1", b"", timestamp, &key());
        assert_eq!(fixture.call_json(request).await.0, 200);
    }
    let mut request = fixture.signed("GET", "/v1/feeds/player:p-1", b"");
    request
        .headers_mut()
        .insert("x-worldfleet-timestamp", "yesterday".parse().unwrap());
    assert_eq!(fixture.call_json(request).await.1["error"], "bad_timestamp");
}

#[tokio::test]
async fn a_gateway_over_its_rate_gets_429_with_retry_after() {
    let config = ServeConfig {
        rate_burst: 3,
        rate_per_second: 1,
        ..ServeConfig::default()
    };
    let fixture = fixture_with(config).await;
    for _ in 0..3 {
        let request = fixture.signed("GET", "/v1/feeds/player:p-1", b"");
        assert_eq!(fixture.call_json(request).await.0, 200);
    }
    let response = fixture
        .call(fixture.signed("GET", "/v1/feeds/player:p-1", b""))
        .await;
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    // Forged requests spend nobody's tokens; time refills the bucket.
    fixture.clock.advance(1_000);
    let request = fixture.signed("GET", "/v1/feeds/player:p-1", b"");
    assert_eq!(fixture.call_json(request).await.0, 200);
}

#[tokio::test]
async fn health_and_metrics_need_no_signature_and_unknown_routes_are_json_404() {
    let fixture = fixture().await;
    for path in ["/health", "/ready"] {
        let request = Request::get(path).body(Body::empty()).unwrap();
        assert_eq!(fixture.call_json(request).await.0, 200, "{path}");
    }
    let request = Request::get("/nowhere").body(Body::empty()).unwrap();
    let (status, answer) = fixture.call_json(request).await;
    assert_eq!(status, 404);
    assert_eq!(answer["error"], "not_found");
}
