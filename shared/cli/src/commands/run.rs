//! `worldfleet run`: a synthetic world through every stage on the embedded store, with the
//! audit (lost, duplicated, wrongly refused) and the figures printed at the end.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use worldfleet_embedded::Durability;
use worldfleet_intake::RateLimit;
use worldfleet_runtime::{ModelChoice, RunOptions, RunSummary, WorldReport, run_embedded};
use worldfleet_testbed::WorldSpec;

#[derive(Debug, Args, Clone)]
pub(super) struct WorldArgs {
    /// Good events the world emits.
    #[arg(long, default_value_t = 10_000)]
    pub(super) events: u64,
    /// Envelopes per second (0: as fast as the pipeline absorbs).
    #[arg(long, default_value_t = 0.0)]
    pub(super) rate: f64,
    #[arg(long, default_value_t = 2_000)]
    pub(super) players: u32,
    #[arg(long, default_value_t = 8)]
    pub(super) districts: u32,
    #[arg(long, default_value_t = 16)]
    pub(super) scenes: u32,
    /// Audience of every event (the actor and fan-out − 1 participants).
    #[arg(long, default_value_t = 8)]
    pub(super) fan_out: u32,
    #[arg(long, default_value_t = 4)]
    pub(super) factions: u32,
    #[arg(long, default_value_t = 42)]
    pub(super) seed: u64,
    /// One deliberately bad envelope after every N good ones (0: none).
    #[arg(long, default_value_t = 50)]
    pub(super) bad_every: u64,
    /// Stage workers (concurrent pollers) per stage.
    #[arg(long, default_value_t = 4)]
    pub(super) workers: usize,
    /// Keep the store here (reuse it with `worldfleet feed`); default: a temporary directory.
    #[arg(long)]
    pub(super) data_dir: Option<PathBuf>,
    /// Acknowledge every write once handed to the OS, fsyncing none (not even the intake
    /// queue's sends) before the run ends.
    #[arg(long, conflicts_with = "fsync_all")]
    pub(super) buffered: bool,
    /// fsync every write before acknowledging it (the store's strictest mode), instead of
    /// only the intake queue's sends and what the doors read, the rest in the background.
    #[arg(long)]
    pub(super) fsync_all: bool,
    /// Classify by rules and compose by templates even when models are configured or present.
    #[arg(long)]
    pub(super) no_models: bool,
    /// One world event (trade, capture, breed) after every N good narrative events; the
    /// ecology, market and production then run too (0: narrative only).
    #[arg(long, default_value_t = 5)]
    pub(super) world_every: u64,
    /// Ecology ticks every cell runs before the run ends (5 s apart).
    #[arg(long, default_value_t = 3)]
    pub(super) ecology_ticks: u64,
}

