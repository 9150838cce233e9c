//! `/metrics`, and the server on a real socket (port 0): requests over TCP, graceful shutdown
//! that closes live streams with `going_away` and returns.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use worldfleet_ports::Clock;
use worldfleet_serve::sign_request;

use crate::common::{GATEWAY, fixture, key, sample};

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_envelopes_by_outcome() {
    let fixture = fixture().await;
    let body = format!("[{}, 7]", sample("dialogue"));
    fixture
        .call(fixture.signed("POST", "/v1/events", body.as_bytes()))
        .await;
    fixture
        .call(fixture.signed("GET", "/v1/feeds/player:p-1", b""))
        .await;
    fixture
        .call(fixture.signed("GET", "/v1/feeds/player:p-2", b""))
        .await;
    let mut forged = fixture.signed("GET", "/v1/feeds/player:p-1", b"");
    forged
        .headers_mut()
        .insert("x-worldfleet-signature", "00".parse().unwrap());
    fixture.call(forged).await;
    let response = fixture
        .call(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for line in [
        "worldfleet_serve_requests_total{method=\"POST\",route=\"/v1/events\",status=\"202\"} 1",
        "worldfleet_serve_requests_total{method=\"GET\",route=\"/v1/feeds/{feed}\",status=\"200\"} 2",
        "worldfleet_serve_requests_total{method=\"GET\",route=\"/v1/feeds/{feed}\",status=\"401\"} 1",
        "worldfleet_serve_envelopes_total{outcome=\"queued\"} 1",
        "worldfleet_serve_envelopes_refused_total{reason=\"malformed\"} 1",
        "worldfleet_serve_subscribers 0",
        "worldfleet_queue_depth{queue=\"intake.fifo\",state=\"visible\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

/// The head of an HTTP/1.1 request for `body`, signed by the sample gateway at `now`.
fn signed_head(method: &str, path: &str, body: &[u8], now: u64) -> String {
    let signature = sign_request(&key(), method, path, now, body);
    format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nx-worldfleet-gateway: {GATEWAY}\r\n\
         x-worldfleet-timestamp: {now}\r\nx-worldfleet-signature: {signature}\r\n\
         connection: close\r\n\r\n",
        body.len()
    )
}

/// Writes one signed HTTP/1.1 request on a new connection and returns the stream.
async fn send(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    now: u64,
) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = signed_head(method, path, body, now);
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream
}

async fn read_until(stream: &mut TcpStream, needle: &str, wait: Duration) -> String {
    let mut text = String::new();
    let mut buffer = [0_u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    while !text.contains(needle) {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(read)) => text.push_str(&String::from_utf8_lossy(&buffer[..read])),
            Ok(Err(error)) => panic!("read: {error}"),
        }
    }
    text
}

