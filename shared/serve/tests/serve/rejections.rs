//! `GET /v1/rejections/{event_id}`: a gateway looks up what intake refused under its own
//! event ids, with the reason, the advice and the repeat count.

use std::time::Duration;

use worldfleet_kit::StageHandler;

use crate::common::{Fixture, GATEWAY, fixture, intake, sample};

/// Runs the real intake stage over whatever the door queued.
async fn run_intake(fixture: &Fixture) {
    let intake = intake(fixture).await;
    let messages = fixture.intake_messages().await;
    let report = intake
        .handle_batch(&messages, Duration::from_secs(30))
        .await;
    assert!(report.all_succeeded(), "{report:?}");
}

#[tokio::test]
async fn a_gateway_finds_a_refusal_by_its_event_id_with_reason_advice_and_count() {
    let fixture = fixture().await;
    let mut forged: serde_json::Value = serde_json::from_str(&sample("combat")).unwrap();
    forged["signature"] = serde_json::Value::from("00".repeat(32));
    let event_id = forged["event_id"].as_str().unwrap().to_owned();
    let body = forged.to_string();
    let (status, answer) = fixture
        .call_json(fixture.signed("POST", "/v1/events", body.as_bytes()))
        .await;
    assert_eq!(status, 202, "{answer}");
    run_intake(&fixture).await;

    let path = format!("/v1/rejections/{event_id}");
    let (status, answer) = fixture.call_json(fixture.signed("GET", &path, b"")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["gateway"], GATEWAY);
    assert_eq!(answer["event_id"], event_id.as_str());
    assert_eq!(answer["retained_days"], 30);
    let rows = answer["rejections"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{answer}");
    assert_eq!(rows[0]["reason"], "bad_signature");
    assert_eq!(rows[0]["count"], 1);
    assert_eq!(rows[0]["size"], body.len());
    assert!(
        !rows[0]["detail"].as_str().unwrap().is_empty(),
        "the advice travels with the row: {answer}"
    );

    // An id intake never refused: an empty list, not an error.
    let other = "01JD3Q7Z8X9Y0A1B2C3D4E5F6Z";
    let (status, answer) = fixture
        .call_json(fixture.signed("GET", &format!("/v1/rejections/{other}"), b""))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rejections"], serde_json::json!([]));
}

#[tokio::test]
async fn a_lookup_needs_a_valid_event_id_and_a_signature() {
    let fixture = fixture().await;
    let (status, answer) = fixture
        .call_json(fixture.signed("GET", "/v1/rejections/not-an-id", b""))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "bad_event_id");
    let unsigned = axum::http::Request::builder()
        .uri("/v1/rejections/01JD3Q7Z8X9Y0A1B2C3D4E5F6G")
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, _) = fixture.call_json(unsigned).await;
    assert_eq!(status, 401);
}
