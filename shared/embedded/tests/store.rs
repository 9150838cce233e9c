//! Store-level properties the contract suites do not reach: check-and-set inside one commit
//! group, failed jobs leaving nothing behind, durability across a reopen, O(1) queue depth
//! counters against a manual clock, the janitor's retention sweep, scans, and a store already
//! in use refused with a sentence saying so, and the boundary durability: writes answered on
//! commit, fsynced in the background, acknowledging writes and reads waiting for the fsync.

use std::sync::Arc;
use std::time::Duration;

use worldfleet_embedded::{Durability, EmbeddedStore, StoreOptions};
use worldfleet_ports::{
    Condition, Error, Item, Key, ManualClock, OutgoingMessage, Queue, QueueSpec, ReceiveRequest,
    SystemClock, Table, TableSpec, TransactWrite, Update,
};

const TABLE: &str = "store-tests";

fn options() -> StoreOptions {
    StoreOptions {
        janitor_interval: None,
        ..StoreOptions::default()
    }
}

async fn open_with_table(directory: &tempfile::TempDir) -> EmbeddedStore {
    let store = EmbeddedStore::open(directory.path(), Arc::new(SystemClock), options())
        .expect("the store opens");
    store
        .table()
        .ensure_table(&TableSpec { name: TABLE.into() })
        .await
        .expect("the table");
    store
}

/// A store in a new temporary directory, on a manual clock, with the standard queue `name`
/// (keeping messages for `retention`) declared; the directory (which must outlive the store)
/// and the clock (which moves time) come back with it.
async fn open_with_queue(
    name: &str,
    retention: Duration,
) -> (tempfile::TempDir, Arc<ManualClock>, EmbeddedStore) {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let store =
        EmbeddedStore::open(directory.path(), clock.clone(), options()).expect("the store opens");
    store
        .queue()
        .ensure_queue(&standard_queue(name, retention))
        .await
        .expect("the queue");
    (directory, clock, store)
}

