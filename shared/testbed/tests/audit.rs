//! The audit finds what is lost and what is doubled, on a real store: an event missing from the
//! ledger, an event missing from one of its feeds and an event twice in one feed, each counted
//! once and named, with the rows of the report kept only when asked for.

use std::sync::Arc;

use worldfleet_distribute::RepublishRules;
use worldfleet_domain::names::{CANON_TABLE, FEEDS_TABLE, LEDGER_TABLE, REJECTIONS_TABLE};
use worldfleet_domain::{CanonEntry, EventKind, FeedEntry, FeedPage, Intent, PartitionUid, Tier};
use worldfleet_embedded::testing::TempStore;
use worldfleet_ports::{Item, Key, SystemClock, Table, TableSpec};
use worldfleet_tables::{canon, plan};
use worldfleet_testbed::audit::Audit;
use worldfleet_testbed::world::Expectation;

const PARTITION: &str = "gm/d-1/s-1";

fn canon_of(event_id: &str) -> CanonEntry {
    CanonEntry {
        event_id: event_id.to_owned(),
        partition: PartitionUid::parse(PARTITION).unwrap(),
        kind: EventKind::Action,
        actor: "a".into(),
        audience: vec!["a".into(), "b".into()],
        faction: None,
        intent: Intent::Lore,
        salience: 10,
        tier: Tier::Template,
        text: format!("text of {event_id}"),
        composer: "template".into(),
        accepted_at_ms: 1_000,
        composed_at_ms: 1_001,
    }
}

fn page(feed: &str, first_seq: u64, event_ids: &[&str]) -> Item {
    let entries = event_ids
        .iter()
        .enumerate()
        .map(|(offset, event_id)| FeedEntry {
            seq: first_seq + offset as u64,
            event_id: (*event_id).to_owned(),
            partition: PartitionUid::parse(PARTITION).unwrap(),
            kind: EventKind::Action,
            actor: "a".into(),
            text: format!("text of {event_id}"),
            accepted_at_ms: 1_000,
        })
        .collect();
    // Written now: a page carries a TTL from its write time.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    plan::page_item(feed, &FeedPage { first_seq, entries }, now_ms).unwrap()
}

async fn store() -> TempStore {
    let store = TempStore::open(Arc::new(SystemClock));
    let table = store.table();
    for name in [LEDGER_TABLE, CANON_TABLE, FEEDS_TABLE, REJECTIONS_TABLE] {
        table
            .ensure_table(&TableSpec {
                name: name.to_owned(),
            })
            .await
            .unwrap();
    }
    for event_id in ["e1", "e2"] {
        table
            .put(
                LEDGER_TABLE,
                Item::new(Key::new(PARTITION, event_id)).with("envelope", "{}"),
                None,
            )
            .await
            .unwrap();
        table
            .put(
                CANON_TABLE,
                canon::to_item(&canon_of(event_id)).unwrap(),
                None,
            )
            .await
            .unwrap();
    }
    // e1 twice in a's feed; e2 never reached b's.
    for item in [
        page("player:a", 1, &["e1", "e1", "e2"]),
        page("player:b", 1, &["e1"]),
    ] {
        table.put(FEEDS_TABLE, item, None).await.unwrap();
    }
    store
}

#[tokio::test]
async fn a_missing_ledger_entry_a_missing_feed_entry_and_a_double_are_each_found() {
    let store = store().await;
    let table = store.table();
    let rules = RepublishRules::default_rules();
    let expectations: Vec<Expectation> = ["e1", "e2", "e3"]
        .iter()
        .map(|event_id| Expectation::Accepted {
            partition: PARTITION.into(),
            event_id: (*event_id).into(),
        })
        .collect();
    for keep_rows in [false, true] {
        let report = Audit {
            table: table.as_ref() as &dyn Table,
            rules: &rules,
            partitions: vec![PartitionUid::parse(PARTITION).unwrap()],
            players: vec!["a".into(), "b".into()],
            factions: vec![],
            expectations: &expectations,
            keep_rows,
        }
        .run()
        .await
        .unwrap();
        assert_eq!(report.good_sent, 3);
        assert_eq!((report.ledger_entries, report.canon), (2, 2));
        assert_eq!(report.feed_entries, 4);
        assert_eq!(report.duplicates, 1, "{:?}", report.problems);
        assert_eq!(report.lost, 2, "{:?}", report.problems);
        let problems = report.problems.join("; ");
        assert!(
            problems.contains("event e1 appears 2 times in player:a"),
            "{problems}"
        );
        assert!(
            problems.contains("event e3 of gm/d-1/s-1 is not in the ledger"),
            "{problems}"
        );
        assert!(
            problems.contains("event e2 is missing from player:b"),
            "{problems}"
        );
        assert_eq!(report.canon_text.len(), if keep_rows { 2 } else { 0 });
        assert_eq!(report.feeds.len(), if keep_rows { 2 } else { 0 });
        if keep_rows {
            assert_eq!(report.feeds["player:a"], ["e1", "e1", "e2"]);
            assert_eq!(report.event_partition["e2"], PARTITION);
        }
    }
}
