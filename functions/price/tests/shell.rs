//! The price shells on the embedded store: the window rule end to end, exactly-once trades
//! under duplicate delivery, production ticks and the watchdog.

use std::sync::Arc;
use std::time::Duration;

use worldfleet_domain::names::{
    IDEMPOTENCY_TABLE, MARKET_QUEUE, MARKET_TABLE, PRICE_WINDOW_QUEUE, PRODUCTION_TABLE,
    PRODUCTION_TICK_QUEUE, TIMERS_TABLE,
};
use worldfleet_domain::{AcceptedEvent, EventPayload, PartitionUid, TradePayload, TradeSide};
use worldfleet_embedded::testing::TempStore;
use worldfleet_kit::testing::{
    accepted_event, copies, declared_context, delivery, drain, handle_all, items_with_prefix,
};
use worldfleet_kit::{StageContext, StageHandler};
use worldfleet_ports::{Item, ManualClock, ReceivedMessage};
use worldfleet_price::market::StationMarket;
use worldfleet_price::production::{Planet, Region};
use worldfleet_price::stages::records::market_key;
use worldfleet_price::stages::regions::read_region;
use worldfleet_price::{
    MarketStage, PriceConfig, ProductionStage, ProductionTimer, WindowStage, WindowTimer,
    seed_region, watchdog,
};

const START_MS: u64 = 1_763_700_000_000;
const STATION: &str = "region-1/station-1";

struct Fixture {
    _store: TempStore,
    clock: ManualClock,
    context: StageContext,
    market: MarketStage,
    windows: WindowStage,
    production: ProductionStage,
}

async fn fixture() -> Fixture {
    let (store, clock) = TempStore::manual(START_MS);
    let context = declared_context(
        store.queue(),
        store.table(),
        Arc::clone(&store.clock),
        &[
            MARKET_TABLE,
            PRODUCTION_TABLE,
            TIMERS_TABLE,
            IDEMPOTENCY_TABLE,
        ],
        &[MARKET_QUEUE, PRICE_WINDOW_QUEUE, PRODUCTION_TICK_QUEUE],
    )
    .await;
    let config = PriceConfig::builtin().unwrap();
    Fixture {
        market: MarketStage::new(context.clone(), config.clone()),
        windows: WindowStage::new(context.clone(), config.clone()),
        production: ProductionStage::new(context.clone(), config),
        context,
        clock,
        _store: store,
    }
}

fn trade(index: usize, side: TradeSide, quantity: u64) -> AcceptedEvent {
    let event_id = ulid::Ulid::from_parts(START_MS + index as u64, index as u128).to_string();
    let payload = EventPayload::Trade(TradePayload {
        good: "ore".into(),
        side,
        quantity,
    });
    accepted_event(
        event_id,
        PartitionUid::parse(STATION).unwrap(),
        format!("p-{index}"),
        payload,
        START_MS,
    )
}

fn record(index: usize, body: String) -> ReceivedMessage {
    delivery(&format!("m-{index}"), body, STATION, START_MS)
}

/// The record of trade `index`, delivered once.
fn trade_record(index: usize, side: TradeSide, quantity: u64) -> ReceivedMessage {
    record(
        index,
        serde_json::to_string(&trade(index, side, quantity)).unwrap(),
    )
}

impl Fixture {
    /// Hands `records` to the market stage, which must apply every one.
    async fn trade(&self, records: &[ReceivedMessage]) {
        handle_all(&self.market, records).await;
    }

    /// Moves time `ms` on and closes every window whose timer is then due.
    async fn close_due_windows(&self, ms: u64) {
        self.clock.advance(ms);
        let timers = drain(self.context.queue.as_ref(), PRICE_WINDOW_QUEUE).await;
        handle_all(&self.windows, &timers).await;
    }

    /// The station's market as stored.
    async fn market_state(&self) -> StationMarket {
        let state = self
            .context
            .table
            .get(MARKET_TABLE, &market_key(STATION))
            .await
            .unwrap()
            .unwrap();
        serde_json::from_str(state.str("state").unwrap()).unwrap()
    }