fn standard_queue(name: &str, retention: Duration) -> QueueSpec {
    QueueSpec {
        name: name.into(),
        visibility_timeout: Duration::from_secs(30),
        max_receive_count: 0,
        dead_letter_queue: None,
        retention,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conditional_creates_admit_exactly_one() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = open_with_table(&directory).await;
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let table = store.table();
            tokio::spawn(async move {
                let item = Item::new(Key::new("claim", "once")).with("winner", n);
                table.put(TABLE, item, Some(Condition::ItemNotExists)).await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.expect("a task") {
            Ok(()) => won += 1,
            Err(Error::ConditionFailed { .. }) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(won, 1, "exactly one conditional create wins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_in_shared_groups_all_count() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    increments_all_count(open_with_table(&directory).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_all_count_with_buffered_durability() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let options = StoreOptions {
        durability: Durability::Buffered,
        ..options()
    };
    let store = EmbeddedStore::open(directory.path(), Arc::new(SystemClock), options)
        .expect("the store opens");
    store
        .table()
        .ensure_table(&TableSpec { name: TABLE.into() })
        .await
        .expect("the table");
    increments_all_count(store).await;
}

async fn increments_all_count(store: EmbeddedStore) {
    let key = Key::new("counter", "n");
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let table = store.table();
            let key = key.clone();
            tokio::spawn(async move {
                table
                    .update(TABLE, &key, Update::new().add("n", 1), None)
                    .await
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        let item = task.await.expect("a task").expect("an update");
        seen.push(item.i64("n").expect("a count"));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=500).collect::<Vec<_>>(),
        "each update saw its own count"
    );
    let stored = store.table().get(TABLE, &key).await.expect("a read");
    assert_eq!(stored.and_then(|item| item.i64("n")), Some(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_transaction_leaves_nothing_while_its_group_commits() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = open_with_table(&directory).await;
    let table = store.table();
    let mut tasks = Vec::new();
    for n in 0..50 {
        let table = table.clone();
        tasks.push(tokio::spawn(async move {
            let operations = vec![
                TransactWrite::Put {
                    table: TABLE.into(),
                    item: Item::new(Key::new("tx", format!("doomed-{n}"))),
                    condition: None,
                },
                TransactWrite::ConditionCheck {
                    table: TABLE.into(),
                    key: Key::new("tx", "absent"),
                    condition: Condition::ItemExists,
                },
            ];
            let cancelled = table.transact(operations).await;
            assert!(matches!(cancelled, Err(Error::TransactionCanceled { .. })));
            table
                .put(TABLE, Item::new(Key::new("tx", format!("kept-{n}"))), None)
                .await
                .expect("a plain put");
        }));
    }
    for task in tasks {
        task.await.expect("a task");
    }
    for n in 0..50 {
        let doomed = table
            .get(TABLE, &Key::new("tx", format!("doomed-{n}")))
            .await;
        assert_eq!(doomed.expect("a read"), None, "doomed-{n} was not written");
        let kept = table.get(TABLE, &Key::new("tx", format!("kept-{n}"))).await;
        assert!(kept.expect("a read").is_some(), "kept-{n} was written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_close_and_reopen() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    {
        let store = open_with_table(&directory).await;
        let queue = store.queue();
        queue
            .ensure_queue(&standard_queue("durable", Duration::from_secs(3600)))
            .await
            .expect("the queue");
        let table = store.table();
        let writes: Vec<_> = (0..100)
            .map(|n| {
                let table = table.clone();
                tokio::spawn(async move {
                    let item = Item::new(Key::new("p", format!("{n:03}"))).with("n", n);
                    table.put(TABLE, item, None).await
                })
            })
            .collect();
        for write in writes {
            write.await.expect("a task").expect("a put");
        }
        let messages = (0..5)
            .map(|n| OutgoingMessage::delayed(format!("m{n}"), Duration::ZERO))
            .collect();
        queue.send_batch("durable", messages).await.expect("a send");
        drop((queue, table));
        store.close();
    }
    let store = EmbeddedStore::open(directory.path(), Arc::new(SystemClock), options())
        .expect("the store reopens");
    for n in 0..100 {
        let item = store
            .table()
            .get(TABLE, &Key::new("p", format!("{n:03}")))
            .await
            .expect("a read");
        assert_eq!(item.and_then(|item| item.i64("n")), Some(n), "item {n}");
    }
    let depth = store.queue().depth("durable").await.expect("a depth");
    assert_eq!((depth.visible, depth.in_flight, depth.delayed), (5, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_counts_follow_receives_delays_and_the_clock() {
    let (_directory, clock, store) = open_with_queue("depths", Duration::from_secs(3600)).await;
    let queue = store.queue();
    let mut messages: Vec<_> = (0..2)
        .map(|n| OutgoingMessage::delayed(format!("now{n}"), Duration::ZERO))
        .collect();
    messages.extend(
        (0..3).map(|n| OutgoingMessage::delayed(format!("later{n}"), Duration::from_secs(10))),
    );
    queue.send_batch("depths", messages).await.expect("a send");
    let depth = queue.depth("depths").await.expect("a depth");
    assert_eq!((depth.visible, depth.in_flight, depth.delayed), (2, 0, 3));

    let request = ReceiveRequest {
        max_messages: 1,
        wait: Duration::ZERO,
        visibility_timeout: Some(Duration::from_secs(5)),
    };
    let received = queue.receive("depths", request).await.expect("a receive");
    assert_eq!(received.len(), 1);
    let depth = queue.depth("depths").await.expect("a depth");
    assert_eq!((depth.visible, depth.in_flight, depth.delayed), (1, 1, 3));

    clock.advance(6_000);
    let depth = queue.depth("depths").await.expect("a depth");
    assert_eq!(
        (depth.visible, depth.in_flight, depth.delayed),
        (2, 0, 3),
        "the visibility timeout ended"
    );
    clock.advance(5_000);
    let depth = queue.depth("depths").await.expect("a depth");
    assert_eq!(
        (depth.visible, depth.in_flight, depth.delayed),
        (5, 0, 0),
        "the delays ended"
    );

    let received = queue
        .receive("depths", ReceiveRequest::batch(Duration::ZERO))
        .await
        .expect("a receive");
    assert_eq!(received.len(), 5);
    let receipts = received[..2]
        .iter()
        .map(|message| message.receipt_handle.clone())
        .collect();
    queue
        .delete_batch("depths", receipts)
        .await
        .expect("a delete");
    queue
        .change_visibility("depths", &received[2].receipt_handle, Duration::ZERO)
        .await
        .expect("a visibility change");
    let depth = queue.depth("depths").await.expect("a depth");
    assert_eq!((depth.visible, depth.in_flight, depth.delayed), (1, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_drops_messages_past_retention() {
    let (directory, clock, store) = open_with_queue("retained", Duration::from_secs(60)).await;
    let queue = store.queue();
    let old = (0..4)
        .map(|n| OutgoingMessage::delayed(format!("old{n}"), Duration::ZERO))
        .collect();
    queue.send_batch("retained", old).await.expect("a send");
    clock.advance(30_000);
    let young = vec![OutgoingMessage::delayed("young".into(), Duration::ZERO)];
    queue.send_batch("retained", young).await.expect("a send");
    clock.advance(31_000);
    let swept = store.sweep_expired().await.expect("a sweep");
    assert_eq!(swept, 4);
    let depth = queue.depth("retained").await.expect("a depth");
    assert_eq!(depth.total(), 1);
    drop(queue);
    store.close();
    let store = EmbeddedStore::open(directory.path(), clock, options()).expect("the store reopens");
    let depth = store.queue().depth("retained").await.expect("a depth");
    assert_eq!(
        depth.total(),
        1,
        "the swept messages are gone from disk too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_releases_the_database_while_handles_live() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = open_with_table(&directory).await;
    let table = store.table();
    let queue = store.queue();
    table
        .put(TABLE, Item::new(Key::new("kept", "1")), None)
        .await
        .expect("a put");
    store.close();
    // fjall's directory lock is gone: the store reopens while the old handles still live.
    let reopened = EmbeddedStore::open(directory.path(), Arc::new(SystemClock), options())
        .expect("the store reopens at once");
    let item = reopened
        .table()
        .get(TABLE, &Key::new("kept", "1"))
        .await
        .expect("a read");
    assert!(item.is_some());
    let closed = table.get(TABLE, &Key::new("kept", "1")).await;
    assert!(
        matches!(closed, Err(Error::Unavailable(_))),
        "reads through the closed store's handles fail"
    );
    reopened.close();
    drop((table, queue));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_returns_one_table_in_key_order_without_expired_items() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = open_with_table(&directory).await;
    let table = store.table();
    table
        .ensure_table(&TableSpec {
            name: format!("{TABLE}-other"),
        })
        .await
        .expect("the other table");
    for (pk, sk) in [("b", "2"), ("a", "9"), ("b", "1"), ("ab", "0")] {
        table
            .put(TABLE, Item::new(Key::new(pk, sk)), None)
            .await
            .expect("put");
    }
    let expired = Item::new(Key::new("a", "0")).with(worldfleet_ports::TTL_ATTRIBUTE, 1);
    table.put(TABLE, expired, None).await.expect("put");
    table
        .put(
            &format!("{TABLE}-other"),
            Item::new(Key::new("a", "1")),
            None,
        )
        .await
        .expect("put");
    let keys: Vec<String> = table
        .scan(TABLE)
        .expect("scan")
        .iter()
        .map(|item| item.key.to_string())
        .collect();
    // Grouped by partition, sort keys in order within each.
    assert_eq!(keys, ["a/9", "b/1", "b/2", "ab/0"]);
    assert!(table.scan("no-such-table").is_err());
    drop(table);
    store.close();
}

#[tokio::test]
async fn a_store_in_use_is_refused_with_a_sentence_that_says_so() {
    let directory = tempfile::tempdir().unwrap();
    let store = open_with_table(&directory).await;
    let Err(error) = EmbeddedStore::open(directory.path(), Arc::new(SystemClock), options()) else {
        panic!("a second open of a store in use must fail");
    };
    let message = error.to_string();
    assert!(message.contains("in use by another process"), "{message}");
    assert!(message.contains("stop it first"), "{message}");
    store.close();
}

/// A boundary-durability store whose background fsync, every `flush_interval`, is out of the
/// way unless a test waits for it.
async fn open_boundary(directory: &tempfile::TempDir, flush_interval: Duration) -> EmbeddedStore {
    let options = StoreOptions {
        durability: Durability::Boundary,
        flush_interval,
        ..options()
    };
    let store = EmbeddedStore::open(directory.path(), Arc::new(SystemClock), options)
        .expect("the store opens");
    store
        .acknowledging_table()
        .ensure_table(&TableSpec { name: TABLE.into() })
        .await
        .expect("the table");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_writes_are_answered_on_commit_and_acknowledging_reads_wait_for_the_fsync() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = open_boundary(&directory, Duration::from_secs(3600)).await;
    let key = Key::new("p", "1");
    store
        .table()
        .put(TABLE, Item::new(key.clone()).with("n", 1), None)
        .await
        .expect("a put");
    let answered = store.journal_progress();
    assert!(
        answered.durable < answered.written,
        "a stage's write is answered before its fsync: {answered:?}"
    );
    let read = store
        .acknowledging_table()
        .get(TABLE, &key)
        .await
        .expect("a read");
    assert_eq!(read.and_then(|item| item.i64("n")), Some(1));
    assert!(
        store.journal_progress().durable >= answered.written,
        "an acknowledging read returns only once what it read is fsynced"
    );
    store
        .table()
        .put(TABLE, Item::new(Key::new("p", "2")), None)
        .await
        .expect("a put");
    store
        .acknowledging_table()
        .put(TABLE, Item::new(Key::new("p", "3")), None)
        .await
        .expect("an acknowledging put");
    let after = store.journal_progress();
    assert_eq!(
        after.durable, after.written,
        "an acknowledging write is answered once fsynced, with every write before it"
    );
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_writes_are_fsynced_in_the_background() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = open_boundary(&directory, Duration::from_millis(10)).await;
    store
        .table()
        .put(TABLE, Item::new(Key::new("p", "1")), None)
        .await
        .expect("a put");
    let answered = store.journal_progress();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.journal_progress().durable < answered.written {
        assert!(
            std::time::Instant::now() < deadline,
            "the background fsync never came"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_all_count_with_boundary_durability() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    increments_all_count(open_boundary(&directory, Duration::from_millis(20)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_sends_and_receives_survive_close_and_reopen() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    {
        let store = open_boundary(&directory, Duration::from_secs(3600)).await;
        let acknowledging = store.acknowledging_queue();
        acknowledging
            .ensure_queue(&standard_queue("boundary", Duration::from_secs(3600)))
            .await
            .expect("the queue");
        let messages = (0..4)
            .map(|n| OutgoingMessage::delayed(format!("m{n}"), Duration::ZERO))
            .collect();
        acknowledging
            .send_batch("boundary", messages)
            .await
            .expect("an acknowledged send");
        let queue = store.queue();
        let received = queue
            .receive(
                "boundary",
                ReceiveRequest {
                    max_messages: 1,
                    wait: Duration::ZERO,
                    visibility_timeout: None,
                },
            )
            .await
            .expect("a receive");
        assert_eq!(received.len(), 1);
        let receipts = received
            .into_iter()
            .map(|message| message.receipt_handle)
            .collect();
        queue
            .delete_batch("boundary", receipts)
            .await
            .expect("a delete");
        drop((acknowledging, queue));
        store.close();
    }
    let store = open_boundary(&directory, Duration::from_secs(3600)).await;
    let depth = store.queue().depth("boundary").await.expect("a depth");
    assert_eq!(
        depth.total(),
        3,
        "the closing fsync kept the stage's delete as well as the acknowledged sends"
    );
    store.close();
}

#[test]
fn store_sizes_come_from_the_environment_and_bad_values_name_the_variable() {
    let defaults = StoreOptions::default();
    assert_eq!(
        defaults.cache_bytes,
        worldfleet_embedded::DEFAULT_CACHE_BYTES
    );
    assert_eq!(
        defaults.memtable_bytes,
        worldfleet_embedded::DEFAULT_MEMTABLE_BYTES
    );
    let unset = StoreOptions::default()
        .with_sizes_from(|_| None)
        .expect("nothing set");
    assert_eq!(unset.cache_bytes, defaults.cache_bytes);
    assert_eq!(
        defaults.table_bytes,
        worldfleet_embedded::DEFAULT_TABLE_BYTES
    );
    assert_eq!(unset.memtable_bytes, defaults.memtable_bytes);
    assert_eq!(unset.table_bytes, defaults.table_bytes);
    let set = StoreOptions::default()
        .with_sizes_from(|name| match name {
            "WORLDFLEET_STORE_CACHE_MIB" => Some("16".into()),
            "WORLDFLEET_STORE_MEMTABLE_MIB" => Some(" 4 ".into()),
            "WORLDFLEET_STORE_TABLE_MIB" => Some("64".into()),
            _ => None,
        })
        .expect("valid sizes");
    assert_eq!(set.cache_bytes, 16 * 1024 * 1024);
    assert_eq!(set.memtable_bytes, 4 * 1024 * 1024);
    assert_eq!(set.table_bytes, 64 * 1024 * 1024);
    assert!(defaults.background_workers >= 3);
    let workers = StoreOptions::default()
        .with_sizes_from(|name| (name == "WORLDFLEET_STORE_WORKERS").then(|| "6".into()))
        .expect("a valid worker count");
    assert_eq!(workers.background_workers, 6);
    for bad in ["0", "1", "17", "two", ""] {
        let error = StoreOptions::default()
            .with_sizes_from(|name| (name == "WORLDFLEET_STORE_WORKERS").then(|| bad.into()))
            .expect_err("refused");
        assert!(error.contains("WORLDFLEET_STORE_WORKERS"), "{error}");
    }
    let directory = tempfile::tempdir().expect("a temporary directory");
    let one_worker = StoreOptions {
        background_workers: 1,
        ..options()
    };
    let refused = EmbeddedStore::open(directory.path(), Arc::new(SystemClock), one_worker)
        .err()
        .expect("one background worker is refused");
    assert!(refused.to_string().contains("at least 2"), "{refused}");
    for variable in [
        "WORLDFLEET_STORE_MEMTABLE_MIB",
        "WORLDFLEET_STORE_TABLE_MIB",
    ] {
        for bad in ["0", "257", "8MiB", ""] {
            let error = StoreOptions::default()
                .with_sizes_from(|name| (name == variable).then(|| bad.into()))
                .expect_err("refused");
            assert!(error.contains(variable), "{error}");
        }
    }
}

#[tokio::test]
async fn a_store_with_small_memtables_flushes_and_reads_back_everything() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let small = StoreOptions {
        memtable_bytes: 1024 * 1024,
        cache_bytes: 1024 * 1024,
        table_bytes: 1024 * 1024,
        ..options()
    };
    let store = EmbeddedStore::open(directory.path(), Arc::new(SystemClock), small.clone())
        .expect("the store opens");
    let table = store.table();
    table
        .ensure_table(&TableSpec { name: TABLE.into() })
        .await
        .expect("the table");
    // ~6 MiB of items: several memtables' worth at 1 MiB each.
    let value = "x".repeat(3_000);
    for index in 0..2_000 {
        let item = Item::new(Key::new("pk", format!("{index:05}"))).with("value", value.as_str());
        table.put(TABLE, item, None).await.expect("put");
    }
    store.close();
    let store = EmbeddedStore::open(directory.path(), Arc::new(SystemClock), small)
        .expect("the store reopens");
    let table = store.table();
    for index in [0, 999, 1_999] {
        let found = table
            .get(TABLE, &Key::new("pk", format!("{index:05}")))
            .await
            .expect("get")
            .expect("the item survived");
        assert_eq!(found.str("value"), Some(value.as_str()));
    }
    store.close();
}
