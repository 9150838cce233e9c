//! intake end to end over the embedded store: what is accepted, what is refused and why, and
//! what happens on redelivery.

use std::sync::Arc;
use std::time::Duration;

use worldfleet_domain::names::{
    ALL_TABLES, CLASSIFY_QUEUE, ECOLOGY_INPUT_QUEUE, LEDGER_TABLE, MARKET_QUEUE, RATE_LIMITS_TABLE,
    REJECTIONS_TABLE,
};
use worldfleet_domain::{AcceptedEvent, RejectReason};
use worldfleet_embedded::testing::TempStore;
use worldfleet_intake::rejections::{RejectionRow, locate, lookup_body, lookup_event, partition};
use worldfleet_intake::{GatewayKeys, Intake, IntakeConfig, RateLimit};
use worldfleet_kit::testing::declare;
use worldfleet_kit::{StageContext, StageHandler};
use worldfleet_ports::{
    BatchWrite, Clock, Condition, Item, Key, ManualClock, Query, QueryPage, Queue, ReceiveRequest,
    ReceivedMessage, Result as PortResult, Table, TableSpec, TransactWrite, Update,
};

const SAMPLE_KEY_HEX: &str = "73616d706c652d676174657761792d6b65792d33322d62797465732d6c6f6e67";
const SAMPLE_SENT_AT: u64 = 1_763_700_000_000;
const KINDS: [&str; 4] = ["dialogue", "action", "combat", "quest"];
/// World kinds: routed to the market and the ecology instead of classify.
const WORLD_KINDS: [&str; 3] = ["trade", "capture", "breed"];

fn sample(kind: &str) -> String {
    let path = format!(
        "{}/../../events/samples/{kind}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {path}: {error}"))
}

struct Fixture {
    _store: TempStore,
    clock: ManualClock,
    queue: Arc<dyn Queue>,
    table: Arc<dyn Table>,
    intake: Intake,
}

impl Fixture {
    /// Intake handles `records` as one batch, with a 30 s budget.
    async fn handle(&self, records: &[ReceivedMessage]) -> worldfleet_kit::BatchReport {
        self.intake
            .handle_batch(records, Duration::from_secs(30))
            .await
    }
}

async fn fixture(rate_limit: RateLimit) -> Fixture {
    fixture_over(rate_limit, |table| table).await
}

/// A fixture whose intake reaches the store's table through `wrap`.
async fn fixture_over(
    rate_limit: RateLimit,
    wrap: impl FnOnce(Arc<dyn Table>) -> Arc<dyn Table>,
) -> Fixture {
    let (store, clock) = TempStore::manual(SAMPLE_SENT_AT + 1_000);
    let context = StageContext::new(store.queue(), store.table(), Arc::clone(&store.clock));
    declare(
        &context,
        &ALL_TABLES,
        &[CLASSIFY_QUEUE, MARKET_QUEUE, ECOLOGY_INPUT_QUEUE],
    )
    .await;
    let (queue, table) = (Arc::clone(&context.queue), Arc::clone(&context.table));
    let keys = GatewayKeys::parse(&format!("gw-sample={SAMPLE_KEY_HEX}")).unwrap();
    let mut config = IntakeConfig::new(keys);
    config.rate_limit = rate_limit;
    let context = StageContext::new(
        Arc::clone(&queue),
        wrap(Arc::clone(&table)),
        Arc::clone(&context.clock),
    );
    let intake = Intake::new(context, config);
    Fixture {
        _store: store,
        clock,
        queue,
        table,
        intake,
    }
}

fn record(id: &str, body: &str, receive_count: u32) -> ReceivedMessage {
    ReceivedMessage {
        message_id: id.to_owned(),
        receipt_handle: format!("receipt-{id}"),
        body: body.to_owned(),
        group_id: Some("gm-0001/district-003/scene-012".into()),
        receive_count,
        sent_at_ms: SAMPLE_SENT_AT,
    }
}

