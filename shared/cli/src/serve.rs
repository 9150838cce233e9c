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
use std::fmt::Write;
use std::sync::atomic::Ordering;
use worldfleet_embedded::{Durability, EmbeddedStore, StoreGauge, StoreOptions};
use worldfleet_intake::GatewayKeys;
use worldfleet_kit::{Env, StageContext};
use worldfleet_ports::{Clock, Queue, SystemClock, Table};

use worldfleet_runtime::resources::{QueueSettings, declare};
use worldfleet_runtime::{ModelChoice, PollerStats, simulation};
use worldfleet_serve::push::{FeedSignals, NotifyingTable};
use worldfleet_serve::{Metrics, MetricsSource, ServeConfig, ServeState};
use worldfleet_stages::{ClassifierSetting, StageSettings, build_stages};
use worldfleet_testbed::WorldLayout;
use worldfleet_testbed::faults::{FaultPlan, FaultRates, FaultyQueue, FaultyTable};

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
    /// Found the synthetic world's cells and stations in the store (embedded; idempotent), so
    /// the ecology ticks, stations price trades and the dashboard charts populations and
    /// prices. Gateways then post trades, captures and breeds to it like any other event.
    #[arg(long)]
    pub world: bool,
    /// Classify by rules and compose by templates even when models are configured or present.
    #[arg(long)]
    pub no_models: bool,
    /// How long a received message stays invisible to other pollers (embedded): after a crash,
    /// the batches that were in flight are delivered again this long after they were received.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub visibility_timeout_secs: u64,
    /// Receives of a message before it moves to its queue's dead-letter queue (embedded).
    #[arg(long, default_value_t = 5, value_name = "COUNT")]
    pub max_receive_count: u32,
    /// For fault testing (`worldfleet chaos`): inject faults into every stage's store calls,
    /// seeded — crashes before and after writes and sends at RATE each, lost deletes at 5 ×
    /// RATE, batches handled after their visibility expired at RATE / 10 (embedded).
    #[arg(long, value_name = "RATE")]
    pub inject_faults: Option<f64>,
    /// The seed of `--inject-faults`.
    #[arg(long, default_value_t = 1)]
    pub fault_seed: u64,
    /// fsync every write before acknowledging it (embedded), instead of only what the doors
    /// acknowledge or show (an accepted envelope's send, a feed read), the stages' writes in
    /// the background.
    #[arg(long)]
    pub fsync_all: bool,
}

/// Runs the server (and, embedded, every stage) until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let env = Env::process();
    let mut config = ServeConfig::from_lookup(|name| env.text(name))?;
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    let mut settings = StageSettings::from_vars(&env)?;
    // Keys from a Secrets Manager secret are read now and refreshed as requests come in.
    worldfleet_lambda::load_gateway_keys(&mut settings).await?;
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

    let faults = match args.inject_faults {
        Some(rate) if (0.0..=0.2).contains(&rate) => Some(Arc::new(FaultPlan::new(
            FaultRates {
                crash_before_write: rate,
                crash_after_write: rate,
                lose_delete: (rate * 5.0).min(1.0),
                outlive_visibility: rate / 10.0,
            },
            args.fault_seed,
        ))),
        Some(rate) => anyhow::bail!("--inject-faults {rate}: give a rate from 0 to 0.2"),
        None => None,
    };
    let server = EmbeddedServer::start(
        listener,
        ServerSetup {
            data_dir: args.data_dir.clone(),
            options: StoreOptions {
                durability: if args.fsync_all {
                    Durability::Sync
                } else {
                    Durability::Boundary
                },
                ..StoreOptions::default()
            }
            .with_sizes_from_env()
            .map_err(anyhow::Error::msg)?,
            settings,
            gateways,
            config,
            models: if args.no_models {
                ModelChoice::RulesAndTemplates
            } else {
                ModelChoice::Auto
            },
            workers: args.workers,
            world: args.world.then(WorldLayout::default),
            queues: QueueSettings {
                visibility_timeout: Duration::from_secs(args.visibility_timeout_secs.max(1)),
                max_receive_count: args.max_receive_count.max(1),
            },
            faults,
        },
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
    world: Option<WorldLayout>,
    /// The queue the doors send to.
    door_queue: Arc<dyn Queue>,
}

