//! The ecology shell on the embedded store: chains that never fork, the watchdog, exactly-once
//! inputs and creatures conserved across cells through the queue.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use worldfleet_domain::names::{
    CANON_TABLE, DISTRIBUTE_QUEUE, ECOLOGY_INPUT_QUEUE, ECOLOGY_TABLE, ECOLOGY_TICK_QUEUE,
    IDEMPOTENCY_TABLE, TIMERS_TABLE,
};
use worldfleet_domain::{CapturePayload, EventPayload, PartitionUid};
use worldfleet_ecology::shell::store::{StoredCell, state_key};
use worldfleet_ecology::sim::Founders;
use worldfleet_ecology::{
    EcologyConfig, EcologyInputStage, EcologyTickStage, TickInterval, TickTimer, seed_cell,
    watchdog,
};
use worldfleet_embedded::testing::TempStore;
use worldfleet_kit::testing::{
    accepted_event, copies, declared_context, delivery, drain, handle_all, items_with_prefix,
};
use worldfleet_kit::{StageContext, StageHandler};
use worldfleet_ports::queue::{DeleteOutcome, QueueDepth, QueueSpec, SendOutcome};
use worldfleet_ports::{
    ManualClock, OutgoingMessage, Queue, ReceiveRequest, ReceivedMessage, Result as PortResult,
};

const START_MS: u64 = 1_763_700_000_000;
const INTERVAL_MS: u64 = 5_000;

struct Fixture {
    _store: TempStore,
    clock: ManualClock,
    context: StageContext,
    config: EcologyConfig,
    inputs: EcologyInputStage,
    ticks: EcologyTickStage,
}

async fn fixture() -> Fixture {
    let (store, clock) = TempStore::manual(START_MS);
    let context = declared_context(
        store.queue(),
        store.table(),
        Arc::clone(&store.clock),
        &[ECOLOGY_TABLE, TIMERS_TABLE, IDEMPOTENCY_TABLE, CANON_TABLE],
        &[ECOLOGY_INPUT_QUEUE, ECOLOGY_TICK_QUEUE, DISTRIBUTE_QUEUE],
    )
    .await;
    let mut config = EcologyConfig::builtin().unwrap();
    config.interval = TickInterval::from_millis(INTERVAL_MS).unwrap();
    Fixture {
        inputs: EcologyInputStage::new(context.clone()),
        ticks: EcologyTickStage::new(context.clone(), config.clone()),
        config,
        context,
        clock,
        _store: store,
    }
}

fn uid(raw: &str) -> PartitionUid {
    PartitionUid::parse(raw).unwrap()
}

async fn cell(fixture: &Fixture, name: &str) -> StoredCell {
    let item = fixture
        .context
        .table
        .get(ECOLOGY_TABLE, &state_key(name))
        .await
        .unwrap()
        .unwrap();
    StoredCell::from_item(&item).unwrap()
}

/// Moves time one interval and runs every queue until it is empty: inputs, then timers.
async fn step(fixture: &Fixture) -> usize {
    fixture.clock.advance(INTERVAL_MS);
    let queue = fixture.context.queue.as_ref();
    let mut ticks = 0;
    loop {
        let inputs = drain(queue, ECOLOGY_INPUT_QUEUE).await;
        for chunk in inputs.chunks(10) {
            handle_all(&fixture.inputs, chunk).await;
        }
        let timers = drain(queue, ECOLOGY_TICK_QUEUE).await;
        for chunk in timers.chunks(10) {
            handle_all(&fixture.ticks, chunk).await;
        }
        ticks += timers.len();
        drain(queue, DISTRIBUTE_QUEUE).await;
        if inputs.is_empty() && timers.is_empty() {
            return ticks;
        }
    }
}

fn founders() -> Vec<Founders> {
    vec![
        Founders {
            species: "glimmerfox".into(),
            count: 30,
        },
        Founders {
            species: "mossback".into(),
            count: 30,
        },
    ]
}