async fn routed(queue: &dyn Queue) -> Vec<AcceptedEvent> {
    routed_to(queue, CLASSIFY_QUEUE)
        .await
        .into_iter()
        .map(|(event, _)| event)
        .collect()
}

/// Everything waiting in `name`, with each message's group.
async fn routed_to(queue: &dyn Queue, name: &str) -> Vec<(AcceptedEvent, Option<String>)> {
    let mut events = Vec::new();
    loop {
        let batch = queue
            .receive(name, ReceiveRequest::batch(Duration::from_millis(50)))
            .await
            .unwrap();
        if batch.is_empty() {
            return events;
        }
        for message in &batch {
            events.push((
                serde_json::from_str(&message.body).unwrap(),
                message.group_id.clone(),
            ));
        }
        queue
            .delete_batch(
                name,
                batch
                    .into_iter()
                    .map(|message| message.receipt_handle)
                    .collect(),
            )
            .await
            .unwrap();
    }
}

async fn rejection(table: &dyn Table, gateway: Option<&str>, body: &str) -> Option<RejectionRow> {
    table
        .get(
            REJECTIONS_TABLE,
            &Key::new(partition(gateway), locate(body.as_bytes()).sk),
        )
        .await
        .unwrap()
        .map(|item| RejectionRow::from_item(&item))
}

#[test]
fn samples_are_valid_against_the_published_schema() {
    let schema_path = format!(
        "{}/../../events/schema/envelope.v1.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for kind in KINDS.into_iter().chain(WORLD_KINDS) {
        let envelope: serde_json::Value = serde_json::from_str(&sample(kind)).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&envelope)
            .map(|error| error.to_string())
            .collect();
        assert!(errors.is_empty(), "{kind}: {errors:?}");
        let mut extra = envelope.clone();
        extra["debug"] = serde_json::Value::Bool(true);
        assert!(
            !validator.is_valid(&extra),
            "{kind}: the schema must refuse unknown fields"
        );
        let mut wrong_payload = envelope.clone();
        wrong_payload["payload"]["mood"] = serde_json::Value::from("sly");
        assert!(
            !validator.is_valid(&wrong_payload),
            "{kind}: the schema must refuse unknown payload fields"
        );
    }
}

