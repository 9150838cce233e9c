//! Measures the embedded store's write and queue throughput with fsync durability.
//!
//! `cargo run --release -p worldfleet-embedded --example store_bench [-- WRITES [PHASE]]`
//!
//! PHASE is `1`, `100`, `1000` or `queue` to run one phase only (to time it with
//! `/usr/bin/time`); `STORE_BENCH_BUFFERED=1` acknowledges without fsync, which leaves the
//! store's own CPU cost as the limit.
//!
//! Table phase: `C` concurrent callers (C = 1, 100, 1000) each put 300-byte items under
//! feed-shaped keys; the writer groups their writes, so C bounds the writes per commit. Queue
//! phase: 16 producers send batches of 10 to a FIFO queue while 16 consumers receive up to 10,
//! delete them and call `depth` as the runtime does; the figure is messages through per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use worldfleet_embedded::{Durability, EmbeddedStore, StoreOptions};
use worldfleet_ports::{
    Item, Key, OutgoingMessage, Queue, QueueSpec, ReceiveRequest, SystemClock, Table, TableSpec,
};

const TABLE: &str = "bench-items";
const QUEUE: &str = "bench-queue.fifo";

fn open(directory: &tempfile::TempDir) -> EmbeddedStore {
    let durability = if std::env::var_os("STORE_BENCH_BUFFERED").is_some() {
        Durability::Buffered
    } else {
        Durability::Sync
    };
    let options = StoreOptions {
        durability,
        ..StoreOptions::default()
    };
    EmbeddedStore::open(directory.path(), Arc::new(SystemClock), options).expect("the store opens")
}

async fn table_phase(callers: usize, writes: usize) -> f64 {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = open(&directory);
    let table = store.table();
    table
        .ensure_table(&TableSpec { name: TABLE.into() })
        .await
        .expect("the table");
    let value = "x".repeat(300);
    let per_caller = writes.div_ceil(callers);
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let table = table.clone();
            let value = value.clone();
            tokio::spawn(async move {
                for n in 0..per_caller {
                    let item = Item::new(Key::new(
                        format!("player#{caller:06}"),
                        format!("feed#{n:012}"),
                    ))
                    .with("body", value.as_str());
                    table.put(TABLE, item, None).await.expect("a put");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a writer task");
    }
    let rate = (per_caller * callers) as f64 / started.elapsed().as_secs_f64();
    drop(table);
    store.close();
    rate
}

async fn queue_phase(messages: usize) -> f64 {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = open(&directory);
    let queue = store.queue();
    queue
        .ensure_queue(&QueueSpec {
            name: QUEUE.into(),
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 0,
            dead_letter_queue: None,
            retention: Duration::from_secs(86_400),
        })
        .await
        .expect("the queue");
    let producers = 16;
    let consumers = 16;
    let per_producer = messages / producers / 10;
    let total = per_producer * producers * 10;
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for producer in 0..producers {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..per_producer {
                let messages = (0..10)
                    .map(|n| {
                        OutgoingMessage::fifo(
                            "y".repeat(200),
                            &format!("g{}", (producer * 7 + n) % 64),
                            &format!("{producer}-{batch}-{n}"),
                        )
                    })
                    .collect();
                queue.send_batch(QUEUE, messages).await.expect("a send");
            }
        }));
    }
    for _ in 0..consumers {
        let queue = queue.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let request = ReceiveRequest::batch(Duration::from_millis(50));
            while done.load(std::sync::atomic::Ordering::Relaxed) < total {
                let received = queue.receive(QUEUE, request).await.expect("a receive");
                if received.is_empty() {
                    continue;
                }
                let receipts = received
                    .iter()
                    .map(|message| message.receipt_handle.clone())
                    .collect();
                queue.delete_batch(QUEUE, receipts).await.expect("a delete");
                queue.depth(QUEUE).await.expect("a depth");
                done.fetch_add(received.len(), std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("a queue task");
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    drop(queue);
    store.close();
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let writes: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(20_000);
    let phase = std::env::args().nth(2);
    let runs = |name: &str| phase.as_deref().is_none_or(|phase| phase == name);
    for callers in [1, 100, 1000] {
        if !runs(&callers.to_string()) {
            continue;
        }
        // One caller waits for each commit: fewer writes keep the run short.
        let writes = if callers == 1 { writes / 10 } else { writes };
        let rate = table_phase(callers, writes).await;
        println!("table put, {callers:>4} concurrent callers: {rate:>9.0} writes/s");
    }
    if !runs("queue") {
        return;
    }
    let rate = queue_phase(writes).await;
    println!("queue send+receive+delete (FIFO, 16+16 tasks): {rate:>9.0} msgs/s");
}
