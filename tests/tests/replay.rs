//! Replay: a world run through the embedded pipeline, rebuilt from its ledger into fresh
//! stores (from the start of the ledger, then from checkpoints with the ledger compacted behind
//! them), must derive the same tables.
//!
//! Compared, row by row:
//! - `ledger`: every row, every attribute (a replay copies it);
//! - `canon`: every item, every attribute except `composed_at_ms` (when compose ran, also inside
//!   the `canon` JSON) and `dist_plan` (the id of the publication plan, a fresh ULID per plan);
//! - `feeds`: every feed's entries with all their content, and their order within each source
//!   partition; not their sequence numbers, page boundaries or counters, which depend on how
//!   distribute batched and interleaved partitions in that run (feeds are gap-tolerant by
//!   design); publication plans must all be gone (prune removes completed ones);
//! - `memory`: each player's observed entries, as for feeds (observation keys and byte counts
//!   follow the pages);
//! - `prune`: the keys of region activity, region partitions and the feed index (their
//!   attributes are timestamps).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use worldfleet_domain::FeedEntry;
use worldfleet_domain::names::{CANON_TABLE, FEEDS_TABLE, LEDGER_TABLE, MEMORY_TABLE, PRUNE_TABLE};
use worldfleet_embedded::{Durability, EmbeddedStore, StoreOptions};
use worldfleet_intake::RateLimit;
use worldfleet_ports::{Item, SystemClock};
use worldfleet_runtime::replay::{
    CheckpointOptions, checkpoint_store, is_event_entry, read_checkpoint, replay,
};
use worldfleet_runtime::{ModelChoice, RunOptions, run_embedded};
use worldfleet_tables::memory::{OBSERVATION_PREFIX, observation_entries};
use worldfleet_tables::plan::page_from_item;
use worldfleet_testbed::WorldSpec;

/// Per feed (or player), per source partition: the entries in sequence order, without their
/// sequence numbers.
type Streams = BTreeMap<String, BTreeMap<String, Vec<FeedEntry>>>;

/// The derived tables of a store, minus what is run-specific (see the module).
#[derive(Debug, PartialEq)]
struct Derived {
    canon: BTreeMap<String, String>,
    feeds: Streams,
    plans_left: usize,
    memory: Streams,
    prune_keys: Vec<String>,
}

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

fn streams(items: impl Iterator<Item = (String, Vec<FeedEntry>)>) -> Streams {
    let mut sorted: BTreeMap<String, Vec<FeedEntry>> = BTreeMap::new();
    for (owner, entries) in items {
        sorted.entry(owner).or_default().extend(entries);
    }
    sorted
        .into_iter()
        .map(|(owner, mut entries)| {
            entries.sort_by_key(|entry| entry.seq);
            let mut by_partition: BTreeMap<String, Vec<FeedEntry>> = BTreeMap::new();
            for mut entry in entries {
                entry.seq = 0;
                by_partition
                    .entry(entry.partition.to_string())
                    .or_default()
                    .push(entry);
            }
            (owner, by_partition)
        })
        .collect()
}

fn derived(dir: &Path) -> Derived {
    let canon = scan(dir, CANON_TABLE)
        .into_iter()
        .map(|mut item| {
            item.attributes.remove("composed_at_ms");
            item.attributes.remove("dist_plan");
            let mut json: serde_json::Value =
                serde_json::from_str(item.str("canon").expect("canon json")).expect("json");
            json.as_object_mut()
                .expect("canon object")
                .remove("composed_at_ms");
            item.attributes.remove("canon");
            (
                item.key.to_string(),
                format!("{json} {:?}", item.attributes),
            )
        })
        .collect();
    let feed_items = scan(dir, FEEDS_TABLE);
    let plans_left = feed_items
        .iter()
        .filter(|item| item.key.pk.starts_with("plan#"))
        .count();
    let feeds = streams(
        feed_items
            .iter()
            .filter(|item| item.key.sk.starts_with("page#"))
            .map(|item| {
                let page = page_from_item(item).expect("page");
                (item.key.pk.clone(), page.entries)
            }),
    );
    let memory = streams(
        scan(dir, MEMORY_TABLE)
            .iter()
            .filter(|item| item.key.sk.starts_with(OBSERVATION_PREFIX))
            .map(|item| {
                (
                    item.key.pk.clone(),
                    observation_entries(item).expect("observation"),
                )
            }),
    );
    let prune_keys = scan(dir, PRUNE_TABLE)
        .iter()
        .map(|item| item.key.to_string())
        .collect();
    Derived {
        canon,
        feeds,
        plans_left,
        memory,
        prune_keys,
    }
}

/// The first difference between two maps, readably (a whole `Derived` is too long to print).
fn first_difference<V: PartialEq + std::fmt::Debug>(
    what: &str,
    replayed: &BTreeMap<String, V>,
    live: &BTreeMap<String, V>,
) -> Option<String> {
    for (key, value) in live {
        match replayed.get(key) {
            None => return Some(format!("{what} {key}: missing from the replay")),
            Some(other) if other != value => {
                return Some(format!(
                    "{what} {key}: replay has {other:?}, live has {value:?}"
                ));
            }
            Some(_) => {}
        }
    }
    replayed
        .keys()
        .find(|key| !live.contains_key(*key))
        .map(|key| format!("{what} {key}: only in the replay"))
}

fn assert_same(label: &str, replayed: &Derived, live: &Derived) {
    let difference = first_difference("canon", &replayed.canon, &live.canon)
        .or_else(|| first_difference("feed", &replayed.feeds, &live.feeds))
        .or_else(|| first_difference("memory", &replayed.memory, &live.memory));
    if let Some(difference) = difference {
        panic!("{label}: {difference}");
    }
    assert_eq!(replayed.plans_left, live.plans_left, "{label}: plans left");
    assert_eq!(replayed.prune_keys, live.prune_keys, "{label}: prune rows");
    assert_eq!(replayed, live, "{label}");
}

fn feed_entries(derived: &Derived) -> usize {
    derived
        .feeds
        .values()
        .flat_map(BTreeMap::values)
        .map(Vec::len)
        .sum()
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
    assert_eq!(feed_entries(&live) as u64, summary.audit.feed_entries);
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
