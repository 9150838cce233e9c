//! The port contract suites, run against the embedded queue and table.

use std::sync::Arc;

use worldfleet_contract::{queue_contract, table_contract, unique_namespace};
use worldfleet_embedded::{Durability, EmbeddedStore, StoreOptions};
use worldfleet_ports::SystemClock;

fn open(directory: &tempfile::TempDir) -> EmbeddedStore {
    EmbeddedStore::open(
        directory.path(),
        Arc::new(SystemClock),
        StoreOptions::default(),
    )
    .expect("the store opens")
}

/// A store that fsyncs only what its acknowledging handles write or read.
fn open_boundary(directory: &tempfile::TempDir) -> EmbeddedStore {
    let options = StoreOptions {
        durability: Durability::Boundary,
        ..StoreOptions::default()
    };
    EmbeddedStore::open(directory.path(), Arc::new(SystemClock), options).expect("the store opens")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_queue_meets_the_queue_contract() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = open_boundary(&directory);
    queue_contract(store.queue(), &unique_namespace("boundary")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_acknowledging_table_meets_the_table_contract() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = open_boundary(&directory);
    table_contract(store.acknowledging_table(), &unique_namespace("boundary")).await;
}
