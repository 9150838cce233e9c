//! A gateway's side of the doors, in Rust: what `worldfleet run` and `worldfleet bench serve` use
//! to post events and follow feeds the way a game server written in any language would.
//!
//! [`Poster`] sends signed `POST /v1/events` requests on one keep-alive connection (reopened
//! after a failure). [`follow`] opens one WebSocket on `/v1/subscribe`, subscribes it to many
//! feeds and calls back on every entry frame with its arrival time. Both sign with
//! [`crate::sign_request`], exactly as the README's reference signer does.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::sign_request;

/// Why a client call failed (connection, protocol or an unexpected answer).
pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Signed `POST /v1/events` on one keep-alive connection.
pub struct Poster {
    address: SocketAddr,
    gateway: String,
    key: Vec<u8>,
    connection: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Poster {
    /// A poster for `gateway` (signing with `key`) to the server at `address`.
    pub fn new(address: SocketAddr, gateway: impl Into<String>, key: Vec<u8>) -> Self {
        Self {
            address,
            gateway: gateway.into(),
            key,
            connection: None,
        }
    }

    /// Posts `body` (one envelope or a JSON array) to `path_and_query` (`/v1/events`,
    /// `/v1/events?wait=decided`); returns the status and the answer's body.
    pub async fn post(
        &mut self,
        path_and_query: &str,
        body: String,
    ) -> Result<(u16, String), ClientError> {
        let result = self.send(path_and_query, body).await;
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    async fn send(
        &mut self,
        path_and_query: &str,
        body: String,
    ) -> Result<(u16, String), ClientError> {
        if self
            .connection
            .as_ref()
            .is_none_or(|sender| sender.is_closed())
        {
            let stream = tokio::net::TcpStream::connect(self.address).await?;
            stream.set_nodelay(true)?;
            let (sender, driver) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(driver);
            self.connection = Some(sender);
        }
        let Some(sender) = self.connection.as_mut() else {
            return Err("no connection".into());
        };
        sender.ready().await?;
        let now = now_ms();
        let signature = sign_request(&self.key, "POST", path_and_query, now, body.as_bytes());
        let request = hyper::Request::post(path_and_query)
            .header("host", self.address.to_string())
            .header("content-type", "application/json")
            .header("x-worldfleet-gateway", self.gateway.as_str())
            .header("x-worldfleet-timestamp", now.to_string())
            .header("x-worldfleet-signature", signature)
            .body(Full::new(Bytes::from(body)))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let answer = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&answer).into_owned()))
    }
}

/// One WebSocket following many feeds: `ready` completes once every subscription is
/// confirmed; `reader` ends when the socket closes.
pub struct Following {
    pub ready: tokio::sync::oneshot::Receiver<()>,
    pub reader: tokio::task::JoinHandle<()>,
}

/// Opens a WebSocket on `/v1/subscribe` at `address` as `gateway`, subscribes it to `feeds`
/// (each from the feed's start) and calls `on_entry(event_id, arrived)` for every entry
/// frame. Other frames are logged.
pub async fn follow(
    address: SocketAddr,
    gateway: &str,
    key: &[u8],
    feeds: Vec<String>,
    mut on_entry: impl FnMut(&str, Instant) + Send + 'static,
) -> Result<Following, ClientError> {
    let mut request = format!("ws://{address}/v1/subscribe").into_client_request()?;
    let now = now_ms();
    let headers = request.headers_mut();
    headers.insert("x-worldfleet-gateway", gateway.parse()?);
    headers.insert("x-worldfleet-timestamp", now.to_string().parse()?);
    headers.insert(
        "x-worldfleet-signature",
        sign_request(key, "GET", "/v1/subscribe", now, b"").parse()?,
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    for feed in &feeds {
        let frame = serde_json::json!({ "op": "subscribe", "feed": feed });
        socket.send(Message::Text(frame.to_string().into())).await?;
    }
    let (ready, ready_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut ready = Some(ready);
        let mut waiting = feeds.len();
        if waiting == 0
            && let Some(ready) = ready.take()
        {
            let _ = ready.send(());
        }
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let arrived = Instant::now();
            let Ok(frame) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            match frame["type"].as_str() {
                Some("subscribed") => {
                    waiting = waiting.saturating_sub(1);
                    if waiting == 0
                        && let Some(ready) = ready.take()
                    {
                        let _ = ready.send(());
                    }
                }
                Some("entry") => {
                    on_entry(
                        frame["entry"]["event_id"].as_str().unwrap_or_default(),
                        arrived,
                    );
                }
                Some("closed" | "going_away") => {
                    tracing::debug!(frame = %text, "feed subscription closed");
                }
                Some(kind) => tracing::warn!(frame = %text, kind, "feed subscriber frame"),
                None => {}
            }
        }
    });
    Ok(Following {
        ready: ready_rx,
        reader,
    })
}
