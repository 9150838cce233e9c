//! worldfleet serve: the HTTP doors of a world — signed events in, feeds out.
//!
//! [`app`] builds the router over a [`ServeState`] (the queue, table and clock ports, the
//! gateway keys intake trusts, and a [`ServeConfig`]); [`serve`] runs it on a listener until a
//! shutdown signal, then closes live streams with a `going_away` event and drains. Everything
//! goes through the ports, so the same server runs over the embedded store and over
//! SQS/DynamoDB.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/events` | one envelope or an array of up to 100 → the intake queue ([`events`]) |
//! | `GET /v1/feeds/{feed}` | a page of a feed ([`feeds`]) |
//! | `GET`/`PUT /v1/feeds/{feed}/readers/{reader}` | a reader's checkpoint ([`feeds`]) |
//! | `GET /v1/feeds/{feed}/stream` | Server-Sent Events, catch-up then live ([`stream`]) |
//! | `GET /v1/subscribe` | one WebSocket carrying many feeds, with acks ([`subscribe`]) |
//! | `GET /v1/rejections/{event_id}` | what intake refused under the caller's event id ([`rejections`]) |
//! | `GET /health`, `/ready`, `/metrics` | liveness, readiness, Prometheus text ([`metrics`]) |
//! | `GET /` | the live dashboard, a view of `/metrics` ([`dashboard`]) |
//! | `POST /` | the SQS JSON protocol for `intake.fifo` ([`sqs`]) |
//!
//! Every `/v1` request is signed by a gateway and rate-limited per gateway ([`auth`]); `POST /`
//! is signed with SigV4 under the same keys ([`sigv4`]).

pub mod auth;
pub mod client;
pub mod config;
mod connections;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod feeds;
mod md5;
pub mod metrics;
pub mod push;
pub mod rejections;
pub mod sigv4;
pub mod sqs;
pub mod stream;
pub mod subscribe;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use worldfleet_domain::names::{FEEDS_TABLE, INTAKE_QUEUE};
use worldfleet_intake::GatewayKeys;
use worldfleet_kit::StageContext;
use worldfleet_ports::{Clock, Key, Queue, Table};

pub use auth::{Gateway, RateLimiter, sign_request, string_to_sign, verify_request};
pub use config::{ServeConfig, gateway_keys_from_lookup};
pub use error::{ApiError, Result, ServeError};
pub use metrics::{Metrics, MetricsSource};

/// What every handler shares: the ports, the keys, the limits and the counters. Cheap to
/// clone.
#[derive(Clone)]
pub struct ServeState {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Arc<dyn Queue>,
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    gateways: GatewayKeys,
    config: ServeConfig,
    metrics: Arc<Metrics>,
    source: Option<Arc<dyn metrics::MetricsSource>>,
    limiter: RateLimiter,
    subscriptions: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
    signals: Option<Arc<push::FeedSignals>>,
}

impl ServeState {
    /// State over the given ports. `gateways` are the keys requests are verified with (the
    /// same `WORLDFLEET_GATEWAY_KEYS` intake reads). The queues and tables must already be
    /// declared (the runtime's resource declaration does it).
    pub fn new(
        queue: Arc<dyn Queue>,
        table: Arc<dyn Table>,
        clock: Arc<dyn Clock>,
        gateways: GatewayKeys,
        config: ServeConfig,
    ) -> Self {
        let limiter = RateLimiter::new(config.rate_burst, config.rate_per_second);
        let subscriptions = Arc::new(Semaphore::new(
            config.max_subscribers.min(Semaphore::MAX_PERMITS),
        ));
        Self {
            inner: Arc::new(Inner {
                queue,
                table,
                clock,
                gateways,
                config,
                metrics: Arc::new(Metrics::default()),
                source: None,
                limiter,
                subscriptions,
                shutdown: watch::Sender::new(false),
                signals: None,
            }),
        }
    }

    /// Pushes live entries: `signals` are raised by the [`push::NotifyingTable`] distribute
    /// writes through (in the same process). Call before serving.
    pub fn with_push(mut self, signals: Arc<push::FeedSignals>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.signals = Some(signals);
        }
        self
    }

    /// Counts into `metrics` (shared with a [`push::NotifyingTable`] that observes the stages'
    /// writes). Call before serving.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.metrics = metrics;
        }
        self
    }

    /// Adds `source`'s series to `/metrics` (and so to the dashboard). Call before serving.
    pub fn with_source(mut self, source: Arc<dyn metrics::MetricsSource>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.source = Some(source);
        }
        self
    }

    /// True when live entries are pushed, not only polled.
    pub fn pushes(&self) -> bool {
        self.inner.signals.is_some()
    }

    /// A receiver raised when a page of `feed` is written (push mode only).
    pub(crate) fn listen(&self, feed: &str) -> Option<watch::Receiver<u64>> {
        self.inner
            .signals
            .as_ref()
            .map(|signals| signals.listen(feed))
    }

    /// State over a stage context's ports.
    pub fn from_context(
        context: &StageContext,
        gateways: GatewayKeys,
        config: ServeConfig,
    ) -> Self {
        Self::new(
            Arc::clone(&context.queue),
            Arc::clone(&context.table),
            Arc::clone(&context.clock),
            gateways,
            config,
        )
    }

    /// The settings the server runs with.
    pub fn config(&self) -> &ServeConfig {
        &self.inner.config
    }

    /// The counters (also served at `/metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Starts shutting down: `/ready` answers 503, new subscriptions are refused and live
    /// ones end with a `going_away` event after what they have buffered.
    pub fn shut_down(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// True once [`ServeState::shut_down`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }
}

