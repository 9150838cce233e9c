//! The subcommands: what each flag means and how results are printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use worldfleet_domain::FeedId;
use worldfleet_domain::names::FEEDS_TABLE;
use worldfleet_embedded::Durability;
use worldfleet_intake::RateLimit;
use worldfleet_ports::{Clock, SystemClock};
use worldfleet_runtime::world_bench::WorldBenchOptions;
use worldfleet_runtime::{
    ModelChoice, RunOptions, RunSummary, WorldReport, WorldSpec, run_embedded,
};
use worldfleet_tables::feed::{checkpoint, commit_checkpoint};
use worldfleet_tables::read_feed;

/// worldfleet keeps an online game world alive between the game servers.
#[derive(Debug, Parser)]
#[command(name = "worldfleet", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a synthetic world through intake → classify → compose → distribute, embedded.
    Run(RunArgs),
    /// Measure throughput, latency and memory of the embedded pipeline.
    Bench(BenchArgs),
    /// Read a feed from a checkpoint (embedded store, or DynamoDB with --aws).
    Feed(FeedArgs),
    /// Look up what intake refused, by gateway and event id or by the exact body (embedded
    /// store, or DynamoDB with --aws).
    Rejections(crate::rejections::RejectionsArgs),
    /// Measure the world stages: creature updates/s, station recomputes/s, region tick P99.
    BenchWorld(BenchWorldArgs),
    /// Run stages as long-polling workers on SQS and DynamoDB (ECS, Kubernetes, LocalStack).
    Worker(crate::worker::WorkerArgs),
    /// Serve the doors: signed events in (`POST /v1/events`), feeds out (HTTP, SSE), with
    /// every stage embedded, or over SQS/DynamoDB with --aws.
    Serve(crate::serve::ServeArgs),
    /// Sign and post envelopes to the intake queue on SQS.
    Send(SendArgs),
    /// Rebuild canon, feeds, player memory and prune records from a store's ledger (from its
    /// latest checkpoints plus the ledger after them) into a fresh store.
    Replay(ReplayArgs),
    /// Checkpoint every ledger partition of a store up to the events older than the intake
    /// clock window whose derived state is complete; optionally compact the ledger behind.
    Checkpoint(CheckpointArgs),
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// The store whose ledger is replayed (only read).
    #[arg(long)]
    from: PathBuf,
    /// A fresh store directory to rebuild into (created when missing).
    #[arg(long)]
    into: PathBuf,
    /// Print the report as one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CheckpointArgs {
    /// The embedded store directory.
    #[arg(long)]
    store: PathBuf,
    /// Delete the ledger entries the checkpoints cover (needs --min-age-secs of at least the
    /// intake clock window, 300 s: only then is an entry no longer needed to refuse a replay).
    #[arg(long)]
    compact: bool,
    /// Cover only events accepted at least this long ago (default: the intake clock window).
    #[arg(long)]
    min_age_secs: Option<u64>,
    /// Print the report as one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct BenchWorldArgs {
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
    /// Acknowledge writes once handed to the OS instead of after fsync.
    #[arg(long)]
    buffered: bool,
    /// Print the figures as one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SendArgs {
    /// Envelope files to post (e.g. `events/samples/*.json`).
    files: Vec<PathBuf>,
    /// Re-stamp `sent_at_ms` with now and re-sign each file with this gateway key (hex).
    #[arg(long)]
    resign_key: Option<String>,
    /// Instead of files: post a synthetic world of this many events, signed with --resign-key
    /// as gateway `gw-synthetic`.
    #[arg(long)]
    world: Option<u64>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Debug, Args, Clone)]
struct WorldArgs {
    /// Good events the world emits.
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// Envelopes per second (0: as fast as the pipeline absorbs).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    #[arg(long, default_value_t = 2_000)]
    players: u32,
    #[arg(long, default_value_t = 8)]
    districts: u32,
    #[arg(long, default_value_t = 16)]
    scenes: u32,
    /// Audience of every event (the actor and fan-out − 1 participants).
    #[arg(long, default_value_t = 8)]
    fan_out: u32,
    #[arg(long, default_value_t = 4)]
    factions: u32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// One deliberately bad envelope after every N good ones (0: none).
    #[arg(long, default_value_t = 50)]
    bad_every: u64,
    /// Stage workers (concurrent pollers) per stage.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Keep the store here (reuse it with `worldfleet feed`); default: a temporary directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Acknowledge writes once handed to the OS instead of after fsync.
    #[arg(long)]
    buffered: bool,
    /// Classify by rules and compose by templates even when models are configured or present.
    #[arg(long)]
    no_models: bool,
    /// One world event (trade, capture, breed) after every N good narrative events; the
    /// ecology, market and production then run too (0: narrative only).
    #[arg(long, default_value_t = 5)]
    world_every: u64,
    /// Ecology ticks every cell runs before the run ends (5 s apart).
    #[arg(long, default_value_t = 3)]
    ecology_ticks: u64,
}

