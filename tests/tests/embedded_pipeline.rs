//! The narrative pipeline on the embedded store, with and without faults.
//!
//! The fault run injects, from one seed: crashes before and after table writes and queue sends
//! (a write applied, then the worker "dies" before the next side effect), lost deletes (a
//! processed batch delivered again), batches handled only after their visibility timeout
//! expired (two workers on the same messages), and one kill-and-reopen of the whole process
//! mid-run. It must end exactly where a fault-free run with the same seed ends.

mod fault_runs;

use std::collections::{BTreeMap, BTreeSet};

use worldfleet_runtime::{RunOptions, RunSummary, run_embedded};
use worldfleet_testbed::WorldSpec;
use worldfleet_testbed::audit::AuditReport;

fn options(seed: u64) -> RunOptions {
    let world = WorldSpec {
        events: 600,
        players: 90,
        districts: 2,
        scenes_per_district: 5,
        fan_out: 6,
        factions: 3,
        bad_every: 40,
        ..WorldSpec::small(seed)
    };
    fault_runs::run_options(world, 3)
}

fn assert_clean(label: &str, summary: &RunSummary) {
    let audit = &summary.audit;
    assert!(summary.drained, "{label}: queues did not drain");
    assert_eq!(audit.lost, 0, "{label}: lost: {:?}", audit.problems);
    assert_eq!(
        audit.duplicates, 0,
        "{label}: duplicates: {:?}",
        audit.problems
    );
    assert_eq!(audit.wrong_reason, 0, "{label}: {:?}", audit.problems);
    assert_eq!(
        audit.ledger_entries, audit.good_sent,
        "{label}: every good event in the ledger"
    );
    assert_eq!(
        audit.canon, audit.good_sent,
        "{label}: canon once per event"
    );
    assert_eq!(
        audit.rejected_as_expected, audit.bad_sent,
        "{label}: every bad envelope refused"
    );
    assert_eq!(
        summary.dead_letters, 0,
        "{label}: nothing in a dead-letter queue"
    );
    assert_order_within_partitions(label, audit);
}

/// Per feed, the events of each partition appear in the order the world emitted them
/// (the world's event ids sort in emission order).
fn assert_order_within_partitions(label: &str, audit: &AuditReport) {
    for (feed, events) in &audit.feeds {
        let mut last_by_partition: BTreeMap<&str, &str> = BTreeMap::new();
        for event in events {
            let partition = audit.event_partition.get(event).map_or("?", String::as_str);
            if let Some(previous) = last_by_partition.insert(partition, event) {
                assert!(
                    previous < event.as_str(),
                    "{label}: {feed} has {event} after {previous} from {partition}"
                );
            }
        }
    }
}

fn feed_sets(audit: &AuditReport) -> BTreeMap<String, BTreeSet<String>> {
    audit
        .feeds
        .iter()
        .map(|(feed, events)| (feed.clone(), events.iter().cloned().collect()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_free_run_loses_nothing_and_refuses_every_bad_envelope() {
    let summary = run_embedded(options(11)).await.expect("run");
    assert_clean("fault-free", &summary);
    assert!(
        summary.audit.bad_sent >= 14,
        "the world sent bad envelopes of every kind"
    );
    assert!(
        summary.audit.feed_entries >= summary.audit.good_sent * 6,
        "fan-out 6 reaches every audience member"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_doors_every_player_sees_every_entry_live_and_nothing_is_lost() {
    let mut through_doors = options(11);
    through_doors.doors = true;
    let summary = run_embedded(through_doors)
        .await
        .expect("run through the doors");
    assert_clean("through the doors", &summary);
    let delivery = summary.delivery.as_ref().expect("a delivery report");
    assert_eq!(
        delivery.feeds_followed, 90,
        "every player follows their feed"
    );
    assert_eq!(
        delivery.frames,
        summary.audit.good_sent * 6,
        "each event reaches its six players' sockets once"
    );
    assert!(
        delivery.door_refused > 0,
        "the door itself refuses oversized and non-JSON envelopes"
    );
    assert_eq!(
        delivery.door_refused, delivery.door_refused_as_expected,
        "with the reason intake would give"
    );
    assert!(delivery.latency_p99_ms > 0.0);
    // The same world straight onto the queue ends with the same feeds.
    let direct = run_embedded(options(11)).await.expect("direct run");
    assert_eq!(feed_sets(&summary.audit), feed_sets(&direct.audit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_duplicates_expired_visibility_and_a_restart_change_nothing() {
    let reference = run_embedded(options(23)).await.expect("fault-free run");
    assert_clean("fault-free", &reference);

    let faulty = fault_runs::with_faults(options(23), 99, 300);
    let faulted = run_embedded(faulty).await.expect("faulty run");
    let counts = faulted.faults.expect("fault counts");
    assert!(
        counts.crashes_before_write > 0 && counts.crashes_after_write > 0,
        "{counts:?}"
    );
    assert!(counts.lost_deletes > 0, "{counts:?}");
    assert_eq!(faulted.restarts, 1);
    assert_clean("faulty", &faulted);

    assert_eq!(
        faulted.audit.canon_text, reference.audit.canon_text,
        "canon identical to the fault-free run"
    );
    assert_eq!(
        feed_sets(&faulted.audit),
        feed_sets(&reference.audit),
        "every feed holds the same events"
    );
    assert_eq!(faulted.audit.feed_entries, reference.audit.feed_entries);
}
