//! `worldfleet chaos`: the guarantees under real process kills, at scale.
//!
//! One seeded world goes, envelope for envelope, to two `worldfleet serve` processes at once,
//! each on its own store: a **calm** one left alone, and a **chaos** one with faults injected at
//! every store boundary of every stage (`serve --inject-faults`: crashes before and after
//! writes and sends, lost deletes so batches are delivered twice, batches handled after their
//! visibility expired) that is also **SIGKILLed** at random moments — right after a `POST
//! /v1/events` was acknowledged, or up to 200 ms later — and restarted on the same store. The
//! driver is the gateway: it posts through the HTTP door, 100 envelopes a request, and posts a
//! batch again when the door did not answer (a resend is deduplicated by event id).
//!
//! When both have drained they are stopped, and each store is audited (nothing lost, nothing
//! doubled, every bad envelope refused with its reason, no dead letters); then their derived
//! tables are compared ([`worldfleet_testbed::derived`]: ledger, rejections, canon, feeds, player
//! memory and prune rows, minus the fields documented there as run-dependent) and must be
//! identical.
//!
//! With `--world-every N` (the default) the world lives in both processes too (`serve
//! --world`): every Nth event is a trade at a station, or a capture or breed request in a cell.
//! Both drain until the world has settled, stop (a stopping server completes its last ticks'
//! outboxes), and each store also gets the world audit (every trade recorded once, every
//! request consumed once, no creature lost or doubled). The world's tables are compared where
//! they follow from the events alone — each station's trade verdicts and stock, the requests
//! consumed — and not where they follow the wall-clock ticks (creatures, prices, news; see
//! [`worldfleet_testbed::derived`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use worldfleet_domain::names::{ALL_QUEUES, WORLD_QUEUES, dead_letter_queue};
use worldfleet_embedded::{EmbeddedStore, StoreOptions};
use worldfleet_kit::Env;
use worldfleet_ports::{Queue, SystemClock};
use worldfleet_runtime::doors::{AtTheDoor, DoorGateway};
use worldfleet_runtime::fleet::WorldGateway;
use worldfleet_runtime::simulation::{self, WorldReport};
use worldfleet_stages::StageSettings;
use worldfleet_testbed::derived::TableDigest;
use worldfleet_testbed::faults::FaultCounts;
use worldfleet_testbed::world::{Emitted, Expectation};
use worldfleet_testbed::{Audit, AuditReport, Derived, World, WorldLayout, WorldSpec};

use crate::serve_child::{ChildSpec, ServeChild};

#[derive(Debug, Args)]
pub(super) struct ChaosArgs {
    /// Good events the world emits.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// SIGKILLs of the chaos process (spread over the run, the last ones while it drains).
    #[arg(long, default_value_t = 24)]
    kills: u32,
    /// Injected crash rate per store call in the chaos process (see `serve --inject-faults`).
    #[arg(long, default_value_t = 0.01)]
    fault_rate: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 2_000)]
    players: u32,
    #[arg(long, default_value_t = 8)]
    districts: u32,
    #[arg(long, default_value_t = 16)]
    scenes: u32,
    /// Audience of every event (the actor and fan-out − 1 participants).
    #[arg(long, default_value_t = 8)]
    fan_out: u32,
    #[arg(long, default_value_t = 4)]
    factions: u32,
    /// One deliberately bad envelope after every N good ones (0: none).
    #[arg(long, default_value_t = 50)]
    bad_every: u64,
    /// One world event (trade, capture or breed request) after every N narrative ones; 0: no
    /// world (the processes run without `--world`).
    #[arg(long, default_value_t = 20)]
    world_every: u64,
    /// Pollers per stage in each process.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Visibility timeout in both processes: after a kill, in-flight batches come back this
    /// long after they were received.
    #[arg(long, default_value_t = 5)]
    visibility_timeout_secs: u64,
    /// Messages on either intake queue above which posting pauses.
    #[arg(long, default_value_t = 2_000)]
    max_backlog: u64,
    /// Give up when the processes have not drained this long after the last post.
    #[arg(long, default_value_t = 1_800)]
    drain_timeout_secs: u64,
    /// Keep both stores here (`calm/`, `chaos/`) instead of a temporary directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    json: bool,
    /// Run nothing: compare the tables of the two stores a run kept in this directory
    /// (`--data-dir`), one store at a time.
    #[arg(long, value_name = "DIR")]
    compare: Option<PathBuf>,
}

