//! `worldfleet run`: the whole narrative path in one process on the embedded store.
//!
//! The same stage handlers that run in Lambda run here, each driven by its own pollers over
//! the embedded queue, all sharing one durable store. A synthetic world posts signed envelopes
//! to the intake queue at the requested rate; when every queue has drained, the stages stop and
//! the independent [`crate::audit`] reads the tables and reports.
//!
//! With a world simulation (`WorldSpec::world_every > 0`) the run also seeds the world's cells
//! and regions, runs the market, ecology and production stages and the watchdog, waits until
//! the world has settled ([`crate::simulation::settled`]), stops the timer stages first,
//! completes the last ticks' outboxes, drains, and adds the world audit to the summary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use worldfleet_classify::Classify;
use worldfleet_compose::Compose;
use worldfleet_distribute::{Distribute, RepublishRules};
use worldfleet_domain::names::{
    ALL_QUEUES, ECOLOGY_INPUT_QUEUE, INTAKE_QUEUE, MARKET_QUEUE, WORLD_QUEUES, dead_letter_queue,
};
use worldfleet_embedded::{Durability, EmbeddedStore, StoreOptions};
use worldfleet_intake::{GatewayKeys, Intake, IntakeConfig, RateLimit};
use worldfleet_kit::{StageContext, StageHandler};
use worldfleet_ports::{Clock, OutgoingMessage, Queue, SystemClock, Table, UsageSnapshot};

use crate::audit::{Audit, AuditReport};
use crate::faults::{FaultCounts, FaultPlan, FaultRates, FaultyQueue, FaultyTable};
use crate::poller::{PollerConfig, PollerStats, run_stage};
use crate::resources::{QueueSettings, declare};
use crate::simulation::{self, WorldReport};
use crate::world::{Expectation, World, WorldSpec};

/// Everything `worldfleet run` can be told.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub world: WorldSpec,
    /// Envelopes per second posted by the world; `None` posts as fast as the pipeline absorbs.
    pub rate: Option<f64>,
    /// Where the store lives; `None` uses a temporary directory removed afterwards.
    pub data_dir: Option<PathBuf>,
    pub workers_per_stage: usize,
    pub durability: Durability,
    pub queues: QueueSettings,
    pub rate_limit: RateLimit,
    /// Inject faults with these rates, seeded.
    pub faults: Option<(FaultRates, u64)>,
    /// Kill every stage mid-flight and reopen the store after this many good events were sent.
    pub restart_after: Option<u64>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Most envelopes waiting in intake before the world holds back.
    pub max_backlog: u64,
    /// Give up waiting for the queues to drain after this long.
    pub drain_timeout: Duration,
    /// How often the watchdog re-arms quiet timer chains (world simulation only).
    pub watchdog_interval: Duration,
}

impl RunOptions {
    /// Defaults around `world`.
    pub fn new(world: WorldSpec) -> Self {
        Self {
            world,
            rate: None,
            data_dir: None,
            workers_per_stage: 4,
            durability: Durability::Sync,
            queues: QueueSettings::default(),
            rate_limit: RateLimit::default(),
            faults: None,
            restart_after: None,
            progress: false,
            max_backlog: 20_000,
            drain_timeout: Duration::from_secs(300),
            watchdog_interval: Duration::from_secs(60),
        }
    }
}

/// What a run did, as measured by the audit and the process.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub events_sent: u64,
    pub audit: AuditReport,
    /// Seconds from the first envelope sent to the last feed write.
    pub elapsed_s: f64,
    /// Good events per second over `elapsed_s`.
    pub events_per_s: f64,
    pub peak_rss_mb: f64,
    /// Messages left in dead-letter queues.
    pub dead_letters: u64,
    /// Store requests and units, all stages together.
    pub usage: UsageSnapshot,
    pub faults: Option<FaultCounts>,
    pub restarts: u32,
    pub store_bytes: u64,
    pub drained: bool,
    /// The world audit, when the run simulated the world.
    pub world: Option<WorldReport>,
}

