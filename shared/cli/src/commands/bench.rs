//! `worldfleet bench`: throughput, latency and memory of the embedded pipeline; with `--aws`,
//! per-stage cost on SQS and DynamoDB; `bench serve`, the doors under load.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use worldfleet_runtime::run_embedded;

use super::run::WorldArgs;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct BenchArgs {
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
    #[arg(long, conflicts_with_all = ["aws", "fsync_all"])]
    buffered: bool,
    /// Embedded: fsync every write before acknowledging it (as `run --fsync-all`), instead of
    /// only the intake sends, the stages' writes in the background.
    #[arg(long, conflicts_with = "aws")]
    fsync_all: bool,
    /// Print the figures as one JSON line.
    #[arg(long)]
    json: bool,
    /// With --aws: also write the report (with what it measured) to this file, for
    /// `worldfleet cost --report`.
    #[arg(long, requires = "aws")]
    report: Option<std::path::PathBuf>,
    /// With --aws: pollers pause this long after a partial batch before receiving again
    /// (as `worldfleet worker --batching-window-ms`).
    #[arg(long, default_value_t = 0, requires = "aws")]
    batching_window_ms: u64,
    /// With --aws: the bill's prices and storage retention.
    #[command(flatten)]
    bill: super::cost::BillArgs,
}

/// `worldfleet bench <target>`.
#[derive(Debug, Subcommand)]
pub(super) enum BenchTarget {
    /// The doors under load: subscribers on WebSockets, events posted over HTTP, delivery
    /// latency from the POST's response to each recipient's frame.
    Serve(crate::bench_serve::BenchServeArgs),
}

pub(super) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
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
            batching_window: Duration::from_millis(args.batching_window_ms),
            prices: args.bill.load()?,
            retention_days: args.bill.retention_days,
        })
        .await?;
        crate::bench_aws::print(&report);
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        }
        if let Some(path) = &args.report {
            std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
                .with_context(|| format!("write {}", path.display()))?;
            println!(
                "report written to {} (price it again with `worldfleet cost --report`)",
                path.display()
            );
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
            fsync_all: args.fsync_all,
            // The pipeline's own figures, comparable whether or not a model is present.
            no_models: true,
            world_every: 0,
            ecology_ticks: 1,
        };
        let mut options = world_args.options();
        // The bench reports counts and latencies, not the rows.
        options.audit_rows = false;
        options
    };
    let durability_mode = world(events, 0.0).durability;
    let durability = super::run::durability_description(durability_mode);
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
        "durability": format!("{durability_mode:?}"),
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