/// Seeds `name` with [`founders`], cap 200 and no neighbours; false when it existed.
async fn seed(fixture: &Fixture, name: &str) -> bool {
    seed_cell(
        &fixture.context,
        &fixture.config,
        uid(name),
        200,
        vec![],
        &founders(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn duplicate_tick_deliveries_never_fork_the_chain() {
    let fixture = fixture().await;
    let name = "wild/zone-1/cell-1";
    assert!(seed(&fixture, name).await);
    let queue = fixture.context.queue.as_ref();
    for tick in 1..=4_u64 {
        fixture.clock.advance(INTERVAL_MS);
        let timers = drain(queue, ECOLOGY_TICK_QUEUE).await;
        assert_eq!(timers.len(), 1, "one live timer before tick {tick}");
        let timer: TickTimer = serde_json::from_str(&timers[0].body).unwrap();
        assert_eq!(timer.tick, tick);
        // Three copies at once, then all three again (lost deletes).
        let copies = copies(&timers[0], 3);
        fixture
            .ticks
            .handle_batch(&copies, Duration::from_secs(30))
            .await;
        handle_all(&fixture.ticks, &copies).await;
        assert_eq!(cell(&fixture, name).await.state.tick, tick);
    }
    fixture.clock.advance(INTERVAL_MS);
    assert_eq!(
        drain(queue, ECOLOGY_TICK_QUEUE).await.len(),
        1,
        "still one chain"
    );
}

#[tokio::test]
async fn the_watchdog_rearms_a_lost_chain_once() {
    let fixture = fixture().await;
    let name = "wild/zone-1/cell-1";
    seed(&fixture, name).await;
    assert_eq!(step(&fixture).await, 1);
    assert_eq!(step(&fixture).await, 1);
    // The timer of tick 3 is lost.
    fixture.clock.advance(INTERVAL_MS);
    assert_eq!(
        drain(fixture.context.queue.as_ref(), ECOLOGY_TICK_QUEUE)
            .await
            .len(),
        1
    );
    assert_eq!(
        watchdog(&fixture.context).await.unwrap(),
        (1, 0),
        "two intervals quiet is not enough"
    );
    fixture.clock.advance(2 * INTERVAL_MS + 1);
    assert_eq!(watchdog(&fixture.context).await.unwrap(), (1, 1));
    step(&fixture).await;
    assert_eq!(cell(&fixture, name).await.state.tick, 3);
    for _ in 0..3 {
        assert_eq!(step(&fixture).await, 1, "exactly one timer per interval");
    }
    assert_eq!(cell(&fixture, name).await.state.tick, 6);
}

fn capture(event_id: &str, cell: &str, creature: &str) -> String {
    let payload = EventPayload::Capture(CapturePayload {
        creature: creature.into(),
    });
    serde_json::to_string(&accepted_event(
        event_id,
        uid(cell),
        "p-1",
        payload,
        START_MS,
    ))
    .unwrap()
}

#[tokio::test]
async fn a_redelivered_capture_is_applied_exactly_once() {
    let fixture = fixture().await;
    let name = "wild/zone-1/cell-1";
    seed(&fixture, name).await;
    let target = cell(&fixture, name).await.state.creatures[0].id.clone();
    let message = delivery(
        "m-1",
        capture("01JD3Q7Z8X9Y0A1B2C3D4E5F70", name, target.as_str()),
        name,
        START_MS,
    );
    for _ in 0..2 {
        handle_all(&fixture.inputs, std::slice::from_ref(&message)).await;
    }
    step(&fixture).await;
    // Again after it was consumed.
    handle_all(&fixture.inputs, std::slice::from_ref(&message)).await;
    step(&fixture).await;
    let stored = cell(&fixture, name).await;
    assert_eq!(stored.totals.captured, 1);
    assert!(stored.state.creatures.iter().all(|c| c.id != target));
    let table = fixture.context.table.as_ref();
    let seen = items_with_prefix(table, ECOLOGY_TABLE, name, "seen#").await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].str("outcome"), Some("applied"));
    let captured = items_with_prefix(table, ECOLOGY_TABLE, name, "captured#").await;
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0].str("player"), Some("p-1"));
}

