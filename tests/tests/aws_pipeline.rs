//! The narrative pipeline end to end on the local AWS emulators: LocalStack's SQS and
//! DynamoDB Local, with the queues and tables deployed from `infra/template.yaml`.
//!
//! Every stage runs as a fleet worker (the same pollers `worldfleet worker` runs) over the SQS
//! and DynamoDB adapters. A world of good and bad envelopes goes in; the audit must find
//! nothing lost, nothing doubled and every bad envelope refused, and the ledger is also counted
//! directly through the DynamoDB SDK. A second test runs the world simulation the same way:
//! trades, captures and breed requests through intake into the market and ecology stages, the
//! timer stages on standard queues with real per-message delays, and the world audit must count
//! every one exactly once.
//!
//! Both run twice: straight on the emulators, and **under faults**, with every request of the
//! stages and the poster crossing a loopback [`FaultProxy`](worldfleet_fault_proxy::FaultProxy)
//! (`shared/fault-proxy`) in front of each emulator that faults about 10 % of them: throttling
//! errors, 500s, requests held past the SDK's attempt timeout, requests applied upstream whose
//! response is then dropped, and batch calls cut in part with the rest handed back unprocessed
//! (on top, for a tenth of the batch calls). The SDK parses every injected error itself; the
//! adapters retry what is safe to repeat, hand the rest to the stage, and the queue redelivers.
//! The faulted runs must pass the same audit, and the proxy's counts and the adapters' retry
//! counters must show every kind of fault was met. The drain check and the audit read the
//! emulators directly. Runs when `WORLDFLEET_LOCAL_AWS=1` (set by `scripts/test-aws.sh`, which
//! starts the emulators).

mod local_aws;

use std::sync::Arc;
use std::time::{Duration, Instant};

use local_aws::Faulted;
use worldfleet_aws::AwsSettings;
use worldfleet_fault_proxy::{Fault, FaultRates};
use worldfleet_intake::{GatewayKeys, IntakeConfig, RateLimit};
use worldfleet_kit::StageContext;
use worldfleet_ports::{Clock, Queue, SystemClock, Table};
use worldfleet_runtime::fleet::{Posting, post_world, settle_world, wait_for_drain};
use worldfleet_runtime::simulation;
use worldfleet_runtime::{Fleet, PollerConfig};
use worldfleet_stages::{NARRATIVE_STAGES, StageSettings, all_names, build_stages};
use worldfleet_testbed::audit::Audit;
use worldfleet_testbed::{World, WorldSpec};

/// The faulted runs' mix: 10 % of all requests (4 % throttled, 2 % answered 500, 1.5 % held
/// until the SDK times out, 2.5 % applied with the response dropped), and 10 % of batch calls
/// cut in part.
fn ten_percent() -> FaultRates {
    FaultRates::mixed(0.10)
}

fn enabled() -> bool {
    local_aws::enabled("the local stack running (scripts/test-aws.sh does both)")
}

/// A deployed stack, and the adapters a run's stages use on it.
struct Run {
    settings: AwsSettings,
    /// Straight on the emulators: the drain check and the audit.
    queue: Arc<dyn Queue>,
    table: Arc<dyn Table>,
    /// What the stages and the poster use: the same adapters, or faulted ones.
    stage_queue: Arc<dyn Queue>,
    stage_table: Arc<dyn Table>,
    faulted: Option<Faulted>,
}

/// A fresh stack (`<prefix>-<millis>`) with the template's queues and tables deployed; with
/// `faults`, the stages' adapters cross fault proxies (seeded by `seed`).
async fn deploy(prefix: &str, faults: Option<(FaultRates, u64)>) -> Run {
    let stack = local_aws::deploy(prefix).await;
    let queue: Arc<dyn Queue> = stack.sqs;
    let table: Arc<dyn Table> = stack.dynamo;
    let faulted = match faults {
        Some((rates, seed)) => Some(Faulted::start(&stack.settings, rates, seed).await),
        None => None,
    };
    let (stage_queue, stage_table): (Arc<dyn Queue>, Arc<dyn Table>) = match &faulted {
        Some(faulted) => (faulted.sqs.clone(), faulted.dynamo.clone()),
        None => (Arc::clone(&queue), Arc::clone(&table)),
    };
    Run {
        settings: stack.settings,
        queue,
        table,
        stage_queue,
        stage_table,
        faulted,
    }
}

