//! `worldfleet run`: the whole narrative path in one process on the embedded store.
//!
//! The same stage handlers that run in Lambda run here, each driven by its own pollers over
//! the embedded queue, all sharing one durable store. A synthetic world posts signed envelopes
//! to the intake queue at the requested rate; when every queue has drained, the stages stop and
//! the independent [`worldfleet_testbed::audit`] reads the tables and reports.
//!
//! With a world simulation (`WorldSpec::world_every > 0`) the run also seeds the world's cells
//! and regions, runs the market, ecology and production stages and the watchdog in the same
//! [`Fleet`], waits until the world has settled ([`crate::simulation::settled`]), stops the
//! timer stages first, completes the last ticks' outboxes, drains, and adds the world audit to
//! the summary.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use worldfleet_compose::Composer;
use worldfleet_compose::metrics::ComposeSnapshot;
use worldfleet_domain::names::{ALL_QUEUES, WORLD_QUEUES, dead_letter_queue};
use worldfleet_embedded::{Durability, EmbeddedStore, StoreOptions};
use worldfleet_intake::{GatewayKeys, IntakeConfig, RateLimit};
use worldfleet_kit::{Env, StageContext};
use worldfleet_ports::{Clock, Queue, SystemClock, Table, UsageSnapshot};
use worldfleet_serve::push::{FeedSignals, NotifyingTable};
use worldfleet_stages::{
    ClassifierSetting, ComposerSetting, NARRATIVE_STAGES, StageSettings, build_stages,
};
use worldfleet_testbed::audit::{Audit, AuditReport};
use worldfleet_testbed::faults::{FaultCounts, FaultPlan, FaultRates, FaultyQueue, FaultyTable};
use worldfleet_testbed::world::{World, WorldSpec};

use crate::doors::{DeliveryReport, Doors};
use crate::fleet::{
    Fleet, FleetStages, Posting, QueueGateway, WorldGateway, distributed, post_world,
    post_world_through, settle_world, wait_for_drain,
};
use crate::models::{self, ModelChoice};
use crate::poller::PollerConfig;
use crate::resources::{QueueSettings, declare};
use crate::simulation::{self, WorldReport};

/// Everything `worldfleet run` can be told.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub world: WorldSpec,
    /// Envelopes per second posted by the world; `None` posts as fast as the pipeline absorbs.
    pub rate: Option<f64>,
    /// Where the store lives; `None` uses a temporary directory removed afterwards.
    pub data_dir: Option<PathBuf>,
    pub workers_per_stage: usize,
    /// What is fsynced before it is acknowledged; by default ([`Durability::Boundary`]) the
    /// gateway's send onto the intake queue and what the doors read, the rest in the
    /// background.
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
    /// Whether classify and compose use models when configured or present.
    pub models: ModelChoice,
    /// How often the watchdog re-arms quiet timer chains (world simulation only).
    pub watchdog_interval: Duration,
    /// Post through the HTTP door and follow every player's feed over a WebSocket
    /// ([`crate::doors`]) instead of writing onto the intake queue; not with `restart_after`
    /// (the server would die with the stages), which posts onto the queue.
    pub doors: bool,
    /// Keep the audit's rows in the summary (canon text, feed entries and partitions of every
    /// event, for comparing runs); `bench` leaves them out, which saves ~100 MiB per 100,000
    /// events.
    pub audit_rows: bool,
}

