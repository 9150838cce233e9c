//! The world simulation (market, production, ecology) inside the embedded run, with and
//! without faults: crashes before and after writes and sends, lost deletes, expired
//! visibility and a kill-and-reopen mid-run must leave every trade counted exactly once,
//! every player request consumed once, every creature in exactly one place and every news
//! item published once — and the narrative path as clean as without the world.

mod fault_runs;

use std::time::Duration;

use worldfleet_runtime::{RunOptions, RunSummary, run_embedded};
use worldfleet_testbed::WorldSpec;

fn options(seed: u64) -> RunOptions {
    let mut world = WorldSpec {
        events: 400,
        players: 60,
        districts: 2,
        scenes_per_district: 4,
        fan_out: 4,
        factions: 2,
        bad_every: 40,
        world_every: 2,
        ..WorldSpec::small(seed)
    };
    world.layout.regions = 1;
    world.layout.stations_per_region = 3;
    world.layout.planets_per_region = 40;
    world.layout.zones = 2;
    world.layout.cells_per_zone = 2;
    world.layout.founders_per_species = 10;
    world.layout.min_ecology_ticks = 3;
    let mut options = fault_runs::run_options(world, 2);
    options.watchdog_interval = Duration::from_secs(5);
    options
}

fn assert_world_clean(label: &str, summary: &RunSummary) {
    let audit = &summary.audit;
    assert!(summary.drained, "{label}: did not drain");
    assert_eq!(audit.lost, 0, "{label}: {:?}", audit.problems);
    assert_eq!(audit.duplicates, 0, "{label}: {:?}", audit.problems);
    assert_eq!(audit.rejected_as_expected, audit.bad_sent, "{label}");
    assert_eq!(summary.dead_letters, 0, "{label}: dead letters");
    let world = summary.world.as_ref().expect("world report");
    assert_eq!(world.lost, 0, "{label}: {:?}", world.problems);
    assert_eq!(world.duplicates, 0, "{label}: {:?}", world.problems);
    assert!(world.trades_sent > 0, "{label}: the world traded");
    assert_eq!(world.trades_recorded, world.trades_sent, "{label}");
    assert_eq!(world.miscounted_windows, 0, "{label}");
    assert_eq!(world.stock_mismatches, 0, "{label}");
    assert_eq!(
        world.requests_applied + world.requests_refused,
        world.captures_sent + world.breeds_sent,
        "{label}: every capture and breed request consumed once"
    );
    assert_eq!(world.unbalanced_cells, 0, "{label}");
    assert!(world.ecology_ticks >= 3 * world.cells, "{label}");
    assert!(world.production_ticks >= 1, "{label}");
    assert_eq!(world.news_published, world.news_events, "{label}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn world_stages_under_crashes_duplicates_and_a_restart_count_everything_once() {
    let reference = run_embedded(options(31)).await.expect("fault-free run");
    assert_world_clean("fault-free", &reference);

    let faulty = fault_runs::with_faults(options(31), 7, 200);
    let faulted = run_embedded(faulty).await.expect("faulty run");
    let counts = faulted.faults.expect("fault counts");
    assert!(
        counts.crashes_before_write > 0
            && counts.crashes_after_write > 0
            && counts.lost_deletes > 0,
        "{counts:?}"
    );
    assert_eq!(faulted.restarts, 1);
    assert_world_clean("faulty", &faulted);
    let (reference_world, faulted_world) = (
        reference.world.as_ref().expect("world"),
        faulted.world.as_ref().expect("world"),
    );
    assert_eq!(
        faulted_world.trades_sent, reference_world.trades_sent,
        "same world"
    );
    assert_eq!(
        faulted.audit.canon_text, reference.audit.canon_text,
        "narrative canon unchanged by the world and the faults"
    );
}