/// Prints each stage's poller counts and any dead-lettered messages; returns how many
/// messages sit in dead-letter queues.
async fn report_stages(prefix: &str, fleet: &Fleet, queue: &dyn Queue) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    for (stage, stats) in fleet.stats() {
        eprintln!(
            "{prefix}: {stage}: {} batches, {} records, {} failed and redelivered, {} dead-lettered, {} receive errors",
            stats.batches.load(Relaxed),
            stats.records.load(Relaxed),
            stats.failed.load(Relaxed),
            stats.dead_lettered.load(Relaxed),
            stats.receive_errors.load(Relaxed),
        );
    }
    let mut dead = 0;
    for (stage, _) in fleet.stats() {
        let Some(source) = worldfleet_stages::entry(stage).map(|entry| entry.resources.consumes)
        else {
            continue;
        };
        let dead_letter = worldfleet_domain::names::dead_letter_queue(source);
        match queue.depth(&dead_letter).await {
            Ok(depth) if depth.total() > 0 => {
                eprintln!("{prefix}: {dead_letter}: {} messages", depth.total());
                dead += depth.total();
            }
            Ok(_) | Err(worldfleet_ports::Error::NotFound(_)) => {}
            Err(error) => panic!("depth of {dead_letter}: {error}"),
        }
    }
    dead
}

/// Logs at `RUST_LOG` (default: warnings) to the test's output, once per process.
fn log_warnings() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

