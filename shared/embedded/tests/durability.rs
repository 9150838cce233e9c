//! Restart durability, race-freedom of conditional writes, and clock-driven visibility and TTL.

use std::sync::Arc;
use std::time::Duration;

use worldfleet_embedded::{EmbeddedStore, EmbeddedTable, StoreOptions};
use worldfleet_ports::{
    Condition, DeleteOutcome, Error, Item, Key, ManualClock, OutgoingMessage, Query, Queue,
    QueueDepth, QueueSpec, ReceiveRequest, SendOutcome, TTL_ATTRIBUTE, Table, TableSpec,
};

const START_MS: u64 = 1_700_000_000_000;

fn options() -> StoreOptions {
    StoreOptions {
        janitor_interval: None,
        receive_recheck: Duration::from_millis(10),
        ..StoreOptions::default()
    }
}

fn open(directory: &tempfile::TempDir, clock: &ManualClock) -> EmbeddedStore {
    EmbeddedStore::open(directory.path(), Arc::new(clock.clone()), options()).expect("store opens")
}

fn now(max_messages: usize) -> ReceiveRequest {
    ReceiveRequest {
        max_messages,
        wait: Duration::ZERO,
        visibility_timeout: None,
    }
}

/// A store in a new temporary directory, on a manual clock at [`START_MS`]; the directory
/// (which must outlive the store) and the clock (which moves time) come back with it.
fn open_fresh() -> (tempfile::TempDir, ManualClock, EmbeddedStore) {
    let directory = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let store = open(&directory, &clock);
    (directory, clock, store)
}

/// The store's table port, with table `name` declared.
async fn declared_table(store: &EmbeddedStore, name: &str) -> Arc<EmbeddedTable> {
    let table = store.table();
    table
        .ensure_table(&TableSpec { name: name.into() })
        .await
        .unwrap();
    table
}

/// Sends one message to the standard queue `plain`, visible after `delay`.
async fn send_plain(queue: &dyn Queue, body: &str, delay: Duration) {
    queue
        .send_batch("plain", vec![OutgoingMessage::delayed(body.into(), delay)])
        .await
        .unwrap();
}

/// How many items partition `p` of table `feeds` shows a query.
async fn feed_items(table: &EmbeddedTable) -> usize {
    let page = table.query("feeds", &Query::partition("p")).await.unwrap();
    page.items.len()
}

async fn declare(queue: &dyn Queue) {
    queue
        .ensure_queue(&QueueSpec::dead_letter("work-dlq.fifo"))
        .await
        .unwrap();
    let mut spec =
        QueueSpec::with_dead_letter("work.fifo", "work-dlq.fifo", Duration::from_secs(30));
    spec.max_receive_count = 3;
    queue.ensure_queue(&spec).await.unwrap();
    queue
        .ensure_queue(&QueueSpec::dead_letter("plain"))
        .await
        .unwrap();
}

#[tokio::test]
async fn messages_receive_counts_dedup_ids_and_items_survive_a_restart() {
    let directory = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    {
        let store = open(&directory, &clock);
        let queue = store.queue();
        declare(queue.as_ref()).await;
        let sent = queue
            .send_batch(
                "work.fifo",
                vec![
                    OutgoingMessage::fifo("first".into(), "g", "d1"),
                    OutgoingMessage::fifo("second".into(), "g", "d2"),
                ],
            )
            .await
            .unwrap();
        assert!(sent.iter().all(|o| matches!(o, SendOutcome::Sent { .. })));
        send_plain(queue.as_ref(), "later", Duration::from_secs(60)).await;
        let received = queue.receive("work.fifo", now(1)).await.unwrap();
        assert_eq!(received[0].receive_count, 1);
        let table = declared_table(&store, "ledger").await;
        table
            .put("ledger", Item::new(Key::new("p", "s")).with("n", 7), None)
            .await
            .unwrap();
        drop(table);
        drop(queue);
        store.close();
    }
    let store = open(&directory, &clock);
    let queue = store.queue();
    // Every undeleted message is visible again after a restart; its receive count is kept.
    let received = queue.receive("work.fifo", now(10)).await.unwrap();
    let bodies: Vec<_> = received.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["first", "second"]);
    assert_eq!(
        received[0].receive_count, 2,
        "receive count must be durable"
    );
    assert_eq!(received[1].receive_count, 1);
    // The deduplication id is remembered across the restart.
    queue
        .send_batch(
            "work.fifo",
            vec![OutgoingMessage::fifo("again".into(), "g", "d1")],
        )
        .await
        .unwrap();
    let depth = queue.depth("work.fifo").await.unwrap();
    assert_eq!(depth.total(), 2, "a duplicate was stored after a restart");
    // The delay is durable too.
    assert_eq!(
        queue.depth("plain").await.unwrap(),
        QueueDepth {
            visible: 0,
            in_flight: 0,
            delayed: 1
        }
    );
    let item = store
        .table()
        .get("ledger", &Key::new("p", "s"))
        .await
        .unwrap();
    assert_eq!(item.and_then(|i| i.i64("n")), Some(7));
    // A receipt issued before the restart is refused.
    let stale = received[0].receipt_handle.clone();
    drop(queue);
    store.close();
    let store = open(&directory, &clock);
    let outcome = store
        .queue()
        .delete_batch("work.fifo", vec![stale])
        .await
        .unwrap();
    assert!(matches!(outcome[0], DeleteOutcome::Failed { .. }));
}

