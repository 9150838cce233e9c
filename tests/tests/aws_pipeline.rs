//! The narrative pipeline end to end on the local AWS emulators: LocalStack's SQS and
//! DynamoDB Local, with the queues and tables deployed from `infra/template.yaml`.
//!
//! Every stage runs as a fleet worker (the same pollers `worldfleet worker` runs) over the SQS
//! and DynamoDB adapters. A world of good and bad envelopes goes in; the audit must find
//! nothing lost, nothing doubled and every bad envelope refused, and the ledger is also counted
//! directly through the DynamoDB SDK. A second test runs the world simulation the same way:
//! trades, captures and breed requests through intake into the market and ecology stages, the
//! timer stages on standard queues with real per-message delays, and the world audit must count
//! every one exactly once. Runs when `WORLDFLEET_LOCAL_AWS=1` (set by `scripts/test-aws.sh`,
//! which starts the emulators).

use std::sync::Arc;
use std::time::{Duration, Instant};

use worldfleet_intake::{GatewayKeys, IntakeConfig, RateLimit};
use worldfleet_kit::StageContext;
use worldfleet_ports::{Clock, SystemClock};
use worldfleet_runtime::audit::Audit;
use worldfleet_runtime::fleet::{Posting, post_world, settle_world, wait_for_drain};
use worldfleet_runtime::simulation;
use worldfleet_runtime::{Fleet, PollerConfig, World, WorldSpec};
use worldfleet_stages::{NARRATIVE_STAGES, StageSettings, all_names, build_stages};

mod support;

use support::aws::{deploy, enabled};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_on_sqs_and_dynamodb_loses_nothing_and_refuses_every_bad_envelope() {
    if !enabled() {
        return;
    }
    let (settings, queue, table) = deploy("e2e").await;
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
    let context = StageContext::new(Arc::clone(&queue), Arc::clone(&table), Arc::clone(&clock));
    let stage_settings = StageSettings::defaults_with(intake).expect("stage settings");
    let rules = stage_settings.republish.clone();
    let poller = PollerConfig {
        workers: 2,
        wait: Duration::from_secs(1),
        visibility_timeout: Duration::from_secs(30),
    };
    let stages =
        build_stages(&NARRATIVE_STAGES, &context, &stage_settings).expect("narrative stages");
    let fleet = Fleet::launch(stages, Arc::clone(&queue), poller, None);

    let mut world = World::new(spec);
    let (partitions, players, factions) = (world.partitions(), world.players(), world.factions());
    let posting = Posting {
        rate: None,
        max_backlog: 2_000,
        started: Instant::now(),
        already_sent: 0,
        stop_after_good: None,
    };
    let expectations = post_world(queue.as_ref(), &mut world, clock.as_ref(), posting, || {})
        .await
        .expect("post the world");
    let drained = wait_for_drain(queue.as_ref(), Duration::from_secs(240), || {})
        .await
        .expect("depths");
    fleet.stop().await;
    assert!(drained, "the queues drained");

    let report = Audit {
        table: table.as_ref(),
        rules: &rules,
        partitions,
        players,
        factions,
        expectations: &expectations,
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
        "aws e2e: {} good + {} bad envelopes, {} feed entries, p50 {} ms, p99 {} ms",
        report.good_sent,
        report.bad_sent,
        report.feed_entries,
        report.latency_p50_ms,
        report.latency_p99_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn world_stages_on_sqs_and_dynamodb_count_every_trade_and_capture_once() {
    if !enabled() {
        return;
    }
    let (_settings, queue, table) = deploy("e2e-world").await;
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
    let context = StageContext::new(Arc::clone(&queue), Arc::clone(&table), Arc::clone(&clock));
    simulation::seed(&context, &layout)
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
    };
    let mut fleet = Fleet::launch(stages, Arc::clone(&queue), poller, None);

    let mut world = World::new(spec);
    let posting = Posting {
        rate: None,
        max_backlog: 2_000,
        started: Instant::now(),
        already_sent: 0,
        stop_after_good: None,
    };
    let expectations = post_world(queue.as_ref(), &mut world, clock.as_ref(), posting, || {})
        .await
        .expect("post the world");
    let settled = settle_world(
        &mut fleet,
        &context,
        &layout,
        Duration::from_secs(240),
        || {},
    )
    .await
    .expect("settle");
    let production_latencies = fleet.production_latencies();
    fleet.stop().await;
    assert!(settled, "the world settled and the queues drained");

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
        "aws e2e world: {} trades, {} captures, {} breed requests, {} recomputes, {} ecology ticks, {} production ticks",
        report.trades_sent,
        report.captures_sent,
        report.breeds_sent,
        report.recomputes,
        report.ecology_ticks,
        report.production_ticks
    );
}