impl Run {
    /// Prints what the proxies injected and the adapters retried, and checks that every kind
    /// of fault was met and retried (`batch_faults`: the run makes batch calls to cut).
    fn report_faults(&self, label: &str, batch_faults: bool) {
        let Some(faulted) = &self.faulted else {
            return;
        };
        let report = faulted.report();
        let (sqs, dynamo) = faulted.retries();
        eprintln!("{label}: fault proxy: {report}");
        for (operation, counts) in &report.by_operation {
            eprintln!(
                "  {operation}: {} requests, {} faulted ({} throttle, {} server_error, {} timeout, {} lost_response, {} unprocessed)",
                counts.requests,
                counts.faulted(),
                counts.of(Fault::Throttle),
                counts.of(Fault::ServerError),
                counts.of(Fault::Timeout),
                counts.of(Fault::LostResponse),
                counts.of(Fault::Unprocessed),
            );
        }
        eprintln!("{label}: SQS adapter: {sqs}");
        eprintln!("{label}: DynamoDB adapter: {dynamo}");
        let total = report.total();
        assert_eq!(total.upstream_errors, 0, "the emulators stayed reachable");
        for fault in [
            Fault::Throttle,
            Fault::ServerError,
            Fault::Timeout,
            Fault::LostResponse,
        ] {
            assert!(total.of(fault) > 0, "no {} was injected", fault.name());
        }
        assert!(
            sqs.throttled > 0 && dynamo.throttled > 0,
            "throttles retried"
        );
        assert!(
            sqs.unavailable + dynamo.unavailable > 0 && sqs.timed_out + dynamo.timed_out > 0,
            "500s and timeouts of safe requests retried"
        );
        if batch_faults {
            assert!(total.of(Fault::Unprocessed) > 0, "no batch was cut");
            assert!(
                dynamo.unprocessed_rounds > 0,
                "unprocessed entries sent again"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_on_sqs_and_dynamodb_loses_nothing_and_refuses_every_bad_envelope() {
    if !enabled() {
        return;
    }
    narrative("e2e", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_ten_percent_faulted_requests_every_stage_still_loses_and_doubles_nothing() {
    if !enabled() {
        return;
    }
    narrative("e2e-faults", Some((ten_percent(), 13))).await;
}

/// The narrative world through every narrative stage, audited.
async fn narrative(prefix: &str, faults: Option<(FaultRates, u64)>) {
    log_warnings();
    let run = deploy(prefix, faults).await;
    let (settings, queue, table) = (&run.settings, &run.queue, &run.table);
    let config = settings.sdk_config().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let spec = WorldSpec {
        events: 150,
        players: 40,
        districts: 2,
        scenes_per_district: 3,
        fan_out: 4,
        factions: 2,
        bad_every: 15,
        ..WorldSpec::small(5)
    };
    let mut gateways = GatewayKeys::default();
    gateways.insert(&spec.gateway, spec.gateway_key.clone());
    let mut intake = IntakeConfig::new(gateways);
    intake.rate_limit = RateLimit {
        burst: 1_000,
        per_second: 1_000,
    };
    let context = StageContext::new(
        Arc::clone(&run.stage_queue),
        Arc::clone(&run.stage_table),
        Arc::clone(&clock),
    );
    let stage_settings = StageSettings::defaults_with(intake).expect("stage settings");
    let rules = stage_settings.republish.clone();
    let poller = PollerConfig {
        workers: 2,
        wait: Duration::from_secs(1),
        visibility_timeout: Duration::from_secs(30),
        batching_window: Duration::ZERO,
    };
    let stages =
        build_stages(&NARRATIVE_STAGES, &context, &stage_settings).expect("narrative stages");
    let fleet = Fleet::launch(stages, Arc::clone(&run.stage_queue), poller, None);

    let mut world = World::new(spec);
    let (partitions, players, factions) = (world.partitions(), world.players(), world.factions());
    let posting = Posting {
        rate: None,
        max_backlog: 2_000,
        started: Instant::now(),
        already_sent: 0,
        stop_after_good: None,
    };
    let expectations = post_world(
        run.stage_queue.as_ref(),
        &mut world,
        clock.as_ref(),
        posting,
        || {},
    )
    .await
    .expect("post the world");
    let drained = wait_for_drain(queue.as_ref(), Duration::from_secs(240), || {})
        .await
        .expect("depths");
    let dead_lettered = report_stages(prefix, &fleet, queue.as_ref()).await;
    fleet.stop().await;
    assert!(drained, "the queues drained");
    assert_eq!(dead_lettered, 0, "nothing dead-lettered");

    let report = Audit {
        table: table.as_ref(),
        rules: &rules,
        partitions,
        players,
        factions,
        expectations: &expectations,
        keep_rows: false,
    }
    .run()
    .await
    .expect("audit");
    assert_eq!(report.lost, 0, "{:?}", report.problems);
    assert_eq!(report.duplicates, 0, "{:?}", report.problems);
    assert_eq!(report.wrong_reason, 0, "{:?}", report.problems);
    assert_eq!(report.rejected_as_expected, report.bad_sent);
    assert_eq!(report.canon, report.good_sent);
    assert!(report.feed_entries >= report.good_sent * 4);

    // The ledger, counted straight through the SDK rather than the port.
    let client = aws_sdk_dynamodb::Client::new(&config);
    let mut ledger_items = 0;
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(settings.physical_name("ledger"))
            .select(aws_sdk_dynamodb::types::Select::Count)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan the ledger");
        ledger_items += page.count() as u64;
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    assert_eq!(
        ledger_items, report.good_sent,
        "one ledger item per accepted event"
    );
    eprintln!(
        "{prefix}: {} good + {} bad envelopes, {} lost, {} duplicates, {} refused as expected, {} feed entries, p50 {} ms, p99 {} ms",
        report.good_sent,
        report.bad_sent,
        report.lost,
        report.duplicates,
        report.rejected_as_expected,
        report.feed_entries,
        report.latency_p50_ms,
        report.latency_p99_ms
    );
    run.report_faults(prefix, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn world_stages_on_sqs_and_dynamodb_count_every_trade_and_capture_once() {
    if !enabled() {
        return;
    }
    world_run("e2e-world", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_ten_percent_faulted_requests_the_world_still_counts_everything_once() {
    if !enabled() {
        return;
    }
    world_run("e2e-world-faults", Some((ten_percent(), 17))).await;
}

/// The world simulation through every stage, timers included, audited.
async fn world_run(prefix: &str, faults: Option<(FaultRates, u64)>) {
    log_warnings();
    let run = deploy(prefix, faults).await;
    let table = &run.table;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let mut spec = WorldSpec {
        events: 60,
        players: 20,
        districts: 2,
        scenes_per_district: 2,
        fan_out: 3,
        factions: 2,
        bad_every: 0,
        world_every: 2,
        ..WorldSpec::small(9)
    };
    spec.layout.regions = 1;
    spec.layout.stations_per_region = 2;
    spec.layout.planets_per_region = 10;
    spec.layout.zones = 1;
    spec.layout.cells_per_zone = 2;
    spec.layout.founders_per_species = 4;
    spec.layout.min_ecology_ticks = 2;
    let layout = spec.layout.clone();
    let mut gateways = GatewayKeys::default();
    gateways.insert(&spec.gateway, spec.gateway_key.clone());
    let mut intake = IntakeConfig::new(gateways);
    intake.rate_limit = RateLimit {
        burst: 1_000,
        per_second: 1_000,
    };
    // The stages' context, and the harness's own (seeding, the settle checks), which reads
    // and writes the emulators directly.
    let context = StageContext::new(
        Arc::clone(&run.stage_queue),
        Arc::clone(&run.stage_table),
        Arc::clone(&clock),
    );
    let direct = StageContext::new(
        Arc::clone(&run.queue),
        Arc::clone(&run.table),
        Arc::clone(&clock),
    );
    simulation::seed(&direct, &layout)
        .await
        .expect("seed cells and regions");
    let stage_settings = simulation::world_settings(
        StageSettings::defaults_with(intake).expect("stage settings"),
        &layout,
    )
    .expect("world settings");
    let stages = build_stages(&all_names(), &context, &stage_settings).expect("every stage");
    let poller = PollerConfig {
        workers: 1,
        wait: Duration::from_secs(1),
        visibility_timeout: Duration::from_secs(30),
        batching_window: Duration::ZERO,
    };
    let mut fleet = Fleet::launch(stages, Arc::clone(&run.stage_queue), poller, None);

    let mut world = World::new(spec);
    let posting = Posting {
        rate: None,
        max_backlog: 2_000,
        started: Instant::now(),
        already_sent: 0,
        stop_after_good: None,
    };
    let expectations = post_world(
        run.stage_queue.as_ref(),
        &mut world,
        clock.as_ref(),
        posting,
        || {},
    )
    .await
    .expect("post the world");
    let settled = settle_world(
        &mut fleet,
        &direct,
        &layout,
        Duration::from_secs(240),
        || {},
    )
    .await
    .expect("settle");
    let production_latencies = fleet.production_latencies();
    let dead_lettered = report_stages(prefix, &fleet, run.queue.as_ref()).await;
    fleet.stop().await;
    assert!(settled, "the world settled and the queues drained");
    assert_eq!(dead_lettered, 0, "nothing dead-lettered");

    let report = simulation::audit(
        table.as_ref(),
        &layout,
        &expectations,
        &production_latencies,
    )
    .await
    .expect("world audit");
    assert!(report.trades_sent > 0, "the world traded");
    assert!(
        report.captures_sent + report.breeds_sent > 0,
        "and captured or bred"
    );
    assert_eq!(report.lost, 0, "{:?}", report.problems);
    assert_eq!(report.duplicates, 0, "{:?}", report.problems);
    assert_eq!(report.trades_recorded, report.trades_sent);
    assert_eq!(report.miscounted_windows, 0, "{:?}", report.problems);
    assert_eq!(report.stock_mismatches, 0, "{:?}", report.problems);
    assert_eq!(
        report.requests_applied + report.requests_refused,
        report.captures_sent + report.breeds_sent,
        "every capture and breed request consumed once"
    );
    assert_eq!(report.unbalanced_cells, 0, "{:?}", report.problems);
    assert!(report.production_ticks >= 1);
    assert_eq!(report.news_published, report.news_events);
    eprintln!(
        "{prefix}: {} lost, {} duplicates, {} trades, {} captures, {} breed requests, {} recomputes, {} ecology ticks, {} production ticks",
        report.lost,
        report.duplicates,
        report.trades_sent,
        report.captures_sent,
        report.breeds_sent,
        report.recomputes,
        report.ecology_ticks,
        report.production_ticks
    );
    run.report_faults(prefix, true);
}
