//! The watchdog pass on the embedded store: a freshly armed world needs nothing; once every
//! timer of a cell and a region is lost and three intervals pass, one pass re-arms both.

use std::sync::Arc;

use worldfleet_domain::PartitionUid;
use worldfleet_domain::names::{
    CANON_TABLE, DISTRIBUTE_QUEUE, ECOLOGY_INPUT_QUEUE, ECOLOGY_TABLE, ECOLOGY_TICK_QUEUE,
    IDEMPOTENCY_TABLE, MARKET_TABLE, PRICE_WINDOW_QUEUE, PRODUCTION_TABLE, PRODUCTION_TICK_QUEUE,
    PRUNE_QUEUE, PRUNE_TABLE, TIMERS_TABLE,
};
use worldfleet_ecology::sim::Founders;
use worldfleet_ecology::{EcologyConfig, TickInterval, seed_cell};
use worldfleet_embedded::testing::TempStore;
use worldfleet_kit::testing::{declared_context, drain};
use worldfleet_price::production::{Planet, Region};
use worldfleet_price::{PriceConfig, seed_region};
use worldfleet_prune::PruneConfig;
use worldfleet_watchdog::run;

const START_MS: u64 = 1_763_700_000_000;
const ECOLOGY_INTERVAL_MS: u64 = 5_000;

#[tokio::test]
async fn one_pass_rearms_every_lost_chain_and_leaves_live_ones_alone() {
    let (store, clock) = TempStore::manual(START_MS);
    let context = declared_context(
        store.queue(),
        store.table(),
        Arc::clone(&store.clock),
        &[
            ECOLOGY_TABLE,
            TIMERS_TABLE,
            IDEMPOTENCY_TABLE,
            CANON_TABLE,
            MARKET_TABLE,
            PRODUCTION_TABLE,
            PRUNE_TABLE,
        ],
        &[
            ECOLOGY_INPUT_QUEUE,
            ECOLOGY_TICK_QUEUE,
            DISTRIBUTE_QUEUE,
            PRICE_WINDOW_QUEUE,
            PRODUCTION_TICK_QUEUE,
            PRUNE_QUEUE,
        ],
    )
    .await;

    let mut ecology = EcologyConfig::builtin().unwrap();
    ecology.interval = TickInterval::from_millis(ECOLOGY_INTERVAL_MS).unwrap();
    let founders = [Founders {
        species: "glimmerfox".into(),
        count: 4,
    }];
    let cell = PartitionUid::parse("wild/zone-1/cell-1").unwrap();
    assert!(
        seed_cell(&context, &ecology, cell, 100, vec![], &founders)
            .await
            .unwrap()
    );
    let price = PriceConfig::builtin().unwrap();
    let region = Region {
        region: PartitionUid::parse("region-01").unwrap(),
        tick: 0,
        planets: vec![Planet {
            id: "planet-0000".into(),
            kind: "mining".into(),
            level: 3,
            stock: [("ore".to_owned(), 200)].into_iter().collect(),
            last_tick: 0,
        }],
    };
    assert!(seed_region(&context, &price, &region).await.unwrap());

    let fresh = run(&context, &PruneConfig::default()).await.unwrap();
    assert_eq!(fresh.cells_checked, 1);
    assert_eq!(fresh.regions_checked, 1);
    assert_eq!(fresh.rearmed(), 0, "a freshly armed world needs nothing");
    assert!(fresh.prune_swept, "the first pass runs prune's sweep");

    // Every timer is lost, and the chains stay quiet for more than three intervals of both.
    clock.advance(3 * price.production_interval_ms + 1);
    let queue = context.queue.as_ref();
    assert_eq!(drain(queue, ECOLOGY_TICK_QUEUE).await.len(), 1);
    assert_eq!(drain(queue, PRODUCTION_TICK_QUEUE).await.len(), 1);

    let pass = run(&context, &PruneConfig::default()).await.unwrap();
    assert_eq!(pass.cells_rearmed, 1, "{pass:?}");
    assert_eq!(pass.regions_rearmed, 1, "{pass:?}");
    assert_eq!(pass.windows_rearmed, 0, "no station has a pending window");
    assert!(
        !pass.prune_swept,
        "the sweep runs once a day, not every pass"
    );
    clock.advance(price.production_interval_ms);
    assert!(!drain(queue, ECOLOGY_TICK_QUEUE).await.is_empty());
    assert!(!drain(queue, PRODUCTION_TICK_QUEUE).await.is_empty());
}
