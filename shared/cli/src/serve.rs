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

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use worldfleet_embedded::{EmbeddedStore, StoreOptions};
use worldfleet_intake::GatewayKeys;
use worldfleet_kit::{Env, StageContext};
use worldfleet_ports::{Clock, Queue, SystemClock, Table};
use worldfleet_runtime::ModelChoice;
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
    let settings = StageSettings::from_vars(&env)?;
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

    let server = EmbeddedServer::start(
        listener,
        &args.data_dir,
        StoreOptions::default(),
        settings,
        gateways,
        config,
        ModelChoice::Auto,
        args.workers,
    )
    .await?;
    eprintln!(
        "worldfleet serve: http://{address} — every stage embedded on {} (Ctrl-C stops)",
        args.data_dir.display()
    );
    for line in &server.stages {
        eprintln!("  {line}");
    }
    shutdown_signal().await;
    server.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// Every registered stage and the doors, embedded in this process on one durable store: what
/// `worldfleet serve` runs, and what `worldfleet bench serve` measures.
pub struct EmbeddedServer {
    /// What each stage was built as, one line per stage.
    pub stages: Vec<String>,
    /// The server's state (metrics, configuration).
    pub state: ServeState,
    fleet: worldfleet_runtime::Fleet,
    store: EmbeddedStore,
    served: tokio::task::JoinHandle<worldfleet_serve::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
    context: StageContext,
}

impl EmbeddedServer {
    /// Opens the store in `data_dir`, declares the queues and tables, builds every stage
    /// through the registry from `settings` (the classifier resolved by `models`), starts them
    /// with `workers` pollers each and serves the doors on `listener`, pushing live entries as
    /// distribute writes them.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        listener: tokio::net::TcpListener,
        data_dir: &Path,
        options: StoreOptions,
        mut settings: StageSettings,
        gateways: GatewayKeys,
        config: ServeConfig,
        models: ModelChoice,
        workers: usize,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("create {}", data_dir.display()))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = EmbeddedStore::open(data_dir, Arc::clone(&clock), options)
            .with_context(|| format!("open the embedded store in {}", data_dir.display()))?;
        let queue: Arc<dyn Queue> = store.queue();
        // Distribute writes pages through this table, which wakes the feed's live subscribers.
        let signals = Arc::new(FeedSignals::default());
        let table: Arc<dyn Table> =
            Arc::new(NotifyingTable::new(store.table(), Arc::clone(&signals)));
        declare(queue.as_ref(), table.as_ref(), QueueSettings::default()).await?;
        let context = StageContext::new(Arc::clone(&queue), Arc::clone(&table), clock);
        let (classifier, _) = worldfleet_runtime::models::classifier(
            models,
            &settings.classifier,
            Arc::clone(&context.clock),
        )?;
        settings.classifier = ClassifierSetting::Given(classifier);
        let stages = build_stages(&worldfleet_stages::all_names(), &context, &settings)?;
        let described = stages.describe();
        let poller = worldfleet_runtime::PollerConfig {
            workers: workers.max(1),
            wait: Duration::from_millis(200),
            visibility_timeout: QueueSettings::default().visibility_timeout,
        };
        let fleet = worldfleet_runtime::Fleet::launch(stages, queue, poller, None);
        let state = ServeState::from_context(&context, gateways, config).with_push(signals);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(worldfleet_serve::serve(
            listener,
            state.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            stages: described,
            state,
            fleet,
            store,
            served,
            stop,
            context,
        })
    }

    /// The store's queue port (what `POST /v1/events` sends to).
    pub fn queue(&self) -> Arc<dyn Queue> {
        Arc::clone(&self.context.queue)
    }

    /// Stops serving (live streams get `going_away`, in-flight requests finish), then the
    /// stages after their in-flight batches, then closes the store.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Self {
            mut fleet,
            store,
            served,
            stop,
            context,
            ..
        } = self;
        let _ = stop.send(());
        let served = served.await.context("the server task")?;
        fleet.stop_timers().await;
        fleet.stop().await;
        drop(context);
        store.close();
        served?;
        Ok(())
    }
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