impl RunOptions {
    /// Defaults around `world`.
    pub fn new(world: WorldSpec) -> Self {
        Self {
            world,
            rate: None,
            data_dir: None,
            workers_per_stage: 4,
            durability: Durability::Boundary,
            queues: QueueSettings::default(),
            rate_limit: RateLimit::default(),
            faults: None,
            restart_after: None,
            progress: false,
            max_backlog: 20_000,
            drain_timeout: Duration::from_secs(300),
            models: ModelChoice::Auto,
            watchdog_interval: Duration::from_secs(60),
            doors: false,
            audit_rows: true,
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
    /// Delivery as the players saw it, when the run went through the doors.
    pub delivery: Option<DeliveryReport>,
    pub drained: bool,
    /// Which classifier ran, and why when it is the rules.
    pub classifier: String,
    /// Which composer ran, and why when it is templates.
    pub composer: String,
    /// Model calls, cache hits, budget alerts and fallbacks, when models composed (counted
    /// since the last restart).
    pub compose: Option<ComposeSnapshot>,
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
            "delivery": self.delivery,
            "peak_rss_mb": (self.peak_rss_mb * 10.0).round() / 10.0,
            "classifier": self.classifier,
            "composer": self.composer,
            "compose": self.compose,
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

/// The stage settings of an embedded run: the environment's, read as every mode reads them
/// ([`StageSettings::from_vars`]), with what the run itself owns — the synthetic world's
/// gateway key and the run's rate limit, the world's tick interval and the watchdog interval.
/// The classifier and composer are resolved by [`embedded_stage_set`].
pub fn embedded_settings(options: &RunOptions, env: &Env) -> anyhow::Result<StageSettings> {
    let mut settings = StageSettings::from_vars(env)?;
    let mut gateways = GatewayKeys::default();
    gateways.insert(&options.world.gateway, options.world.gateway_key.clone());
    let mut intake = IntakeConfig::new(gateways);
    intake.rate_limit = options.rate_limit;
    settings.intake = Ok(intake);
    settings.watchdog_interval = options.watchdog_interval;
    if options.world.world_every > 0 {
        settings = simulation::world_settings(settings, &options.world.layout)?;
    }
    Ok(settings)
}

/// The stages an embedded run builds: the narrative path, and the world when it simulates one.
pub fn embedded_stage_names(options: &RunOptions) -> Vec<&'static str> {
    if options.world.world_every > 0 {
        worldfleet_stages::all_names()
    } else {
        NARRATIVE_STAGES.to_vec()
    }
}

/// The stages of an embedded run over `context`, built by the registry with `settings`; the
/// composer is built over the context's table (its budgets live there), and returned with its
/// description for the run summary.
pub fn embedded_stage_set(
    options: &RunOptions,
    settings: &StageSettings,
    context: &StageContext,
) -> anyhow::Result<(FleetStages, Composer, String)> {
    let (composer, description) = models::composer(
        options.models,
        &settings.composer,
        Arc::clone(&context.table),
        Arc::clone(&context.clock),
    )?;
    let mut settings = settings.clone();
    settings.composer = ComposerSetting::Given(composer.clone());
    let stages = build_stages(&embedded_stage_names(options), context, &settings)?;
    Ok((stages, composer, description))
}

fn start_fleet(
    ports: &Ports,
    clock: Arc<dyn Clock>,
    options: &RunOptions,
    faults: Option<Arc<FaultPlan>>,
    settings: &StageSettings,
) -> anyhow::Result<(Fleet, Composer, String)> {
    let context = StageContext::new(Arc::clone(&ports.queue), Arc::clone(&ports.table), clock);
    let (stages, composer, description) = embedded_stage_set(options, settings, &context)?;
    for line in stages.describe() {
        tracing::info!(stage = %line, "stage built");
    }
    let poller = PollerConfig {
        workers: options.workers_per_stage,
        wait: Duration::from_millis(200),
        visibility_timeout: options.queues.visibility_timeout,
        batching_window: Duration::ZERO,
    };
    let fleet = Fleet::launch(stages, Arc::clone(&ports.queue), poller, faults);
    Ok((fleet, composer, description))
}

/// Peak resident memory of this process, in MiB (Linux; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    process_status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0
}

/// Resident memory of this process now, in KiB (Linux; 0 elsewhere).
pub fn current_rss_kib() -> u64 {
    process_status_kib("VmRSS:").unwrap_or(0)
}

/// A KiB figure of `/proc/self/status` (`VmHWM:`, `VmRSS:`).
fn process_status_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|line| line.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
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
    }
    .with_sizes_from_env()
    .map_err(anyhow::Error::msg)?;
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

    let mut settings = embedded_settings(&options, &Env::process())?;
    let (classifier, classifier_description) =
        models::classifier(options.models, &settings.classifier, Arc::clone(&clock))?;
    tracing::info!(classifier = %classifier_description, "classify");
    settings.classifier = ClassifierSetting::Given(classifier);
    let use_doors = options.doors && options.restart_after.is_none();
    let signals = Arc::new(FeedSignals::default());
    let mut ports = stage_ports(&store, faults.as_ref());
    if use_doors {
        // Distribute's page writes wake the players' subscriptions at once.
        ports.table = Arc::new(NotifyingTable::new(ports.table, Arc::clone(&signals)));
    }
    let doors = if use_doors {
        Some(
            // The doors answer the outside world: their sends wait for fsync and their reads
            // for what they read to be durable.
            Doors::open(
                store.acknowledging_queue(),
                store.acknowledging_table(),
                Arc::clone(&clock),
                Arc::clone(&signals),
                (&options.world.gateway, &options.world.gateway_key),
                &players,
            )
            .await?,
        )
    } else {
        None
    };
    // The gateway's send is where an envelope is acknowledged: it waits for fsync.
    let queue_gateway = store.acknowledging_queue();
    let queue_gateway = QueueGateway(queue_gateway.as_ref());
    let gateway: &dyn WorldGateway = match &doors {
        Some(doors) => doors,
        None => &queue_gateway,
    };
    let (mut fleet, mut composer, composer_description) = start_fleet(
        &ports,
        Arc::clone(&clock),
        &options,
        faults.clone(),
        &settings,
    )?;
    tracing::info!(composer = %composer_description, "compose");
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
    let posting = Posting {
        rate: options.rate,
        max_backlog: options.max_backlog,
        started,
        already_sent: 0,
        stop_after_good: options.restart_after,
    };
    let show = |fleet: &Fleet, base: u64| {
        if let Some(bar) = &progress {
            bar.set_position((base + fleet.distributed()).min(options.world.events));
        }
    };
    let mut expectations = post_world_through(
        gateway,
        store.queue().as_ref(),
        &mut world,
        clock.as_ref(),
        posting,
        || show(&fleet, 0),
    )
    .await?;
    let mut restarts = 0;
    let mut progress_base = 0;
    if !world.finished() {
        // A crash: every stage dies wherever it is, then the process comes back on the same
        // store and carries on.
        restarts += 1;
        tracing::warn!(
            sent = expectations.len(),
            "killing every stage mid-flight and reopening the store"
        );
        progress_base += fleet.distributed();
        production_latencies.extend(fleet.production_latencies());
        fleet.kill().await;
        drop(ports);
        store.close();
        store = open(&data_dir)?;
        ports = stage_ports(&store, faults.as_ref());
        (fleet, composer, _) = start_fleet(
            &ports,
            Arc::clone(&clock),
            &options,
            faults.clone(),
            &settings,
        )?;
        let rest = post_world(
            store.acknowledging_queue().as_ref(),
            &mut world,
            clock.as_ref(),
            Posting {
                already_sent: expectations.len() as u64,
                stop_after_good: None,
                ..posting
            },
            || show(&fleet, progress_base),
        )
        .await?;
        expectations.extend(rest);
    }
    let sent = expectations.len() as u64;
    let distribute_stats = fleet.distribute_stats();
    let show_drain = || {
        if let Some(bar) = &progress {
            let done = progress_base + distributed(distribute_stats.as_deref());
            bar.set_position(done.min(options.world.events));
        }
    };
    let drained = if simulate_world {
        let world_context = StageContext::new(store.queue(), store.table(), Arc::clone(&clock));
        settle_world(
            &mut fleet,
            &world_context,
            &options.world.layout,
            options.drain_timeout,
            show_drain,
        )
        .await?
    } else {
        wait_for_drain(store.queue().as_ref(), options.drain_timeout, show_drain).await?
    };
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    production_latencies.extend(fleet.production_latencies());
    fleet.stop().await;
    tracing::info!(
        rss_mib = current_rss_kib() / 1024,
        peak_rss_mib = peak_rss_mb().round(),
        "pipeline drained; auditing"
    );
    // What the door refused, or the queue deduplicated, never reached intake: the doors
    // check it and leave it out of what the audit looks for.
    let (delivery, audited) = match doors {
        Some(doors) => {
            let (report, audited) = doors.close(&expectations).await;
            (Some(report), Cow::Owned(audited))
        }
        None => (None, Cow::Borrowed(expectations.as_slice())),
    };
    if !drained {
        tracing::warn!(
            "queues did not drain within the timeout; the audit reports what is missing"
        );
    }

    let mut dead_letters = 0;
    for name in ALL_QUEUES.into_iter().chain(WORLD_QUEUES) {
        dead_letters += store.queue().depth(&dead_letter_queue(name)).await?.total();
    }
    let rules = settings.republish.clone();
    let table = store.table();
    let mut audit = Audit {
        table: table.as_ref(),
        rules: &rules,
        partitions,
        players,
        factions,
        expectations: &audited,
        keep_rows: options.audit_rows,
    }
    .run()
    .await?;
    if let Some(delivery) = &delivery {
        audit.bad_sent += delivery.door_refused;
        audit.rejected_as_expected += delivery.door_refused_as_expected;
        audit.wrong_reason += delivery.door_refused - delivery.door_refused_as_expected;
    }
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
        delivery,
        drained,
        classifier: classifier_description,
        composer: composer_description,
        compose: composer.metrics().map(|metrics| metrics.snapshot()),
        world,
    };
    // Every handle goes before the store closes, and the store before its directory.
    drop(table);
    drop(ports);
    store.close();
    drop(temporary);
    Ok(summary)
}