/// What an [`EmbeddedServer`] runs with.
pub struct ServerSetup {
    /// The store's directory.
    pub data_dir: PathBuf,
    pub options: StoreOptions,
    /// The stages' settings, as the registry read them.
    pub settings: StageSettings,
    /// The keys requests are verified with (intake's).
    pub gateways: GatewayKeys,
    pub config: ServeConfig,
    /// How the classifier is resolved.
    pub models: ModelChoice,
    /// Concurrent pollers per stage.
    pub workers: usize,
    /// A world layout to found (cells and stations) and to chart; `None`: narrative only.
    pub world: Option<WorldLayout>,
    /// The queues' settings (visibility timeout, retries before the dead-letter queue).
    pub queues: QueueSettings,
    /// Faults injected into the stages' queue and table calls (fault testing only).
    pub faults: Option<Arc<FaultPlan>>,
}

impl EmbeddedServer {
    /// Opens the store in `setup.data_dir`, declares the queues and tables, founds the world
    /// when asked, builds every stage through the registry from the settings (the classifier
    /// resolved by `setup.models`), starts them with `setup.workers` pollers each and serves
    /// the doors on `listener`, pushing live entries as distribute writes them and adding the
    /// fleet's, the store's and the world's series to `/metrics`.
    pub async fn start(
        listener: tokio::net::TcpListener,
        setup: ServerSetup,
    ) -> anyhow::Result<Self> {
        let ServerSetup {
            data_dir,
            options,
            mut settings,
            gateways,
            config,
            models,
            workers,
            world,
            queues,
            faults,
        } = setup;
        let data_dir = data_dir.as_path();
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("create {}", data_dir.display()))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = EmbeddedStore::open(data_dir, Arc::clone(&clock), options)
            .with_context(|| format!("open the embedded store in {}", data_dir.display()))?;
        let (queue, store_table): (Arc<dyn Queue>, Arc<dyn Table>) = match &faults {
            Some(plan) => (
                Arc::new(FaultyQueue::new(store.queue(), Arc::clone(plan))),
                Arc::new(FaultyTable::new(store.table(), Arc::clone(plan))),
            ),
            None => (store.queue(), store.table()),
        };
        // Distribute writes pages through this table, which wakes the feed's live subscribers.
        // It also times every published entry and counts intake's refusals for /metrics.
        let signals = Arc::new(FeedSignals::default());
        let metrics = Arc::new(Metrics::default());
        let table: Arc<dyn Table> = Arc::new(
            NotifyingTable::new(store_table, Arc::clone(&signals))
                .observed_by(Arc::clone(&metrics), Arc::clone(&clock)),
        );
        declare(queue.as_ref(), table.as_ref(), queues).await?;
        let context = StageContext::new(Arc::clone(&queue), Arc::clone(&table), clock);
        if let Some(layout) = &world {
            settings = simulation::world_settings(settings, layout)?;
            simulation::seed(&context, layout)
                .await
                .context("found the world's cells and stations")?;
        }
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
            visibility_timeout: queues.visibility_timeout,
            batching_window: Duration::ZERO,
        };
        // The doors acknowledge and show things to the outside world: their sends wait for
        // fsync, their reads until what they read is durable (with `Durability::Boundary` the
        // stages' own writes are fsynced in the background).
        let (door_queue, door_table): (Arc<dyn Queue>, Arc<dyn Table>) = match &faults {
            Some(plan) => (
                Arc::new(FaultyQueue::new(
                    store.acknowledging_queue(),
                    Arc::clone(plan),
                )),
                Arc::new(FaultyTable::new(
                    store.acknowledging_table(),
                    Arc::clone(plan),
                )),
            ),
            None => (store.acknowledging_queue(), store.acknowledging_table()),
        };
        let door_table: Arc<dyn Table> = Arc::new(
            NotifyingTable::new(door_table, Arc::clone(&signals))
                .observed_by(Arc::clone(&metrics), Arc::clone(&context.clock)),
        );
        let faults_seen = faults.clone();
        let fleet = worldfleet_runtime::Fleet::launch(stages, queue, poller, faults);
        let gauges = EmbeddedGauges {
            faults: faults_seen,
            stages: fleet.stats().to_vec(),
            data_dir: data_dir.to_path_buf(),
            store: store.gauge(),
            queue: Arc::clone(&context.queue),
            table: Arc::clone(&context.table),
            world: world.clone(),
        };
        let state = ServeState::new(
            Arc::clone(&door_queue),
            door_table,
            Arc::clone(&context.clock),
            gateways,
            config,
        )
        .with_push(signals)
        .with_metrics(metrics)
        .with_source(Arc::new(gauges));
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
            world,
            door_queue,
        })
    }

    /// The doors' queue port (what `POST /v1/events` sends to: answered once fsynced).
    pub fn queue(&self) -> Arc<dyn Queue> {
        Arc::clone(&self.door_queue)
    }

    /// Stops serving (live streams get `going_away`, in-flight requests finish), then the
    /// timer stages; with a world, completes the outbox of every cell's last tick and lets the
    /// other stages take what that sent (up to [`WORLD_STOP_DRAIN`]), so no news or emigrant of
    /// an applied tick waits for the next start; then stops the stages after their in-flight
    /// batches and closes the store.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Self {
            mut fleet,
            store,
            served,
            stop,
            context,
            world,
            ..
        } = self;
        let _ = stop.send(());
        let served = served.await.context("the server task")?;
        fleet.stop_timers().await;
        if let Some(layout) = &world {
            finish_world(&context, layout).await?;
        }
        fleet.stop().await;
        drop(context);
        store.close();
        served?;
        Ok(())
    }
}

