//! Push delivery inside one process: distribute's page writes wake the feed's subscribers.
//!
//! When `worldfleet serve` runs the stages embedded, distribute and the server share one table
//! port. [`NotifyingTable`] wraps that port: after every successful write of a feed page (table
//! `feeds`, sort key `page#…`) it raises the feed's signal in [`FeedSignals`], and every
//! subscriber of the feed (SSE stream or WebSocket) reads at once instead of waiting for its
//! next poll. A signal is a version number in a `watch` channel, so a write that lands while a
//! subscriber is busy reading is not lost: the subscriber sees the version moved and reads
//! again. Polling stays underneath as the fallback (and is all there is over DynamoDB, where
//! distribute runs in another process).
//!
//! Observed through [`NotifyingTable::observed_by`], the same wrapper feeds `/metrics` what only
//! the stages' writes show: every published entry's intake → feed latency (from the page's
//! `accepted_at_ms` to the write) and every refusal intake records, by reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;
use worldfleet_domain::names::{FEEDS_TABLE, REJECTIONS_TABLE};
use worldfleet_ports::{
    BatchWrite, Clock, Condition, Item, Key, Query, QueryPage, Result, Table, TableSpec,
    TransactWrite, Update,
};
use worldfleet_tables::plan::{PAGE_PREFIX, page_from_item};

use crate::Metrics;

/// Listens kept per feed before the map is swept of feeds nobody follows any more.
const SWEEP_EVERY: usize = 4096;

/// One wake-up signal per followed feed.
#[derive(Default)]
pub struct FeedSignals {
    inner: Mutex<Signals>,
}

#[derive(Default)]
struct Signals {
    by_feed: HashMap<String, watch::Sender<u64>>,
    listens: usize,
}

impl FeedSignals {
    /// A receiver that changes whenever a page of `feed` is written from now on.
    pub fn listen(&self, feed: &str) -> watch::Receiver<u64> {
        let mut signals = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        signals.listens += 1;
        if signals.listens.is_multiple_of(SWEEP_EVERY) {
            signals
                .by_feed
                .retain(|_, sender| sender.receiver_count() > 0);
        }
        signals
            .by_feed
            .entry(feed.to_owned())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    /// Wakes `feed`'s listeners, if it has any.
    pub fn signal(&self, feed: &str) {
        let mut signals = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let Some(sender) = signals.by_feed.get(feed) else {
            return;
        };
        if sender.receiver_count() == 0 {
            signals.by_feed.remove(feed);
            return;
        }
        sender.send_modify(|version| *version = version.wrapping_add(1));
    }

    /// Feeds with a live listener (for tests and metrics).
    pub fn followed(&self) -> usize {
        let signals = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        signals
            .by_feed
            .values()
            .filter(|sender| sender.receiver_count() > 0)
            .count()
    }
}

/// A table port that signals feed subscribers after distribute writes a page.
pub struct NotifyingTable {
    inner: Arc<dyn Table>,
    signals: Arc<FeedSignals>,
    observer: Option<(Arc<Metrics>, Arc<dyn Clock>)>,
}

impl NotifyingTable {
    /// Wraps `inner`; page writes raise signals in `signals`.
    pub fn new(inner: Arc<dyn Table>, signals: Arc<FeedSignals>) -> Self {
        Self {
            inner,
            signals,
            observer: None,
        }
    }

