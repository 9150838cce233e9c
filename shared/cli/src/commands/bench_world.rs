//! `worldfleet bench-world`: throughput and tick latency of the world stages (ecology, market,
//! production) on the embedded store.

use std::process::ExitCode;

use clap::Args;
use worldfleet_embedded::Durability;

use crate::bench_world::WorldBenchOptions;

#[derive(Debug, Args)]
pub(super) struct BenchWorldArgs {
    #[arg(long, default_value_t = 64)]
    cells: u32,
    /// Creatures per cell at genesis (at most 800).
    #[arg(long, default_value_t = 300)]
    creatures: u32,
    /// Times every cell ticks.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    #[arg(long, default_value_t = 500)]
    stations: u32,
    #[arg(long, default_value_t = 4)]
    regions: u32,
    #[arg(long, default_value_t = 100)]
    planets: u32,
    /// Production ticks per region.
    #[arg(long, default_value_t = 50)]
    production_ticks: u32,
    /// Stage invocations in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Never fsync before answering a write (fsynced only when the store closes).
    #[arg(long, conflicts_with = "fsync_all")]
    buffered: bool,
    /// fsync every write before answering it. By default the store runs as `run` and `serve`
    /// run it: the world stages are internal (their timers are re-armed by the watchdog), so
    /// their writes are answered once handed to the OS and fsynced in the background.
    #[arg(long)]
    fsync_all: bool,
    /// Print the figures as one JSON line.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: BenchWorldArgs) -> anyhow::Result<ExitCode> {
    let options = WorldBenchOptions {
        cells: args.cells.max(1),
        creatures: args.creatures.clamp(3, 800),
        ecology_rounds: args.rounds.max(1),
        stations: args.stations.max(1),
        regions: args.regions.max(1),
        planets: args.planets.clamp(1, 1_000),
        production_ticks: args.production_ticks.max(1),
        concurrency: args.concurrency.max(1),
        durability: if args.buffered {
            Durability::Buffered
        } else if args.fsync_all {
            Durability::Sync
        } else {
            Durability::Boundary
        },
    };
    eprintln!("bench-world: {options:?}");
    let figures = crate::bench_world::bench_world(options).await?;
    println!(
        "ecology:     {:.0} creature updates/s ({:.0} cell ticks/s; cell tick p50 {:.2} ms, p99 {:.2} ms, full shell)",
        figures.creature_updates_per_s,
        figures.cell_ticks_per_s,
        figures.cell_tick_p50_ms,
        figures.cell_tick_p99_ms
    );
    println!(
        "market:      {:.0} station recomputes/s, {:.0} trades/s",
        figures.station_recomputes_per_s, figures.trades_per_s
    );
    println!(
        "production:  {}-planet region tick p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (read + tick + bulk write)",
        figures.planets_per_region,
        figures.region_tick_p50_ms,
        figures.region_tick_p99_ms,
        figures.region_tick_max_ms
    );
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    }
    Ok(ExitCode::SUCCESS)
}
