//! The fixture every door test uses: an embedded store with the queues and tables declared, a
//! manual clock, a server state over them, and helpers that sign requests as a gateway.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt;
use tower::ServiceExt;
use worldfleet_domain::names::{
    ALL_TABLES, CLASSIFY_QUEUE, ECOLOGY_INPUT_QUEUE, FEEDS_TABLE, INTAKE_QUEUE, MARKET_QUEUE,
};
use worldfleet_domain::{EventKind, FeedEntry, FeedPage, PartitionUid};
use worldfleet_embedded::testing::TempStore;
use worldfleet_intake::GatewayKeys;
use worldfleet_intake::{Intake, IntakeConfig};
use worldfleet_kit::StageContext;
use worldfleet_kit::testing::declare;
use worldfleet_ports::{Clock, ManualClock, Queue, ReceiveRequest, ReceivedMessage, Table, Update};
use worldfleet_serve::push::{FeedSignals, NotifyingTable};
use worldfleet_serve::{ServeConfig, ServeState, app, sign_request};
use worldfleet_tables::plan::{counter_key, page_item};

/// The key the signed samples in `events/samples/` were signed with (gateway `gw-sample`).
pub const SAMPLE_KEY_HEX: &str = "73616d706c652d676174657761792d6b65792d33322d62797465732d6c6f6e67";
/// The samples' `sent_at_ms`; the clock starts just after it so intake accepts them.
pub const SAMPLE_SENT_AT: u64 = 1_763_700_000_000;
pub const GATEWAY: &str = "gw-sample";

pub struct Fixture {
    pub _store: TempStore,
    pub clock: ManualClock,
    pub queue: Arc<dyn Queue>,
    pub table: Arc<dyn Table>,
    pub state: ServeState,
    pub app: Router,
}

pub fn key() -> Vec<u8> {
    hex::decode(SAMPLE_KEY_HEX).unwrap()
}

pub fn keys() -> GatewayKeys {
    GatewayKeys::parse(&format!("{GATEWAY}={SAMPLE_KEY_HEX}")).unwrap()
}

pub async fn fixture() -> Fixture {
    fixture_with(ServeConfig::default()).await
}

pub async fn fixture_with(config: ServeConfig) -> Fixture {
    build(config, false).await
}

/// A fixture whose table wakes live subscribers on page writes, as `worldfleet serve` does
/// when it runs distribute in process.
pub async fn pushing_fixture(config: ServeConfig) -> Fixture {
    build(config, true).await
}

async fn build(config: ServeConfig, push: bool) -> Fixture {
    let (store, clock) = TempStore::manual(SAMPLE_SENT_AT + 1_000);
    let queue = store.queue();
    let signals = Arc::new(FeedSignals::default());
    let table: Arc<dyn Table> = if push {
        Arc::new(NotifyingTable::new(store.table(), Arc::clone(&signals)))
    } else {
        store.table()
    };
    let context = StageContext::new(
        Arc::clone(&queue),
        Arc::clone(&table),
        Arc::clone(&store.clock),
    );
    declare(&context, &ALL_TABLES, &[INTAKE_QUEUE]).await;
    let mut state = ServeState::new(
        Arc::clone(&queue),
        Arc::clone(&table),
        Arc::clone(&store.clock),
        keys(),
        config,
    );
    if push {
        state = state.with_push(signals);
    }
    Fixture {
        _store: store,
        clock,
        queue,
        table,
        app: app(state.clone()),
        state,
    }
}

impl Fixture {
    /// A request signed now by `gw-sample`.
    pub fn signed(&self, method: &str, uri: &str, body: &[u8]) -> Request<Body> {
        signed_at(method, uri, body, self.clock.now_ms(), &key())
    }

    /// Sends `request` to the router (no socket).
    pub async fn call(&self, request: Request<Body>) -> Response<Body> {
        self.app.clone().oneshot(request).await.unwrap()
    }

    /// Sends `request` and reads the whole answer as JSON.
    pub async fn call_json(&self, request: Request<Body>) -> (u16, serde_json::Value) {
        let response = self.call(request).await;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            panic!(
                "status {status}: body is not JSON ({error}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    }

    /// Every message waiting on the intake queue (received, not deleted).
    pub async fn intake_messages(&self) -> Vec<ReceivedMessage> {
        let mut messages = Vec::new();
        loop {
            let batch = self
                .queue
                .receive(
                    INTAKE_QUEUE,
                    ReceiveRequest::batch(Duration::from_millis(50)),
                )
                .await
                .unwrap();
            if batch.is_empty() {
                return messages;
            }
            messages.extend(batch);
        }
    }

    /// Writes entries `first..=last` of `feed` as one page, the way distribute does.
    pub async fn write_page(&self, feed: &str, first: u64, last: u64) {
        let entries = (first..=last).map(entry).collect();
        let page = FeedPage {
            first_seq: first,
            entries,
        };
        self.table
            .put(
                FEEDS_TABLE,
                page_item(feed, &page, self.clock.now_ms()).unwrap(),
                None,
            )
            .await
            .unwrap();
        let counter = self
            .table
            .get(FEEDS_TABLE, &counter_key(feed))
            .await
            .unwrap()
            .and_then(|item| item.i64("next"))
            .unwrap_or(0);
        if (last as i64) > counter {
            self.table
                .update(
                    FEEDS_TABLE,
                    &counter_key(feed),
                    Update::new().add("next", last as i64 - counter),
                    None,
                )
                .await
                .unwrap();
        }
    }
}

/// The feed entry with sequence number `seq` the tests write.
pub fn entry(seq: u64) -> FeedEntry {
    FeedEntry {
        seq,
        event_id: format!("event-{seq:04}"),
        partition: PartitionUid::parse("gm-0001/district-003/scene-012").unwrap(),
        kind: EventKind::Dialogue,
        actor: "p-000042".into(),
        text: format!("entry number {seq}"),
        accepted_at_ms: SAMPLE_SENT_AT,
    }
}

/// A request signed at `timestamp_ms` with `key` as `gw-sample`.
pub fn signed_at(
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp_ms: u64,
    key: &[u8],
) -> Request<Body> {
    let signature = sign_request(key, method, uri, timestamp_ms, body);
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("x-worldfleet-gateway", GATEWAY)
        .header("x-worldfleet-timestamp", timestamp_ms.to_string())
        .header("x-worldfleet-signature", signature)
        .body(Body::from(body.to_vec()))
        .unwrap()
}

/// A signed sample envelope from `events/samples/`.
pub fn sample(kind: &str) -> String {
    let path = format!(
        "{}/../../events/samples/{kind}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {path}: {error}"))
}

/// The real intake stage over the fixture's store (the queues it routes to declared), trusting
/// the samples' gateway key.
pub async fn intake(fixture: &Fixture) -> Intake {
    let context = StageContext::new(
        Arc::clone(&fixture.queue),
        Arc::clone(&fixture.table),
        Arc::new(fixture.clock.clone()),
    );
    declare(
        &context,
        &[],
        &[CLASSIFY_QUEUE, MARKET_QUEUE, ECOLOGY_INPUT_QUEUE],
    )
    .await;
    Intake::new(context, IntakeConfig::new(keys()))
}
