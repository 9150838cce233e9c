//! `worldfleet bench --aws`: what each stage costs on SQS and DynamoDB, per message and per
//! event, and in dollars per million events.
//!
//! The template's queues and tables are deployed under a fresh stack name (on the local
//! emulators: `. localstack/env.sh` first), a synthetic world is posted to intake, and every
//! stage runs as fleet pollers with the batch semantics of the Lambda event source mapping.
//! Each stage has adapters of its own, so their counters attribute every request and unit to
//! the stage that made it: the receives and deletes of its pollers, the sends of its handler,
//! its table reads and writes. Receives that come back empty (idle long polls, which Lambda's
//! pollers make too) are tallied apart, because they depend on idle time, not on traffic. The
//! run is audited (nothing lost, nothing doubled) before any figure is printed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use worldfleet_aws::cost::{Bill, PriceList, RunMeasure, StageMeasure};
use worldfleet_aws::template::Template;
use worldfleet_aws::{AwsSettings, DynamoTable, SqsQueue, deploy_from_template};
use worldfleet_intake::{GatewayKeys, IntakeConfig, RateLimit};
use worldfleet_kit::StageContext;
use worldfleet_ports::{
    Clock, DeleteOutcome, OperationCounters, OutgoingMessage, Queue, QueueDepth, QueueSpec,
    ReceiveRequest, ReceivedMessage, SendOutcome, SystemClock, Table, UsageSnapshot,
};
use worldfleet_runtime::fleet::{Posting, post_world, wait_for_drain};
use worldfleet_runtime::{Fleet, PollerConfig, PollerStats};
use worldfleet_stages::{NARRATIVE_STAGES, StageSettings, build_stage};
use worldfleet_testbed::audit::Audit;
use worldfleet_testbed::{World, WorldSpec};

/// What the AWS cost benchmark runs.
#[derive(Debug, Clone)]
pub struct AwsBenchOptions {
    /// Good events the world emits.
    pub events: u64,
    /// Audience of every event.
    pub fan_out: u32,
    /// Concurrent pollers per stage.
    pub workers: usize,
    /// Long-poll wait of a receive (20 s is what Lambda's pollers use).
    pub wait: Duration,
    /// The SAM template whose queues and tables are deployed.
    pub template: String,
    /// How long the queues may take to drain.
    pub drain_timeout: Duration,
    /// Pollers' pause after a partial batch (`worldfleet worker --batching-window-ms`).
    pub batching_window: Duration,
    /// The prices the bill uses.
    pub prices: PriceList,
    /// How long stored items are kept, days (the storage line of the bill).
    pub retention_days: f64,
}

/// Counts the calls through a queue that do not scale with traffic — receives that came back
/// empty, and depth checks (the benchmark's own backlog checks) — so they can be told apart
/// from the requests traffic costs; every call passes straight through.
#[derive(Default)]
struct IdleTally {
    empty_receives: AtomicU64,
    depth_checks: AtomicU64,
}

impl IdleTally {
    fn idle_requests(&self) -> u64 {
        self.empty_receives.load(Ordering::Relaxed) + self.depth_checks.load(Ordering::Relaxed)
    }
}

struct TalliedQueue {
    inner: Arc<dyn Queue>,
    tally: Arc<IdleTally>,
}

#[async_trait]
impl Queue for TalliedQueue {
    async fn ensure_queue(&self, spec: &QueueSpec) -> worldfleet_ports::Result<()> {
        self.inner.ensure_queue(spec).await
    }

    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> worldfleet_ports::Result<Vec<SendOutcome>> {
        self.inner.send_batch(queue, messages).await
    }

    async fn receive(
        &self,
        queue: &str,
        request: ReceiveRequest,
    ) -> worldfleet_ports::Result<Vec<ReceivedMessage>> {
        let received = self.inner.receive(queue, request).await;
        if received.as_ref().is_ok_and(Vec::is_empty) {
            self.tally.empty_receives.fetch_add(1, Ordering::Relaxed);
        }
        received
    }

