//! `GET /v1/feeds/{feed}/stream`: a feed as Server-Sent Events, catch-up then live.
//!
//! The stream opens with a comment and `retry: 1000`, then starts after the sequence number in the `Last-Event-ID` header (what a browser's
//! `EventSource` sends when it reconnects), else after `?after=N`, else after 0. Every entry is
//! one event with `id: <seq>` and the entry as JSON in `data:` (the default `message` event
//! type, so `EventSource.onmessage` sees it). Catch-up reads the table page by page with
//! distribute's `read_feed`; a read behind retention answers 410 before the stream starts.
//!
//! **Live delivery is pushed in one process and polled otherwise.** When the server shares its
//! table port with distribute (`worldfleet serve` embedded), a page write wakes the feed's
//! subscribers at once ([`crate::push`]). Underneath, and alone over DynamoDB, the producer
//! polls the feeds table through the table port: after a read that found entries the next read
//! comes after `poll_min` (50 ms); while the feed is quiet the interval doubles up to
//! `poll_max` (1 s), so an idle subscriber costs about one read a second. A failed read is
//! retried on the same backoff; five in a row close the stream.
//!
//! Each subscriber has its own producer task and a bounded buffer (`subscriber_buffer`
//! entries). A subscriber that does not read keeps its buffer full; once the buffer has stayed
//! full for `subscriber_stall` the producer stops, and after the entries already buffered the
//! client gets a last event
//!
//! ```text
//! event: closed
//! data: {"reason":"behind","message":"…","last_event_id":N}
//! ```
//!
//! and the stream ends; the client resumes with `Last-Event-ID: N`. Reasons: `behind`,
//! `going_away` (the server is shutting down), `behind_retention` (prune trimmed entries the
//! subscriber had not read yet), `unavailable` (the store kept failing). A slow subscriber
//! never slows distribute or any other subscriber: producers only read. The number of live
//! subscriptions is capped (`max_subscribers`); beyond it a new one is answered 503. A client
//! that stops reading entirely may hold its TCP connection until the OS gives up on it, but
//! not a subscription slot: the slot is released when the producer stops.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use futures::StreamExt;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};
use worldfleet_domain::names::FEEDS_TABLE;
use worldfleet_domain::{FeedEntry, FeedId};
use worldfleet_tables::{Error as FeedError, read_feed};

use crate::ServeState;
use crate::error::ApiError;
use crate::feeds::{number_parameter, parse_feed, query_map};

/// The header a reconnecting SSE client sends with the last id it saw.
pub const LAST_EVENT_ID_HEADER: &str = "last-event-id";
/// Failed reads in a row after which a stream is closed as `unavailable`.
const MAX_READ_FAILURES: u32 = 5;

/// The data of the final `event: closed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Closed {
    /// `behind`, `going_away`, `behind_retention` or `unavailable`.
    pub reason: &'static str,
    /// What happened and what to do.
    pub message: String,
    /// The last sequence number sent before this event: resume after it.
    pub last_event_id: u64,
}

enum Delivery {
    Delivered,
    Closed(Closed),
    ClientGone,
}

/// The handler.
pub async fn stream_feed(
    State(state): State<ServeState>,
    Path(raw_feed): Path<String>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let feed = parse_feed(&raw_feed)?;
    let parameters = query_map(query)?;
    let after = match headers.get(LAST_EVENT_ID_HEADER) {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_parameter",
                    "Last-Event-ID must be the sequence number of the last entry seen",
                )
            })?,
        None => number_parameter(&parameters, "after")?.unwrap_or(0),
    };
    if state.is_shutting_down() {
        return Err(ApiError::unavailable(
            "going_away",
            "the server is shutting down; reconnect to another instance",
            5,
        ));
    }
    let feed_name = feed.to_string();
    let keep_alive = KeepAlive::new().interval(state.inner.config.keep_alive);
    let subscription = open_subscription(&state, feed, after).await?;
    // A first frame at once, so the status and headers reach the client before any entry
    // (hyper sends the head with the first body frame); `retry` sets EventSource's reconnect
    // delay.
    let opening = Event::default()
        .comment(format!("subscribed to {feed_name} after {after}"))
        .retry(Duration::from_secs(1));
    let stream = futures::stream::once(async move { Ok(opening) })
        .chain(events(subscription.entries, subscription.closed));
    let mut response = Sse::new(stream).keep_alive(keep_alive).into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// A live subscription to one feed: its producer runs; entries arrive in order on `entries`,
