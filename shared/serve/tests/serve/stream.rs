//! `GET /v1/feeds/{feed}/stream`: catch-up, live, resume, backpressure, caps and shutdown.

use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use worldfleet_domain::FeedId;
use worldfleet_domain::names::FEEDS_TABLE;
use worldfleet_ports::Item;
use worldfleet_serve::ServeConfig;
use worldfleet_tables::feed::trim_key;

use crate::common::{Fixture, fixture_with, pushing_fixture};

/// One parsed server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Parses complete events out of `buffer`, leaving an incomplete tail in it.
pub fn parse_events(buffer: &mut String) -> Vec<SseEvent> {
    let mut events = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let mut event = SseEvent {
            id: None,
            event: None,
            data: String::new(),
        };
        let mut any = false;
        for line in block.lines() {
            if let Some(value) = line.strip_prefix("id:") {
                event.id = Some(value.trim().to_owned());
                any = true;
            } else if let Some(value) = line.strip_prefix("event:") {
                event.event = Some(value.trim().to_owned());
                any = true;
            } else if let Some(value) = line.strip_prefix("data:") {
                event.data.push_str(value.trim_start());
                any = true;
            }
        }
        if any {
            events.push(event);
        }
    }
    events
}

/// Reads events from `body` until `count` arrived, the stream ended, or `wait` passed.
pub async fn read_events(body: &mut Body, count: usize, wait: Duration) -> (Vec<SseEvent>, bool) {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while events.len() < count {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return (events, false),
            Ok(None) => return (events, true),
            Ok(Some(frame)) => {
                if let Ok(data) = frame.unwrap().into_data() {
                    buffer.push_str(std::str::from_utf8(&data).unwrap());
                    events.extend(parse_events(&mut buffer));
                }
            }
        }
    }
    (events, false)
}

fn quick() -> ServeConfig {
    ServeConfig {
        poll_min: Duration::from_millis(10),
        poll_max: Duration::from_millis(40),
        ..ServeConfig::default()
    }
}

fn seqs(events: &[SseEvent]) -> Vec<u64> {
    events
        .iter()
        .filter(|event| event.event.is_none())
        .map(|event| {
            let entry: serde_json::Value = serde_json::from_str(&event.data).unwrap();
            let seq = entry["seq"].as_u64().unwrap();
            assert_eq!(event.id.as_deref(), Some(seq.to_string().as_str()));
            seq
        })
        .collect()
}

async fn open(fixture: &Fixture, uri: &str) -> Body {
    let response = fixture.call(fixture.signed("GET", uri, b"")).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response.into_body()
}

async fn wait_for_subscribers(fixture: &Fixture, count: u64) {
    for _ in 0..200 {
        if fixture.state.metrics().active_subscribers() == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{} subscribers, expected {count}",
        fixture.state.metrics().active_subscribers()
    );
}

#[tokio::test]
async fn with_push_a_page_write_reaches_the_stream_without_waiting_for_a_poll() {
    // Polls 30 s apart: only the push can deliver within the test's 5 s.
    let fixture = pushing_fixture(ServeConfig {
        poll_min: Duration::from_secs(30),
        poll_max: Duration::from_secs(30),
        ..ServeConfig::default()
    })
    .await;
    assert!(fixture.state.pushes());
    let mut body = open(&fixture, "/v1/feeds/player:p-1/stream").await;
    wait_for_subscribers(&fixture, 1).await;
    for round in 0..3_u64 {
        let seq = round + 1;
        fixture.write_page("player:p-1", seq, seq).await;
        let (events, _) = read_events(&mut body, 1, Duration::from_secs(5)).await;
        assert_eq!(seqs(&events), [seq], "pushed, not polled");
    }
}

#[tokio::test]
async fn catches_up_from_the_table_then_delivers_live() {
    let fixture = fixture_with(quick()).await;
    fixture.write_page("player:p-1", 1, 3).await;
    let mut body = open(&fixture, "/v1/feeds/player:p-1/stream?after=1").await;
    let (events, _) = read_events(&mut body, 2, Duration::from_secs(5)).await;
    assert_eq!(seqs(&events), [2, 3]);
    let entry: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(entry["text"], "entry number 2");
    fixture.write_page("player:p-1", 4, 5).await;
    let (events, _) = read_events(&mut body, 2, Duration::from_secs(5)).await;
    assert_eq!(seqs(&events), [4, 5], "live entries arrive in order");
    drop(body);
    wait_for_subscribers(&fixture, 0).await;
}

