//! Replay: a world run through the embedded pipeline, rebuilt from its ledger into fresh
//! stores (from the start of the ledger, then from checkpoints with the ledger compacted behind
//! them), must derive the same tables.
//!
//! Compared with [`worldfleet_testbed::Derived`]: canon, feeds, player memory and prune rows
//! minus what is run-dependent (see its module), and the ledger copied row for row.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use worldfleet_domain::names::LEDGER_TABLE;
use worldfleet_embedded::{Durability, EmbeddedStore, StoreOptions};
use worldfleet_intake::RateLimit;
use worldfleet_ports::{Item, SystemClock};
use worldfleet_runtime::replay::{
    CheckpointOptions, checkpoint_store, is_event_entry, read_checkpoint, replay,
};
use worldfleet_runtime::{ModelChoice, RunOptions, run_embedded};
use worldfleet_testbed::{Derived, WorldSpec};

fn scan(dir: &Path, table: &str) -> Vec<Item> {
    let options = StoreOptions {
        janitor_interval: None,
        ..StoreOptions::default()
    };
    let store = EmbeddedStore::open(dir, Arc::new(SystemClock), options).expect("open store");
    let items = store.table().scan(table).expect("scan");
    store.close();
    items
}

fn derived(dir: &Path) -> Derived {
    Derived::read_tables(|table| Ok(scan(dir, table))).expect("read the derived tables")
}

fn assert_same(label: &str, replayed: &Derived, live: &Derived) {
    if let Some(difference) = replayed.first_difference(live) {
        panic!("{label}: {difference}");
    }
}

fn options(data_dir: &Path) -> RunOptions {
    let world = WorldSpec {
        events: 240,
        players: 40,
        districts: 2,
        scenes_per_district: 3,
        fan_out: 4,
        factions: 3,
        bad_every: 40,
        ..WorldSpec::small(7)
    };
    let mut options = RunOptions::new(world);
    options.data_dir = Some(data_dir.to_path_buf());
    options.workers_per_stage = 2;
    options.durability = Durability::Buffered;
    options.models = ModelChoice::RulesAndTemplates;
    options.rate_limit = RateLimit {
        burst: 10_000,
        per_second: 10_000,
    };
    options.drain_timeout = Duration::from_secs(60);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_the_derived_tables_from_the_ledger_and_from_checkpoints() {
    let root = tempfile::tempdir().expect("tempdir");
    let live_dir = root.path().join("live");
    let summary = run_embedded(options(&live_dir)).await.expect("live run");
    assert!(summary.drained && summary.audit.lost == 0 && summary.audit.duplicates == 0);
    let live = derived(&live_dir);
    assert_eq!(live.canon.len() as u64, summary.audit.good_sent);
    assert_eq!(live.feed_entries() as u64, summary.audit.feed_entries);
    assert!(!live.memory.is_empty() && !live.prune_keys.is_empty());
    assert_eq!(live.plans_left, 0, "prune removed every completed plan");

    // From the start of the ledger.
    let full_dir = root.path().join("full");
    let report = replay(&live_dir, &full_dir).await.expect("replay");
    assert_eq!(report.replayed, summary.audit.good_sent);
    assert_eq!(report.checkpoints, 0);
    assert_eq!(
        scan(&full_dir, LEDGER_TABLE),
        scan(&live_dir, LEDGER_TABLE),
        "the ledger is copied as it is"
    );
    assert_same("replay from the ledger's start", &derived(&full_dir), &live);
    assert!(
        replay(&live_dir, &full_dir).await.is_err(),
        "a store that already has a ledger is no replay target"
    );

    // Checkpoint the older half of the events, compacting the ledger behind, and replay from
    // the checkpoints plus the ledger after them.
    let mut accepted: Vec<i64> = scan(&live_dir, LEDGER_TABLE)
        .iter()
        .filter(|item| is_event_entry(item))
        .filter_map(|item| item.i64("accepted_at_ms"))
        .collect();
    accepted.sort_unstable();
    let cut = accepted[accepted.len() / 2] as u64;
    let checkpoints = checkpoint_store(
        &live_dir,
        CheckpointOptions {
            accepted_before_ms: cut,
            compact: true,
            taken_at_ms: cut,
        },
    )
    .await
    .expect("checkpoint");
    assert!(checkpoints.covered > 0 && checkpoints.covered < summary.audit.good_sent);
    assert_eq!(checkpoints.compacted, checkpoints.covered);
    let left = scan(&live_dir, LEDGER_TABLE)
        .iter()
        .filter(|item| is_event_entry(item))
        .count() as u64;
    assert_eq!(left, summary.audit.good_sent - checkpoints.covered);
    let again = checkpoint_store(
        &live_dir,
        CheckpointOptions {
            accepted_before_ms: cut,
            compact: true,
            taken_at_ms: cut,
        },
    )
    .await
    .expect("checkpoint again");
    assert_eq!(again.covered, 0, "a checkpoint never covers an event twice");

    let checkpointed_dir = root.path().join("checkpointed");
    let report = replay(&live_dir, &checkpointed_dir)
        .await
        .expect("replay from checkpoints");
    assert_eq!(report.restored_from_checkpoints, checkpoints.covered);
    assert_eq!(
        report.restored_from_checkpoints + report.replayed,
        summary.audit.good_sent
    );
    assert_same(
        "replay from checkpoints plus the ledger after them",
        &derived(&checkpointed_dir),
        &live,
    );
    let store = EmbeddedStore::open(
        &checkpointed_dir,
        Arc::new(SystemClock),
        StoreOptions::default(),
    )
    .expect("open");
    let partition = scan_partition_with_checkpoint(&store).await;
    assert!(
        partition.is_some(),
        "the checkpoints travel with the ledger"
    );
    store.close();
}

async fn scan_partition_with_checkpoint(store: &EmbeddedStore) -> Option<(String, u64)> {
    let table = store.table();
    for item in table.scan(LEDGER_TABLE).expect("scan") {
        if let Some(head) = read_checkpoint(table.as_ref(), &item.key.pk)
            .await
            .expect("checkpoint")
        {
            return Some(head);
        }
    }
    None
}