    /// Also counts into `metrics`: each published entry's latency since intake accepted it
    /// (measured on `clock`) and each refusal intake records.
    pub fn observed_by(mut self, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Self {
        self.observer = Some((metrics, clock));
        self
    }

    fn is_page(table: &str, key: &Key) -> bool {
        table == FEEDS_TABLE && key.sk.starts_with(PAGE_PREFIX)
    }

    fn written(&self, table: &str, key: &Key) {
        if Self::is_page(table, key) {
            self.signals.signal(&key.pk);
        }
    }

    /// When intake accepted each entry of `item`, if it is a feed page and this table observes.
    fn accepted_times(&self, table: &str, item: &Item) -> Vec<u64> {
        if self.observer.is_none() || !Self::is_page(table, &item.key) {
            return Vec::new();
        }
        page_from_item(item).map_or_else(
            |_| Vec::new(),
            |page| {
                page.entries
                    .iter()
                    .map(|entry| entry.accepted_at_ms)
                    .collect()
            },
        )
    }

    /// Records the latency of entries whose page has just been written.
    fn published(&self, accepted: &[u64]) {
        if let Some((metrics, clock)) = &self.observer {
            let now_ms = clock.now_ms();
            for accepted_at_ms in accepted {
                metrics.entry_published(now_ms.saturating_sub(*accepted_at_ms));
            }
        }
    }

    /// Counts a refusal row intake just wrote (the row as it is now names the reason).
    fn observe_rejection(&self, table: &str, row: &Item) {
        if let (Some((metrics, _)), true) = (&self.observer, table == REJECTIONS_TABLE)
            && let Some(reason) = row.str("reason")
        {
            metrics.rejection_recorded(reason);
        }
    }
}

#[async_trait]
impl Table for NotifyingTable {
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
        let key = item.key.clone();
        let accepted = self.accepted_times(table, &item);
        self.inner.put(table, item, condition).await?;
        self.written(table, &key);
        self.published(&accepted);
        Ok(())
    }

    async fn update(
        &self,
        table: &str,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item> {
        let item = self.inner.update(table, key, update, condition).await?;
        self.written(table, key);
        self.observe_rejection(table, &item);
        Ok(item)
    }

    async fn delete(
        &self,
        table: &str,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>> {
        self.inner.delete(table, key, condition).await
    }

    async fn query(&self, table: &str, query: &Query) -> Result<QueryPage> {
        self.inner.query(table, query).await
    }

    async fn batch_write(&self, table: &str, writes: Vec<BatchWrite>) -> Result<()> {
        let mut accepted = Vec::new();
        let keys: Vec<Key> = writes
            .iter()
            .filter_map(|write| match write {
                BatchWrite::Put(item) => {
                    accepted.extend(self.accepted_times(table, item));
                    Some(item.key.clone())
                }
                BatchWrite::Delete(_) => None,
            })
            .collect();
        self.inner.batch_write(table, writes).await?;
        for key in &keys {
            self.written(table, key);
        }
        self.published(&accepted);
        Ok(())
    }

    async fn transact(&self, operations: Vec<TransactWrite>) -> Result<()> {
        let mut accepted = Vec::new();
        let written: Vec<(String, Key)> = operations
            .iter()
            .filter_map(|operation| match operation {
                TransactWrite::Put { table, item, .. } => {
                    accepted.extend(self.accepted_times(table, item));
                    Some((table.clone(), item.key.clone()))
                }
                TransactWrite::Update { table, key, .. } => Some((table.clone(), key.clone())),
                _ => None,
            })
            .collect();
        self.inner.transact(operations).await?;
        for (table, key) in &written {
            self.written(table, key);
        }
        self.published(&accepted);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_is_seen_by_every_listener_and_never_lost_between_reads() {
        let signals = FeedSignals::default();
        let mut first = signals.listen("player:p-1");
        let mut second = signals.listen("player:p-1");
        let mut other = signals.listen("player:p-2");
        // Raised while nobody waits: still seen by the next wait.
        signals.signal("player:p-1");
        tokio::time::timeout(std::time::Duration::from_secs(1), first.changed())
            .await
            .expect("first woke")
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), second.changed())
            .await
            .expect("second woke")
            .unwrap();
        assert!(!other.has_changed().unwrap());
        assert_eq!(signals.followed(), 2);
        drop((first, second));
        signals.signal("player:p-1");
        assert_eq!(signals.followed(), 1);
        other.mark_unchanged();
    }
}
