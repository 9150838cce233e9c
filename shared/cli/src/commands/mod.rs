//! The subcommands: the `clap` command line and the dispatch to one module per subcommand
//! (what its flags mean and how its results are printed).

mod bench;
mod bench_world;
mod census;
mod chaos;
mod checkpoint;
mod cost;
mod dlq;
mod feed;
mod replay;
mod run;
mod send;
mod soak;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Run(run::RunArgs),
    /// Measure throughput, latency and memory of the embedded pipeline.
    Bench(bench::BenchArgs),
    /// Read a feed from a checkpoint (embedded store, or DynamoDB with --aws).
    Feed(feed::FeedArgs),
    /// Look up what intake refused, by gateway and event id or by the exact body (embedded
    /// store, or DynamoDB with --aws).
    Rejections(crate::rejections::RejectionsArgs),
    /// Measure the world stages: creature updates/s, station recomputes/s, region tick P99.
    BenchWorld(bench_world::BenchWorldArgs),
    /// Run stages as long-polling workers on SQS and DynamoDB (ECS, Kubernetes, LocalStack).
    Worker(crate::worker::WorkerArgs),
    /// Serve the doors: signed events in (`POST /v1/events`), feeds out (HTTP, SSE), with
    /// every stage embedded, or over SQS/DynamoDB with --aws.
    Serve(crate::serve::ServeArgs),
    /// Sign and post envelopes to the intake queue on SQS.
    Send(send::SendArgs),
    /// Rebuild canon, feeds, player memory and prune records from a store's ledger (from its
    /// latest checkpoints plus the ledger after them) into a fresh store.
    Replay(replay::ReplayArgs),
    /// Turn a measured `bench --aws` run into a month of a world: the bill per million events
    /// scaled to its players' events, plus the capacity that runs anyway.
    Cost(cost::CostArgs),
    /// Prove the delivery guarantees under real process kills: one world through two `serve`
    /// processes, one calm and one with injected faults and repeated SIGKILLs; both audited,
    /// their tables compared.
    Chaos(chaos::ChaosArgs),
    /// Steady traffic through a `serve` process for an hour or more: memory, store size, p99
    /// latency and queue depths sampled into a CSV and an SVG plot, judged flat or not.
    Soak(soak::SoakArgs),
    /// Checkpoint every ledger partition of a store up to the events older than the intake
    /// clock window whose derived state is complete; optionally compact the ledger behind.
    Checkpoint(checkpoint::CheckpointArgs),
    /// Count and show what the dead-letter queues hold, and send it back to the work queues
    /// with --redrive (embedded store, or SQS with --aws).
    Dlq(dlq::DlqArgs),
    /// Count what an embedded store holds: items, partitions and bytes per table, keys per
    /// queue keyspace, and its size on disk.
    Census(census::CensusArgs),
}

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Feed(args) => feed::run(args).await,
        Command::Rejections(args) => crate::rejections::run(args).await,
        Command::BenchWorld(args) => bench_world::run(args).await,
        Command::Worker(args) => crate::worker::run(args).await,
        Command::Serve(args) => crate::serve::run(args).await,
        Command::Send(args) => send::run(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Checkpoint(args) => checkpoint::run(args).await,
        Command::Dlq(args) => dlq::run(args).await,
        Command::Cost(args) => cost::run(args).await,
        Command::Chaos(args) => chaos::run(args).await,
        Command::Soak(args) => soak::run(args).await,
        Command::Census(args) => census::run(args).await,
    }
}
