//! The doors in the main job: `worldfleet run` posts the synthetic world through the HTTP door
//! and its players follow their feeds over a WebSocket, the path real gateways and clients take.
//!
//! [`Doors::open`] serves [`worldfleet_serve`] on a loopback port over the run's own store (the
//! same queue and table ports the stages use, live entries pushed as distribute writes them),
//! subscribes every player's feed on one WebSocket, and is then the [`WorldGateway`] the world
//! is posted through: `POST /v1/events`, 100 envelopes a request, signed with the world's
//! gateway key. The door refuses a few bad envelopes itself (over 64 KiB, not JSON);
//! those never reach intake, so they are taken out of the audit's expectations and checked
//! here instead: refused at the door with the reason intake would have given
//! ([`DoorRefusals`]). [`DoorGateway`] is that gateway on its own, for a door in another
//! process (`worldfleet chaos` posts through it to the `worldfleet serve` it kills and
//! restarts). [`Doors::close`] stops the server and reports delivery as the players
//! saw it: from the POST's response to the entry's frame on their socket.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use async_trait::async_trait;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde::de::IgnoredAny;
use worldfleet_domain::RejectReason;
use worldfleet_intake::GatewayKeys;
use worldfleet_ports::{Clock, Queue, Table};
use worldfleet_serve::client::{Following, Poster, follow};
use worldfleet_serve::push::FeedSignals;
use worldfleet_serve::{ServeConfig, ServeState};
use worldfleet_testbed::world::{Emitted, Expectation};

use crate::fleet::WorldGateway;

/// Envelopes per `POST /v1/events` (the door's limit).
const BATCH: usize = 100;

/// Delivery as the players saw it, for the run summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeliveryReport {
    /// Feeds followed live (one per player).
    pub feeds_followed: u64,
    /// Entry frames that reached a player's socket.
    pub frames: u64,
    /// From the POST's response to the frame, milliseconds.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// Envelopes the door itself refused, and how many with the reason intake would give.
    pub door_refused: u64,
    pub door_refused_as_expected: u64,
    /// Verbatim replays posted: dropped by the queue's deduplication (same event id within five
    /// minutes) or refused by intake as `replayed`; left out of the rejection count either way.
    pub replays_not_reapplied: u64,
}

/// When each event was posted and when its entries reached subscribers: the delivery latency
/// a client sees, from the POST's response to the entry's frame (shared by the run through
/// the doors and `worldfleet bench serve`).
pub struct DeliveryClock {
    posted: Mutex<HashMap<String, Instant>>,
    latency: Mutex<Histogram<u64>>,
    frames: AtomicU64,
    epoch: Instant,
    /// Microseconds from `epoch` to the latest frame.
    last_frame_us: AtomicU64,
}