    /// The station's items whose sort key starts with `prefix`.
    async fn market_items(&self, prefix: &str) -> Vec<Item> {
        items_with_prefix(self.context.table.as_ref(), MARKET_TABLE, STATION, prefix).await
    }
}

#[tokio::test]
async fn a_burst_within_one_second_gets_exactly_one_recompute_holding_every_transaction() {
    let fixture = fixture().await;
    let burst = 37;
    let indexes: Vec<usize> = (0..burst).collect();
    for chunk in indexes.chunks(10) {
        let records: Vec<_> = chunk
            .iter()
            .map(|&index| trade_record(index, TradeSide::Buy, 3))
            .collect();
        fixture.trade(&records).await;
        fixture.clock.advance(20); // the burst spans 80 ms
    }
    let queue = fixture.context.queue.as_ref();
    assert!(
        drain(queue, PRICE_WINDOW_QUEUE).await.is_empty(),
        "the timer is delayed to the window end"
    );
    fixture.clock.advance(1_000);
    let timers = drain(queue, PRICE_WINDOW_QUEUE).await;
    assert_eq!(timers.len(), 1, "one window, one timer");
    // Deliver the timer twice: the second is a duplicate and must not recompute again.
    for _ in 0..2 {
        handle_all(&fixture.windows, &timers).await;
    }
    let recomputes = fixture.market_items("recompute#").await;
    assert_eq!(recomputes.len(), 1, "exactly one recompute");
    assert_eq!(
        recomputes[0].i64("transactions"),
        Some(burst as i64),
        "every transaction joined it"
    );
    let records = fixture.market_items("tx#").await;
    assert_eq!(records.len(), burst);
    assert!(records.iter().all(|item| item.i64("window_id") == Some(1)));
    let market = fixture.market_state().await;
    assert_eq!(market.goods["ore"].supply, 10_000 - 3 * burst as i64);
    assert_eq!(market.recomputes, 1);
    assert!(market.pending.is_none());
    let changes: Vec<worldfleet_price::market::PriceChange> =
        serde_json::from_str(recomputes[0].str("changes").unwrap()).unwrap();
    let ore = changes.iter().find(|change| change.good == "ore").unwrap();
    assert_eq!(
        ore.supply,
        10_000 - 3 * burst as i64,
        "the recompute saw every purchase"
    );
    assert_eq!(ore.after_milli, market.goods["ore"].price_milli);
}

#[tokio::test]
async fn redelivered_trades_are_counted_once_even_after_their_window_closed() {
    let fixture = fixture().await;
    let first: Vec<_> = (0..5)
        .map(|index| trade_record(index, TradeSide::Sell, 7))
        .collect();
    fixture.trade(&first).await;
    fixture.close_due_windows(1_500).await;
    // Three windows later the same five arrive again (a lost delete), plus two new ones.
    for round in 0..3 {
        fixture
            .trade(&[trade_record(100 + round, TradeSide::Sell, 1)])
            .await;
        fixture.close_due_windows(1_500).await;
    }
    let mut again = first.clone();
    for record in &mut again {
        record.receive_count = 2;
    }
    fixture.trade(&again).await;
    let market = fixture.market_state().await;
    assert_eq!(
        market.goods["ore"].supply,
        10_000 + 5 * 7 + 3,
        "each sale counted once"
    );
    let recomputes = fixture.market_items("recompute#").await;
    let counted: i64 = recomputes
        .iter()
        .filter_map(|item| item.i64("transactions"))
        .sum();
    assert_eq!(counted, 8);
    assert!(market.pending.is_none(), "the duplicates opened no window");
}

