//! Reading a feed across holes in its sequence numbers: a range still being written stops the
//! read (so no reader steps over it), a range never written is skipped once `GAP_GRACE` old.

use std::sync::Arc;

use worldfleet_domain::names::FEEDS_TABLE;
use worldfleet_domain::{EventKind, FeedEntry, FeedId, FeedPage, PartitionUid};
use worldfleet_embedded::testing::TempStore;
use worldfleet_ports::{ManualClock, TableSpec};
use worldfleet_tables::feed::GAP_GRACE;
use worldfleet_tables::plan::page_item;
use worldfleet_tables::read_feed;

const NOW: u64 = 1_763_700_000_000;

fn page(first: u64, last: u64) -> FeedPage {
    FeedPage {
        first_seq: first,
        entries: (first..=last)
            .map(|seq| FeedEntry {
                seq,
                event_id: format!("event-{seq}"),
                partition: PartitionUid::parse("gm-1/district-2/scene-3").unwrap(),
                kind: EventKind::Dialogue,
                actor: "p-1".into(),
                text: format!("entry {seq}"),
                accepted_at_ms: NOW,
            })
            .collect(),
    }
}

fn seqs(read: &worldfleet_tables::feed::FeedRead) -> Vec<u64> {
    read.entries.iter().map(|entry| entry.seq).collect()
}

#[tokio::test]
async fn a_read_stops_at_a_fresh_hole_and_skips_a_stale_one() {
    let store = TempStore::open(Arc::new(ManualClock::new(NOW)));
    let table = store.table();
    table
        .ensure_table(&TableSpec {
            name: FEEDS_TABLE.into(),
        })
        .await
        .unwrap();
    let feed = FeedId::parse("player:p-1").unwrap();
    let write = |first, last, at| {
        let table = Arc::clone(&table);
        async move {
            table
                .put(
                    FEEDS_TABLE,
                    page_item("player:p-1", &page(first, last), at).unwrap(),
                    None,
                )
                .await
                .unwrap();
        }
    };
    // Entries 1–2 written; 3–4 allocated to a batch still writing; 5–6 landed first.
    write(1, 2, NOW).await;
    write(5, 6, NOW).await;
    let read = read_feed(table.as_ref(), FEEDS_TABLE, &feed, 0, 100, NOW + 10)
        .await
        .unwrap();
    assert_eq!(seqs(&read), [1, 2], "nothing past the hole");
    assert_eq!(read.next_after_seq, 2, "a checkpoint never passes the hole");
    let from_hole = read_feed(table.as_ref(), FEEDS_TABLE, &feed, 2, 100, NOW + 10)
        .await
        .unwrap();
    assert!(from_hole.entries.is_empty());
    assert_eq!(from_hole.next_after_seq, 2);

    // The batch finishes: the read runs through.
    write(3, 4, NOW + 20).await;
    let read = read_feed(table.as_ref(), FEEDS_TABLE, &feed, 2, 100, NOW + 30)
        .await
        .unwrap();
    assert_eq!(seqs(&read), [3, 4, 5, 6]);

    // 7–8 burned (a batch that crashed before planning); 9 written. Waited for, then passed.
    write(9, 9, NOW + 40).await;
    let young = read_feed(table.as_ref(), FEEDS_TABLE, &feed, 6, 100, NOW + 50)
        .await
        .unwrap();
    assert!(young.entries.is_empty());
    let old_enough = NOW + 40 + GAP_GRACE.as_millis() as u64;
    let stale = read_feed(table.as_ref(), FEEDS_TABLE, &feed, 6, 100, old_enough)
        .await
        .unwrap();
    assert_eq!(seqs(&stale), [9]);
    assert_eq!(stale.next_after_seq, 9);

    // The limit still holds across pages.
    let limited = read_feed(table.as_ref(), FEEDS_TABLE, &feed, 0, 3, old_enough)
        .await
        .unwrap();
    assert_eq!(seqs(&limited), [1, 2, 3]);
    assert_eq!(limited.next_after_seq, 3);
}
