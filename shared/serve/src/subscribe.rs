//! `GET /v1/subscribe`: one WebSocket carrying many feeds, each from its own resume point.
//!
//! A gateway serving thousands of players opens one socket and subscribes to each player's
//! feed on it. The upgrade request is signed like every `/v1` request. Frames are JSON text,
//! one object each.
//!
//! From the client:
//!
//! | frame | effect |
//! |---|---|
//! | `{"op":"subscribe","feed":F,"after":N}` | entries of `F` after `N` (0 when absent) |
//! | `{"op":"subscribe","feed":F,"reader":R}` | entries of `F` after reader `R`'s checkpoint |
//! | `{"op":"unsubscribe","feed":F}` | stop `F` |
//! | `{"op":"ack","feed":F,"reader":R,"seq":N}` | move `R`'s checkpoint of `F` forward to `N` |
//!
//! From the server: `{"type":"subscribed","feed":F,"after":N}`, then `{"type":"entry","feed":F,
//! "entry":{…}}` per entry (catch-up from the table, then live), `{"type":"acked","feed":F,
//! "reader":R,"seq":N,"moved":bool}`, `{"type":"unsubscribed","feed":F}`, `{"type":"closed",
//! "feed":F,"reason":…,"message":…,"last_event_id":N}` when one feed's subscription ends
//! (`behind`, `behind_retention`, `unavailable`; resubscribe after `last_event_id`),
//! `{"type":"error","code":…,"message":…}` for a frame that was refused (the socket stays
//! open), and `{"type":"going_away",…}` before the server closes the socket (close code 1001)
//! when it shuts down.
//!
//! Each feed runs the same producer as a Server-Sent Events stream ([`crate::stream`]): its
//! own bounded buffer, the subscription cap shared with SSE, and a `behind` close for a feed
//! whose entries the socket does not take for `subscriber_stall`. The socket has one bounded
//! outgoing queue; a client that stops reading fills it, and its feeds close as `behind` one by
//! one — distribute and every other subscriber carry on.

use std::collections::HashMap;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use worldfleet_domain::FeedEntry;
use worldfleet_domain::names::FEEDS_TABLE;
use worldfleet_tables::feed::checkpoint;

use crate::ServeState;
use crate::error::ApiError;
use crate::feeds::{move_checkpoint, parse_feed, parse_reader};
use crate::stream::{Closed, Subscription, open_subscription};

/// The largest frame a client may send.
pub const MAX_CLIENT_FRAME_BYTES: usize = 16 * 1024;

/// A frame from the client.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Subscribe {
        feed: String,
        after: Option<u64>,
        reader: Option<String>,
    },
    Unsubscribe {
        feed: String,
    },
    Ack {
        feed: String,
        reader: String,
        seq: u64,
    },
}

/// A frame to the client.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Subscribed {
        feed: String,
        after: u64,
    },
    Entry {
        feed: String,
        entry: FeedEntry,
    },
    Acked {
        feed: String,
        reader: String,
        seq: u64,
        moved: bool,
    },
    Unsubscribed {
        feed: String,
    },
    Closed {
        feed: String,
        #[serde(flatten)]
        closed: Closed,
    },
    Error {
        code: &'static str,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        feed: Option<String>,
    },
    GoingAway {
        message: String,
    },
}

impl ServerFrame {
    fn error(error: ApiError, feed: Option<String>) -> Self {
        Self::Error {
            code: error.code,
            message: error.message,
            feed,
        }
    }
}

/// The handler: refuses while shutting down, else upgrades.
pub async fn subscribe(
    State(state): State<ServeState>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::unavailable(
            "going_away",
            "the server is shutting down; reconnect to another instance",
            5,
        ));
    }
    Ok(upgrade
        .max_message_size(MAX_CLIENT_FRAME_BYTES)
        .max_frame_size(MAX_CLIENT_FRAME_BYTES)
        .on_upgrade(move |socket| session(state, socket)))
}