#[tokio::test]
async fn the_watchdog_flushes_a_station_whose_window_timer_was_lost() {
    let fixture = fixture().await;
    fixture.trade(&[trade_record(0, TradeSide::Buy, 1)]).await;
    fixture.clock.advance(10_000);
    let lost = drain(fixture.context.queue.as_ref(), PRICE_WINDOW_QUEUE).await;
    assert_eq!(lost.len(), 1, "the timer existed, and is now lost");
    let report = watchdog(&fixture.context).await.unwrap();
    assert_eq!(report.windows_rearmed, 1);
    fixture.clock.advance(1_000); // timers wait at least a second
    let rearmed = drain(fixture.context.queue.as_ref(), PRICE_WINDOW_QUEUE).await;
    assert_eq!(rearmed.len(), 1);
    let timer: WindowTimer = serde_json::from_str(&rearmed[0].body).unwrap();
    assert_eq!(timer.window_id, 1);
    handle_all(&fixture.windows, &rearmed).await;
    let recomputes = fixture.market_items("recompute#").await;
    assert_eq!(recomputes.len(), 1);
    assert_eq!(
        watchdog(&fixture.context).await.unwrap().windows_rearmed,
        0,
        "nothing left to flush"
    );
}

fn region(planets: usize) -> Region {
    let kinds = ["mining", "agri", "forge", "refinery"];
    Region {
        region: PartitionUid::parse("region-1").unwrap(),
        tick: 0,
        planets: (0..planets)
            .map(|index| Planet {
                id: format!("planet-{index:03}"),
                kind: kinds[index % kinds.len()].into(),
                level: 1 + (index % 10) as u32,
                stock: [
                    ("ore".to_owned(), 500_i64),
                    ("ice".to_owned(), 500),
                    ("food".to_owned(), 500),
                ]
                .into_iter()
                .collect(),
                last_tick: 0,
            })
            .collect(),
    }
}

#[tokio::test]
async fn production_ticks_write_every_planet_and_duplicate_timers_never_fork_the_chain() {
    let fixture = fixture().await;
    let config = PriceConfig::builtin().unwrap();
    assert!(
        seed_region(&fixture.context, &config, &region(100))
            .await
            .unwrap()
    );
    assert!(
        !seed_region(&fixture.context, &config, &region(100))
            .await
            .unwrap(),
        "seeding twice is harmless"
    );
    let queue = fixture.context.queue.as_ref();
    for tick in 1..=3_u64 {
        fixture.clock.advance(12_000);
        let timers = drain(queue, PRODUCTION_TICK_QUEUE).await;
        assert_eq!(timers.len(), 1, "one live timer at tick {tick}");
        let timer: ProductionTimer = serde_json::from_str(&timers[0].body).unwrap();
        assert_eq!(timer.tick, tick);
        // Every timer delivered three times, the copies concurrently.
        let copies = copies(&timers[0], 3);
        let report = fixture
            .production
            .handle_batch(&copies, Duration::from_secs(30))
            .await;
        assert!(
            report.all_succeeded() || report.failed_message_ids.len() < 3,
            "{report:?}"
        );
        handle_all(&fixture.production, &copies).await;
        let region = read_region(&fixture.context, &timer.region).await.unwrap();
        assert_eq!(region.tick, tick);
        assert!(region.planets.iter().all(|planet| planet.last_tick == tick));
    }
    assert_eq!(
        fixture.production.tick_latencies_us().len(),
        3,
        "each tick applied once"
    );
    // Lose the chain: the next timer disappears; the watchdog re-arms it after 3 intervals.
    fixture.clock.advance(12_000);
    assert_eq!(drain(queue, PRODUCTION_TICK_QUEUE).await.len(), 1);
    assert_eq!(
        watchdog(&fixture.context).await.unwrap().regions_rearmed,
        0,
        "not quiet long enough"
    );
    fixture.clock.advance(30_000);
    assert_eq!(watchdog(&fixture.context).await.unwrap().regions_rearmed, 1);
    let rearmed = drain(queue, PRODUCTION_TICK_QUEUE).await;
    assert_eq!(rearmed.len(), 2, "the last tick and the next");
    handle_all(&fixture.production, &rearmed).await;
    let region = read_region(&fixture.context, &PartitionUid::parse("region-1").unwrap())
        .await
        .unwrap();
    assert_eq!(region.tick, 4);
    fixture.clock.advance(12_000);
    assert_eq!(
        drain(queue, PRODUCTION_TICK_QUEUE).await.len(),
        1,
        "one chain again, not two"
    );
}
