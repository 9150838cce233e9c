//! `worldfleet bench-world`: the world stages' throughput and latency on the embedded store.
//!
//! Each phase drives a stage handler's own entry point (the same code a poller runs, each
//! invocation a task of its own), over a fresh store in the durability `run` and `serve` use
//! (boundary: the world stages' writes are fsynced in the background; `--fsync-all` waits for
//! every fsync), with a manual clock so timers need no waiting:
//!
//! * **ecology**: `cells` cells of `creatures` each; every round ticks every cell once
//!   (`concurrency` cells at a time) through the full shell — read the cell, run the tick,
//!   conditional write with inputs consumed, outbox (emigrants, news, next timer). Creature
//!   updates/s = creatures alive at the start of each tick, summed, over the wall time.
//! * **market**: `stations` stations each get one trade (opening a window), then every window
//!   timer is delivered: recomputes/s counts the window stage (read, recompute, conditional
//!   state + record write) only.
//! * **production**: `regions` regions of `planets` planets tick `production_ticks` times;
//!   each tick's latency covers the region read, the pure tick and the whole bulk write plan
//!   (planet chunks and the conditional marker).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde::Serialize;
use worldfleet_domain::{
    AcceptedEvent, EventKind, EventPayload, PartitionUid, TradePayload, TradeSide,
};
use worldfleet_ecology::sim::Founders;
use worldfleet_ecology::{EcologyTickStage, TickTimer, seed_cell};
use worldfleet_embedded::{Durability, EmbeddedStore, StoreOptions};
use worldfleet_kit::StageContext;
use worldfleet_ports::{Clock, ManualClock};
use worldfleet_price::production::{Planet, Region};
use worldfleet_price::{
    MarketStage, ProductionStage, ProductionTimer, WindowStage, WindowTimer, seed_region,
};
use worldfleet_runtime::resources::{QueueSettings, declare};
use worldfleet_runtime::simulation::configs;
use worldfleet_testbed::world::{FOUNDING_SPECIES, TRADED_GOODS, WorldLayout};

/// What to measure.
#[derive(Debug, Clone)]
pub struct WorldBenchOptions {
    pub cells: u32,
    /// Creatures per cell at genesis (split over the founding species; cap = 800).
    pub creatures: u32,
    pub ecology_rounds: u32,
    pub stations: u32,
    pub regions: u32,
    pub planets: u32,
    pub production_ticks: u32,
    /// Stage invocations in flight at once.
    pub concurrency: usize,
    pub durability: Durability,
}