impl RunSummary {
    /// The `--json` line.
    pub fn json_line(&self) -> serde_json::Value {
        serde_json::json!({
            "events_sent": self.events_sent,
            "accepted": self.audit.ledger_entries,
            "rejected": self.audit.rejection_rows,
            "ledger_entries": self.audit.ledger_entries,
            "canon": self.audit.canon,
            "feed_entries": self.audit.feed_entries,
            "lost": self.audit.lost,
            "duplicates": self.audit.duplicates,
            "p50_ms": self.audit.latency_p50_ms,
            "p99_ms": self.audit.latency_p99_ms,
            "events_per_s": (self.events_per_s * 10.0).round() / 10.0,
            "bad_sent": self.audit.bad_sent,
            "rejected_as_expected": self.audit.rejected_as_expected,
            "wrong_reason": self.audit.wrong_reason,
            "dead_letters": self.dead_letters,
            "peak_rss_mb": (self.peak_rss_mb * 10.0).round() / 10.0,
            "world": self.world.as_ref().map(|world| serde_json::json!({
                "trades_sent": world.trades_sent,
                "trades_recorded": world.trades_recorded,
                "recomputes": world.recomputes,
                "population": world.population,
                "lineages": world.lineages,
                "news_events": world.news_events,
                "news_published": world.news_published,
                "production_tick_p99_ms": world.production_tick_p99_ms,
                "lost": world.lost,
                "duplicates": world.duplicates,
            })),
        })
    }
}

struct Fleet {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    stats: Vec<(&'static str, Arc<PollerStats>)>,
    /// The world's timer stages and watchdog: stopped before everything else.
    world_shutdown: watch::Sender<bool>,
    world_tasks: Vec<JoinHandle<()>>,
    production_latencies_us: Option<Arc<std::sync::Mutex<Vec<u64>>>>,
}

impl Fleet {
    fn distributed(&self) -> u64 {
        self.stats
            .iter()
            .find(|(name, _)| *name == "distribute")
            .map_or(0, |(_, stats)| {
                stats.succeeded.load(std::sync::atomic::Ordering::Relaxed)
            })
    }

    /// Production tick durations measured so far, microseconds.
    fn production_latencies(&self) -> Vec<u64> {
        self.production_latencies_us
            .as_ref()
            .and_then(|samples| samples.lock().ok().map(|samples| samples.clone()))
            .unwrap_or_default()
    }

    /// Graceful stop of the world's timer stages and watchdog only.
    async fn stop_world(&mut self) {
        let _ = self.world_shutdown.send(true);
        for task in self.world_tasks.drain(..) {
            let _ = task.await;
        }
    }

