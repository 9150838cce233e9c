//! `worldfleet serve`: the doors of a world (signed events in, feeds out over HTTP and SSE).
//!
//! By default every registered stage runs embedded in this process on the durable store in
//! `--data-dir`, and the HTTP API serves over the same store, with live entries pushed to
//! subscribers as distribute writes them; with `--aws` the API serves over
//! SQS and DynamoDB and the stages run elsewhere (`worldfleet worker`, Lambda). The stages are
//! built by the registry from the environment, and the server verifies requests with the same
//! gateway keys intake uses (`WORLDFLEET_GATEWAY_KEYS`). Ctrl-C or SIGTERM: live streams get a
//! `going_away` event, in-flight requests finish, then the stages stop after their in-flight
//! batches and the store closes; the exit status is 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use worldfleet_embedded::{EmbeddedStore, StoreOptions};
use worldfleet_kit::{Env, StageContext};
use worldfleet_ports::{Clock, Queue, SystemClock, Table};
use worldfleet_runtime::resources::{QueueSettings, declare};
use worldfleet_serve::push::{FeedSignals, NotifyingTable};
use worldfleet_serve::{ServeConfig, ServeState};
use worldfleet_stages::{ClassifierSetting, StageSettings, build_stages};

/// `worldfleet serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve over SQS/DynamoDB (the environment's AWS settings); the stages run elsewhere.
    #[arg(long)]
    pub aws: bool,
    /// The embedded store's directory (kept between runs).
    #[arg(long, default_value = "worldfleet-data")]
    pub data_dir: PathBuf,
    /// Where to listen; overrides `WORLDFLEET_SERVE_BIND` (default 127.0.0.1:8080).
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// Concurrent pollers per stage (embedded).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

/// Runs the server (and, embedded, every stage) until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let env = Env::process();
    let mut config = ServeConfig::from_lookup(|name| env.text(name))?;
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    let mut settings = StageSettings::from_vars(&env)?;
    let gateways = settings
        .intake
        .clone()
        .map_err(anyhow::Error::msg)
        .context("serve verifies requests with intake's gateway keys")?
        .gateways;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("listen on {}", config.bind))?;
    let address = listener.local_addr()?;

    if args.aws {
        let context = worldfleet_lambda::aws_context().await?;
        eprintln!("worldfleet serve: http://{address} over SQS/DynamoDB (stages run elsewhere)");
        let state = ServeState::from_context(&context, gateways, config);
        worldfleet_serve::serve(listener, state, shutdown_signal()).await?;
        return Ok(ExitCode::SUCCESS);
    }

    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("create {}", args.data_dir.display()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = EmbeddedStore::open(&args.data_dir, Arc::clone(&clock), StoreOptions::default())
        .with_context(|| format!("open the embedded store in {}", args.data_dir.display()))?;
    let queue: Arc<dyn Queue> = store.queue();
    // Distribute writes pages through this table, which wakes the feed's live subscribers.
    let signals = Arc::new(FeedSignals::default());
    let table: Arc<dyn Table> = Arc::new(NotifyingTable::new(store.table(), Arc::clone(&signals)));
    declare(queue.as_ref(), table.as_ref(), QueueSettings::default()).await?;
    let context = StageContext::new(Arc::clone(&queue), Arc::clone(&table), clock);
    let (classifier, _) = worldfleet_runtime::models::classifier(
        worldfleet_runtime::ModelChoice::Auto,
        &settings.classifier,
        Arc::clone(&context.clock),
    )?;
    settings.classifier = ClassifierSetting::Given(classifier);
    let stages = build_stages(&worldfleet_stages::all_names(), &context, &settings)?;
    eprintln!(
        "worldfleet serve: http://{address} — every stage embedded on {} (Ctrl-C stops)",
        args.data_dir.display()
    );
    for line in stages.describe() {
        eprintln!("  {line}");
    }
    let poller = worldfleet_runtime::PollerConfig {
        workers: args.workers.max(1),
        wait: Duration::from_millis(200),
        visibility_timeout: QueueSettings::default().visibility_timeout,
    };
    let mut fleet = worldfleet_runtime::Fleet::launch(stages, Arc::clone(&queue), poller, None);
    let state = ServeState::from_context(&context, gateways, config).with_push(signals);
    let served = worldfleet_serve::serve(listener, state, shutdown_signal()).await;
    fleet.stop_timers().await;
    fleet.stop().await;
    drop((queue, table, context));
    store.close();
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