impl Default for WorldBenchOptions {
    fn default() -> Self {
        Self {
            cells: 64,
            creatures: 300,
            ecology_rounds: 5,
            stations: 500,
            regions: 4,
            planets: 100,
            production_ticks: 50,
            concurrency: 8,
            durability: Durability::Boundary,
        }
    }
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct WorldBench {
    pub creature_updates_per_s: f64,
    pub cell_ticks_per_s: f64,
    pub cell_tick_p50_ms: f64,
    pub cell_tick_p99_ms: f64,
    pub station_recomputes_per_s: f64,
    pub trades_per_s: f64,
    pub region_tick_p50_ms: f64,
    pub region_tick_p99_ms: f64,
    pub region_tick_max_ms: f64,
    pub planets_per_region: u32,
    pub durability: String,
}

fn percentile_ms(samples: &mut [Duration], quantile: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let index = ((samples.len() as f64 * quantile).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[index].as_secs_f64() * 1000.0
}

/// Runs every phase and reports.
pub async fn bench_world(options: WorldBenchOptions) -> anyhow::Result<WorldBench> {
    let dir = tempfile::Builder::new()
        .prefix("worldfleet-bench-world-")
        .tempdir()
        .context("create a temporary store directory")?;
    let clock = ManualClock::new(1_763_700_000_000);
    let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let store = EmbeddedStore::open(
        dir.path(),
        Arc::clone(&shared_clock),
        StoreOptions {
            durability: options.durability,
            janitor_interval: None,
            ..StoreOptions::default()
        },
    )
    .context("open the store")?;
    declare(
        store.queue().as_ref(),
        store.table().as_ref(),
        QueueSettings::default(),
    )
    .await?;
    let context = StageContext::new(store.queue(), store.table(), Arc::clone(&shared_clock));
    let layout = WorldLayout::default();
    let (ecology, price) = configs(&layout)?;

    // Ecology.
    let per_species = options.creatures / FOUNDING_SPECIES.len() as u32;
    let founders: Vec<Founders> = FOUNDING_SPECIES
        .iter()
        .map(|species| Founders {
            species: (*species).to_owned(),
            count: per_species,
        })
        .collect();
    let cells: Vec<PartitionUid> = (0..options.cells)
        .map(|index| PartitionUid::parse(&format!("bench/zone-{:02}/cell-{index:04}", index / 16)))
        .collect::<Result<_, _>>()?;
    for (index, cell) in cells.iter().enumerate() {
        let neighbours = vec![cells[(index + 1) % cells.len()].clone()]
            .into_iter()
            .filter(|neighbour| neighbour != cell)
            .collect();
        seed_cell(&context, &ecology, cell.clone(), 800, neighbours, &founders).await?;
    }
    let ticker = Arc::new(EcologyTickStage::new(context.clone(), ecology.clone()));
    let mut cell_latencies = Vec::new();
    let mut creature_updates = 0_u64;
    let mut cell_ticks = 0_u64;
    let started = Instant::now();
    for round in 1..=u64::from(options.ecology_rounds) {
        clock.advance(ecology.interval.as_millis());
        // Each invocation is a task of its own, as a poller runs it, so they spread over the
        // runtime's worker threads instead of sharing the one this loop runs on.
        let results: Vec<anyhow::Result<(Duration, u64)>> = futures::stream::iter(cells.iter())
            .map(|cell| {
                let ticker = Arc::clone(&ticker);
                let table = Arc::clone(&context.table);
                let cell = cell.clone();
                async move {
                    tokio::spawn(async move {
                        // The population the stage stored beside the state: reading it costs
                        // the bench no decode of the cell.
                        let before = table
                            .get(
                                worldfleet_domain::names::ECOLOGY_TABLE,
                                &worldfleet_ecology::shell::store::state_key(cell.as_str()),
                            )
                            .await?
                            .context("cell vanished")?
                            .i64("population")
                            .context("cell without a population")?
                            .max(0) as u64;
                        let began = Instant::now();
                        ticker
                            .on_timer(
                                &TickTimer {
                                    cell: cell.clone(),
                                    tick: round,
                                },
                                Duration::from_secs(30),
                            )
                            .await?;
                        Ok((began.elapsed(), before))
                    })
                    .await
                    .context("an ecology tick task failed")?
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
        for result in results {
            let (latency, creatures) = result?;
            cell_latencies.push(latency);
            creature_updates += creatures;
            cell_ticks += 1;
        }
    }
    // The wall time includes the population reads the bench adds (one small read per tick).
    let ecology_elapsed = started.elapsed().as_secs_f64();

    // Market.
    let market = MarketStage::new(context.clone(), price.clone());
    let windows = WindowStage::new(context.clone(), price.clone());
    let stations: Vec<PartitionUid> = (0..options.stations)
        .map(|index| PartitionUid::parse(&format!("bench-{:02}/station-{index:05}", index % 8)))
        .collect::<Result<_, _>>()?;
    let trade = |index: usize, station: &PartitionUid| AcceptedEvent {
        event_id: ulid::Ulid::from_parts(1_763_700_000_000 + index as u64, index as u128)
            .to_string(),
        gateway: "bench".into(),
        partition: station.clone(),
        kind: EventKind::Trade,
        actor: "p-bench".into(),
        participants: Vec::new(),
        faction: None,
        payload: EventPayload::Trade(TradePayload {
            good: TRADED_GOODS[index % TRADED_GOODS.len()].into(),
            side: if index.is_multiple_of(2) {
                TradeSide::Buy
            } else {
                TradeSide::Sell
            },
            quantity: 5,
        }),
        sent_at_ms: 0,
        accepted_at_ms: 0,
    };
    let started = Instant::now();
    let trades: Vec<anyhow::Result<()>> = futures::stream::iter(stations.iter().enumerate())
        .map(|(index, station)| {
            let market = &market;
            let event = trade(index, station);
            async move {
                market.apply(&event).await?;
                Ok(())
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    trades.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let trade_elapsed = started.elapsed().as_secs_f64();
    clock.advance(1_000);
    let started = Instant::now();
    let flushed: Vec<anyhow::Result<()>> = futures::stream::iter(stations.iter())
        .map(|station| {
            let windows = &windows;
            let timer = WindowTimer {
                station: station.clone(),
                window_id: 1,
            };
            async move {
                windows.on_timer(&timer).await?;
                Ok(())
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    flushed.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let recompute_elapsed = started.elapsed().as_secs_f64();

    // Production.
    let production = ProductionStage::new(context.clone(), price.clone());
    let kinds = ["mining", "agri", "forge", "refinery"];
    let regions: Vec<PartitionUid> = (0..options.regions)
        .map(|index| PartitionUid::parse(&format!("bench-region-{index:02}")))
        .collect::<Result<_, _>>()?;
    for region in &regions {
        let state = Region {
            region: region.clone(),
            tick: 0,
            planets: (0..options.planets as usize)
                .map(|index| Planet {
                    id: format!("planet-{index:04}"),
                    kind: kinds[index % kinds.len()].into(),
                    level: 1 + (index % 10) as u32,
                    stock: TRADED_GOODS
                        .iter()
                        .map(|good| ((*good).to_owned(), 500))
                        .collect(),
                    last_tick: 0,
                })
                .collect(),
        };
        seed_region(&context, &price, &state).await?;
    }
    for tick in 1..=u64::from(options.production_ticks) {
        clock.advance(price.production_interval_ms);
        for region in &regions {
            production
                .on_timer(
                    &ProductionTimer {
                        region: region.clone(),
                        tick,
                    },
                    Duration::from_secs(30),
                )
                .await?;
        }
    }
    let mut region_latencies: Vec<Duration> = production
        .tick_latencies_us()
        .into_iter()
        .map(Duration::from_micros)
        .collect();
    drop(context);
    store.close();
    drop(dir);
    let max = region_latencies.iter().max().copied().unwrap_or_default();
    Ok(WorldBench {
        creature_updates_per_s: creature_updates as f64 / ecology_elapsed.max(1e-9),
        cell_ticks_per_s: cell_ticks as f64 / ecology_elapsed.max(1e-9),
        cell_tick_p50_ms: percentile_ms(&mut cell_latencies, 0.50),
        cell_tick_p99_ms: percentile_ms(&mut cell_latencies, 0.99),
        station_recomputes_per_s: stations.len() as f64 / recompute_elapsed.max(1e-9),
        trades_per_s: stations.len() as f64 / trade_elapsed.max(1e-9),
        region_tick_p50_ms: percentile_ms(&mut region_latencies, 0.50),
        region_tick_p99_ms: percentile_ms(&mut region_latencies, 0.99),
        region_tick_max_ms: max.as_secs_f64() * 1000.0,
        planets_per_region: options.planets,
        durability: format!("{:?}", options.durability),
    })
}