impl WorldArgs {
    fn options(&self) -> RunOptions {
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
        } else {
            Durability::Sync
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
struct RunArgs {
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

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BenchArgs {
    /// What to measure instead of the embedded pipeline.
    #[command(subcommand)]
    target: Option<BenchTarget>,
    /// Events for the throughput phase (as fast as possible); with --aws, the events of the
    /// cost run. Default: 100,000 embedded, 1,000 with --aws.
    #[arg(long)]
    events: Option<u64>,
    /// Measure per-stage SQS requests, DynamoDB units and cost per million events on SQS and
    /// DynamoDB instead (endpoints and credentials from the environment, e.g.
    /// `. localstack/env.sh`); deploys the template's queues and tables under a fresh stack.
    #[arg(long)]
    aws: bool,
    /// With --aws: the template whose queues and tables are deployed.
    #[arg(long, default_value = "infra/template.yaml")]
    template: String,
    /// With --aws: long-poll wait of each receive, seconds (Lambda's pollers wait 20).
    #[arg(long, default_value_t = 20)]
    wait_secs: u64,
    /// Rate of the latency phase, events per second.
    #[arg(long, default_value_t = 5_000.0)]
    latency_rate: f64,
    /// Events for the latency phase.
    #[arg(long, default_value_t = 50_000)]
    latency_events: u64,
    #[arg(long, default_value_t = 8)]
    fan_out: u32,
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Embedded: acknowledge writes once handed to the OS instead of after fsync (as
    /// `run --buffered`); the figures then say so.
    #[arg(long, conflicts_with = "aws")]
    buffered: bool,
    /// Print the figures as one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct FeedArgs {
    /// The store written by `worldfleet run --data-dir`.
    #[arg(long, required_unless_present = "aws")]
    data_dir: Option<PathBuf>,
    /// Read from DynamoDB (settings and endpoints from the environment) instead.
    #[arg(long)]
    aws: bool,
    /// `player:ID`, `faction:NAME` or `district:UID`.
    #[arg(long)]
    feed: String,
    /// Read entries after this sequence number (default: the reader's checkpoint, else 0).
    #[arg(long)]
    after: Option<u64>,
    /// A reader name: its checkpoint is where reading starts.
    #[arg(long, default_value = "cli")]
    reader: String,
    /// Move the reader's checkpoint past what was read.
    #[arg(long)]
    commit: bool,
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Bench(args) => bench(args).await,
        Command::Feed(args) => feed(args).await,
        Command::Rejections(args) => crate::rejections::run(args).await,
        Command::BenchWorld(args) => bench_world(args).await,
        Command::Worker(args) => crate::worker::run(args).await,
        Command::Serve(args) => crate::serve::run(args).await,
        Command::Send(args) => send(args).await,
        Command::Replay(args) => replay(args).await,
        Command::Checkpoint(args) => checkpoint_store(args).await,
    }
}

async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let report = worldfleet_runtime::replay::replay(&args.from, &args.into).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "replayed {} narrative events ({} restored from {} checkpoints) into {}; {} ledger rows copied; {} world events copied but not re-applied",
            report.replayed,
            report.restored_from_checkpoints,
            report.checkpoints,
            args.into.display(),
            report.ledger_rows_copied,
            report.world_events_not_replayed
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn checkpoint_store(args: CheckpointArgs) -> anyhow::Result<ExitCode> {
    use worldfleet_runtime::replay::{CheckpointOptions, checkpoint_store};
    let now_ms = SystemClock.now_ms();
    let mut options = CheckpointOptions::safe_at(now_ms, args.compact);
    if let Some(min_age_secs) = args.min_age_secs {
        let accepted_before_ms = now_ms.saturating_sub(min_age_secs.saturating_mul(1000));
        if args.compact && accepted_before_ms > options.accepted_before_ms {
            anyhow::bail!(
                "--compact needs --min-age-secs of at least the intake clock window ({} s): a younger ledger entry still refuses replayed envelopes",
                (now_ms - options.accepted_before_ms) / 1000
            );
        }
        options.accepted_before_ms = accepted_before_ms;
    }
    let report = checkpoint_store(&args.store, options).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} of {} partitions checkpointed further, {} events covered, {} ledger entries compacted",
            report.advanced, report.partitions, report.covered, report.compacted
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench_world(args: BenchWorldArgs) -> anyhow::Result<ExitCode> {
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
        } else {
            Durability::Sync
        },
    };
    eprintln!("bench-world: {options:?}");
    let figures = worldfleet_runtime::world_bench::bench_world(options).await?;
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

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
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
        if args.world.buffered {
            "buffered writes"
        } else {
            "fsync per group commit"
        },
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

/// `worldfleet bench <target>`.
#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// The doors under load: subscribers on WebSockets, events posted over HTTP, delivery
    /// latency from the POST's response to each recipient's frame.
    Serve(crate::bench_serve::BenchServeArgs),
}

async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(BenchTarget::Serve(serve)) = args.target {
        return crate::bench_serve::run(serve).await;
    }
    if args.aws {
        let report = crate::bench_aws::run(crate::bench_aws::AwsBenchOptions {
            events: args.events.unwrap_or(1_000),
            fan_out: args.fan_out,
            workers: args.workers,
            wait: Duration::from_secs(args.wait_secs.clamp(1, 20)),
            template: args.template.clone(),
            drain_timeout: Duration::from_secs(1_800),
        })
        .await?;
        crate::bench_aws::print(&report);
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let events = args.events.unwrap_or(100_000);
    let world = |events: u64, rate: f64| {
        let world_args = WorldArgs {
            events,
            rate,
            players: 20_000,
            districts: 32,
            scenes: 64,
            fan_out: args.fan_out,
            factions: 8,
            seed: 7,
            bad_every: 0,
            workers: args.workers,
            data_dir: None,
            buffered: args.buffered,
            // The pipeline's own figures, comparable whether or not a model is present.
            no_models: true,
            world_every: 0,
            ecology_ticks: 1,
        };
        world_args.options()
    };
    let durability = if args.buffered {
        "buffered (acknowledged when handed to the OS)"
    } else {
        "fsync before acknowledgement"
    };
    eprintln!(
        "bench 1/2: throughput, {} events as fast as possible, fan-out {}, {durability}",
        events, args.fan_out
    );
    let throughput = run_embedded(world(events, 0.0)).await?;
    eprintln!(
        "bench 2/2: latency, {} events at {} events/s",
        args.latency_events, args.latency_rate
    );
    let latency = run_embedded(world(args.latency_events, args.latency_rate)).await?;
    let figures = serde_json::json!({
        "throughput_events_per_s": throughput.events_per_s.round(),
        "throughput_p50_ms": throughput.audit.latency_p50_ms,
        "throughput_p99_ms": throughput.audit.latency_p99_ms,
        "latency_rate": args.latency_rate,
        "latency_achieved_events_per_s": latency.events_per_s.round(),
        "latency_p50_ms": latency.audit.latency_p50_ms,
        "latency_p99_ms": latency.audit.latency_p99_ms,
        "latency_max_ms": latency.audit.latency_max_ms,
        "peak_rss_mb": latency.peak_rss_mb.max(throughput.peak_rss_mb).round(),
        "fan_out": args.fan_out,
        "buffered": args.buffered,
        "lost": throughput.audit.lost + latency.audit.lost,
        "duplicates": throughput.audit.duplicates + latency.audit.duplicates,
        "table_write_units_per_event": throughput.usage.table_write_units as f64 / throughput.audit.good_sent.max(1) as f64,
        "queue_requests_per_event": throughput.usage.queue_requests as f64 / throughput.audit.good_sent.max(1) as f64,
    });
    println!(
        "throughput:  {:.0} events/s end to end ({} events, fan-out {}), p50 {} ms, p99 {} ms under saturation",
        throughput.events_per_s,
        events,
        args.fan_out,
        throughput.audit.latency_p50_ms,
        throughput.audit.latency_p99_ms
    );
    println!(
        "latency:     at {} events/s offered ({:.0} achieved): p50 {} ms, p99 {} ms, max {} ms",
        args.latency_rate,
        latency.events_per_s,
        latency.audit.latency_p50_ms,
        latency.audit.latency_p99_ms,
        latency.audit.latency_max_ms
    );
    println!("durability:  {durability}");
    println!(
        "memory:      peak RSS {:.0} MiB",
        latency.peak_rss_mb.max(throughput.peak_rss_mb)
    );
    println!(
        "correctness: lost {}, duplicates {}",
        throughput.audit.lost + latency.audit.lost,
        throughput.audit.duplicates + latency.audit.duplicates
    );
    if args.json {
        println!("{figures}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn feed(args: FeedArgs) -> anyhow::Result<ExitCode> {
    let feed = FeedId::parse(&args.feed).context("--feed")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tables =
        crate::stores::OpenTables::open(args.data_dir.as_deref(), args.aws, Arc::clone(&clock))
            .await?;
    let code = read_and_print(tables.table.as_ref(), &feed, &args, clock.as_ref()).await;
    tables.close();
    code
}

async fn read_and_print(
    table: &dyn worldfleet_ports::Table,
    feed: &FeedId,
    args: &FeedArgs,
    clock: &dyn Clock,
) -> anyhow::Result<ExitCode> {
    let after = match args.after {
        Some(after) => after,
        None => checkpoint(table, FEEDS_TABLE, feed, &args.reader).await?,
    };
    let read = read_feed(table, FEEDS_TABLE, feed, after, args.limit, clock.now_ms()).await?;
    for entry in &read.entries {
        println!("{:>8}  {}  {}", entry.seq, entry.event_id, entry.text);
    }
    eprintln!(
        "{} entries after {} in {}; next checkpoint {}",
        read.entries.len(),
        after,
        feed,
        read.next_after_seq
    );
    if args.commit && read.next_after_seq > after {
        commit_checkpoint(
            table,
            FEEDS_TABLE,
            feed,
            &args.reader,
            read.next_after_seq,
            clock.now_ms(),
        )
        .await?;
        eprintln!(
            "checkpoint of reader {:?} moved to {}",
            args.reader, read.next_after_seq
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    use worldfleet_ports::{OutgoingMessage, SendOutcome};
    let context = worldfleet_lambda::aws_context().await?;
    let key = args
        .resign_key
        .as_deref()
        .map(hex::decode)
        .transpose()
        .context("--resign-key is not hex")?;
    let now_ms = context.clock.now_ms();
    let mut messages = Vec::new();
    if let Some(events) = args.world {
        let key = key
            .clone()
            .context("--world needs --resign-key (the gateway key to sign with)")?;
        let mut world = worldfleet_runtime::World::new(WorldSpec {
            events,
            gateway_key: key,
            ..WorldSpec::small(args.seed)
        });
        while let Some(emitted) = world.next(now_ms) {
            messages.push(OutgoingMessage::fifo(
                emitted.body,
                &emitted.group,
                &emitted.dedup_id,
            ));
        }
    }
    for path in &args.files {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let mut envelope: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        if let Some(key) = &key {
            let object = envelope
                .as_object_mut()
                .context("an envelope is a JSON object")?;
            object.remove("signature");
            object.insert("sent_at_ms".into(), serde_json::Value::from(now_ms));
            let canonical = worldfleet_domain::envelope::canonical_bytes(&envelope)?;
            envelope["signature"] = serde_json::Value::from(
                worldfleet_domain::envelope::signature_hex(key, &canonical)?,
            );
        }
        let group = envelope["partition"]
            .as_str()
            .unwrap_or("unpartitioned")
            .to_owned();
        let dedup = envelope["event_id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{now_ms}-{}", messages.len()));
        messages.push(OutgoingMessage::fifo(envelope.to_string(), &group, &dedup));
    }
    let mut sent = 0;
    let mut failed = 0;
    for chunk in messages.chunks(worldfleet_ports::queue::MAX_BATCH) {
        for outcome in context
            .queue
            .send_batch(worldfleet_domain::names::INTAKE_QUEUE, chunk.to_vec())
            .await?
        {
            match outcome {
                SendOutcome::Sent { .. } => sent += 1,
                SendOutcome::Failed { reason, .. } => {
                    failed += 1;
                    eprintln!("refused by the queue: {reason}");
                }
            }
        }
    }
    eprintln!("posted {sent} envelopes to intake ({failed} refused by the queue)");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