#[tokio::test]
async fn last_event_id_resumes_and_wins_over_after() {
    let fixture = fixture_with(quick()).await;
    fixture.write_page("player:p-1", 1, 6).await;
    let mut request = fixture.signed("GET", "/v1/feeds/player:p-1/stream?after=0", b"");
    request
        .headers_mut()
        .insert("last-event-id", "4".parse().unwrap());
    let mut body = fixture.call(request).await.into_body();
    let (events, _) = read_events(&mut body, 2, Duration::from_secs(5)).await;
    assert_eq!(seqs(&events), [5, 6]);

    let mut request = fixture.signed("GET", "/v1/feeds/player:p-1/stream", b"");
    request
        .headers_mut()
        .insert("last-event-id", "four".parse().unwrap());
    let (status, answer) = fixture.call_json(request).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"], "bad_parameter");
}

#[tokio::test]
async fn a_stream_behind_retention_is_410_and_a_bad_feed_400() {
    let fixture = fixture_with(quick()).await;
    fixture
        .table
        .put(
            FEEDS_TABLE,
            Item::new(trim_key(&FeedId::parse("player:p-1").unwrap()))
                .with("trimmed_through", 10_i64),
            None,
        )
        .await
        .unwrap();
    let (status, answer) = fixture
        .call_json(fixture.signed("GET", "/v1/feeds/player:p-1/stream?after=2", b""))
        .await;
    assert_eq!(status, 410, "{answer}");
    assert_eq!(answer["error"], "behind_retention");
    let (status, answer) = fixture
        .call_json(fixture.signed("GET", "/v1/feeds/guild:x/stream", b""))
        .await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("bad_feed")));
    assert_eq!(fixture.state.metrics().active_subscribers(), 0);
}

#[tokio::test]
async fn beyond_the_subscription_cap_a_new_stream_is_503_until_one_ends() {
    let fixture = fixture_with(ServeConfig {
        max_subscribers: 1,
        ..quick()
    })
    .await;
    let first = open(&fixture, "/v1/feeds/player:p-1/stream").await;
    let response = fixture
        .call(fixture.signed("GET", "/v1/feeds/player:p-2/stream", b""))
        .await;
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(answer["error"], "too_many_subscribers");
    drop(first);
    wait_for_subscribers(&fixture, 0).await;
    let _again = open(&fixture, "/v1/feeds/player:p-2/stream").await;
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_closed_with_its_resume_point() {
    let fixture = fixture_with(ServeConfig {
        subscriber_buffer: 2,
        subscriber_stall: Duration::from_millis(100),
        ..quick()
    })
    .await;
    fixture.write_page("player:p-1", 1, 10).await;
    let mut body = open(&fixture, "/v1/feeds/player:p-1/stream").await;
    // Not reading: the buffer fills, stays full past the stall, the producer gives up.
    wait_for_subscribers(&fixture, 0).await;
    let (events, ended) = read_events(&mut body, 100, Duration::from_secs(5)).await;
    assert!(ended, "the stream ends after the close event: {events:?}");
    assert_eq!(
        seqs(&events),
        [1, 2],
        "what was buffered is still delivered"
    );
    let last = events.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("closed"));
    let closed: serde_json::Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(closed["reason"], "behind");
    assert_eq!(closed["last_event_id"], 2);
    assert!(
        fixture
            .state
            .metrics()
            .render()
            .contains("worldfleet_serve_subscriptions_closed_total{reason=\"behind\"} 1")
    );
    // Resuming from the close event's id gets the rest.
    let mut request = fixture.signed("GET", "/v1/feeds/player:p-1/stream", b"");
    request
        .headers_mut()
        .insert("last-event-id", "2".parse().unwrap());
    let mut body = fixture.call(request).await.into_body();
    let (events, _) = read_events(&mut body, 8, Duration::from_secs(5)).await;
    assert_eq!(seqs(&events), (3..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn shutting_down_closes_streams_going_away_and_refuses_new_ones() {
    let fixture = fixture_with(quick()).await;
    fixture.write_page("player:p-1", 1, 1).await;
    let mut body = open(&fixture, "/v1/feeds/player:p-1/stream").await;
    let (events, _) = read_events(&mut body, 1, Duration::from_secs(5)).await;
    assert_eq!(seqs(&events), [1]);
    fixture.state.shut_down();
    let (events, ended) = read_events(&mut body, 10, Duration::from_secs(5)).await;
    assert!(ended);
    assert_eq!(events.len(), 1, "{events:?}");
    let closed: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(events[0].event.as_deref(), Some("closed"));
    assert_eq!(closed["reason"], "going_away");
    assert_eq!(closed["last_event_id"], 1);
    let (status, answer) = fixture
        .call_json(fixture.signed("GET", "/v1/feeds/player:p-1/stream", b""))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("going_away"))
    );
    let request = axum::http::Request::get("/ready")
        .body(Body::empty())
        .unwrap();
    assert_eq!(fixture.call_json(request).await.0, 503);
}