#[tokio::test]
async fn a_message_that_crashes_every_receiver_still_reaches_the_dead_letter_queue() {
    let directory = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    {
        let store = open(&directory, &clock);
        declare(store.queue().as_ref()).await;
        store
            .queue()
            .send_batch(
                "work.fifo",
                vec![OutgoingMessage::fifo("poison".into(), "g", "p")],
            )
            .await
            .unwrap();
        store.close();
    }
    for attempt in 1..=3 {
        let store = open(&directory, &clock);
        let received = store.queue().receive("work.fifo", now(1)).await.unwrap();
        assert_eq!(received.len(), 1, "attempt {attempt}");
        assert_eq!(received[0].receive_count, attempt);
        // The "crash": the store goes away without a delete.
        store.close();
    }
    let store = open(&directory, &clock);
    let queue = store.queue();
    assert!(queue.receive("work.fifo", now(1)).await.unwrap().is_empty());
    let dead = queue.receive("work-dlq.fifo", now(1)).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conditional_writes_never_both_succeed() {
    let (_directory, _clock, store) = open_fresh();
    let table = declared_table(&store, "claims").await;
    let mut tasks = Vec::new();
    for key in 0..50 {
        for writer in 0..4 {
            let table = table.clone();
            tasks.push(tokio::spawn(async move {
                let item = Item::new(Key::new("claim", format!("{key}"))).with("writer", writer);
                match table
                    .put("claims", item, Some(Condition::ItemNotExists))
                    .await
                {
                    Ok(()) => 1,
                    Err(Error::ConditionFailed { .. }) => 0,
                    Err(error) => panic!("unexpected error {error}"),
                }
            }));
        }
    }
    let mut winners = 0;
    for task in tasks {
        winners += task.await.unwrap();
    }
    assert_eq!(winners, 50, "exactly one conditional put per key may win");
}

#[tokio::test]
async fn visibility_delay_and_dedup_window_follow_the_manual_clock() {
    let (_directory, clock, store) = open_fresh();
    let queue = store.queue();
    declare(queue.as_ref()).await;
    send_plain(queue.as_ref(), "d", Duration::from_secs(10)).await;
    assert!(queue.receive("plain", now(1)).await.unwrap().is_empty());
    clock.advance(10_000);
    let first = queue.receive("plain", now(1)).await.unwrap();
    assert_eq!(first.len(), 1, "the delay ended on the manual clock");
    clock.advance(29_999);
    assert!(queue.receive("plain", now(1)).await.unwrap().is_empty());
    clock.advance(1);
    let second = queue.receive("plain", now(1)).await.unwrap();
    assert_eq!(second[0].receive_count, 2);
    // The first receipt is stale now.
    let stale = queue
        .delete_batch("plain", vec![first[0].receipt_handle.clone()])
        .await
        .unwrap();
    assert!(matches!(stale[0], DeleteOutcome::Failed { .. }));
    let stale = queue
        .change_visibility("plain", &first[0].receipt_handle, Duration::ZERO)
        .await;
    assert!(matches!(stale, Err(Error::InvalidReceipt(_))));
    assert_eq!(
        queue
            .delete_batch("plain", vec![second[0].receipt_handle.clone()])
            .await
            .unwrap(),
        [DeleteOutcome::Deleted]
    );
    // Deduplication ids expire after five minutes on the clock.
    let send = |dedup: &str| OutgoingMessage::fifo("x".into(), "g", dedup);
    queue
        .send_batch("work.fifo", vec![send("once")])
        .await
        .unwrap();
    queue
        .send_batch("work.fifo", vec![send("once")])
        .await
        .unwrap();
    assert_eq!(queue.depth("work.fifo").await.unwrap().total(), 1);
    clock.advance(300_001);
    assert_eq!(
        store.sweep_expired().await.unwrap(),
        1,
        "the expired id is swept"
    );
    queue
        .send_batch("work.fifo", vec![send("once")])
        .await
        .unwrap();
    assert_eq!(queue.depth("work.fifo").await.unwrap().total(), 2);
}

#[tokio::test]
async fn a_waiting_receive_notices_visibility_expiring_on_the_clock() {
    let (_directory, clock, store) = open_fresh();
    let queue = store.queue();
    declare(queue.as_ref()).await;
    send_plain(queue.as_ref(), "m", Duration::ZERO).await;
    assert_eq!(queue.receive("plain", now(1)).await.unwrap().len(), 1);
    let waiting = {
        let queue = queue.clone();
        tokio::spawn(async move {
            queue
                .receive("plain", ReceiveRequest::batch(Duration::from_secs(5)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    clock.advance(30_000);
    let received = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the waiting receive returned once the clock moved")
        .unwrap()
        .unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].receive_count, 2);
}

#[tokio::test]
async fn expired_items_are_hidden_then_swept_but_conditions_see_them_until_then() {
    let (_directory, clock, store) = open_fresh();
    let table = declared_table(&store, "feeds").await;
    let expires = (START_MS / 1000 + 60) as i64;
    for sk in ["a", "b"] {
        table
            .put(
                "feeds",
                Item::new(Key::new("p", sk)).with(TTL_ATTRIBUTE, expires),
                None,
            )
            .await
            .unwrap();
    }
    table
        .put(
            "feeds",
            Item::new(Key::new("p", "c")).with("keep", true),
            None,
        )
        .await
        .unwrap();
    assert_eq!(feed_items(&table).await, 3);
    clock.advance(60_000);
    assert_eq!(table.get("feeds", &Key::new("p", "a")).await.unwrap(), None);
    assert_eq!(feed_items(&table).await, 1);
    // Until the janitor runs, a condition still sees the expired item (as in DynamoDB).
    let blocked = table
        .put(
            "feeds",
            Item::new(Key::new("p", "a")),
            Some(Condition::ItemNotExists),
        )
        .await;
    assert!(matches!(blocked, Err(Error::ConditionFailed { .. })));
    assert_eq!(store.sweep_expired().await.unwrap(), 2);
    table
        .put(
            "feeds",
            Item::new(Key::new("p", "a")),
            Some(Condition::ItemNotExists),
        )
        .await
        .expect("after the sweep the key is free");
    assert_eq!(store.sweep_expired().await.unwrap(), 0);
}

#[tokio::test]
async fn counters_charge_like_dynamodb_and_sqs() {
    let (_directory, _clock, store) = open_fresh();
    let table = declared_table(&store, "ledger").await;
    let before = store.counters();
    table
        .put(
            "ledger",
            Item::new(Key::new("p", "s")).with("blob", vec![0_u8; 1500]),
            None,
        )
        .await
        .unwrap();
    table.get("ledger", &Key::new("p", "s")).await.unwrap();
    let used = store.counters().since(&before);
    assert_eq!(used.table_requests, 2);
    assert_eq!(used.table_write_units, 2, "1.5 KB costs two write units");
    assert_eq!(used.table_read_units, 1);
    let queue = store.queue();
    declare(queue.as_ref()).await;
    let before = store.counters();
    let messages = (0..10)
        .map(|i| OutgoingMessage::delayed(format!("{i}"), Duration::ZERO))
        .collect();
    queue.send_batch("plain", messages).await.unwrap();
    let used = store.counters().since(&before);
    assert_eq!(used.queue_requests, 1, "a batch is one request");
    assert_eq!(used.queue_messages_sent, 10);
    assert!(store.disk_bytes().unwrap() > 0);
}

#[tokio::test]
async fn reopen_after_close() {
    let (directory, clock, store) = open_fresh();
    store.close();
    let store = open(&directory, &clock);
    let queue = store.queue();
    declare(queue.as_ref()).await;
    send_plain(queue.as_ref(), "m", Duration::ZERO).await;
    drop(queue);
    store.close();
    let store = open(&directory, &clock);
    let queue = store.queue();
    assert_eq!(queue.receive("plain", now(1)).await.unwrap().len(), 1);
    drop(queue);
    store.close();
    let store = open(&directory, &clock);
    let table = declared_table(&store, "ledger").await;
    table
        .put("ledger", Item::new(Key::new("p", "s")), None)
        .await
        .unwrap();
    drop(table);
    store.close();
    let _store = open(&directory, &clock);
}

/// The keys in the store's `dedup` keyspace (the store must be closed).
fn dedup_keys(directory: &tempfile::TempDir) -> Vec<Vec<u8>> {
    let database = fjall::Database::builder(directory.path()).open().unwrap();
    let dedup = database
        .keyspace("dedup", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    dedup
        .iter()
        .map(|entry| entry.key().unwrap().to_vec())
        .collect()
}

/// The length of a deduplication key of queue `work.fifo`: the prefix (length byte and
/// name), the mark, the expiry and the digest.
const DEDUP_KEY_LEN: usize = 1 + 9 + 1 + 8 + 16;

/// The expiry a deduplication key of queue `work.fifo` holds.
fn key_expiry(key: &[u8]) -> u64 {
    assert_eq!(key.len(), DEDUP_KEY_LEN, "{key:?}");
    assert_eq!(key[10], 0xFE, "{key:?}");
    u64::from_be_bytes(key[11..19].try_into().unwrap())
}

/// The expiries the deduplication keys of queue `work.fifo` hold, in key order (the store must
/// be closed).
fn dedup_expiries(directory: &tempfile::TempDir) -> Vec<u64> {
    dedup_keys(directory)
        .iter()
        .map(|key| key_expiry(key))
        .collect()
}

#[tokio::test]
async fn dedup_ids_of_a_store_written_by_an_older_version_are_rewritten() {
    let directory = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    {
        let store = open(&directory, &clock);
        declare(store.queue().as_ref()).await;
        store.close();
    }
    // What older stores wrote after the queue's prefix: the id itself (the first format), or
    // `0xFF` and the first 16 bytes of the id's SHA-256 (the second); then the expiry and the
    // message id.
    let key = |tail: &[u8]| {
        let mut key = vec![b"work.fifo".len() as u8];
        key.extend_from_slice(b"work.fifo");
        key.extend_from_slice(tail);
        key
    };
    let digest_key = |id: &str| {
        use sha2::Digest as _;
        let mut tail = vec![0xFF];
        tail.extend_from_slice(&sha2::Sha256::digest(id.as_bytes())[..16]);
        key(&tail)
    };
    let value = |expires_ms: u64, message_id: &str| {
        let mut value = expires_ms.to_be_bytes().to_vec();
        value.extend_from_slice(message_id.as_bytes());
        value
    };
    {
        let database = fjall::Database::builder(directory.path()).open().unwrap();
        let dedup = database
            .keyspace("dedup", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let entries = [
            (key(b"kept"), value(START_MS + 60_000, "00000000000000aa")),
            (key(b"gone"), value(START_MS - 1, "00000000000000bb")),
            (
                digest_key("held"),
                value(START_MS + 50_000, "00000000000000cc"),
            ),
            (digest_key("past"), value(START_MS - 1, "00000000000000dd")),
        ];
        for (key, value) in entries {
            dedup.insert(key, value).unwrap();
        }
        database.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    {
        let store = open(&directory, &clock);
        let queue = store.queue();
        let outcomes = queue
            .send_batch(
                "work.fifo",
                ["kept", "gone", "held", "past"]
                    .into_iter()
                    .map(|id| OutgoingMessage::fifo(id.into(), "g", id))
                    .collect(),
            )
            .await
            .unwrap();
        let ids: Vec<String> = outcomes
            .iter()
            .map(|outcome| match outcome {
                SendOutcome::Sent { message_id } => message_id.clone(),
                failed => panic!("{failed:?}"),
            })
            .collect();
        assert_eq!(
            ids[0], "00000000000000aa",
            "an unexpired whole id still deduplicates"
        );
        assert_ne!(ids[1], "00000000000000bb", "an expired whole id does not");
        assert_eq!(
            ids[2], "00000000000000cc",
            "an unexpired digest still deduplicates"
        );
        assert_ne!(ids[3], "00000000000000dd", "an expired digest does not");
        assert_eq!(queue.depth("work.fifo").await.unwrap().total(), 2);
        assert_eq!(store.memory().unwrap().dedup_ids, 4);
        drop(queue);
        store.close();
    }
    let mut expiries = dedup_expiries(&directory);
    expiries.sort_unstable();
    let window = 5 * 60_000;
    assert_eq!(
        expiries,
        [
            START_MS + 50_000,
            START_MS + 60_000,
            START_MS + window,
            START_MS + window
        ],
        "two rewritten ids under their old expiry and two new ones; the expired ones gone"
    );
}

#[tokio::test]
async fn dedup_keys_are_written_in_expiry_order_and_a_reused_id_leaves_no_stale_key() {
    let directory = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let window = 5 * 60_000;
    let send = |queue: Arc<dyn Queue>, id: &'static str| async move {
        let message = OutgoingMessage::fifo(id.into(), "g", id);
        queue.send_batch("work.fifo", vec![message]).await.unwrap();
    };
    {
        let store = open(&directory, &clock);
        let queue = store.queue();
        declare(queue.as_ref()).await;
        for (second, id) in [(0, "z-first"), (1, "a-second"), (2, "m-third")] {
            clock.set(START_MS + second * 1_000);
            send(queue.clone(), id).await;
        }
        drop(queue);
        store.close();
    }
    let expiries = dedup_expiries(&directory);
    assert_eq!(
        expiries,
        [
            START_MS + window,
            START_MS + 1_000 + window,
            START_MS + 2_000 + window
        ],
        "keys sort by when they were sent, not by the id or its digest"
    );
    {
        let store = open(&directory, &clock);
        let queue = store.queue();
        // Past its window and not swept yet (no janitor runs), the first id is sent again:
        // its old key goes with the new one's write.
        clock.set(START_MS + window + 500);
        send(queue.clone(), "z-first").await;
        drop(queue);
        store.close();
    }
    let expiries = dedup_expiries(&directory);
    assert_eq!(
        expiries,
        [
            START_MS + 1_000 + window,
            START_MS + 2_000 + window,
            START_MS + 500 + 2 * window
        ],
    );
}

#[tokio::test]
async fn a_census_counts_items_partitions_and_bookkeeping_per_table_and_keys_per_keyspace() {
    let (_directory, _clock, store) = open_fresh();
    let canon = declared_table(&store, "canon").await;
    let ledger = declared_table(&store, "ledger").await;
    for (pk, sk) in [("a", "1"), ("a", "2"), ("b", "1")] {
        let item = Item::new(Key::new(pk, sk)).with("line", "x".repeat(100));
        canon.put("canon", item, None).await.unwrap();
    }
    for sk in ["e1", "~checkpoint"] {
        let item = Item::new(Key::new("p", sk));
        ledger.put("ledger", item, None).await.unwrap();
    }
    let queue = store.queue();
    declare(queue.as_ref()).await;
    let message = OutgoingMessage::fifo("body".into(), "g", "id-1");
    queue.send_batch("work.fifo", vec![message]).await.unwrap();

    let census = store.census().unwrap();
    let tables: Vec<(&str, u64, u64, u64)> = census
        .tables
        .iter()
        .map(|t| {
            (
                t.table.as_str(),
                t.items.keys,
                t.partitions,
                t.bookkeeping.keys,
            )
        })
        .collect();
    assert_eq!(tables, [("canon", 3, 2, 0), ("ledger", 2, 1, 1)]);
    let canon_bytes = census.tables[0].items.bytes;
    assert!(
        canon_bytes > 300,
        "three 100-byte lines and keys: {canon_bytes}"
    );
    assert_eq!(census.keyspaces["messages"].keys, 1);
    assert_eq!(census.keyspaces["dedup"].keys, 1);
    assert_eq!(census.keyspaces["receives"].keys, 0);
}
