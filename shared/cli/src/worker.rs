//! `worldfleet worker`: registered stages as long-polling workers on SQS and DynamoDB.
//!
//! The stages are built by the registry from the environment, exactly as the Lambda binaries
//! build them, so a worker on ECS or Kubernetes runs the configured classifier, composer,
//! republish rules and prune settings. By default every stage runs, the world's and the
//! watchdog included; `--stages` picks some.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use worldfleet_kit::{Env, StageContext};
use worldfleet_stages::{StageSet, StageSettings, build_stages};

/// `worldfleet worker` flags.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Stages to run, comma-separated, or `all`: intake, classify, compose, distribute, prune,
    /// market, price-window, production, ecology-input, ecology, watchdog (a pass once a
    /// minute).
    #[arg(long, default_value = "all", value_delimiter = ',')]
    pub stages: Vec<String>,
    /// Concurrent pollers per stage.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Handler time budget per batch, and the longest lease a batch is held on (keep it ≤ the
    /// queues' visibility timeout / 6). Leases start at 5 s and follow the slowest recent batch.
    #[arg(long, default_value_t = 30)]
    pub budget_secs: u64,
    /// After a partial batch, pause this long before receiving again so the next batch
    /// gathers (fewer SQS requests per message when several workers share a quiet queue, at
    /// up to this much extra latency). 0: receive again at once.
    #[arg(long, default_value_t = 0)]
    pub batching_window_ms: u64,
}

/// The stage names `--stages` asks for (`all` is every registered stage).
pub fn stage_names(requested: &[String]) -> Vec<String> {
    let requested: Vec<String> = requested
        .iter()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    if requested.is_empty() || requested.iter().any(|name| name == "all") {
        return worldfleet_stages::all_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
    }
    requested
}

/// The stages a worker runs over `context` with the settings in `env`; intake's keys, when
/// they come from a Secrets Manager secret, are read from it first (and then refreshed).
pub async fn worker_stages(
    requested: &[String],
    context: &StageContext,
    env: &Env<'_>,
) -> anyhow::Result<StageSet> {
    let mut settings = StageSettings::from_vars(env)?;
    let names = stage_names(requested);
    if names.iter().any(|name| name == "intake") {
        worldfleet_lambda::load_gateway_keys(&mut settings).await?;
    }
    Ok(build_stages(&names, context, &settings)?)
}

/// Runs the worker until Ctrl-C or SIGTERM.
pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let context = worldfleet_lambda::aws_context().await?;
    let stages = worker_stages(&args.stages, &context, &Env::process()).await?;
    eprintln!(
        "worldfleet worker: {} on SQS/DynamoDB, {} pollers each; Ctrl-C stops after in-flight batches",
        stages.names().join(", "),
        args.workers
    );
    for line in stages.describe() {
        eprintln!("  {line}");
        tracing::info!(stage = %line, "stage built");
    }
    let poller = worldfleet_runtime::PollerConfig {
        workers: args.workers.max(1),
        wait: Duration::from_secs(20),
        visibility_timeout: Duration::from_secs(args.budget_secs.max(1)),
        batching_window: Duration::from_millis(args.batching_window_ms),
    };
    worldfleet_runtime::Fleet::launch(stages, Arc::clone(&context.queue), poller, None)
        .run_until_signalled()
        .await;
    Ok(ExitCode::SUCCESS)
}
