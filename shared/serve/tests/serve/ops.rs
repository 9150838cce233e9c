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

/// Writes one signed HTTP/1.1 request on a new connection and returns the stream.
async fn send(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    now: u64,
) -> TcpStream {
    let signature = sign_request(&key(), method, path, now, body);
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nx-worldfleet-gateway: {GATEWAY}\r\n\
         x-worldfleet-timestamp: {now}\r\nx-worldfleet-signature: {signature}\r\n\
         connection: close\r\n\r\n",
        body.len()
    );
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