    async fn delete_batch(
        &self,
        queue: &str,
        receipt_handles: Vec<String>,
    ) -> worldfleet_ports::Result<Vec<DeleteOutcome>> {
        self.inner.delete_batch(queue, receipt_handles).await
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> worldfleet_ports::Result<()> {
        self.inner
            .change_visibility(queue, receipt_handle, timeout)
            .await
    }

    async fn depth(&self, queue: &str) -> worldfleet_ports::Result<QueueDepth> {
        self.tally.depth_checks.fetch_add(1, Ordering::Relaxed);
        self.inner.depth(queue).await
    }
}

/// One stage with adapters (and so counters) of its own.
struct MeteredStage {
    name: &'static str,
    queue_counters: Arc<OperationCounters>,
    /// The stage's own table adapter (clones share its counters, overall and by table).
    dynamo: DynamoTable,
    tally: Arc<IdleTally>,
    fleet: Fleet,
}

/// What one stage consumed in the run.
struct Consumed {
    name: &'static str,
    queue: UsageSnapshot,
    table: UsageSnapshot,
    by_table: BTreeMap<String, UsageSnapshot>,
    records: u64,
    batches: u64,
    idle: u64,
    billed_ms: u64,
}

/// The figures of one stage (or of the gateway posting to intake).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageCost {
    pub stage: String,
    /// Messages the stage consumed (the gateway: messages it posted).
    pub messages: u64,
    /// Messages per non-empty receive (the gateway: per send request).
    pub mean_batch: f64,
    pub sqs_requests: u64,
    /// Requests that do not scale with traffic: receives that returned nothing (idle long
    /// polls) and the benchmark's own depth checks.
    pub idle_requests: u64,
    pub sqs_requests_per_message: f64,
    /// The same without the idle requests: what traffic itself costs.
    pub sqs_requests_per_message_busy: f64,
    pub sqs_requests_per_event: f64,
    pub write_units_per_event: f64,
    pub read_units_per_event: f64,
    pub dollars_per_million_events: f64,
    /// Write units per event by table: where the stage's writes go.
    #[serde(default)]
    pub write_units_per_event_by_table: BTreeMap<String, f64>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AwsBenchReport {
    pub events: u64,
    pub fan_out: u32,
    pub feed_entries: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub elapsed_s: f64,
    pub prices: PriceList,
    pub stages: Vec<StageCost>,
    /// SQS and DynamoDB requests only, per million events (the stages' table).
    pub total_dollars_per_million_events: f64,
    /// What the run measured, for `worldfleet cost` to price again.
    pub measure: RunMeasure,
    /// Every line of the run's bill per million events.
    pub bill: Bill,
}

fn stage_cost(
    stage: &str,
    usage: &UsageSnapshot,
    messages: u64,
    batches: u64,
    idle_requests: u64,
    events: u64,
    prices: &PriceList,
) -> StageCost {
    let per = |count: u64, of: u64| count as f64 / of.max(1) as f64;
    // Every queue is FIFO; DynamoDB units are priced the same for every table.
    let cost = prices.per_event(usage, events.max(1), true);
    StageCost {
        write_units_per_event_by_table: BTreeMap::new(),
        stage: stage.to_owned(),
        messages,
        mean_batch: per(messages, batches),
        sqs_requests: usage.queue_requests,
        idle_requests,
        sqs_requests_per_message: per(usage.queue_requests, messages),
        sqs_requests_per_message_busy: per(
            usage.queue_requests.saturating_sub(idle_requests),
            messages,
        ),
        sqs_requests_per_event: per(usage.queue_requests, events),
        write_units_per_event: per(usage.table_write_units, events),
        read_units_per_event: per(usage.table_read_units, events),
        dollars_per_million_events: cost.map_or(0.0, |cost| cost.total_dollars_per_million),
    }
}

/// Runs the benchmark on the AWS endpoints of the environment.
pub async fn run(options: AwsBenchOptions) -> anyhow::Result<AwsBenchReport> {
    anyhow::ensure!(options.events > 0, "--events must be at least 1");
    let started_ms = SystemClock.now_ms();
    let settings = AwsSettings::from_env()
        .context("read AWS settings from the environment")?
        .with_stack(&format!("bench-{started_ms}"));
    let template = Template::from_path(&options.template)
        .with_context(|| format!("read {}", options.template))?;
    let config = settings.sdk_config().await;
    let gateway_queue = SqsQueue::from_sdk_config(&config, settings.clone());
    let audit_table = DynamoTable::from_sdk_config(&config, settings.clone());
    deploy_from_template(&options.template, &gateway_queue, &audit_table)
        .await
        .with_context(|| format!("deploy the queues and tables of {}", options.template))?;
    let gateway_counters = Arc::clone(gateway_queue.counters());
    // Creating the queues is set-up, not the gateway's traffic.
    let after_deploy = gateway_counters.snapshot();
    let gateway_tally = Arc::new(IdleTally::default());
    let gateway_queue: Arc<dyn Queue> = Arc::new(TalliedQueue {
        inner: Arc::new(gateway_queue),
        tally: Arc::clone(&gateway_tally),
    });

    let spec = WorldSpec {
        events: options.events,
        players: 2_000,
        districts: 8,
        scenes_per_district: 16,
        fan_out: options.fan_out,
        factions: 4,
        bad_every: 0,
        ..WorldSpec::small(7)
    };
    let mut gateways = GatewayKeys::default();
    gateways.insert(&spec.gateway, spec.gateway_key.clone());
    let mut intake = IntakeConfig::new(gateways);
    // The synthetic world is honest traffic: limits far above its per-player rate.
    intake.rate_limit = RateLimit {
        burst: 1_000,
        per_second: 1_000,
    };
    // The registry builds the stages from the environment's settings, with the bench's own
    // gateway and limits.
    let mut stage_settings = StageSettings::from_env()?;
    stage_settings.intake = Ok(intake);
    let rules = stage_settings.republish.clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let poller = PollerConfig {
        workers: options.workers.max(1),
        wait: options.wait,
        visibility_timeout: Duration::from_secs(30),
        batching_window: options.batching_window,
    };
    let mut stages = Vec::new();
    // The narrative path, prune included: it ends each published plan's bookkeeping and moves
    // the ledger checkpoints, so its requests are on every event's bill (and its queue must
    // drain before the run is over).
    for stage in NARRATIVE_STAGES {
        let sqs = SqsQueue::from_sdk_config(&config, settings.clone());
        let dynamo = DynamoTable::from_sdk_config(&config, settings.clone());
        let queue_counters = Arc::clone(sqs.counters());
        let tally = Arc::new(IdleTally::default());
        let queue: Arc<dyn Queue> = Arc::new(TalliedQueue {
            inner: Arc::new(sqs),
            tally: Arc::clone(&tally),
        });
        let table: Arc<dyn Table> = Arc::new(dynamo.clone());
        let context = StageContext::new(Arc::clone(&queue), table, Arc::clone(&clock));
        let handler = build_stage(stage, &context, &stage_settings)?
            .handler()
            .cloned()
            .context("a narrative stage is fed by a queue")?;
        stages.push(MeteredStage {
            name: stage,
            queue_counters,
            dynamo,
            tally,
            fleet: Fleet::start(vec![handler], queue, poller, None),
        });
    }

    let began = Instant::now();
    let mut world = World::new(spec);
    let (partitions, players, factions) = (world.partitions(), world.players(), world.factions());
    let posting = Posting {
        rate: None,
        max_backlog: 2_000,
        started: began,
        already_sent: 0,
        stop_after_good: None,
    };
    let expectations = post_world(
        gateway_queue.as_ref(),
        &mut world,
        clock.as_ref(),
        posting,
        || {},
    )
    .await
    .context("post the world to intake")?;
    let gateway_usage = gateway_counters.snapshot().since(&after_deploy);
    let gateway_idle = gateway_tally.idle_requests();
    let drained = wait_for_drain(gateway_queue.as_ref(), options.drain_timeout, || {}).await?;
    let elapsed_s = began.elapsed().as_secs_f64();
    let mut consumed = Vec::new();
    for stage in stages {
        let count = |read: fn(&PollerStats) -> u64| -> u64 {
            stage
                .fleet
                .stats()
                .iter()
                .map(|(_, stats)| read(stats))
                .sum()
        };
        let records = count(|stats| stats.records.load(Ordering::Relaxed));
        let batches = count(|stats| stats.batches.load(Ordering::Relaxed));
        let billed_ms = count(|stats| stats.billed_ms.load(Ordering::Relaxed));
        stage.fleet.stop().await;
        consumed.push(Consumed {
            name: stage.name,
            queue: stage.queue_counters.snapshot(),
            table: stage.dynamo.counters().snapshot(),
            by_table: stage.dynamo.usage_by_table(),
            records,
            batches,
            idle: stage.tally.idle_requests(),
            billed_ms,
        });
    }
    anyhow::ensure!(
        drained,
        "the queues did not drain within {:?}",
        options.drain_timeout
    );

    let report = Audit {
        table: &audit_table,
        rules: &rules,
        partitions,
        players,
        factions,
        expectations: &expectations,
        keep_rows: false,
    }
    .run()
    .await
    .context("audit the run")?;
    anyhow::ensure!(
        report.lost == 0 && report.duplicates == 0,
        "the run lost {} and doubled {} entries: {:?}",
        report.lost,
        report.duplicates,
        report.problems
    );
    let events = report.good_sent;
    let prices = options.prices;
    let mut stored_bytes = BTreeMap::new();
    for table in audit_table
        .list_tables()
        .await
        .context("list the run's tables")?
    {
        let (_, bytes) = audit_table
            .stored_bytes(&table)
            .await
            .with_context(|| format!("size the {table} table"))?;
        stored_bytes.insert(table, bytes);
    }
    // The gateway's row is its sends alone: its depth checks are the benchmark's back-pressure.
    let gateway_sends = UsageSnapshot {
        queue_requests: gateway_usage.queue_requests.saturating_sub(gateway_idle),
        ..gateway_usage
    };
    let mut costs = vec![stage_cost(
        "gateway",
        &gateway_sends,
        gateway_usage.queue_messages_sent,
        gateway_sends.queue_requests,
        0,
        events,
        &prices,
    )];
    // The gateway is the studio's; its sends are on the bill, it is no Lambda.
    let mut measures = vec![StageMeasure::from_usage("gateway", &gateway_sends, 0, 0, 0)];
    for Consumed {
        name: stage,
        queue,
        table,
        by_table,
        records,
        batches,
        idle,
        billed_ms,
    } in consumed
    {
        let usage = UsageSnapshot {
            table_requests: table.table_requests,
            table_write_units: table.table_write_units,
            table_read_units: table.table_read_units,
            table_items_written: table.table_items_written,
            table_items_read: table.table_items_read,
            ..queue
        };
        let mut cost = stage_cost(stage, &usage, records, batches, idle, events, &prices);
        cost.write_units_per_event_by_table = by_table
            .iter()
            .filter(|(_, units)| units.table_write_units > 0)
            .map(|(table, units)| {
                let per_event = units.table_write_units as f64 / events.max(1) as f64;
                (table.clone(), per_event)
            })
            .collect();
        costs.push(cost);
        let memory_mb = template
            .function_named(stage)
            .and_then(|function| template.function_memory_mb(function.id))
            .with_context(|| {
                format!("the {stage} function's memory size in {}", options.template)
            })?;
        // Idle long polls are the event source mapping's, not traffic's: billed in the month.
        let busy = UsageSnapshot {
            queue_requests: usage.queue_requests.saturating_sub(idle),
            ..usage
        };
        measures.push(StageMeasure::from_usage(
            stage, &busy, batches, billed_ms, memory_mb,
        ));
    }
    let measure = RunMeasure {
        events,
        fan_out: options.fan_out,
        stages: measures,
        stored_bytes,
    };
    let bill = Bill::per_million_events(&measure, &prices, options.retention_days);
    let total = costs
        .iter()
        .map(|cost| cost.dollars_per_million_events)
        .sum();
    Ok(AwsBenchReport {
        events,
        fan_out: options.fan_out,
        feed_entries: report.feed_entries,
        lost: report.lost,
        duplicates: report.duplicates,
        elapsed_s,
        prices,
        stages: costs,
        total_dollars_per_million_events: total,
        measure,
        bill,
    })
}

/// The report as a table for the terminal.
pub fn print(report: &AwsBenchReport) {
    println!(
        "{} events (fan-out {}), {} feed entries, lost {}, duplicates {}, {:.1} s",
        report.events,
        report.fan_out,
        report.feed_entries,
        report.lost,
        report.duplicates,
        report.elapsed_s
    );
    println!(
        "{:<11} {:>8} {:>6} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "stage",
        "messages",
        "batch",
        "sqs req",
        "idle",
        "req/msg",
        "busy/msg",
        "req/event",
        "WCU/event",
        "RCU/event",
        "$/M events"
    );
    for stage in &report.stages {
        println!(
            "{:<11} {:>8} {:>6.2} {:>9} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.2} {:>9.2} {:>10.2}",
            stage.stage,
            stage.messages,
            stage.mean_batch,
            stage.sqs_requests,
            stage.idle_requests,
            stage.sqs_requests_per_message,
            stage.sqs_requests_per_message_busy,
            stage.sqs_requests_per_event,
            stage.write_units_per_event,
            stage.read_units_per_event,
            stage.dollars_per_million_events
        );
    }
    println!("write units per event by table:");
    for stage in &report.stages {
        if stage.write_units_per_event_by_table.is_empty() {
            continue;
        }
        let tables: Vec<String> = stage
            .write_units_per_event_by_table
            .iter()
            .map(|(table, units)| format!("{table} {units:.2}"))
            .collect();
        println!("  {:<11} {}", stage.stage, tables.join(", "));
    }
    println!(
        "SQS and DynamoDB requests: ${:.2} per million events",
        report.total_dollars_per_million_events
    );
    println!();
    print_bill(&report.bill, &report.prices);
}

/// A bill per million events, line by line, with the prices it used.
pub fn print_bill(bill: &Bill, prices: &PriceList) {
    println!(
        "the whole bill per million events (prices: {})",
        prices.describe()
    );
    print_lines(&bill.lines, "per M events");
    println!(
        "total: ${:.2} per million events (Lambda at the measured handler durations; storage kept {} days; the inference pool and the feed service are capacity, billed by the month: `worldfleet cost`)",
        bill.dollars_per_million_events, bill.retention_days
    );
}

/// Bill lines as a table: item, quantity, unit, unit price, dollars.
pub fn print_lines(lines: &[worldfleet_aws::cost::BillLine], per: &str) {
    println!(
        "{:<64} {:>14} {:<15} {:>12} {:>12}",
        "item",
        format!("quantity {per}"),
        "unit",
        "$ per unit",
        "$"
    );
    for line in lines {
        println!(
            "{:<64} {:>14.3} {:<15} {:>12.7} {:>12.2}",
            line.item, line.quantity, line.unit, line.unit_price, line.dollars
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_message_figures_leave_out_idle_requests_only_in_the_busy_column() {
        let usage = UsageSnapshot {
            queue_requests: 40,
            table_write_units: 300,
            table_read_units: 100,
            ..UsageSnapshot::default()
        };
        let cost = stage_cost(
            "classify",
            &usage,
            100,
            20,
            10,
            100,
            &PriceList::published(),
        );
        assert!((cost.mean_batch - 5.0).abs() < 1e-9);
        assert!((cost.sqs_requests_per_message - 0.4).abs() < 1e-9);
        assert!((cost.sqs_requests_per_message_busy - 0.3).abs() < 1e-9);
        assert!((cost.write_units_per_event - 3.0).abs() < 1e-9);
        let expected = 0.4 * 0.50 + 3.0 * 0.625 + 1.0 * 0.125;
        assert!((cost.dollars_per_million_events - expected).abs() < 1e-9);
    }
}