/// How long a stopping server with a world waits for its stages to take the last ticks'
/// outboxes.
pub const WORLD_STOP_DRAIN: Duration = Duration::from_secs(30);

/// Completes the last ticks' outboxes (`finish_outboxes` retries what is worth retrying: under
/// `--inject-faults` a call may fail on purpose) and waits for the input stages to take them.
async fn finish_world(context: &StageContext, layout: &WorldLayout) -> anyhow::Result<()> {
    simulation::finish_outboxes(context, layout)
        .await
        .context("complete the last ticks' outboxes")?;
    let drained =
        worldfleet_runtime::fleet::wait_for_drain(context.queue.as_ref(), WORLD_STOP_DRAIN, || {})
            .await?;
    if !drained {
        tracing::warn!("stopping with work queued: the next start takes it");
    }
    Ok(())
}

/// `/metrics` series only the embedded server can see: records each stage finished (from the
/// fleet's pollers), the store's size on disk, and — with a world — creatures alive by species
/// and every station's posted prices.
struct EmbeddedGauges {
    faults: Option<Arc<FaultPlan>>,
    stages: Vec<(&'static str, Arc<PollerStats>)>,
    data_dir: PathBuf,
    store: StoreGauge,
    queue: Arc<dyn Queue>,
    table: Arc<dyn Table>,
    world: Option<WorldLayout>,
}

impl EmbeddedGauges {
    /// Where the process's memory goes: what the program holds on the heap, and the store's
    /// share of it (memtables, block cache, queue delivery state) with its table count.
    fn render_memory(&self, text: &mut String) {
        text.push_str(
            "# HELP worldfleet_heap_bytes Bytes the process holds on the heap (allocated, not freed).\n\
             # TYPE worldfleet_heap_bytes gauge\n",
        );
        let _ = writeln!(text, "worldfleet_heap_bytes {}", crate::heap::live_bytes());
        let memory = match self.store.memory() {
            Ok(memory) => memory,
            Err(error) => {
                tracing::warn!(%error, "metrics: the store's memory is unavailable");
                return;
            }
        };
        text.push_str(
            "# HELP worldfleet_store_memory_bytes The store's memtables and block cache.\n\
             # TYPE worldfleet_store_memory_bytes gauge\n",
        );
        for (part, value) in [
            ("memtables", memory.write_buffer_bytes),
            ("block_cache", memory.cache_bytes),
        ] {
            let _ = writeln!(
                text,
                "worldfleet_store_memory_bytes{{part=\"{part}\"}} {value}"
            );
        }
        text.push_str(
            "# HELP worldfleet_store_held What the store keeps count of: tables on disk, sealed memtables, and the queues' in-memory messages and deduplication ids.\n\
             # TYPE worldfleet_store_held gauge\n",
        );
        for (kind, value) in [
            ("tables", memory.tables),
            ("sealed_memtables", memory.sealed_memtables),
            ("queued_messages", memory.queued_messages),
            ("dedup_ids", memory.dedup_ids),
        ] {
            let _ = writeln!(text, "worldfleet_store_held{{kind=\"{kind}\"}} {value}");
        }
    }
}

#[async_trait::async_trait]
impl MetricsSource for EmbeddedGauges {
    async fn render(&self, text: &mut String) {
        text.push_str(
            "# HELP worldfleet_stage_records_total Records a stage finished, by outcome.\n\
             # TYPE worldfleet_stage_records_total counter\n",
        );
        for (stage, stats) in &self.stages {
            for (outcome, value) in [
                ("succeeded", &stats.succeeded),
                ("failed", &stats.failed),
                ("dead_lettered", &stats.dead_lettered),
            ] {
                let _ = writeln!(
                    text,
                    "worldfleet_stage_records_total{{stage=\"{stage}\",outcome=\"{outcome}\"}} {}",
                    value.load(Ordering::Relaxed)
                );
            }
        }
        text.push_str(
            "# HELP worldfleet_store_bytes The embedded store's files on disk.\n\
             # TYPE worldfleet_store_bytes gauge\n",
        );
        let _ = writeln!(
            text,
            "worldfleet_store_bytes {}",
            directory_bytes(&self.data_dir)
        );
        self.render_memory(text);
        if let Some(plan) = &self.faults {
            let counts = plan.counts();
            text.push_str(
                "# HELP worldfleet_injected_faults_total Faults injected (--inject-faults), by kind.\n\
                 # TYPE worldfleet_injected_faults_total counter\n",
            );
            for (kind, value) in [
                ("crash_before_write", counts.crashes_before_write),
                ("crash_after_write", counts.crashes_after_write),
                ("lost_delete", counts.lost_deletes),
                ("outlived_visibility", counts.outlived_visibility),
            ] {
                let _ = writeln!(
                    text,
                    "worldfleet_injected_faults_total{{kind=\"{kind}\"}} {value}"
                );
            }
        }
        let Some(layout) = &self.world else {
            return;
        };
        match simulation::settled(self.queue.as_ref(), self.table.as_ref(), layout).await {
            Ok(settled) => {
                text.push_str(
                    "# HELP worldfleet_world_settled 1 when the world has caught up: trades and player requests all applied, every cell and region past its first ticks.\n\
                     # TYPE worldfleet_world_settled gauge\n",
                );
                let _ = writeln!(text, "worldfleet_world_settled {}", u8::from(settled));
            }
            Err(error) => tracing::warn!(%error, "metrics: the world settlement check failed"),
        }
        match simulation::snapshot(self.table.as_ref(), layout).await {
            Ok(world) => {
                text.push_str(
                    "# HELP worldfleet_ecology_population Creatures alive, by species.\n\
                     # TYPE worldfleet_ecology_population gauge\n",
                );
                for (species, count) in &world.population_by_species {
                    let _ = writeln!(
                        text,
                        "worldfleet_ecology_population{{species=\"{species}\"}} {count}"
                    );
                }
                text.push_str(
                    "# HELP worldfleet_station_price_credits A station's posted price of a good.\n\
                     # TYPE worldfleet_station_price_credits gauge\n",
                );
                for price in &world.prices {
                    let _ = writeln!(
                        text,
                        "worldfleet_station_price_credits{{station=\"{}\",good=\"{}\"}} {}",
                        price.station,
                        price.good,
                        price.price_milli as f64 / 1000.0
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "metrics: the world snapshot failed"),
        }
    }
}

/// Bytes of the files under `path` (0 where it cannot be read).
fn directory_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => directory_bytes(&entry.path()),
            Ok(metadata) => metadata.len(),
            Err(_) => 0,
        })
        .sum()
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