/// The router: `/v1` routes behind authentication, `/health`, `/ready`, `/metrics` and the
/// dashboard (`GET /`) open,
/// every route counted in `/metrics`, unknown paths a JSON 404.
pub fn app(state: ServeState) -> Router {
    let max_body = state.inner.config.max_body_bytes;
    let v1 = Router::new()
        .route("/v1/events", post(events::post_events))
        .route("/v1/feeds/{feed}", get(feeds::get_feed))
        .route(
            "/v1/feeds/{feed}/readers/{reader}",
            get(feeds::get_reader).put(feeds::put_reader),
        )
        .route("/v1/feeds/{feed}/stream", get(stream::stream_feed))
        .route("/v1/subscribe", get(subscribe::subscribe))
        .route("/v1/rejections/{event_id}", get(rejections::get_rejections))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/", get(dashboard::page).post(sqs::handle))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics::metrics))
        .merge(v1)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit_headers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// The feed API alone — feed pages and reader checkpoints — without the gateway signature:
/// what the `feeds` Lambda function serves behind an API Gateway HTTP API whose IAM
/// authorization has already admitted the caller. Unknown paths are a JSON 404.
pub fn feeds_api(state: ServeState) -> Router {
    Router::new()
        .route("/v1/feeds/{feed}", get(feeds::get_feed))
        .route(
            "/v1/feeds/{feed}/readers/{reader}",
            get(feeds::get_reader).put(feeds::put_reader),
        )
        .fallback(not_found)
        .with_state(state)
}

/// Serves `app(state)` on `listener` until `shutdown_signal` completes; then tells live
/// streams to close (`going_away`), stops accepting, lets every connection finish its
/// in-flight request, and returns once all closed or `shutdown_grace` ran out. Connections are
/// capped, and slow or idle clients disconnected, as the connections module describes.
pub async fn serve(
    listener: TcpListener,
    state: ServeState,
    shutdown_signal: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let signalled = state.clone();
    tokio::spawn(async move {
        shutdown_signal.await;
        tracing::info!("shutting down: closing streams, finishing in-flight requests");
        signalled.shut_down();
    });
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving");
    }
    connections::accept_loop(
        listener,
        app(state.clone()),
        &state.inner.config,
        Arc::clone(&state.inner.metrics),
        state.inner.shutdown.subscribe(),
    )
    .await;
    Ok(())
}

/// Middleware (on every route): a request head larger than `max_header_bytes` is answered 431.
async fn limit_headers(
    State(state): State<ServeState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = state.inner.config.max_header_bytes;
    let head = request.uri().to_string().len()
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head > limit {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request line and headers are {head} bytes, over the {limit}-byte limit \
                 (WORLDFLEET_SERVE_MAX_HEADER_BYTES); send fewer or shorter headers"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

async fn health() -> Response {
    (StatusCode::OK, axum::Json(json!({ "status": "ok" }))).into_response()
}

/// 200 when the intake queue and the feeds table answer and the server is not shutting down.
async fn ready(State(state): State<ServeState>) -> Response {
    if state.is_shutting_down() {
        return ApiError::unavailable("going_away", "the server is shutting down", 5)
            .into_response();
    }
    let queue = state.inner.queue.depth(INTAKE_QUEUE).await;
    let table = state
        .inner
        .table
        .get(FEEDS_TABLE, &Key::new("ready#probe", "probe"))
        .await;
    match (queue, table) {
        (Ok(_), Ok(_)) => {
            (StatusCode::OK, axum::Json(json!({ "status": "ready" }))).into_response()
        }
        (queue, table) => {
            if let Err(error) = &queue {
                tracing::warn!(%error, "not ready: intake queue");
            }
            if let Err(error) = &table {
                tracing::warn!(%error, "not ready: feeds table");
            }
            ApiError::unavailable(
                "not_ready",
                format!(
                    "not ready: intake queue {}, feeds table {}",
                    if queue.is_ok() { "ok" } else { "unavailable" },
                    if table.is_ok() { "ok" } else { "unavailable" }
                ),
                1,
            )
            .into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see the worldfleet-serve README for the routes",
    )
}