/// One socket: reads client frames, runs a forwarder per subscribed feed, writes frames.
async fn session(state: ServeState, socket: WebSocket) {
    let (mut sink, mut incoming) = socket.split();
    let capacity = state.inner.config.subscriber_buffer.max(1);
    let (outgoing, mut to_send) = mpsc::channel::<ServerFrame>(capacity);
    // Pings every keep-alive interval keep an otherwise quiet socket inside the idle timeout
    // (and show the client the server is alive).
    let keep_alive = state.inner.config.keep_alive;
    let writer = tokio::spawn(async move {
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
        loop {
            let frame = tokio::select! {
                frame = to_send.recv() => match frame {
                    Some(frame) => frame,
                    None => break,
                },
                _ = ping.tick() => {
                    if sink.send(Message::Ping(axum::body::Bytes::new())).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let going_away = matches!(frame, ServerFrame::GoingAway { .. });
            let text = serde_json::to_string(&frame).unwrap_or_else(|_| "{}".into());
            if sink
                .send(Message::Text(Utf8Bytes::from(text)))
                .await
                .is_err()
            {
                return;
            }
            if going_away {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: close_code::AWAY,
                        reason: Utf8Bytes::from_static("server shutting down"),
                    })))
                    .await;
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut feeds: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut shutdown = state.inner.shutdown.subscribe();
    let going_away = loop {
        tokio::select! {
            biased;
            () = shutting_down(&mut shutdown) => break true,
            message = incoming.next() => {
                let Some(Ok(message)) = message else { break false };
                let text = match message {
                    Message::Text(text) => text,
                    Message::Binary(_) => {
                        let refused = ApiError::bad_request(
                            "bad_frame",
                            "frames are JSON text, not binary",
                        );
                        let _ = outgoing.send(ServerFrame::error(refused, None)).await;
                        continue;
                    }
                    Message::Close(_) => break false,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                feeds.retain(|_, forwarder| !forwarder.is_finished());
                if let Some(reply) = handle(&state, &text, &mut feeds, &outgoing).await {
                    let _ = outgoing.send(reply).await;
                }
            }
        }
    };
    for forwarder in feeds.into_values() {
        forwarder.abort();
    }
    if going_away {
        let _ = outgoing
            .send(ServerFrame::GoingAway {
                message: "the server is shutting down; reconnect and resubscribe after the last \
                          sequence number of each feed"
                    .into(),
            })
            .await;
    }
    drop(outgoing);
    let _ = writer.await;
}

/// Acts on one client frame; the reply, if the frame gets one at once.
async fn handle(
    state: &ServeState,
    text: &str,
    feeds: &mut HashMap<String, JoinHandle<()>>,
    outgoing: &mpsc::Sender<ServerFrame>,
) -> Option<ServerFrame> {
    let frame: ClientFrame = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(error) => {
            let refused = ApiError::bad_request(
                "bad_frame",
                format!(
                    "the frame is not a subscribe, unsubscribe or ack object ({error}); see the \
                     worldfleet-serve README"
                ),
            );
            return Some(ServerFrame::error(refused, None));
        }
    };
    match frame {
        ClientFrame::Subscribe {
            feed,
            after,
            reader,
        } => match start(state, &feed, after, reader.as_deref(), feeds, outgoing).await {
            Ok(()) => None,
            Err(error) => Some(ServerFrame::error(error, Some(feed))),
        },
        ClientFrame::Unsubscribe { feed } => {
            let parsed = match parse_feed(&feed) {
                Ok(parsed) => parsed.to_string(),
                Err(error) => return Some(ServerFrame::error(error, Some(feed))),
            };
            match feeds.remove(&parsed) {
                Some(forwarder) => {
                    forwarder.abort();
                    Some(ServerFrame::Unsubscribed { feed: parsed })
                }
                None => Some(ServerFrame::error(
                    ApiError::bad_request(
                        "not_subscribed",
                        format!("this socket is not subscribed to {parsed}"),
                    ),
                    Some(parsed),
                )),
            }
        }
        ClientFrame::Ack { feed, reader, seq } => {
            let acked = async {
                let parsed = parse_feed(&feed)?;
                let reader = parse_reader(&reader)?;
                let moved = move_checkpoint(state, &parsed, reader, seq).await?;
                Ok::<_, ApiError>(ServerFrame::Acked {
                    feed: parsed.to_string(),
                    reader: reader.to_owned(),
                    seq,
                    moved,
                })
            };
            Some(
                acked
                    .await
                    .unwrap_or_else(|error| ServerFrame::error(error, Some(feed))),
            )
        }
    }
}

/// Subscribes the socket to `raw_feed`: the first page now, then a producer and a forwarder.
async fn start(
    state: &ServeState,
    raw_feed: &str,
    after: Option<u64>,
    reader: Option<&str>,
    feeds: &mut HashMap<String, JoinHandle<()>>,
    outgoing: &mpsc::Sender<ServerFrame>,
) -> Result<(), ApiError> {
    let feed = parse_feed(raw_feed)?;
    let name = feed.to_string();
    if feeds.contains_key(&name) {
        return Err(ApiError::bad_request(
            "already_subscribed",
            format!("this socket is already subscribed to {name}; unsubscribe first to restart it"),
        ));
    }
    let table = state.inner.table.as_ref();
    let after = match (after, reader) {
        (Some(after), _) => after,
        (None, Some(reader)) => checkpoint(table, FEEDS_TABLE, &feed, parse_reader(reader)?)
            .await
            .map_err(|error| ApiError::from_feed(&error))?,
        (None, None) => 0,
    };
    let Subscription {
        entries: mut entries_rx,
        closed: closed_rx,
    } = open_subscription(state, feed, after).await?;
    // `subscribed` goes out before the forwarder can queue any entry of this feed.
    outgoing
        .send(ServerFrame::Subscribed {
            feed: name.clone(),
            after,
        })
        .await
        .map_err(|_| ApiError::bad_request("gone", "the socket closed"))?;
    let outgoing = outgoing.clone();
    let feed_name = name.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(entry) = entries_rx.recv().await {
            let frame = ServerFrame::Entry {
                feed: feed_name.clone(),
                entry,
            };
            if outgoing.send(frame).await.is_err() {
                return;
            }
        }
        if let Ok(closed) = closed_rx.await {
            let _ = outgoing
                .send(ServerFrame::Closed {
                    feed: feed_name,
                    closed,
                })
                .await;
        }
    });
    feeds.insert(name, forwarder);
    Ok(())
}

/// Completes once the server starts shutting down (the guard is not held across awaits).
async fn shutting_down(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}