impl WorldArgs {
    pub(super) fn options(&self) -> RunOptions {
        let spec = WorldSpec {
            events: self.events,
            players: self.players,
            districts: self.districts,
            scenes_per_district: self.scenes,
            fan_out: self.fan_out,
            factions: self.factions,
            seed: self.seed,
            bad_every: self.bad_every,
            world_every: self.world_every,
            ..WorldSpec::small(self.seed)
        };
        let mut spec = spec;
        spec.layout.min_ecology_ticks = self.ecology_ticks.max(1);
        let mut options = RunOptions::new(spec);
        options.models = if self.no_models {
            ModelChoice::RulesAndTemplates
        } else {
            ModelChoice::Auto
        };
        options.rate = (self.rate > 0.0).then_some(self.rate);
        options.workers_per_stage = self.workers.max(1);
        options.data_dir = self.data_dir.clone();
        options.durability = if self.buffered {
            Durability::Buffered
        } else if self.fsync_all {
            Durability::Sync
        } else {
            Durability::Boundary
        };
        // The synthetic world is honest traffic: limits far above its per-player rate.
        options.rate_limit = RateLimit {
            burst: 1_000,
            per_second: 1_000,
        };
        options
    }
}

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    #[command(flatten)]
    world: WorldArgs,
    /// Write the world's envelopes onto the intake queue instead of posting them through the
    /// HTTP door (and do not follow the players' feeds over a WebSocket).
    #[arg(long)]
    direct: bool,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut options = args.world.options();
    options.progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    options.doors = !args.direct;
    eprintln!(
        "worldfleet run: {} events, {} players, {} districts x {} scenes, fan-out {}, seed {} — {}, embedded store ({}), {} workers per stage",
        options.world.events,
        options.world.players,
        options.world.districts,
        options.world.scenes_per_district,
        options.world.fan_out,
        options.world.seed,
        if options.doors {
            "posted through POST /v1/events, every player following their feed on a WebSocket"
        } else {
            "written onto the intake queue"
        },
        durability_description(options.durability),
        options.workers_per_stage,
    );
    let summary = run_embedded(options).await?;
    print_summary(&summary);
    if args.json {
        println!("{}", summary.json_line());
    }
    Ok(
        if summary.audit.lost == 0
            && summary.audit.duplicates == 0
            && summary.audit.wrong_reason == 0
            && summary
                .world
                .as_ref()
                .is_none_or(|world| world.lost == 0 && world.duplicates == 0)
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

fn print_summary(summary: &RunSummary) {
    let audit = &summary.audit;
    println!("classifier:    {}", summary.classifier);
    println!("composer:      {}", summary.composer);
    if let Some(compose) = &summary.compose {
        println!(
            "models:        {} calls, {} cache hits, {} provider failures, {} breaker trips, ${:.4} spent; budget denials {:?}; alerts {:?}",
            compose.model_calls,
            compose.cache_hits,
            compose.provider_failures,
            compose.breaker_trips,
            compose.cost_micro_usd as f64 / 1_000_000.0,
            compose.budget_denials,
            compose.budget_alerts
        );
    }
    println!(
        "sent:          {} envelopes ({} good, {} deliberately bad)",
        summary.events_sent, audit.good_sent, audit.bad_sent
    );
    println!("accepted:      {} (ledger entries)", audit.ledger_entries);
    println!(
        "rejected:      {} rows; bad envelopes refused with the expected reason: {}/{}",
        audit.rejection_rows, audit.rejected_as_expected, audit.bad_sent
    );
    println!("canon:         {}", audit.canon);
    println!("feed entries:  {}", audit.feed_entries);
    println!(
        "lost: {}   duplicates: {}   wrong reason: {}   dead letters: {}",
        audit.lost, audit.duplicates, audit.wrong_reason, summary.dead_letters
    );
    for problem in &audit.problems {
        println!("  ! {problem}");
    }
    println!(
        "latency:       intake -> feed p50 {} ms, p99 {} ms, max {} ms",
        audit.latency_p50_ms, audit.latency_p99_ms, audit.latency_max_ms
    );
    if let Some(delivery) = &summary.delivery {
        println!(
            "players:       {} feeds followed on a WebSocket, {} entries delivered live; POST response -> frame p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; door refused {} ({} with intake's reason); {} verbatim replays not applied again (deduplicated by the queue)",
            delivery.feeds_followed,
            delivery.frames,
            delivery.latency_p50_ms,
            delivery.latency_p99_ms,
            delivery.latency_max_ms,
            delivery.door_refused,
            delivery.door_refused_as_expected,
            delivery.replays_not_reapplied
        );
    }
    println!(
        "throughput:    {:.0} events/s over {:.1} s; peak memory {:.0} MiB; store {:.1} MiB on disk",
        summary.events_per_s,
        summary.elapsed_s,
        summary.peak_rss_mb,
        summary.store_bytes as f64 / 1_048_576.0
    );
    let usage = &summary.usage;
    if audit.good_sent > 0 {
        let per_event = |value: u64| value as f64 / audit.good_sent as f64;
        println!(
            "per event:     {:.2} queue requests, {:.2} table write units, {:.2} table read units",
            per_event(usage.queue_requests),
            per_event(usage.table_write_units),
            per_event(usage.table_read_units)
        );
    }
    if let Some(world) = &summary.world {
        print_world(world);
    }
    if !summary.drained {
        println!("warning: the queues did not drain in time");
    }
}

fn print_world(world: &WorldReport) {
    println!("world:");
    println!(
        "  market:      {} trades sent, {} recorded once ({} applied, {} refused), {} recomputes; windows miscounted {}, stock mismatches {}",
        world.trades_sent,
        world.trades_recorded,
        world.trades_applied,
        world.trades_refused,
        world.recomputes,
        world.miscounted_windows,
        world.stock_mismatches
    );
    let mut moves: Vec<_> = world
        .price_moves
        .iter()
        .filter(|price| price.from_milli != price.to_milli)
        .collect();
    moves.sort_by_key(|price| std::cmp::Reverse((price.to_milli - price.from_milli).abs()));
    println!(
        "  prices:      {} of {} station goods moved; largest:",
        moves.len(),
        world.price_moves.len()
    );
    for price in moves.iter().take(3) {
        println!(
            "               {} {}: {:.3} -> {:.3} cr",
            price.station,
            price.good,
            price.from_milli as f64 / 1000.0,
            price.to_milli as f64 / 1000.0
        );
    }
    println!(
        "  production:  {} region ticks, p50 {:.1} ms, p99 {:.1} ms (read + decide + bulk write)",
        world.production_ticks, world.production_tick_p50_ms, world.production_tick_p99_ms
    );
    let species: Vec<String> = world
        .population_by_species
        .iter()
        .map(|(species, count)| format!("{species} {count}"))
        .collect();
    println!(
        "  ecology:     {} cells, {} ticks; population {} ({}); {} lineages alive, {} founded",
        world.cells,
        world.ecology_ticks,
        world.population,
        species.join(", "),
        world.lineages,
        world.lineages_founded
    );
    println!(
        "               births {}, deaths {}, migrations {} out / {} in / {} waiting / {} returned; unbalanced cells {}",
        world.births,
        world.deaths,
        world.emigrated,
        world.arrived,
        world.migrants_waiting,
        world.migrants_returned,
        world.unbalanced_cells
    );
    println!(
        "  players:     {} captures, {} breed requests: {} applied, {} refused",
        world.captures_sent, world.breeds_sent, world.requests_applied, world.requests_refused
    );
    println!(
        "  news:        {} events, {} published to district feeds",
        world.news_events, world.news_published
    );
    println!(
        "  world lost: {}   world duplicates: {}",
        world.lost, world.duplicates
    );
    for problem in &world.problems {
        println!("  ! {problem}");
    }
}

/// How a run's figures name its durability.
pub(super) fn durability_description(durability: Durability) -> &'static str {
    match durability {
        Durability::Sync => "fsync before every acknowledgement",
        Durability::Boundary => {
            "fsync before the intake send is acknowledged, the stages' writes fsynced in the background"
        }
        Durability::Buffered => "buffered: acknowledged when handed to the OS, no fsync",
    }
}