    /// Graceful stop: pollers finish their batch and exit.
    async fn stop(mut self) {
        self.stop_world().await;
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// A crash: every in-flight batch is abandoned wherever it is.
    async fn kill(self) {
        for task in self.tasks.iter().chain(&self.world_tasks) {
            task.abort();
        }
        for task in self.tasks.into_iter().chain(self.world_tasks) {
            let _ = task.await;
        }
    }
}

/// The ports the stages use: the store's, wrapped in fault injection when asked.
struct Ports {
    queue: Arc<dyn Queue>,
    table: Arc<dyn Table>,
}

fn stage_ports(store: &EmbeddedStore, faults: Option<&Arc<FaultPlan>>) -> Ports {
    let queue: Arc<dyn Queue> = store.queue();
    let table: Arc<dyn Table> = store.table();
    match faults {
        Some(plan) => Ports {
            queue: Arc::new(FaultyQueue::new(queue, Arc::clone(plan))),
            table: Arc::new(FaultyTable::new(table, Arc::clone(plan))),
        },
        None => Ports { queue, table },
    }
}

/// The four narrative stages over `context`.
pub fn narrative_stages(
    context: &StageContext,
    intake: IntakeConfig,
    rules: RepublishRules,
) -> Vec<Arc<dyn StageHandler>> {
    vec![
        Arc::new(Intake::new(context.clone(), intake)),
        Arc::new(Classify::new(context.clone())),
        Arc::new(Compose::new(context.clone())),
        Arc::new(Distribute::new(context.clone(), rules)),
    ]
}

fn start_fleet(
    ports: &Ports,
    clock: Arc<dyn Clock>,
    options: &RunOptions,
    faults: Option<Arc<FaultPlan>>,
) -> anyhow::Result<Fleet> {
    let context = StageContext::new(Arc::clone(&ports.queue), Arc::clone(&ports.table), clock);
    let mut gateways = GatewayKeys::default();
    gateways.insert(&options.world.gateway, options.world.gateway_key.clone());
    let mut intake = IntakeConfig::new(gateways);
    intake.rate_limit = options.rate_limit;
    let (shutdown, watcher) = watch::channel(false);
    let poller = PollerConfig {
        workers: options.workers_per_stage,
        wait: Duration::from_millis(200),
        visibility_timeout: options.queues.visibility_timeout,
    };
    let (world_shutdown, world_watcher) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut world_tasks = Vec::new();
    let mut stats = Vec::new();
    let mut spawn = |handler: Arc<dyn StageHandler>, watcher: watch::Receiver<bool>| {
        let stage_stats = Arc::new(PollerStats::default());
        stats.push((handler.name(), Arc::clone(&stage_stats)));
        tokio::spawn(run_stage(
            handler,
            Arc::clone(&ports.queue),
            poller,
            watcher,
            stage_stats,
            faults.clone(),
        ))
    };
    for handler in narrative_stages(&context, intake, RepublishRules::default_rules()) {
        tasks.push(spawn(handler, watcher.clone()));
    }
    let mut production_latencies_us = None;
    if options.world.world_every > 0 {
        let world = simulation::world_stages(&context, &options.world.layout)?;
        production_latencies_us = Some(world.production_latencies_us);
        for handler in world.inputs {
            tasks.push(spawn(handler, watcher.clone()));
        }
        for handler in world.timers {
            world_tasks.push(spawn(handler, world_watcher.clone()));
        }
        world_tasks.push(tokio::spawn(simulation::run_watchdog(
            context.clone(),
            options.watchdog_interval,
            world_watcher,
        )));
    }
    Ok(Fleet {
        shutdown,
        tasks,
        stats,
        world_shutdown,
        world_tasks,
        production_latencies_us,
    })
}

async fn backlog(queue: &dyn Queue) -> anyhow::Result<u64> {
    let mut total = 0;
    // The world's input queues count; its timer queues never run dry and do not.
    for name in ALL_QUEUES
        .into_iter()
        .chain([MARKET_QUEUE, ECOLOGY_INPUT_QUEUE])
    {
        total += queue.depth(name).await?.total();
    }
    Ok(total)
}

/// Peak resident memory of this process, in MiB (Linux; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Runs the world through every stage and audits the result.
pub async fn run_embedded(options: RunOptions) -> anyhow::Result<RunSummary> {
    let temporary = match &options.data_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("worldfleet-run-")
                .tempdir()
                .context("create a temporary data directory")?,
        ),
    };
    let data_dir = match (&options.data_dir, &temporary) {
        (Some(dir), _) => dir.clone(),
        (None, Some(temporary)) => temporary.path().to_path_buf(),
        (None, None) => unreachable!("a temporary directory exists when no data dir was given"),
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store_options = StoreOptions {
        durability: options.durability,
        ..StoreOptions::default()
    };
    let open = |dir: &PathBuf| {
        EmbeddedStore::open(dir, Arc::clone(&clock), store_options.clone())
            .with_context(|| format!("open the embedded store in {}", dir.display()))
    };
    let mut store = open(&data_dir)?;
    declare(
        store.queue().as_ref(),
        store.table().as_ref(),
        options.queues,
    )
    .await?;
    let faults = options
        .faults
        .map(|(rates, seed)| Arc::new(FaultPlan::new(rates, seed)));
    let simulate_world = options.world.world_every > 0;
    if simulate_world {
        let setup = StageContext::new(store.queue(), store.table(), Arc::clone(&clock));
        simulation::seed(&setup, &options.world.layout).await?;
    }
    let mut production_latencies: Vec<u64> = Vec::new();

    let mut world = World::new(options.world.clone());
    let partitions = world.partitions();
    let players = world.players();
    let factions = world.factions();
    let mut expectations: Vec<Expectation> = Vec::new();

    let mut ports = stage_ports(&store, faults.as_ref());
    let mut fleet = start_fleet(&ports, Arc::clone(&clock), &options, faults.clone())?;
    let progress = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new(options.world.events);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} events through every stage {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });

    let started = Instant::now();
    let started_ms = clock.now_ms();
    let mut sent = 0_u64;
    let mut restarts = 0;
    let mut restarted = false;
    let mut progress_base = 0;
    while !world.finished() {
        let mut batch = Vec::new();
        while batch.len() < worldfleet_ports::queue::MAX_BATCH {
            match world.next(clock.now_ms()) {
                Some(emitted) => batch.push(emitted),
                None => break,
            }
        }
        let messages: Vec<OutgoingMessage> = batch
            .iter()
            .map(|emitted| {
                OutgoingMessage::fifo(emitted.body.clone(), &emitted.group, &emitted.dedup_id)
            })
            .collect();
        // The gateway's own retry loop: it keeps trying until intake's queue takes the batch.
        let raw_queue = store.queue();
        loop {
            match raw_queue.send_batch(INTAKE_QUEUE, messages.clone()).await {
                Ok(outcomes)
                    if outcomes.iter().all(|outcome| {
                        matches!(outcome, worldfleet_ports::SendOutcome::Sent { .. })
                    }) =>
                {
                    break;
                }
                Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        sent += batch.len() as u64;
        expectations.extend(batch.into_iter().map(|emitted| emitted.expectation));

        if let Some(rate) = options.rate {
            let due = Duration::from_secs_f64(sent as f64 / rate.max(1.0));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        } else if sent % 500 < 10 {
            while backlog(raw_queue.as_ref()).await? > options.max_backlog {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        if let Some(bar) = &progress {
            bar.set_position((progress_base + fleet.distributed()).min(options.world.events));
        }
        drop(raw_queue);
        if !restarted
            && options
                .restart_after
                .is_some_and(|after| world.good_emitted() >= after)
        {
            restarted = true;
            restarts += 1;
            tracing::warn!(
                sent,
                "killing every stage mid-flight and reopening the store"
            );
            progress_base += fleet.distributed();
            production_latencies.extend(fleet.production_latencies());
            fleet.kill().await;
            drop(ports);
            store.close();
            store = open(&data_dir)?;
            ports = stage_ports(&store, faults.as_ref());
            fleet = start_fleet(&ports, Arc::clone(&clock), &options, faults.clone())?;
        }
    }

    let drain_started = Instant::now();
    let mut drained = false;
    let mut quiet_checks = 0;
    while drain_started.elapsed() < options.drain_timeout {
        if let Some(bar) = &progress {
            bar.set_position((progress_base + fleet.distributed()).min(options.world.events));
        }
        let world_settled = !simulate_world
            || simulation::settled(
                store.queue().as_ref(),
                store.table().as_ref(),
                &options.world.layout,
            )
            .await?;
        if world_settled && backlog(store.queue().as_ref()).await? == 0 {
            quiet_checks += 1;
            if quiet_checks >= 3 {
                drained = true;
                break;
            }
        } else {
            quiet_checks = 0;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if simulate_world {
        // Timers never run dry: stop them, finish what the last ticks owe, then drain the rest.
        fleet.stop_world().await;
        let finisher = StageContext::new(store.queue(), store.table(), Arc::clone(&clock));
        simulation::finish_outboxes(&finisher, &options.world.layout).await?;
        let settle_started = Instant::now();
        while backlog(store.queue().as_ref()).await? > 0
            && settle_started.elapsed() < options.drain_timeout
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    production_latencies.extend(fleet.production_latencies());
    fleet.stop().await;
    if !drained {
        tracing::warn!(
            "queues did not drain within the timeout; the audit reports what is missing"
        );
    }

    let mut dead_letters = 0;
    for name in ALL_QUEUES.into_iter().chain(WORLD_QUEUES) {
        dead_letters += store.queue().depth(&dead_letter_queue(name)).await?.total();
    }
    let rules = RepublishRules::default_rules();
    let table = store.table();
    let audit = Audit {
        table: table.as_ref(),
        rules: &rules,
        partitions,
        players,
        factions,
        expectations: &expectations,
    }
    .run()
    .await?;
    let world = if simulate_world {
        Some(
            simulation::audit(
                table.as_ref(),
                &options.world.layout,
                &expectations,
                &production_latencies,
            )
            .await?,
        )
    } else {
        None
    };
    let finished_ms = audit.last_feed_write_ms.max(started_ms + 1);
    let elapsed_s = (finished_ms - started_ms) as f64 / 1000.0;
    let summary = RunSummary {
        events_sent: sent,
        events_per_s: audit.good_sent as f64 / elapsed_s.max(0.001),
        elapsed_s,
        audit,
        peak_rss_mb: peak_rss_mb(),
        dead_letters,
        usage: store.counters(),
        faults: faults.map(|plan| plan.counts()),
        restarts,
        store_bytes: store.disk_bytes().unwrap_or(0),
        drained,
        world,
    };
    // Every handle goes before the store closes, and the store before its directory.
    drop(table);
    drop(ports);
    store.close();
    drop(temporary);
    Ok(summary)
}