/// and when it ends, why on `closed` (nothing there when the client went away).
pub(crate) struct Subscription {
    pub entries: mpsc::Receiver<FeedEntry>,
    pub closed: oneshot::Receiver<Closed>,
}

/// Opens a subscription to `feed` after `after` (an SSE stream, or one feed of a WebSocket):
/// takes a slot under the subscription cap (503 `too_many_subscribers` without one), reads the
/// first page (410 behind retention) and starts the producer. Dropping the receivers ends it.
pub(crate) async fn open_subscription(
    state: &ServeState,
    feed: FeedId,
    after: u64,
) -> Result<Subscription, ApiError> {
    let Ok(permit) = state.inner.subscriptions.clone().try_acquire_owned() else {
        return Err(ApiError::unavailable(
            "too_many_subscribers",
            format!(
                "this server already carries {} live subscriptions, its limit; retry later or \
                 elsewhere",
                state.inner.config.max_subscribers
            ),
            5,
        ));
    };
    let signal = state.listen(&feed.to_string());
    let first = read_feed(
        state.inner.table.as_ref(),
        FEEDS_TABLE,
        &feed,
        after,
        state.inner.config.feed_limit,
        state.inner.clock.now_ms(),
    )
    .await
    .map_err(|error| ApiError::from_feed(&error))?;
    let (entries, entries_rx) = mpsc::channel(state.inner.config.subscriber_buffer.max(1));
    let (closed, closed_rx) = oneshot::channel();
    state.inner.metrics.subscriber_opened();
    tracing::debug!(feed = %feed, after, "subscription opened");
    tokio::spawn(produce(
        state.clone(),
        feed,
        after,
        first.entries,
        entries,
        closed,
        permit,
        signal,
    ));
    Ok(Subscription {
        entries: entries_rx,
        closed: closed_rx,
    })
}

fn entry_event(entry: &FeedEntry) -> Event {
    Event::default()
        .id(entry.seq.to_string())
        .data(serde_json::to_string(entry).unwrap_or_else(|_| "{}".into()))
}

fn closed_event(closed: &Closed) -> Event {
    Event::default()
        .event("closed")
        .data(serde_json::to_string(closed).unwrap_or_else(|_| "{}".into()))
}

/// The buffered entries, then the close event if the producer sent one.
fn events(
    entries: mpsc::Receiver<FeedEntry>,
    closed: oneshot::Receiver<Closed>,
) -> impl futures::Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(Some((entries, closed)), |open| async move {
        let (mut entries, closed) = open?;
        match entries.recv().await {
            Some(entry) => Some((Ok(entry_event(&entry)), Some((entries, closed)))),
            None => match closed.await {
                Ok(closed) => Some((Ok(closed_event(&closed)), None)),
                Err(_) => None,
            },
        }
    })
}

/// Sends `pending` into the buffer, waiting at most `stall` for room for each entry.
async fn deliver(
    state: &ServeState,
    pending: Vec<FeedEntry>,
    entries: &mpsc::Sender<FeedEntry>,
    stall: Duration,
    shutdown: &mut watch::Receiver<bool>,
    after: &mut u64,
) -> Delivery {
    for entry in pending {
        let seq = entry.seq;
        let accepted_at_ms = entry.accepted_at_ms;
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|down| *down) => return Delivery::Closed(going_away(*after)),
            sent = tokio::time::timeout(stall, entries.send(entry)) => match sent {
                Ok(Ok(())) => {
                    *after = seq;
                    let now_ms = state.inner.clock.now_ms();
                    state
                        .inner
                        .metrics
                        .entry_to_subscriber(now_ms.saturating_sub(accepted_at_ms));
                }
                Ok(Err(_)) => return Delivery::ClientGone,
                Err(_) => {
                    return Delivery::Closed(Closed {
                        reason: "behind",
                        message: format!(
                            "the subscriber did not read for {} ms with its buffer full; \
                             reconnect with Last-Event-ID: {after}",
                            stall.as_millis()
                        ),
                        last_event_id: *after,
                    });
                }
            },
        }
    }
    Delivery::Delivered
}