impl DeliveryClock {
    /// An empty clock.
    pub fn new() -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            posted: Mutex::new(HashMap::new()),
            latency: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3)?),
            frames: AtomicU64::new(0),
            epoch: Instant::now(),
            last_frame_us: AtomicU64::new(0),
        }))
    }

    /// `event_ids` were sent at `at` (kept if already known: a resend keeps the first time).
    pub fn sent<'a>(&self, event_ids: impl IntoIterator<Item = &'a str>, at: Instant) {
        let mut posted = self
            .posted
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for id in event_ids {
            posted.entry(id.to_owned()).or_insert(at);
        }
    }

    /// `event_ids` were answered at `at`: latency counts from here.
    pub fn answered<'a>(&self, event_ids: impl IntoIterator<Item = &'a str>, at: Instant) {
        let mut posted = self
            .posted
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for id in event_ids {
            posted.insert(id.to_owned(), at);
        }
    }

    /// A frame of `event_id` arrived at `arrived` (frames of events not posted through this
    /// clock are ignored).
    pub fn arrived(&self, event_id: &str, arrived: Instant) {
        let at = self
            .posted
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(event_id)
            .copied();
        if let Some(at) = at {
            self.latency
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .saturating_record(arrived.saturating_duration_since(at).as_micros() as u64);
            self.frames.fetch_add(1, Ordering::Relaxed);
            self.last_frame_us.fetch_max(
                arrived.saturating_duration_since(self.epoch).as_micros() as u64,
                Ordering::Relaxed,
            );
        }
    }

    /// Frames counted so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// When the latest frame arrived.
    pub fn last_frame(&self) -> Instant {
        self.epoch + std::time::Duration::from_micros(self.last_frame_us.load(Ordering::Relaxed))
    }

    /// The latency histogram, microseconds.
    pub fn latency(&self) -> Histogram<u64> {
        self.latency
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

/// What the door refused: each envelope's expectation and the door's reason code.
pub type DoorRefusals = Vec<(Expectation, String)>;

/// The in-process server, its subscribers and the world's gateway.
pub struct Doors {
    address: SocketAddr,
    door: DoorGateway,
    following: Following,
    feeds_followed: u64,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<worldfleet_serve::Result<()>>,
}

impl Doors {
    /// Serves the doors over `queue` and `table` on a loopback port (live entries pushed
    /// through `signals`, which the stages' table raises), with `gateway`'s `key` trusted, and
    /// follows `players`' feeds on one WebSocket.
    pub async fn open(
        queue: Arc<dyn Queue>,
        table: Arc<dyn Table>,
        clock: Arc<dyn Clock>,
        signals: Arc<FeedSignals>,
        (gateway, key): (&str, &[u8]),
        players: &[String],
    ) -> anyhow::Result<Self> {
        let mut gateways = GatewayKeys::default();
        gateways.insert(gateway, key.to_vec());
        let config = ServeConfig {
            // The world's gateway is the only client; it posts as fast as the run allows.
            rate_per_second: 0,
            max_subscribers: players.len().max(1) + 16,
            ..ServeConfig::default()
        };
        let state = ServeState::new(queue, table, clock, gateways, config).with_push(signals);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("listen on a loopback port for the doors")?;
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(worldfleet_serve::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        let door = DoorGateway::new(address, gateway, key)?;
        let on_entry = {
            let delivery = door.delivery_clock();
            move |event_id: &str, arrived: Instant| delivery.arrived(event_id, arrived)
        };
        let feeds: Vec<String> = players
            .iter()
            .map(|player| format!("player:{player}"))
            .collect();
        let mut following = follow(address, gateway, key, feeds, on_entry)
            .await
            .map_err(|error| anyhow::anyhow!("follow the players' feeds: {error}"))?;
        (&mut following.ready)
            .await
            .context("the players' socket closed while subscribing")?;
        Ok(Self {
            address,
            door,
            following,
            feeds_followed: players.len() as u64,
            stop,
            served,
        })
    }

    /// Where the doors listen.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops following and serving, once the run has drained so every frame has had its
    /// chance to arrive. Returns the delivery report and the expectations left for the audit
    /// ([`DoorGateway::audited`]).
    pub async fn close(self, expectations: &[Expectation]) -> (DeliveryReport, Vec<Expectation>) {
        let _ = self.stop.send(());
        let _ = self.served.await;
        self.following.reader.abort();
        let (at_the_door, audited) = self.door.audited(expectations);
        let latency = self.door.clock.latency();
        let millis = |micros: u64| micros as f64 / 1_000.0;
        let report = DeliveryReport {
            feeds_followed: self.feeds_followed,
            frames: self.door.clock.frames(),
            latency_p50_ms: millis(latency.value_at_quantile(0.50)),
            latency_p99_ms: millis(latency.value_at_quantile(0.99)),
            latency_max_ms: millis(latency.max()),
            door_refused: at_the_door.refused,
            door_refused_as_expected: at_the_door.refused_as_expected,
            replays_not_reapplied: at_the_door.replays,
        };
        (report, audited)
    }
}

/// What a door did with the world's envelopes before intake saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AtTheDoor {
    /// Envelopes the door itself refused, and how many with the reason intake would give.
    pub refused: u64,
    pub refused_as_expected: u64,
    /// Verbatim replays posted (see [`DeliveryReport::replays_not_reapplied`]).
    pub replays: u64,
}

/// The world's gateway in front of a door at any address (this process's, or a `worldfleet
/// serve` elsewhere): posts `POST /v1/events`, 100 envelopes a request, signed with the
/// world's gateway key; posts a batch again when the door did not answer (a resend is
/// deduplicated by event id); records the door's own refusals and when each event was
/// answered.
pub struct DoorGateway {
    poster: tokio::sync::Mutex<Poster>,
    clock: Arc<DeliveryClock>,
    refused: Mutex<DoorRefusals>,
}

impl DoorGateway {
    /// A gateway posting to the door at `address` as `gateway`, signing with `key`.
    pub fn new(address: SocketAddr, gateway: &str, key: &[u8]) -> anyhow::Result<Self> {
        Ok(Self {
            poster: tokio::sync::Mutex::new(Poster::new(address, gateway, key.to_vec())),
            clock: DeliveryClock::new()?,
            refused: Mutex::new(Vec::new()),
        })
    }

    /// When each event was answered, for a follower to time its frames against.
    pub fn delivery_clock(&self) -> Arc<DeliveryClock> {
        Arc::clone(&self.clock)
    }

    /// What the door did itself, and the expectations left for the audit: all of
    /// `expectations` but the envelopes the door refused (checked here against the reason
    /// intake would give) and verbatim replays. Through the door a replay carries its event id
    /// as the queue's deduplication id, so within five minutes the queue drops it before
    /// intake sees it, as SQS does for a gateway: it is not applied twice (the audit's
    /// duplicate check covers its original), but there is no rejection row to find.
    pub fn audited(&self, expectations: &[Expectation]) -> (AtTheDoor, Vec<Expectation>) {
        let mut refusals = std::mem::take(
            &mut *self
                .refused
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        );
        // A batch posted again after no answer refuses its bad envelopes again: count each
        // body once.
        let mut seen = HashSet::new();
        refusals.retain(|(expectation, _)| match expectation {
            Expectation::Rejected { body_hash, .. } => seen.insert(body_hash.clone()),
            _ => true,
        });
        let refused_as_expected = refusals
            .iter()
            .filter(|(expectation, reason)| {
                matches!(expectation, Expectation::Rejected { reason: expected, .. } if expected.code() == reason)
            })
            .count() as u64;
        let refused_bodies: HashSet<&str> = refusals
            .iter()
            .filter_map(|(expectation, _)| match expectation {
                Expectation::Rejected { body_hash, .. } => Some(body_hash.as_str()),
                _ => None,
            })
            .collect();
        let is_replay = |expectation: &Expectation| {
            matches!(
                expectation,
                Expectation::Rejected {
                    reason: RejectReason::Replayed,
                    ..
                }
            )
        };
        let audited = expectations
            .iter()
            .filter(|expectation| {
                let refused_at_the_door = matches!(expectation, Expectation::Rejected { body_hash, .. } if refused_bodies.contains(body_hash.as_str()));
                !(refused_at_the_door || is_replay(expectation))
            })
            .cloned()
            .collect();
        let at_the_door = AtTheDoor {
            refused: refusals.len() as u64,
            refused_as_expected,
            replays: expectations.iter().filter(|e| is_replay(e)).count() as u64,
        };
        (at_the_door, audited)
    }
}

fn event_id(expectation: &Expectation) -> Option<&str> {
    match expectation {
        Expectation::Accepted { event_id, .. } | Expectation::World { event_id, .. } => {
            Some(event_id)
        }
        Expectation::Rejected { .. } => None,
    }
}

#[async_trait]
impl WorldGateway for Doors {
    fn batch_size(&self) -> usize {
        self.door.batch_size()
    }

    async fn post(&self, batch: &[Emitted]) -> anyhow::Result<bool> {
        self.door.post(batch).await
    }
}

#[async_trait]
impl WorldGateway for DoorGateway {
    fn batch_size(&self) -> usize {
        BATCH
    }

    async fn post(&self, batch: &[Emitted]) -> anyhow::Result<bool> {
        // A gateway can only post JSON in an array; a body that is not JSON goes alone, and
        // the door refuses it (`not_json`) where intake would have said `malformed`.
        let (json, not_json): (Vec<&Emitted>, Vec<&Emitted>) = batch
            .iter()
            .partition(|emitted| serde_json::from_str::<IgnoredAny>(&emitted.body).is_ok());
        for emitted in not_json {
            match self.send(emitted.body.clone()).await? {
                Some((400, text)) if text.contains("\"not_json\"") => self
                    .refused
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .push((emitted.expectation.clone(), "malformed".to_owned())),
                Some((status, text)) => {
                    anyhow::bail!("the door answered {status} to a body that is not JSON: {text}")
                }
                None => return Ok(false),
            }
        }
        if json.is_empty() {
            return Ok(true);
        }
        let body = format!(
            "[{}]",
            json.iter()
                .map(|emitted| emitted.body.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        self.clock.sent(
            json.iter()
                .filter_map(|emitted| event_id(&emitted.expectation)),
            Instant::now(),
        );
        let text = match self.send(body).await? {
            Some((202, text)) => text,
            Some((status, text)) => {
                anyhow::bail!("the door answered {status} to a batch of envelopes: {text}")
            }
            None => return Ok(false),
        };
        let answered = Instant::now();
        let results: serde_json::Value =
            serde_json::from_str(&text).context("the door's answer is not JSON")?;
        let results = results["results"]
            .as_array()
            .context("the door's answer has no results")?;
        anyhow::ensure!(
            results.len() == json.len(),
            "the door answered {} results for {} envelopes",
            results.len(),
            json.len()
        );
        let mut queued = Vec::new();
        let mut refused = self
            .refused
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for (emitted, result) in json.iter().zip(results) {
            match result["status"].as_str() {
                Some("queued") => queued.extend(event_id(&emitted.expectation)),
                Some("refused") => refused.push((
                    emitted.expectation.clone(),
                    result["reason"].as_str().unwrap_or_default().to_owned(),
                )),
                _ => anyhow::bail!("the door did not queue an envelope: {result}"),
            }
        }
        self.clock.answered(queued, answered);
        Ok(true)
    }
}

impl DoorGateway {
    /// One POST; `None` when it should be sent again (no answer, 429 or 503: the door did not
    /// take it, and a resend is deduplicated).
    async fn send(&self, body: String) -> anyhow::Result<Option<(u16, String)>> {
        match self.poster.lock().await.post("/v1/events", body).await {
            Ok((status @ (429 | 503), text)) => {
                let failed = text.matches("\"failed\"").count();
                tracing::warn!(
                    status,
                    failed,
                    "the door asked for a retry; posting the batch again"
                );
                Ok(None)
            }
            Ok(answer) => Ok(Some(answer)),
            Err(error) => {
                tracing::warn!(%error, "POST /v1/events failed; posting again");
                Ok(None)
            }
        }
    }
}