pub(super) async fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.compare {
        return compare(dir);
    }
    anyhow::ensure!(
        (0.0..=0.2).contains(&args.fault_rate),
        "--fault-rate {}: give a rate from 0 to 0.2",
        args.fault_rate
    );
    let temporary = match &args.data_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("worldfleet-chaos-")
                .tempdir()
                .context("create a temporary directory")?,
        ),
    };
    let root = match (&args.data_dir, &temporary) {
        (Some(dir), _) => dir.clone(),
        (_, Some(temporary)) => temporary.path().to_path_buf(),
        (None, None) => anyhow::bail!("no directory for the stores"),
    };
    let spec = WorldSpec {
        events: args.events,
        players: args.players,
        districts: args.districts,
        scenes_per_district: args.scenes,
        fan_out: args.fan_out,
        factions: args.factions,
        seed: args.seed,
        bad_every: args.bad_every,
        world_every: args.world_every,
        ..WorldSpec::small(args.seed)
    };
    let with_world = args.world_every > 0;
    eprintln!(
        "worldfleet chaos: {} events, {} players, fan-out {}, seed {} — two `worldfleet serve` processes: calm, and chaos (faults at rate {}, {} SIGKILLs); stores in {}",
        args.events,
        args.players,
        args.fan_out,
        args.seed,
        args.fault_rate,
        args.kills,
        root.display()
    );
    let key_line = format!("{}={}", spec.gateway, hex::encode(&spec.gateway_key));
    let flags = |faults: Option<u64>| {
        let mut flags: Vec<String> = vec![
            "--workers".into(),
            args.workers.to_string(),
            "--visibility-timeout-secs".into(),
            args.visibility_timeout_secs.to_string(),
            // Injected faults and kills redeliver a message many more times than a healthy
            // fleet would; the dead-letter limit is for poison messages, not this.
            "--max-receive-count".into(),
            "100".into(),
        ];
        if with_world {
            flags.push("--world".into());
        }
        if let Some(seed) = faults {
            flags.extend([
                "--inject-faults".into(),
                args.fault_rate.to_string(),
                "--fault-seed".into(),
                seed.to_string(),
            ]);
        }
        flags
    };
    let child = |name, faults| {
        ServeChild::new(ChildSpec {
            name,
            root: root.clone(),
            key_line: key_line.clone(),
            flags: flags(faults),
            env: Vec::new(),
        })
    };
    let mut calm = child("calm", None)?;
    let mut chaos = child("chaos", Some(args.seed))?;
    calm.spawn()?;
    chaos.spawn()?;
    let calm_door = DoorGateway::new(calm.address, &spec.gateway, &spec.gateway_key)?;
    let chaos_door = DoorGateway::new(chaos.address, &spec.gateway, &spec.gateway_key)?;

    let mut random = ChaCha8Rng::seed_from_u64(args.seed ^ 0xC4A0_5EED);
    // Most kills while posting, evenly spread with jitter; the rest while draining.
    let posting_kills = args.kills - args.kills / 8;
    let mut kill_points: Vec<u64> = (0..posting_kills)
        .map(|index| {
            let span = args.events as f64 / f64::from(posting_kills.max(1));
            ((f64::from(index) + random.random_range(0.05..0.95)) * span) as u64
        })
        .collect();
    kill_points.reverse();

    let started = Instant::now();
    let mut world = World::new(spec.clone());
    let mut expectations: Vec<Expectation> = Vec::new();
    let mut next_report = args.events / 10;
    while !world.finished() {
        let now_ms = worldfleet_ports::Clock::now_ms(&SystemClock);
        let batch: Vec<Emitted> = std::iter::from_fn(|| world.next(now_ms))
            .take(calm_door.batch_size())
            .collect();
        tokio::try_join!(
            post_until_taken(&calm_door, &mut calm, &batch),
            post_until_taken(&chaos_door, &mut chaos, &batch)
        )?;
        expectations.extend(batch.into_iter().map(|emitted| emitted.expectation));
        let good = world.good_emitted();
        if kill_points.last().is_some_and(|&point| good >= point) {
            kill_points.pop();
            // Half the kills land right after an acknowledgement, half a little later.
            if random.random_bool(0.5) {
                tokio::time::sleep(Duration::from_millis(random.random_range(1..200))).await;
            }
            chaos.kill_and_restart()?;
        }
        if good % 1_000 < 100 {
            while calm.backlog().await? > args.max_backlog
                || chaos.backlog().await? > args.max_backlog
            {
                chaos.check_alive()?;
                calm.check_alive()?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if good >= next_report {
            next_report += args.events / 10;
            eprintln!(
                "  {good} events posted in {:.0} s; chaos process killed {} times",
                started.elapsed().as_secs_f64(),
                chaos.kills
            );
        }
    }
    let posted_s = started.elapsed().as_secs_f64();

    // The remaining kills while both drain, a second or two apart.
    for _ in chaos.kills..args.kills {
        tokio::time::sleep(Duration::from_millis(random.random_range(300..2_000))).await;
        chaos.kill_and_restart()?;
    }
    let deadline = Instant::now() + Duration::from_secs(args.drain_timeout_secs);
    for server in [&mut calm, &mut chaos] {
        server.wait_for_drain(deadline, with_world).await?;
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    calm.stop().await?;
    chaos.stop().await?;
    let fault = |kind: &str| {
        chaos.counter_over_lives(&format!(
            "worldfleet_injected_faults_total{{kind=\"{kind}\"}}"
        ))
    };
    let faults = FaultCounts {
        crashes_before_write: fault("crash_before_write"),
        crashes_after_write: fault("crash_after_write"),
        lost_deletes: fault("lost_delete"),
        outlived_visibility: fault("outlived_visibility"),
    };

    let settings = StageSettings::from_vars(&Env::process())?;
    let layout = with_world.then_some(&spec.layout);
    let calm_report = audit(&calm, &calm_door, &expectations, &world, &settings, layout).await?;
    let chaos_report = audit(
        &chaos,
        &chaos_door,
        &expectations,
        &world,
        &settings,
        layout,
    )
    .await?;
    let difference = if calm_report.digests == chaos_report.digests {
        None
    } else {
        // Read both again to say where (the digests are all that was kept).
        let calm_derived = read_derived(&calm.dir)?;
        let chaos_derived = read_derived(&chaos.dir)?;
        Some(
            chaos_derived
                .first_intake_difference(&calm_derived)
                .or_else(|| chaos_derived.first_difference(&calm_derived))
                .or_else(|| chaos_derived.first_world_difference(&calm_derived))
                .unwrap_or_else(|| "the digests differ".to_owned()),
        )
    };
    let report = ChaosReport {
        events: args.events,
        envelopes: expectations.len() as u64,
        kills: chaos.kills,
        faults,
        posted_s,
        elapsed_s,
        events_per_s: args.events as f64 / elapsed_s.max(0.001),
        calm: calm_report,
        chaos: chaos_report,
        identical: difference.is_none(),
        difference,
    };
    print_report(&report);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    drop(temporary);
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Posts `batch` through `door` until the door took all of it; a process that died on its own
/// (not killed here) is an error, with the end of its log.
async fn post_until_taken(
    door: &DoorGateway,
    server: &mut ServeChild,
    batch: &[Emitted],
) -> anyhow::Result<()> {
    let give_up = Instant::now() + Duration::from_secs(300);
    while !door.post(batch).await? {
        server.check_alive()?;
        anyhow::ensure!(
            Instant::now() < give_up,
            "the {} process has not taken a batch for 5 minutes; its log: {}",
            server.name,
            server.log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// `--compare`: the digests of two kept stores, side by side.
fn compare(dir: &Path) -> anyhow::Result<ExitCode> {
    let calm = read_derived(&dir.join("calm"))?.digests();
    let chaos = read_derived(&dir.join("chaos"))?.digests();
    print_digests(&calm, &chaos);
    Ok(if calm == chaos {
        println!("verdict:       the tables are identical");
        ExitCode::SUCCESS
    } else {
        println!("verdict:       the tables differ");
        ExitCode::FAILURE
    })
}

/// The two stores' digests, a table a line.
fn print_digests(calm: &[TableDigest], chaos: &[TableDigest]) {
    println!("tables:        rows  calm sha256 / chaos sha256");
    for (calm, chaos) in calm.iter().zip(chaos) {
        println!(
            "  {:<11} {:>9}  {} / {} {}",
            calm.table,
            calm.rows,
            &calm.sha256[..16],
            &chaos.sha256[..16],
            if calm == chaos { "same" } else { "DIFFERENT" }
        );
    }
}

fn open_store(dir: &Path) -> anyhow::Result<EmbeddedStore> {
    let options = StoreOptions {
        janitor_interval: None,
        ..StoreOptions::default()
    };
    EmbeddedStore::open(dir, Arc::new(SystemClock), options)
        .with_context(|| format!("open the store in {}", dir.display()))
}

fn read_derived(dir: &Path) -> anyhow::Result<Derived> {
    let store = open_store(dir)?;
    let table = store.table();
    let derived = derive(&table);
    drop(table);
    store.close();
    derived
}

/// The derived tables of an open store, read one item at a time.
fn derive(table: &worldfleet_embedded::EmbeddedTable) -> anyhow::Result<Derived> {
    Derived::read(|name, visit| {
        Ok(table.scan_each(name, |item| {
            visit(item);
            Ok(())
        })?)
    })
}

/// One store after its run.
#[derive(Debug, Serialize)]
struct StoreReport {
    audit: AuditReport,
    at_the_door: AtTheDoor,
    dead_letters: u64,
    digests: Vec<TableDigest>,
    /// The world audit, when the processes ran the world.
    world: Option<WorldReport>,
}

async fn audit(
    server: &ServeChild,
    door: &DoorGateway,
    expectations: &[Expectation],
    world: &World,
    settings: &StageSettings,
    layout: Option<&WorldLayout>,
) -> anyhow::Result<StoreReport> {
    let (at_the_door, audited) = door.audited(expectations);
    let store = open_store(&server.dir)?;
    let table = store.table();
    let mut audit = Audit {
        table: table.as_ref(),
        rules: &settings.republish,
        partitions: world.partitions(),
        players: world.players(),
        factions: world.factions(),
        expectations: &audited,
        keep_rows: false,
    }
    .run()
    .await?;
    audit.bad_sent += at_the_door.refused;
    audit.rejected_as_expected += at_the_door.refused_as_expected;
    audit.wrong_reason += at_the_door.refused - at_the_door.refused_as_expected;
    let mut dead_letters = 0;
    for name in ALL_QUEUES.into_iter().chain(WORLD_QUEUES) {
        dead_letters += store.queue().depth(&dead_letter_queue(name)).await?.total();
    }
    let digests = derive(&table)?.digests();
    let world = match layout {
        Some(layout) => Some(simulation::audit(table.as_ref(), layout, expectations, &[]).await?),
        None => None,
    };
    drop(table);
    store.close();
    Ok(StoreReport {
        audit,
        at_the_door,
        dead_letters,
        digests,
        world,
    })
}

#[derive(Debug, Serialize)]
struct ChaosReport {
    events: u64,
    envelopes: u64,
    kills: u32,
    /// Faults the chaos process reported injecting, summed over its lives.
    faults: FaultCounts,
    posted_s: f64,
    elapsed_s: f64,
    events_per_s: f64,
    calm: StoreReport,
    chaos: StoreReport,
    identical: bool,
    difference: Option<String>,
}

impl ChaosReport {
    fn passed(&self) -> bool {
        let clean = |store: &StoreReport| {
            store.audit.lost == 0
                && store.audit.duplicates == 0
                && store.audit.wrong_reason == 0
                && store.audit.rejected_as_expected == store.audit.bad_sent
                && store.dead_letters == 0
                && store.world.as_ref().is_none_or(|world| {
                    world.lost == 0 && world.duplicates == 0 && world.problems.is_empty()
                })
        };
        clean(&self.calm) && clean(&self.chaos) && self.identical
    }
}

fn print_report(report: &ChaosReport) {
    println!(
        "events:        {} good, {} envelopes posted to each process in {:.0} s; both drained after {:.0} s ({:.0} events/s each)",
        report.events, report.envelopes, report.posted_s, report.elapsed_s, report.events_per_s
    );
    println!(
        "chaos:         SIGKILLed {} times; faults injected: {} crashes before a write, {} after, {} lost deletes, {} batches past their visibility",
        report.kills,
        report.faults.crashes_before_write,
        report.faults.crashes_after_write,
        report.faults.lost_deletes,
        report.faults.outlived_visibility
    );
    for (name, store) in [("calm", &report.calm), ("chaos", &report.chaos)] {
        let audit = &store.audit;
        println!(
            "{name:<6}         accepted {}, canon {}, feed entries {}; lost {}, duplicates {}; bad refused as expected {}/{} (wrong reason {}); dead letters {}",
            audit.ledger_entries,
            audit.canon,
            audit.feed_entries,
            audit.lost,
            audit.duplicates,
            audit.rejected_as_expected,
            audit.bad_sent,
            audit.wrong_reason,
            store.dead_letters
        );
        for problem in audit.problems.iter().take(5) {
            println!("  ! {problem}");
        }
        if let Some(world) = &store.world {
            println!(
                "{name:<6} world   trades {} sent, {} recorded ({} applied, {} refused); captures and breeds {} sent, {} consumed ({} refused); {} cells at {} ticks; news {}; lost {}, duplicates {}",
                world.trades_sent,
                world.trades_recorded,
                world.trades_applied,
                world.trades_refused,
                world.captures_sent + world.breeds_sent,
                world.requests_applied + world.requests_refused,
                world.requests_refused,
                world.cells,
                world.ecology_ticks,
                world.news_published,
                world.lost,
                world.duplicates
            );
            for problem in world.problems.iter().take(5) {
                println!("  ! {problem}");
            }
        }
    }
    print_digests(&report.calm.digests, &report.chaos.digests);
    if let Some(difference) = &report.difference {
        println!("  first difference: {difference}");
    }
    println!(
        "verdict:       {}",
        if report.passed() {
            "PASS — nothing lost, nothing doubled, every bad envelope refused, and the chaos store's tables are identical to the calm one's"
        } else {
            "FAIL — see above"
        }
    );
}