#[test]
fn schema_holds_world_kinds_to_their_partition_depth() {
    let schema_path = format!(
        "{}/../../events/schema/envelope.v1.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut trade: serde_json::Value = serde_json::from_str(&sample("trade")).unwrap();
    trade["partition"] = serde_json::Value::from("region-07/station-3/dock-1");
    assert!(
        !validator.is_valid(&trade),
        "a trade partition is region/station"
    );
    let mut capture: serde_json::Value = serde_json::from_str(&sample("capture")).unwrap();
    capture["partition"] = serde_json::Value::from("wild-1/zone-04");
    assert!(
        !validator.is_valid(&capture),
        "a capture partition is a cell"
    );
    let mut dialogue: serde_json::Value = serde_json::from_str(&sample("dialogue")).unwrap();
    dialogue["partition"] = serde_json::Value::from("gm-0001/district-003");
    assert!(
        !validator.is_valid(&dialogue),
        "narrative keeps 3-4 segments"
    );
}

#[tokio::test]
async fn world_kinds_route_to_the_market_and_the_ecology_keyed_by_partition() {
    let fixture = fixture(RateLimit::default()).await;
    let records: Vec<ReceivedMessage> = WORLD_KINDS
        .iter()
        .map(|kind| record(kind, &sample(kind), 1))
        .collect();
    let report = fixture.handle(&records).await;
    assert!(report.all_succeeded(), "{report:?}");
    assert!(routed(fixture.queue.as_ref()).await.is_empty());
    let trades = routed_to(fixture.queue.as_ref(), MARKET_QUEUE).await;
    assert_eq!(trades.len(), 1);
    assert_eq!(trades[0].0.kind.as_str(), "trade");
    assert_eq!(trades[0].1.as_deref(), Some("region-07/station-3"));
    let ecology = routed_to(fixture.queue.as_ref(), ECOLOGY_INPUT_QUEUE).await;
    assert_eq!(
        ecology
            .iter()
            .map(|(event, group)| (event.kind.as_str(), group.as_deref()))
            .collect::<Vec<_>>(),
        vec![
            ("capture", Some("wild-1/zone-04/cell-09")),
            ("breed", Some("wild-1/zone-04/cell-09")),
        ]
    );
}

#[tokio::test]
async fn accepts_every_sample_appends_to_the_ledger_and_routes_by_partition() {
    let fixture = fixture(RateLimit::default()).await;
    let records: Vec<ReceivedMessage> = KINDS
        .iter()
        .map(|kind| record(kind, &sample(kind), 1))
        .collect();
    let report = fixture.handle(&records).await;
    assert!(report.all_succeeded(), "{report:?}");
    let events = routed(fixture.queue.as_ref()).await;
    assert_eq!(
        events
            .iter()
            .map(|event| event.kind.as_str())
            .collect::<Vec<_>>(),
        KINDS,
        "routed in order"
    );
    for event in &events {
        let entry = fixture
            .table
            .get(
                LEDGER_TABLE,
                &Key::new(event.partition.as_str(), event.event_id.as_str()),
            )
            .await
            .unwrap();
        let entry = entry.expect("ledger entry written before routing");
        assert_eq!(entry.str("gateway"), Some("gw-sample"));
        assert!(
            entry
                .str("envelope")
                .is_some_and(|body| body.contains(&event.event_id)),
            "the ledger keeps the envelope for replay"
        );
        assert_eq!(event.accepted_at_ms, fixture.clock.now_ms());
    }
}

#[tokio::test]
async fn refuses_bad_envelopes_with_a_recorded_reason_and_never_retries_them() {
    let fixture = fixture(RateLimit::default()).await;
    let good = sample("dialogue");
    let forged = good.replace("not safe after dark", "perfectly safe");
    let unknown_field = good.replacen('{', "{\"debug\": true,", 1);
    let bad_uid = good.replace(
        "gm-0001/district-003/scene-012",
        "gm 0001/district-003/scene-012",
    );
    let truncated = good[..good.len() / 2].to_owned();
    let oversized = format!("{{\"padding\": \"{}\"}}", "x".repeat(70_000));
    let wrong_version = good.replace("\"v\": 1", "\"v\": 2");
    let cases: Vec<(&str, String, Option<&str>, RejectReason)> = vec![
        (
            "forged",
            forged,
            Some("gw-sample"),
            RejectReason::BadSignature,
        ),
        (
            "unknown-field",
            unknown_field,
            Some("gw-sample"),
            RejectReason::Malformed,
        ),
        ("bad-uid", bad_uid, Some("gw-sample"), RejectReason::BadUid),
        ("truncated", truncated, None, RejectReason::Malformed),
        ("oversized", oversized, None, RejectReason::Oversized),
        (
            "version",
            wrong_version,
            Some("gw-sample"),
            RejectReason::UnsupportedVersion,
        ),
    ];
    let records: Vec<ReceivedMessage> = cases
        .iter()
        .map(|(id, body, _, _)| record(id, body, 1))
        .collect();
    let report = fixture.handle(&records).await;
    assert!(
        report.all_succeeded(),
        "bad input is acknowledged, not retried: {report:?}"
    );
    assert!(
        routed(fixture.queue.as_ref()).await.is_empty(),
        "nothing bad is routed"
    );
    for (id, body, gateway, reason) in &cases {
        let row = rejection(fixture.table.as_ref(), *gateway, body)
            .await
            .unwrap_or_else(|| panic!("{id}: no rejection row"));
        assert_eq!(row.reason, Some(*reason), "{id}: {}", row.detail);
        assert!(!row.detail.is_empty());
    }
    // A stale clock: the same good envelope, 301 s later, is refused for clock skew.
    fixture.clock.advance(301_000);
    fixture.handle(&[record("stale", &good, 1)]).await;
    let row = rejection(fixture.table.as_ref(), Some("gw-sample"), &good)
        .await
        .expect("stale row");
    assert_eq!(row.reason, Some(RejectReason::ClockSkew));
}

/// `body` changed by `change`, then signed again with the sample gateway's key.
fn resigned(body: &str, change: impl FnOnce(&mut serde_json::Value)) -> String {
    let key = hex::decode(SAMPLE_KEY_HEX).unwrap();
    let mut envelope: serde_json::Value = serde_json::from_str(body).unwrap();
    change(&mut envelope);
    envelope.as_object_mut().unwrap().remove("signature");
    let canonical = worldfleet_domain::envelope::canonical_bytes(&envelope).unwrap();
    envelope["signature"] = serde_json::Value::from(
        worldfleet_domain::envelope::signature_hex(&key, &canonical).unwrap(),
    );
    envelope.to_string()
}

#[tokio::test]
async fn a_replay_is_refused_but_a_redelivery_of_the_same_message_completes_routing() {
    let fixture = fixture(RateLimit::default()).await;
    let body = sample("combat");
    fixture.handle(&[record("m-1", &body, 1)]).await;
    assert_eq!(routed(fixture.queue.as_ref()).await.len(), 1);
    // The same SQS message again (a crash after the ledger append): routing resumes.
    let report = fixture.handle(&[record("m-1", &body, 2)]).await;
    assert!(report.all_succeeded());
    // Re-sent with the same deduplication id (the event id): inside the 5-minute window the
    // FIFO queue absorbs it; after it, compose's conditional canon put would.
    assert!(
        routed(fixture.queue.as_ref()).await.is_empty(),
        "no second copy downstream"
    );
    assert!(
        rejection(fixture.table.as_ref(), Some("gw-sample"), &body)
            .await
            .is_none(),
        "not a replay"
    );
    // The same envelope in a different message: a replay, refused.
    fixture.handle(&[record("m-2", &body, 1)]).await;
    assert!(routed(fixture.queue.as_ref()).await.is_empty());
    let row = rejection(fixture.table.as_ref(), Some("gw-sample"), &body)
        .await
        .expect("replay row");
    assert_eq!(row.reason, Some(RejectReason::Replayed));
    // A timeout retry re-stamped with a later sent_at_ms and signed again is the same event:
    // refused as a replay (no action needed), never as a conflict that would invite a new id.
    let restamped = resigned(&body, |envelope| {
        envelope["sent_at_ms"] = serde_json::Value::from(SAMPLE_SENT_AT + 700);
    });
    fixture.handle(&[record("m-2b", &restamped, 1)]).await;
    assert!(routed(fixture.queue.as_ref()).await.is_empty());
    let row = rejection(fixture.table.as_ref(), Some("gw-sample"), &restamped)
        .await
        .expect("re-stamped retry row");
    assert_eq!(row.reason, Some(RejectReason::Replayed));
    // The same event id with other content (properly signed): a conflict, refused.
    let conflicting = resigned(&body, |envelope| {
        envelope["payload"]["damage"] = serde_json::Value::from(1);
    });
    fixture.handle(&[record("m-3", &conflicting, 1)]).await;
    let row = rejection(fixture.table.as_ref(), Some("gw-sample"), &conflicting)
        .await
        .expect("conflict row");
    assert_eq!(row.reason, Some(RejectReason::EventIdConflict));
    assert!(
        !row.detail.contains("fresh id"),
        "the advice must not invite a retry under a new id: {}",
        row.detail
    );
}

/// A get or a put, as a [`Hooked`] table sees it before passing it on.
enum Call<'a> {
    Get(&'a str),
    Put(&'a str, &'a Item),
}

/// A table that passes every call to `inner`, after `hook` has seen each get and put: the hook
/// returns how long to wait first and whether to fail the call (nothing written) instead.
struct Hooked<F> {
    inner: Arc<dyn Table>,
    hook: F,
}

impl<F> Hooked<F>
where
    F: Fn(Call<'_>) -> (Duration, bool) + Send + Sync + 'static,
{
    fn over(inner: Arc<dyn Table>, hook: F) -> Arc<dyn Table> {
        Arc::new(Self { inner, hook })
    }

    async fn enter(&self, call: Call<'_>) -> PortResult<()> {
        let (wait, fail) = (self.hook)(call);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if fail {
            return Err(worldfleet_ports::Error::Unavailable("injected".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl<F> Table for Hooked<F>
where
    F: Fn(Call<'_>) -> (Duration, bool) + Send + Sync + 'static,
{
    async fn ensure_table(&self, spec: &TableSpec) -> PortResult<()> {
        self.inner.ensure_table(spec).await
    }
    async fn get(&self, table: &str, key: &Key) -> PortResult<Option<Item>> {
        self.enter(Call::Get(table)).await?;
        self.inner.get(table, key).await
    }
    async fn batch_get(&self, table: &str, keys: &[Key]) -> PortResult<Vec<Item>> {
        self.inner.batch_get(table, keys).await
    }
    async fn put(&self, table: &str, item: Item, condition: Option<Condition>) -> PortResult<()> {
        self.enter(Call::Put(table, &item)).await?;
        self.inner.put(table, item, condition).await
    }
    async fn update(
        &self,
        table: &str,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> PortResult<Item> {
        self.inner.update(table, key, update, condition).await
    }
    async fn delete(
        &self,
        table: &str,
        key: &Key,
        condition: Option<Condition>,
    ) -> PortResult<Option<Item>> {
        self.inner.delete(table, key, condition).await
    }
    async fn query(&self, table: &str, query: &Query) -> PortResult<QueryPage> {
        self.inner.query(table, query).await
    }
    async fn batch_write(&self, table: &str, writes: Vec<BatchWrite>) -> PortResult<()> {
        self.inner.batch_write(table, writes).await
    }
    async fn transact(&self, operations: Vec<TransactWrite>) -> PortResult<()> {
        self.inner.transact(operations).await
    }
}

/// A table whose ledger append for message `m-1` is slow (200 ms), and fails the first time if
/// asked (nothing written): a later record of the same batch could then reach the ledger first.
fn troubled_ledger_append(inner: Arc<dyn Table>, fail_once: bool) -> Arc<dyn Table> {
    let fail_once = std::sync::atomic::AtomicBool::new(fail_once);
    Hooked::over(inner, move |call| match call {
        Call::Put(table, item)
            if table == LEDGER_TABLE && item.str("message_id") == Some("m-1") =>
        {
            (
                Duration::from_millis(200),
                fail_once.swap(false, std::sync::atomic::Ordering::SeqCst),
            )
        }
        _ => (Duration::ZERO, false),
    })
}

/// Routes `[combat, dialogue, combat again]` (an envelope, another, the first one's replay) in
/// one FIFO group through intake over `table`, `attempts` times, and checks that the original
/// is routed in its place and owns the event, and the replay is refused.
async fn envelope_and_replay_in_one_batch(
    wrap: impl FnOnce(Arc<dyn Table>) -> Arc<dyn Table>,
    attempts: u32,
) {
    let fixture = fixture_over(RateLimit::default(), wrap).await;
    let (combat, dialogue) = (sample("combat"), sample("dialogue"));
    for attempt in 1..=attempts {
        let report = fixture
            .handle(&[
                record("m-1", &combat, attempt),
                record("m-2", &dialogue, attempt),
                record("m-3", &combat, attempt),
            ])
            .await;
        assert_eq!(report.all_succeeded(), attempt == attempts, "{report:?}");
    }
    let kinds: Vec<String> = routed(fixture.queue.as_ref())
        .await
        .iter()
        .map(|event| event.kind.as_str().to_owned())
        .collect();
    assert_eq!(kinds, ["combat", "dialogue"], "routed in queue order");
    let event: serde_json::Value = serde_json::from_str(&combat).unwrap();
    let entry = fixture
        .table
        .get(
            LEDGER_TABLE,
            &Key::new(
                event["partition"].as_str().unwrap(),
                event["event_id"].as_str().unwrap(),
            ),
        )
        .await
        .unwrap()
        .expect("ledger entry");
    assert_eq!(
        entry.str("message_id"),
        Some("m-1"),
        "the original owns the event"
    );
    let row = rejection(fixture.table.as_ref(), Some("gw-sample"), &combat)
        .await
        .expect("the replay's row");
    assert_eq!(row.reason, Some(RejectReason::Replayed));
}

#[tokio::test]
async fn an_envelope_and_its_replay_in_one_batch_keep_the_envelope_in_its_place() {
    // The original's ledger append is slow: its replay, later in the same batch, still must
    // not take the event.
    envelope_and_replay_in_one_batch(|inner| troubled_ledger_append(inner, false), 1).await;
}

#[tokio::test]
async fn a_replay_behind_a_failed_original_does_not_take_its_event() {
    // The original's ledger append fails once: the replay is not run in that attempt either,
    // so on redelivery the original still owns its event.
    envelope_and_replay_in_one_batch(|inner| troubled_ledger_append(inner, true), 2).await;
}

#[tokio::test]
async fn refusals_are_found_by_gateway_and_event_id_and_repeats_are_counted() {
    let fixture = fixture(RateLimit::default()).await;
    let body = sample("combat");
    let event_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    fixture.handle(&[record("m-1", &body, 1)]).await;
    routed(fixture.queue.as_ref()).await;
    // Twenty replays of the same bytes, the last redelivered after a crash that followed the
    // row's write (same message id twice): one row, twenty refused messages.
    for index in 0..20 {
        let message = format!("replay-{index}");
        fixture.handle(&[record(&message, &body, 1)]).await;
    }
    fixture.handle(&[record("replay-19", &body, 2)]).await;
    // Other content under the same id: a second row under the same event id.
    let conflicting = resigned(&body, |envelope| {
        envelope["payload"]["damage"] = serde_json::Value::from(1);
    });
    fixture.handle(&[record("m-3", &conflicting, 1)]).await;
    let table = fixture.table.as_ref();
    let rows = lookup_event(table, REJECTIONS_TABLE, "gw-sample", &event_id)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let replays = rows
        .iter()
        .find(|row| row.reason == Some(RejectReason::Replayed))
        .expect("the replay row");
    assert_eq!(replays.count, 20);
    assert_eq!(replays.event_id.as_deref(), Some(event_id.as_str()));
    assert_eq!(replays.size, body.len() as u64);
    assert!(replays.first_received_at_ms <= replays.last_received_at_ms);
    let conflict = rows
        .iter()
        .find(|row| row.reason == Some(RejectReason::EventIdConflict))
        .expect("the conflict row");
    assert_eq!(conflict.count, 1);
    // By the exact bytes, too.
    let by_body = lookup_body(table, REJECTIONS_TABLE, conflicting.as_bytes())
        .await
        .unwrap()
        .expect("found by body");
    assert_eq!(&by_body, conflict);
    // Another gateway's lookup of the same id finds nothing.
    assert!(
        lookup_event(table, REJECTIONS_TABLE, "gw-other", &event_id)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The dialogue sample under event id `...G{index:02}`, signed again.
fn numbered_dialogue(index: u32) -> String {
    let key = hex::decode(SAMPLE_KEY_HEX).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&sample("dialogue")).unwrap();
    value.as_object_mut().unwrap().remove("signature");
    value["event_id"] = serde_json::Value::from(format!("01JD3Q7Z8X9Y0A1B2C3D4E5G{index:02}"));
    let canonical = worldfleet_domain::envelope::canonical_bytes(&value).unwrap();
    value["signature"] = serde_json::Value::from(
        worldfleet_domain::envelope::signature_hex(&key, &canonical).unwrap(),
    );
    value.to_string()
}

#[tokio::test]
async fn players_over_their_rate_are_refused_in_queue_order_until_tokens_refill() {
    let fixture = fixture(RateLimit {
        burst: 2,
        per_second: 1,
    })
    .await;
    let bodies: Vec<String> = (0..4).map(numbered_dialogue).collect();
    let records: Vec<ReceivedMessage> = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| record(&format!("r-{index}"), body, 1))
        .collect();
    fixture.handle(&records).await;
    let routed_ids: Vec<String> = routed(fixture.queue.as_ref())
        .await
        .into_iter()
        .map(|event| event.event_id)
        .collect();
    assert_eq!(
        routed_ids,
        ["01JD3Q7Z8X9Y0A1B2C3D4E5G00", "01JD3Q7Z8X9Y0A1B2C3D4E5G01"],
        "a burst of 2: the player's first two events in queue order"
    );
    for (index, body) in bodies.iter().enumerate() {
        let row = rejection(fixture.table.as_ref(), Some("gw-sample"), body).await;
        if index < 2 {
            assert!(row.is_none(), "r-{index} was accepted: {row:?}");
            continue;
        }
        let row = row.unwrap_or_else(|| panic!("r-{index} has a rejection row"));
        assert_eq!(row.reason, Some(RejectReason::RateLimited));
        assert!(
            row.detail.contains("new SQS MessageDeduplicationId"),
            "the advice must name the retry that works: {}",
            row.detail
        );
    }
    fixture.clock.advance(1_000);
    let again = numbered_dialogue(9);
    fixture.handle(&[record("r-9", &again, 1)]).await;
    assert_eq!(
        routed(fixture.queue.as_ref()).await.len(),
        1,
        "one token refilled after a second"
    );
}

#[tokio::test]
async fn a_player_back_after_the_bucket_expired_is_served_before_the_sweep_removes_it() {
    // The bucket expires 62 s after its last take (burst / rate + 60). Reads skip an expired
    // item while the store still holds it, and a take conditioned on "no bucket" failed on it
    // every round: the player's events were throttled until the sweep, then dead-lettered.
    let fixture = fixture(RateLimit {
        burst: 2,
        per_second: 1,
    })
    .await;
    fixture
        .handle(&[record("r-0", &numbered_dialogue(0), 1)])
        .await;
    fixture.clock.advance(63_000);
    let report = fixture
        .handle(&[record("r-1", &numbered_dialogue(1), 1)])
        .await;
    assert!(report.failed_message_ids.is_empty(), "{report:?}");
    assert_eq!(routed(fixture.queue.as_ref()).await.len(), 2);
}

#[tokio::test]
async fn a_batch_takes_each_players_tokens_in_one_write_however_slow_the_table() {
    // Ten events of one player in one batch, over a table slow enough that ten separate
    // takes of the bucket (each a read, then a write conditional on what it read) would
    // collide round after round. One take for the batch cannot collide with itself.
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&writes);
    let fixture = fixture_over(RateLimit::default(), move |inner| {
        // Every bucket read and write takes 5 ms; the writes are counted.
        Hooked::over(inner, move |call| match call {
            Call::Get(table) if table == RATE_LIMITS_TABLE => (Duration::from_millis(5), false),
            Call::Put(table, _) if table == RATE_LIMITS_TABLE => {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (Duration::from_millis(5), false)
            }
            _ => (Duration::ZERO, false),
        })
    })
    .await;
    let bodies: Vec<String> = (0..10).map(numbered_dialogue).collect();
    let records: Vec<ReceivedMessage> = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| record(&format!("r-{index}"), body, 1))
        .collect();
    let report = fixture.handle(&records).await;
    assert!(report.all_succeeded(), "{report:?}");
    assert_eq!(routed(fixture.queue.as_ref()).await.len(), 10);
    assert_eq!(
        writes.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one bucket write for the player's ten events"
    );
    let bucket = fixture
        .table
        .get(RATE_LIMITS_TABLE, &Key::new("player#p-000042", "bucket"))
        .await
        .unwrap();
    assert!(bucket.is_some(), "the bucket is the actor's");
}