fn going_away(after: u64) -> Closed {
    Closed {
        reason: "going_away",
        message: format!("the server is shutting down; reconnect with Last-Event-ID: {after}"),
        last_event_id: after,
    }
}

/// One subscriber's producer (an SSE stream's, or one feed of a WebSocket): delivers `first`,
/// then reads the feed whenever `signal` says a page was written or the poll interval passes,
/// until the client goes, the buffer stays full, the server shuts down or the store keeps
/// failing.
#[allow(clippy::too_many_arguments)]
async fn produce(
    state: ServeState,
    feed: FeedId,
    mut after: u64,
    first: Vec<FeedEntry>,
    entries: mpsc::Sender<FeedEntry>,
    closed: oneshot::Sender<Closed>,
    _permit: OwnedSemaphorePermit,
    mut signal: Option<watch::Receiver<u64>>,
) {
    let config = state.inner.config.clone();
    let mut shutdown = state.inner.shutdown.subscribe();
    let mut pending = first;
    let mut interval = config.poll_min;
    let mut failures = 0;
    let outcome = loop {
        let full_page = pending.len() >= config.feed_limit;
        let found = !pending.is_empty();
        match deliver(
            &state,
            std::mem::take(&mut pending),
            &entries,
            config.subscriber_stall,
            &mut shutdown,
            &mut after,
        )
        .await
        {
            Delivery::Delivered => {}
            Delivery::Closed(closed) => break Some(closed),
            Delivery::ClientGone => break None,
        }
        if !full_page {
            // Caught up: wait before the next read, longer while the feed stays quiet.
            interval = if found {
                config.poll_min
            } else {
                (interval * 2).min(config.poll_max)
            };
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|down| *down) => break Some(going_away(after)),
                () = entries.closed() => break None,
                () = written(&mut signal) => interval = config.poll_min,
                () = tokio::time::sleep(interval) => {}
            }
        }
        match read_feed(
            state.inner.table.as_ref(),
            FEEDS_TABLE,
            &feed,
            after,
            config.feed_limit,
            state.inner.clock.now_ms(),
        )
        .await
        {
            Ok(read) => {
                failures = 0;
                pending = read.entries;
            }
            Err(error @ FeedError::BehindRetention { .. }) => {
                break Some(Closed {
                    reason: "behind_retention",
                    message: error.to_string(),
                    last_event_id: after,
                });
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(feed = %feed, %error, failures, "subscription read failed");
                if failures >= MAX_READ_FAILURES {
                    break Some(Closed {
                        reason: "unavailable",
                        message: format!(
                            "the feed could not be read {failures} times in a row; reconnect \
                             later with Last-Event-ID: {after}"
                        ),
                        last_event_id: after,
                    });
                }
                interval = (interval * 2).min(config.poll_max);
            }
        }
    };
    let reason = outcome
        .as_ref()
        .map_or("client_gone", |closed| closed.reason);
    tracing::debug!(feed = %feed, after, reason, "subscription closed");
    state.inner.metrics.subscriber_closed(reason);
    if let Some(outcome) = outcome {
        let _ = closed.send(outcome);
    }
    drop(entries);
}

/// Completes when a page of the feed was written since the last call (never without a signal,
/// or once the signal's source is gone).
async fn written(signal: &mut Option<watch::Receiver<u64>>) {
    match signal {
        Some(receiver) => {
            if receiver.changed().await.is_err() {
                *signal = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}
