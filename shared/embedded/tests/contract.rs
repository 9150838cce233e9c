//! The port contract suites, run against the embedded queue and table.

use std::sync::Arc;

use worldfleet_contract::{queue_contract, table_contract, unique_namespace};
use worldfleet_embedded::{EmbeddedStore, StoreOptions};
use worldfleet_ports::SystemClock;

fn open(directory: &tempfile::TempDir) -> EmbeddedStore {
    EmbeddedStore::open(
        directory.path(),
        Arc::new(SystemClock),
        StoreOptions::default(),
    )
    .expect("the store opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_queue_meets_the_queue_contract() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = open(&directory);
    queue_contract(store.queue(), &unique_namespace("embedded")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_table_meets_the_table_contract() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = open(&directory);
    table_contract(store.table(), &unique_namespace("embedded")).await;
}
