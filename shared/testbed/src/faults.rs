//! Fault injection: crashes between side effects, duplicate deliveries, expired visibility.
//!
//! [`FaultyTable`] and [`FaultyQueue`] wrap real adapters. A *crash before* a write fails it
//! without applying it; a *crash after* a write applies it and then fails, which is what a
//! process dying between two side effects looks like to the work that follows. The poller asks
//! the plan whether to *lose a delete* (work done, message redelivered: a duplicate delivery)
//! or to *outlive the visibility timeout* (the message is handed to a second worker while the
//! first still works on it). All decisions come from one seeded generator.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use worldfleet_ports::{
    BatchWrite, Condition, DeleteOutcome, Error, Item, Key, OutgoingMessage, Query, QueryPage,
    Queue, QueueDepth, QueueSpec, ReceiveRequest, ReceivedMessage, Result, SendOutcome, Table,
    TableSpec, TransactWrite, Update,
};

/// Probabilities of each fault, per opportunity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaultRates {
    /// A table write or queue send fails without being applied.
    pub crash_before_write: f64,
    /// A table write or queue send is applied, then reported failed.
    pub crash_after_write: f64,
    /// A processed batch is not deleted (it is delivered again).
    pub lose_delete: f64,
    /// A batch is handled only after its visibility timeout expired.
    pub outlive_visibility: f64,
}

/// How many faults of each kind were injected.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FaultCounts {
    pub crashes_before_write: u64,
    pub crashes_after_write: u64,
    pub lost_deletes: u64,
    pub outlived_visibility: u64,
}

/// A seeded source of fault decisions.
pub struct FaultPlan {
    rates: FaultRates,
    random: Mutex<ChaCha8Rng>,
    crashes_before_write: AtomicU64,
    crashes_after_write: AtomicU64,
    lost_deletes: AtomicU64,
    outlived_visibility: AtomicU64,
}

impl FaultPlan {
    /// A plan with `rates`, reproducible from `seed`.
    pub fn new(rates: FaultRates, seed: u64) -> Self {
        Self {
            rates,
            random: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            crashes_before_write: AtomicU64::new(0),
            crashes_after_write: AtomicU64::new(0),
            lost_deletes: AtomicU64::new(0),
            outlived_visibility: AtomicU64::new(0),
        }
    }

    fn roll(&self, probability: f64, counter: &AtomicU64) -> bool {
        if probability <= 0.0 {
            return false;
        }
        let hit = self
            .random
            .lock()
            .map(|mut random| random.random_bool(probability.min(1.0)))
            .unwrap_or(false);
        if hit {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    fn crash_before_write(&self) -> bool {
        self.roll(self.rates.crash_before_write, &self.crashes_before_write)
    }

    fn crash_after_write(&self) -> bool {
        self.roll(self.rates.crash_after_write, &self.crashes_after_write)
    }

    /// Should the poller skip deleting a processed batch?
    pub fn lose_delete(&self) -> bool {
        self.roll(self.rates.lose_delete, &self.lost_deletes)
    }

    /// Should the poller wait out the visibility timeout before handling a batch?
    pub fn outlive_visibility(&self) -> bool {
        self.roll(self.rates.outlive_visibility, &self.outlived_visibility)
    }

    /// Faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            crashes_before_write: self.crashes_before_write.load(Ordering::Relaxed),
            crashes_after_write: self.crashes_after_write.load(Ordering::Relaxed),
            lost_deletes: self.lost_deletes.load(Ordering::Relaxed),
            outlived_visibility: self.outlived_visibility.load(Ordering::Relaxed),
        }
    }

    /// Wraps a write: maybe fail before it, run it, maybe fail after it.
    async fn write<T, F>(&self, operation: &str, write: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        if self.crash_before_write() {
            return Err(Error::Unavailable(format!(
                "injected crash before {operation}"
            )));
        }
        let value = write.await?;
        if self.crash_after_write() {
            return Err(Error::Unavailable(format!(
                "injected crash after {operation}"
            )));
        }
        Ok(value)
    }
}

/// A table whose writes crash now and then.
pub struct FaultyTable {
    inner: Arc<dyn Table>,
    plan: Arc<FaultPlan>,
}

impl FaultyTable {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Table>, plan: Arc<FaultPlan>) -> Self {
        Self { inner, plan }
    }
}

#[async_trait]
impl Table for FaultyTable {
    async fn ensure_table(&self, spec: &TableSpec) -> Result<()> {
        self.inner.ensure_table(spec).await
    }
    async fn get(&self, table: &str, key: &Key) -> Result<Option<Item>> {
        self.inner.get(table, key).await
    }
    async fn batch_get(&self, table: &str, keys: &[Key]) -> Result<Vec<Item>> {
        self.inner.batch_get(table, keys).await
    }
    async fn put(&self, table: &str, item: Item, condition: Option<Condition>) -> Result<()> {
        self.plan
            .write("put", self.inner.put(table, item, condition))
            .await
    }
    async fn update(
        &self,
        table: &str,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item> {
        self.plan
            .write("update", self.inner.update(table, key, update, condition))
            .await
    }
    async fn delete(
        &self,
        table: &str,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>> {
        self.plan
            .write("delete", self.inner.delete(table, key, condition))
            .await
    }
    async fn query(&self, table: &str, query: &Query) -> Result<QueryPage> {
        self.inner.query(table, query).await
    }
    async fn batch_write(&self, table: &str, writes: Vec<BatchWrite>) -> Result<()> {
        self.plan
            .write("batch write", self.inner.batch_write(table, writes))
            .await
    }
    async fn transact(&self, operations: Vec<TransactWrite>) -> Result<()> {
        self.plan
            .write("transaction", self.inner.transact(operations))
            .await
    }
}

/// A queue whose sends crash now and then.
pub struct FaultyQueue {
    inner: Arc<dyn Queue>,
    plan: Arc<FaultPlan>,
}

impl FaultyQueue {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Queue>, plan: Arc<FaultPlan>) -> Self {
        Self { inner, plan }
    }
}

#[async_trait]
impl Queue for FaultyQueue {
    async fn ensure_queue(&self, spec: &QueueSpec) -> Result<()> {
        self.inner.ensure_queue(spec).await
    }
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<SendOutcome>> {
        self.plan
            .write("send", self.inner.send_batch(queue, messages))
            .await
    }
    async fn receive(&self, queue: &str, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>> {
        self.inner.receive(queue, request).await
    }
    async fn delete_batch(
        &self,
        queue: &str,
        receipt_handles: Vec<String>,
    ) -> Result<Vec<DeleteOutcome>> {
        self.inner.delete_batch(queue, receipt_handles).await
    }
    async fn change_visibility(
        &self,
        queue: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<()> {
        self.inner
            .change_visibility(queue, receipt_handle, timeout)
            .await
    }
    async fn depth(&self, queue: &str) -> Result<QueueDepth> {
        self.inner.depth(queue).await
    }
}