#[tokio::test]
async fn migration_conserves_creatures_across_cells_through_the_queue() {
    let fixture = fixture().await;
    seed_ring(&fixture).await;
    for _ in 0..12 {
        step(&fixture).await;
    }
    assert_conserved(&fixture, 12).await;
}

const RING: [&str; 3] = [
    "wild/zone-1/cell-a",
    "wild/zone-1/cell-b",
    "wild/zone-2/cell-c",
];

/// Seeds [`RING`]: three cells, each the neighbour of the other two.
async fn seed_ring(fixture: &Fixture) {
    for (index, name) in RING.iter().enumerate() {
        let neighbours = vec![
            uid(RING[(index + 1) % RING.len()]),
            uid(RING[(index + 2) % RING.len()]),
        ];
        seed_cell(
            &fixture.context,
            &fixture.config,
            uid(name),
            120,
            neighbours,
            &founders(),
        )
        .await
        .unwrap();
    }
}

/// Every cell of [`RING`] is at `tick`, its head counts balance, every emigrant arrived, was
/// handed back or waits, and no creature is in two cells.
async fn assert_conserved(fixture: &Fixture, tick: u64) {
    let ring = RING;
    let table = fixture.context.table.as_ref();
    let mut everywhere = Vec::new();
    let mut emigrated = 0;
    let mut arrived = 0;
    let mut returned = 0;
    let mut pending_arrivals = 0;
    for name in ring {
        let stored = cell(fixture, name).await;
        assert_eq!(stored.state.tick, tick);
        assert_eq!(
            stored.totals.expected_population(),
            stored.state.creatures.len() as i64,
            "{name}: head counts balance"
        );
        emigrated += stored.totals.emigrated;
        arrived += stored.totals.arrived;
        returned += stored.totals.returned;
        everywhere.extend(stored.state.creatures.iter().map(|c| c.id.clone()));
        let pending = items_with_prefix(table, ECOLOGY_TABLE, name, "pending#a#").await;
        pending_arrivals += pending.len() as u64;
    }
    assert!(emigrated > 0, "creatures migrated");
    assert_eq!(
        emigrated,
        arrived + returned + pending_arrivals,
        "every emigrant arrived, was handed back or waits"
    );
    let unique: BTreeSet<_> = everywhere.iter().collect();
    assert_eq!(unique.len(), everywhere.len(), "no creature in two cells");
}

/// A queue whose sends fail while `down` is set: the worker that runs a tick's transaction and
/// dies before its outbox went out.
struct SendsDown {
    inner: Arc<dyn Queue>,
    down: AtomicBool,
}

