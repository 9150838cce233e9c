//! `GET /v1/subscribe`: one WebSocket carrying many feeds, each from its own resume point, with
//! acks that commit reader checkpoints; refused frames answered on the socket; a going-away
//! close on shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use worldfleet_ports::Clock;
use worldfleet_serve::{ServeConfig, sign_request};

use crate::common::{Fixture, GATEWAY, key, pushing_fixture};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Serves the fixture on a loopback socket until the returned sender fires.
async fn serving(fixture: &Fixture) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(worldfleet_serve::serve(
        listener,
        fixture.state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    (address, stop)
}

async fn connect(fixture: &Fixture, address: SocketAddr) -> Socket {
    let mut request = format!("ws://{address}/v1/subscribe")
        .into_client_request()
        .unwrap();
    let now = fixture.clock.now_ms();
    let headers = request.headers_mut();
    headers.insert("x-worldfleet-gateway", GATEWAY.parse().unwrap());
    headers.insert("x-worldfleet-timestamp", now.to_string().parse().unwrap());
    headers.insert(
        "x-worldfleet-signature",
        sign_request(&key(), "GET", "/v1/subscribe", now, b"")
            .parse()
            .unwrap(),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 101);
    socket
}

async fn send(socket: &mut Socket, frame: Value) {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON frame (pings skipped), failing after 5 s.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame within 5 s")
            .expect("the socket is open")
            .unwrap();
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Frames until `count` entries arrived: (feed, seq) of each entry, and the other frames.
async fn entries(socket: &mut Socket, count: usize) -> (Vec<(String, u64)>, Vec<Value>) {
    let mut entries = Vec::new();
    let mut others = Vec::new();
    while entries.len() < count {
        let frame = next(socket).await;
        if frame["type"] == "entry" {
            entries.push((
                frame["feed"].as_str().unwrap().to_owned(),
                frame["entry"]["seq"].as_u64().unwrap(),
            ));
        } else {
            others.push(frame);
        }
    }
    (entries, others)
}

fn of(entries: &[(String, u64)], feed: &str) -> Vec<u64> {
    entries
        .iter()
        .filter(|(name, _)| name == feed)
        .map(|(_, seq)| *seq)
        .collect()
}

fn slow_polls() -> ServeConfig {
    // Polls 30 s apart: live entries within the test's 5 s come from the push.
    ServeConfig {
        poll_min: Duration::from_secs(30),
        poll_max: Duration::from_secs(30),
        ..ServeConfig::default()
    }
}

#[tokio::test]
async fn one_socket_carries_many_feeds_from_their_own_resume_points_and_acks_commit() {
    let fixture = pushing_fixture(slow_polls()).await;
    fixture.write_page("player:p-1", 1, 3).await;
    fixture.write_page("player:p-2", 1, 2).await;
    let (address, _stop) = serving(&fixture).await;
    let mut socket = connect(&fixture, address).await;

    send(
        &mut socket,
        json!({"op": "subscribe", "feed": "player:p-1", "after": 1}),
    )
    .await;
    send(
        &mut socket,
        json!({"op": "subscribe", "feed": "player:p-2"}),
    )
    .await;
    let (caught_up, others) = entries(&mut socket, 4).await;
    assert_eq!(of(&caught_up, "player:p-1"), [2, 3]);
    assert_eq!(of(&caught_up, "player:p-2"), [1, 2]);
    let subscribed: Vec<&Value> = others
        .iter()
        .filter(|frame| frame["type"] == "subscribed")
        .collect();
    assert_eq!(subscribed.len(), 2, "{others:?}");

    // Live, pushed.
    fixture.write_page("player:p-2", 3, 3).await;
    let (live, _) = entries(&mut socket, 1).await;
    assert_eq!(live, [("player:p-2".to_owned(), 3)]);

    // An ack commits the reader's checkpoint, visible over HTTP.
    send(
        &mut socket,
        json!({"op": "ack", "feed": "player:p-1", "reader": "gw-mobile", "seq": 3}),
    )
    .await;
    let acked = next(&mut socket).await;
    assert_eq!(acked["type"], "acked", "{acked}");
    assert_eq!(acked["moved"], true);
    let (status, reader) = fixture
        .call_json(fixture.signed("GET", "/v1/feeds/player:p-1/readers/gw-mobile", b""))
        .await;
    assert_eq!(status, 200);
    assert_eq!(reader["after"], 3);

    // Unsubscribe, then resume from the reader's checkpoint.
    send(
        &mut socket,
        json!({"op": "unsubscribe", "feed": "player:p-1"}),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "unsubscribed");
    send(
        &mut socket,
        json!({"op": "subscribe", "feed": "player:p-1", "reader": "gw-mobile"}),
    )
    .await;
    let resumed = next(&mut socket).await;
    assert_eq!(resumed["type"], "subscribed");
    assert_eq!(resumed["after"], 3);
    fixture.write_page("player:p-1", 4, 4).await;
    let (live, _) = entries(&mut socket, 1).await;
    assert_eq!(live, [("player:p-1".to_owned(), 4)]);
}

#[tokio::test]
async fn refused_frames_are_answered_with_a_code_and_the_socket_stays_open() {
    let fixture = pushing_fixture(slow_polls()).await;
    fixture.write_page("player:p-1", 1, 2).await;
    let (address, _stop) = serving(&fixture).await;
    let mut socket = connect(&fixture, address).await;
    let cases = [
        (Message::Text("not json".into()), "bad_frame"),
        (
            Message::Text(json!({"op": "dance"}).to_string().into()),
            "bad_frame",
        ),
        (
            Message::Text(
                json!({"op": "subscribe", "feed": "guild:x"})
                    .to_string()
                    .into(),
            ),
            "bad_feed",
        ),
        (
            Message::Text(
                json!({"op": "subscribe", "feed": "player:p-1", "reader": "a b"})
                    .to_string()
                    .into(),
            ),
            "bad_reader",
        ),
        (
            Message::Text(
                json!({"op": "unsubscribe", "feed": "player:p-9"})
                    .to_string()
                    .into(),
            ),
            "not_subscribed",
        ),
        (
            Message::Text(
                json!({"op": "ack", "feed": "player:p-1", "reader": "r", "seq": 99})
                    .to_string()
                    .into(),
            ),
            "checkpoint_past_head",
        ),
        (Message::Binary(vec![1, 2, 3].into()), "bad_frame"),
    ];
    for (message, code) in cases {
        socket.send(message).await.unwrap();
        let answer = next(&mut socket).await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["code"], code, "{answer}");
        assert!(!answer["message"].as_str().unwrap().is_empty());
    }
    // A checkpoint never moves backwards.
    send(
        &mut socket,
        json!({"op": "ack", "feed": "player:p-1", "reader": "r", "seq": 2}),
    )
    .await;
    assert_eq!(next(&mut socket).await["moved"], true);
    send(
        &mut socket,
        json!({"op": "ack", "feed": "player:p-1", "reader": "r", "seq": 1}),
    )
    .await;
    assert_eq!(next(&mut socket).await["code"], "checkpoint_backwards");
    // Still open and working; a second subscription to the same feed is refused.
    send(
        &mut socket,
        json!({"op": "subscribe", "feed": "player:p-1"}),
    )
    .await;
    let (caught_up, _) = entries(&mut socket, 2).await;
    assert_eq!(of(&caught_up, "player:p-1"), [1, 2]);
    send(
        &mut socket,
        json!({"op": "subscribe", "feed": "player:p-1"}),
    )
    .await;
    assert_eq!(next(&mut socket).await["code"], "already_subscribed");
}

#[tokio::test]
async fn subscriptions_share_the_servers_cap() {
    let fixture = pushing_fixture(ServeConfig {
        max_subscribers: 1,
        ..slow_polls()
    })
    .await;
    let (address, _stop) = serving(&fixture).await;
    let mut socket = connect(&fixture, address).await;
    send(
        &mut socket,
        json!({"op": "subscribe", "feed": "player:p-1"}),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "subscribed");
    send(
        &mut socket,
        json!({"op": "subscribe", "feed": "player:p-2"}),
    )
    .await;
    let refused = next(&mut socket).await;
    assert_eq!(refused["code"], "too_many_subscribers", "{refused}");
    assert_eq!(refused["feed"], "player:p-2");
}

#[tokio::test]
async fn shutdown_sends_going_away_then_closes_with_1001() {
    let fixture = pushing_fixture(slow_polls()).await;
    let (address, stop) = serving(&fixture).await;
    let mut socket = connect(&fixture, address).await;
    send(
        &mut socket,
        json!({"op": "subscribe", "feed": "player:p-1"}),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "subscribed");
    stop.send(()).unwrap();
    assert_eq!(next(&mut socket).await["type"], "going_away");
    let close = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("a close frame")
        .expect("open")
        .unwrap();
    match close {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unsigned_upgrade_is_refused_with_401() {
    let fixture = pushing_fixture(slow_polls()).await;
    let (address, _stop) = serving(&fixture).await;
    let request = format!("ws://{address}/v1/subscribe")
        .into_client_request()
        .unwrap();
    match tokio_tungstenite::connect_async(request).await {
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
}
