//! Market and production benchmarks: station recomputes per second, transactions per second,
//! and the latency (p50/p99) of a 100-planet production tick with its write plan.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use worldfleet_domain::PartitionUid;
use worldfleet_price::MarketRules;
use worldfleet_price::market::{Side, StationMarket, Transaction};
use worldfleet_price::production::{Planet, Region, WriteMode, production_tick};

const T0: u64 = 1_700_000_000_000;

fn station_with_pending(rules: &MarketRules, transactions: usize) -> StationMarket {
    let mut market = StationMarket::open(
        PartitionUid::parse("region-1/station-1").unwrap(),
        10_000,
        rules,
    )
    .unwrap();
    let goods: Vec<String> = rules.goods.keys().cloned().collect();
    for index in 0..transactions {
        let transaction = Transaction {
            id: format!("tx-{index}"),
            side: if index % 3 == 0 {
                Side::Sell
            } else {
                Side::Buy
            },
            good: goods[index % goods.len()].clone(),
            quantity: 3,
        };
        market.on_transaction(&transaction, T0, rules).unwrap();
    }
    market
}

fn region(planets: usize) -> Region {
    let kinds = ["mining", "agri", "forge", "refinery"];
    Region {
        region: PartitionUid::parse("region-1").unwrap(),
        tick: 0,
        planets: (0..planets)
            .map(|index| Planet {
                id: format!("planet-{index:03}"),
                kind: kinds[index % kinds.len()].to_owned(),
                level: (index % 10) as u32 + 1,
                stock: BTreeMap::from([
                    ("ore".to_owned(), 5_000),
                    ("ice".to_owned(), 5_000),
                    ("fuel".to_owned(), 500),
                ]),
                last_tick: 0,
            })
            .collect(),
    }
}

fn bench_market(criterion: &mut Criterion) {
    let rules = MarketRules::builtin().unwrap();
    let mut group = criterion.benchmark_group("station");
    group.throughput(Throughput::Elements(1));
    group.bench_function("recompute_window_of_20_tx", |bencher| {
        let market = station_with_pending(&rules, 20);
        bencher.iter_batched(
            || market.clone(),
            |mut market| market.on_window_end(1, T0 + 1_000, &rules).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("transaction", |bencher| {
        let market = station_with_pending(&rules, 20);
        let transaction = Transaction {
            id: "tx-bench".into(),
            side: Side::Buy,
            good: "ore".into(),
            quantity: 1,
        };
        bencher.iter_batched(
            || market.clone(),
            |mut market| market.on_transaction(black_box(&transaction), T0 + 10, &rules),
            BatchSize::SmallInput,
        );
    });
    group.finish();

    let mut group = criterion.benchmark_group("production");
    let region = region(100);
    for mode in [WriteMode::Batch, WriteMode::Transact] {
        group.bench_function(format!("region_100_planets_{mode:?}"), |bencher| {
            bencher.iter(|| production_tick(black_box(&region), 1, &rules, mode).unwrap());
        });
    }
    group.finish();
}

/// p50/p99 of the pure part of a 100-planet region tick (state in, updates and plan out).
fn report_percentiles() {
    let runs = if std::env::args().any(|arg| arg == "--bench") {
        5_000
    } else {
        50
    };
    let rules = MarketRules::builtin().unwrap();
    let mut region = region(100);
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let outcome = production_tick(&region, region.tick + 1, &rules, WriteMode::Batch).unwrap();
        samples.push(started.elapsed());
        region.tick = outcome.tick;
        region.planets = outcome
            .updates
            .into_iter()
            .map(|update| update.after)
            .collect();
    }
    samples.sort_unstable();
    let percentile = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!(
        "production_tick 100-planet region over {runs} ticks: p50 {:?}, p99 {:?}, max {:?}",
        percentile(50),
        percentile(99),
        samples[samples.len() - 1]
    );
}

criterion_group!(benches, bench_market);

fn main() {
    report_percentiles();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