#[async_trait]
impl Queue for SendsDown {
    async fn ensure_queue(&self, spec: &QueueSpec) -> PortResult<()> {
        self.inner.ensure_queue(spec).await
    }
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> PortResult<Vec<SendOutcome>> {
        if self.down.load(Ordering::SeqCst) {
            return Err(worldfleet_ports::Error::Unavailable(
                "the worker died before its outbox went out".into(),
            ));
        }
        self.inner.send_batch(queue, messages).await
    }
    async fn receive(
        &self,
        queue: &str,
        request: ReceiveRequest,
    ) -> PortResult<Vec<ReceivedMessage>> {
        self.inner.receive(queue, request).await
    }
    async fn delete_batch(
        &self,
        queue: &str,
        receipt_handles: Vec<String>,
    ) -> PortResult<Vec<DeleteOutcome>> {
        self.inner.delete_batch(queue, receipt_handles).await
    }
    async fn change_visibility(
        &self,
        queue: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> PortResult<()> {
        self.inner
            .change_visibility(queue, receipt_handle, timeout)
            .await
    }
    async fn depth(&self, queue: &str) -> PortResult<QueueDepth> {
        self.inner.depth(queue).await
    }
}

#[tokio::test]
async fn a_next_tick_that_overtakes_an_unsent_outbox_sends_that_outbox_first() {
    let fixture = fixture().await;
    seed_ring(&fixture).await;
    let dying_queue = Arc::new(SendsDown {
        inner: Arc::clone(&fixture.context.queue),
        down: AtomicBool::new(true),
    });
    let dying = EcologyTickStage::new(
        StageContext::new(
            dying_queue,
            Arc::clone(&fixture.context.table),
            Arc::clone(&fixture.context.clock),
        ),
        fixture.config.clone(),
    );
    let queue = fixture.context.queue.as_ref();
    let budget = Duration::from_secs(30);
    let mut overtaken_emigrants = 0;
    for _ in 0..6 {
        fixture.clock.advance(INTERVAL_MS);
        let inputs = drain(queue, ECOLOGY_INPUT_QUEUE).await;
        for chunk in inputs.chunks(10) {
            handle_all(&fixture.inputs, chunk).await;
        }
        for message in drain(queue, ECOLOGY_TICK_QUEUE).await {
            let timer: TickTimer = serde_json::from_str(&message.body).unwrap();
            let before = cell(&fixture, timer.cell.as_str()).await;
            if timer.tick != before.state.tick + 1 {
                fixture.ticks.on_timer(&timer, budget).await.unwrap();
                continue;
            }
            // The tick is applied, its outbox never goes out ...
            assert!(dying.on_timer(&timer, budget).await.is_err());
            let applied = cell(&fixture, timer.cell.as_str()).await;
            assert_eq!(applied.state.tick, timer.tick);
            overtaken_emigrants += applied.outbox.as_ref().unwrap().emigrants.len();
            // ... and the next tick's timer comes first (the watchdog re-arms both at once).
            let next = TickTimer {
                cell: timer.cell.clone(),
                tick: timer.tick + 1,
            };
            fixture.ticks.on_timer(&next, budget).await.unwrap();
        }
        drain(queue, DISTRIBUTE_QUEUE).await;
    }
    // Deliver what is left: the migrants, the spare timers.
    let inputs = drain(queue, ECOLOGY_INPUT_QUEUE).await;
    for chunk in inputs.chunks(10) {
        handle_all(&fixture.inputs, chunk).await;
    }
    assert!(
        overtaken_emigrants > 0,
        "an overtaken outbox held emigrants"
    );
    assert_conserved(&fixture, 12).await;
}

#[tokio::test]
async fn a_process_that_completed_the_last_outbox_checks_it_without_a_read() {
    let fixture = fixture().await;
    let name = "wild/zone-1/cell-1";
    seed(&fixture, name).await;
    step(&fixture).await;
    // Tick 2 on the stage that completed tick 1's outbox, tick 3 on a fresh one (a restarted
    // process): the fresh one reads tick 2's idempotency record first, once.
    let fresh = EcologyTickStage::new(fixture.context.clone(), fixture.config.clone());
    let mut requests = Vec::new();
    for stage in [&fixture.ticks, &fresh] {
        fixture.clock.advance(INTERVAL_MS);
        let timers = drain(fixture.context.queue.as_ref(), ECOLOGY_TICK_QUEUE).await;
        assert_eq!(timers.len(), 1);
        let before = fixture._store.store.counters();
        handle_all(stage, &timers).await;
        requests.push(
            fixture
                ._store
                .store
                .counters()
                .since(&before)
                .table_requests,
        );
    }
    assert_eq!(cell(&fixture, name).await.state.tick, 3);
    assert_eq!(
        requests[1],
        requests[0] + 1,
        "table requests per tick: {requests:?}"
    );
}
