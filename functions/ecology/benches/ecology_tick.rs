//! Ecology tick throughput: ticks of cells holding about 200 creatures, reported as creature
//! updates per second, plus p50/p99 latency of one 200-creature tick.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group};
use worldfleet_domain::PartitionUid;
use worldfleet_ecology::Rules;
use worldfleet_ecology::sim::{CellState, Founders, TickInputs, genesis, tick};

fn cell_with(rules: &Rules, creatures: u32) -> CellState {
    let founders = [
        ("glimmerfox", creatures * 2 / 5),
        ("skitterwing", creatures * 2 / 5),
        ("mossback", creatures - creatures * 4 / 5),
    ]
    .map(|(species, count)| Founders {
        species: species.to_owned(),
        count,
    });
    genesis(
        PartitionUid::parse("realm-1/zone-1/cell-1").unwrap(),
        creatures * 3 / 2,
        vec![
            PartitionUid::parse("realm-1/zone-1/cell-2").unwrap(),
            PartitionUid::parse("realm-1/zone-2/cell-1").unwrap(),
        ],
        &founders,
        rules,
    )
    .unwrap()
}

fn bench_ticks(criterion: &mut Criterion) {
    let rules = Rules::builtin().unwrap();
    let mut group = criterion.benchmark_group("ecology_tick");
    for creatures in [50_u32, 200, 1_000] {
        let cell = cell_with(&rules, creatures);
        let inputs = TickInputs {
            tick: 1,
            ..TickInputs::default()
        };
        group.throughput(Throughput::Elements(u64::from(creatures)));
        group.bench_function(format!("{creatures}_creatures"), |bencher| {
            bencher.iter(|| tick(black_box(&cell), black_box(&inputs), &rules).unwrap());
        });
    }
    group.finish();
}

/// p50/p99 of single 200-creature ticks, each on a fresh tick number of an evolving cell.
fn report_percentiles() {
    let runs = if std::env::args().any(|arg| arg == "--bench") {
        5_000
    } else {
        50
    };
    let rules = Rules::builtin().unwrap();
    let mut cell = cell_with(&rules, 200);
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let inputs = TickInputs {
            tick: cell.tick + 1,
            ..TickInputs::default()
        };
        let started = Instant::now();
        let outcome = tick(&cell, &inputs, &rules).unwrap();
        samples.push(started.elapsed());
        cell = if outcome.next.creatures.len() < 100 {
            // Keep the cell near 200 creatures: restart from genesis, continuing the tick count.
            let mut fresh = cell_with(&rules, 200);
            fresh.tick = outcome.next.tick;
            fresh
        } else {
            outcome.next
        };
    }
    samples.sort_unstable();
    let percentile = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!(
        "ecology_tick 200-creature cell over {runs} ticks: p50 {:?}, p99 {:?}, max {:?}",
        percentile(50),
        percentile(99),
        samples[samples.len() - 1]
    );
}

criterion_group!(benches, bench_ticks);

fn main() {
    report_percentiles();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