#[tokio::test]
async fn on_a_socket_it_serves_and_shuts_down_gracefully_closing_streams() {
    let fixture = fixture().await;
    fixture.write_page("player:p-1", 1, 2).await;
    let (address, stop, server) = listen(&fixture).await;
    let now = fixture.clock.now_ms();

    let body = sample("action");
    let mut post = send(address, "POST", "/v1/events", body.as_bytes(), now).await;
    let answer = read_until(&mut post, "queued", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert_eq!(fixture.intake_messages().await.len(), 1);

    let mut live = send(address, "GET", "/v1/feeds/player:p-1/stream", b"", now).await;
    let opened = read_until(&mut live, "id: 2", Duration::from_secs(5)).await;
    assert!(opened.starts_with("HTTP/1.1 200"), "{opened}");
    assert!(opened.contains("text/event-stream"), "{opened}");

    // An empty feed's stream answers at once (status and headers before any entry).
    let mut empty = send(address, "GET", "/v1/feeds/player:nobody/stream", b"", now).await;
    let opened = read_until(&mut empty, "subscribed", Duration::from_secs(2)).await;
    assert!(opened.starts_with("HTTP/1.1 200"), "{opened}");
    assert!(opened.contains("retry: 1000"), "{opened}");

    stop.send(()).unwrap();
    let closing = read_until(&mut live, "going_away", Duration::from_secs(5)).await;
    assert!(closing.contains("event: closed"), "{closing}");
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after shutdown")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

/// Serves `fixture`'s state on port 0; returns the address and a stop switch.
async fn listen(
    fixture: &crate::common::Fixture,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<worldfleet_serve::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(worldfleet_serve::serve(
        listener,
        fixture.state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    (address, stop, server)
}

/// Stops the server [`listen`] started and waits (up to 15 s) for it to return.
async fn shut_down(
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<worldfleet_serve::Result<()>>,
) {
    stop.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
}

/// Reads until the peer closes (or `wait` passes); true when it closed.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buffer = [0_u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_connection_over_the_cap_is_answered_503_and_closed() {
    let fixture = crate::common::fixture_with(worldfleet_serve::ServeConfig {
        max_connections: 2,
        ..worldfleet_serve::ServeConfig::default()
    })
    .await;
    let (address, stop, server) = listen(&fixture).await;
    let first = TcpStream::connect(address).await.unwrap();
    let _second = TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(address).await.unwrap();
    let refused = read_until(&mut third, "}", Duration::from_secs(5)).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");
    assert!(closed_within(&mut third, Duration::from_secs(2)).await);

    // A closed connection frees its place.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = send(
        address,
        "GET",
        "/v1/feeds/player:p-1",
        b"",
        fixture.clock.now_ms(),
    )
    .await;
    let answer = read_until(&mut fourth, "entries", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let text = fixture.state.metrics().render();
    assert!(
        text.contains("worldfleet_serve_connections_refused_total 1"),
        "{text}"
    );
    shut_down(stop, server).await;
}

#[tokio::test]
async fn a_client_that_trickles_its_request_head_is_disconnected() {
    let fixture = crate::common::fixture_with(worldfleet_serve::ServeConfig {
        header_timeout: Duration::from_secs(1),
        ..worldfleet_serve::ServeConfig::default()
    })
    .await;
    let (address, stop, server) = listen(&fixture).await;
    let mut slow = TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)).await,
        "a head never finished must not hold the connection"
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
    // An idle connection that never sends anything is closed the same way.
    let mut silent = TcpStream::connect(address).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    shut_down(stop, server).await;
}

#[tokio::test]
async fn a_stalled_body_is_cut_by_the_idle_timeout_but_a_live_stream_is_not() {
    let fixture = crate::common::fixture_with(worldfleet_serve::ServeConfig {
        idle_timeout: Duration::from_secs(2),
        keep_alive: Duration::from_secs(1),
        ..worldfleet_serve::ServeConfig::default()
    })
    .await;
    fixture.write_page("player:p-1", 1, 1).await;
    let (address, stop, server) = listen(&fixture).await;
    let now = fixture.clock.now_ms();

    let mut live = send(address, "GET", "/v1/feeds/player:p-1/stream", b"", now).await;
    let opened = read_until(&mut live, "id: 1", Duration::from_secs(5)).await;
    assert!(opened.starts_with("HTTP/1.1 200"), "{opened}");

    let body = sample("action");
    let mut stalled = TcpStream::connect(address).await.unwrap();
    let head = signed_head("POST", "/v1/events", body.as_bytes(), now);
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&body.as_bytes()[..10]).await.unwrap();
    assert!(
        closed_within(&mut stalled, Duration::from_secs(6)).await,
        "a body that stops arriving must not hold the connection"
    );
    assert!(fixture.intake_messages().await.is_empty());

    // The stream, idle but for its keep-alive comments, is still open after twice the timeout.
    let more = read_until(&mut live, "never-sent", Duration::from_secs(4)).await;
    assert!(more.contains(':'), "keep-alives expected, got {more:?}");
    fixture.write_page("player:p-1", 2, 2).await;
    let next = read_until(&mut live, "id: 2", Duration::from_secs(5)).await;
    assert!(next.contains("id: 2"), "{next}");
    // Both entries were timed into the subscriber-lag histogram as they entered the buffer.
    let text = fixture.state.metrics().render();
    assert!(
        text.contains("worldfleet_serve_subscriber_lag_seconds_count 2"),
        "{text}"
    );
    shut_down(stop, server).await;
}

#[tokio::test]
async fn a_request_head_over_the_limit_gets_431() {
    let fixture = fixture().await;
    let mut request = fixture.signed("GET", "/v1/feeds/player:p-1", b"");
    request
        .headers_mut()
        .insert("x-padding", "a".repeat(20_000).parse().unwrap());
    let response = fixture.call(request).await;
    assert_eq!(response.status().as_u16(), 431);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "headers_too_large");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("WORLDFLEET_SERVE_MAX_HEADER_BYTES")
    );
}
