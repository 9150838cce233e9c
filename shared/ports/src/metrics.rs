//! Request and capacity-unit counters every adapter keeps, so cost levers are measured.
//!
//! Units follow DynamoDB on-demand accounting: a write unit per started KB written (twice that
//! inside a transaction), a read unit per started 4 KB read with strong consistency (half with
//! eventual consistency, counted here as strong). SQS counts requests; a batch is one request.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Lock-free counters shared by an adapter's clones.
#[derive(Debug, Default)]
pub struct OperationCounters {
    queue_requests: AtomicU64,
    queue_messages_sent: AtomicU64,
    queue_messages_received: AtomicU64,
    queue_messages_deleted: AtomicU64,
    table_requests: AtomicU64,
    table_write_units: AtomicU64,
    table_read_units: AtomicU64,
    table_items_written: AtomicU64,
    table_items_read: AtomicU64,
}

/// A point-in-time copy of [`OperationCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsageSnapshot {
    pub queue_requests: u64,
    pub queue_messages_sent: u64,
    pub queue_messages_received: u64,
    pub queue_messages_deleted: u64,
    pub table_requests: u64,
    pub table_write_units: u64,
    pub table_read_units: u64,
    pub table_items_written: u64,
    pub table_items_read: u64,
}

impl UsageSnapshot {
    /// The usage between `earlier` and `self`.
    pub fn since(&self, earlier: &UsageSnapshot) -> UsageSnapshot {
        UsageSnapshot {
            queue_requests: self.queue_requests - earlier.queue_requests,
            queue_messages_sent: self.queue_messages_sent - earlier.queue_messages_sent,
            queue_messages_received: self.queue_messages_received - earlier.queue_messages_received,
            queue_messages_deleted: self.queue_messages_deleted - earlier.queue_messages_deleted,
            table_requests: self.table_requests - earlier.table_requests,
            table_write_units: self.table_write_units - earlier.table_write_units,
            table_read_units: self.table_read_units - earlier.table_read_units,
            table_items_written: self.table_items_written - earlier.table_items_written,
            table_items_read: self.table_items_read - earlier.table_items_read,
        }
    }
}

/// Write units for an item of `bytes` (1 per started KB).
pub fn write_units(bytes: usize) -> u64 {
    (bytes.max(1) as u64).div_ceil(1024)
}

/// Read units for `bytes` read strongly consistently (1 per started 4 KB).
pub fn read_units(bytes: usize) -> u64 {
    (bytes.max(1) as u64).div_ceil(4096)
}

impl OperationCounters {
    /// One queue API request.
    pub fn queue_request(&self) {
        self.queue_requests.fetch_add(1, Ordering::Relaxed);
    }
    /// Messages accepted by a send.
    pub fn messages_sent(&self, count: usize) {
        self.queue_messages_sent
            .fetch_add(count as u64, Ordering::Relaxed);
    }
    /// Messages handed out by a receive.
    pub fn messages_received(&self, count: usize) {
        self.queue_messages_received
            .fetch_add(count as u64, Ordering::Relaxed);
    }
    /// Messages removed by a delete.
    pub fn messages_deleted(&self, count: usize) {
        self.queue_messages_deleted
            .fetch_add(count as u64, Ordering::Relaxed);
    }
    /// One table API request.
    pub fn table_request(&self) {
        self.table_requests.fetch_add(1, Ordering::Relaxed);
    }
    /// An item of `bytes` written (`transactional` doubles the units, as DynamoDB does).
    pub fn item_written(&self, bytes: usize, transactional: bool) {
        let units = write_units(bytes) * if transactional { 2 } else { 1 };
        self.table_write_units.fetch_add(units, Ordering::Relaxed);
        self.table_items_written.fetch_add(1, Ordering::Relaxed);
    }
    /// An item of `bytes` read.
    pub fn item_read(&self, bytes: usize) {
        self.table_read_units
            .fetch_add(read_units(bytes), Ordering::Relaxed);
        self.table_items_read.fetch_add(1, Ordering::Relaxed);
    }
    /// Read units consumed by a query over `bytes` in total.
    pub fn query_read(&self, bytes: usize, items: usize) {
        self.table_read_units
            .fetch_add(read_units(bytes), Ordering::Relaxed);
        self.table_items_read
            .fetch_add(items as u64, Ordering::Relaxed);
    }

    /// A copy of the counters now.
    pub fn snapshot(&self) -> UsageSnapshot {
        UsageSnapshot {
            queue_requests: self.queue_requests.load(Ordering::Relaxed),
            queue_messages_sent: self.queue_messages_sent.load(Ordering::Relaxed),
            queue_messages_received: self.queue_messages_received.load(Ordering::Relaxed),
            queue_messages_deleted: self.queue_messages_deleted.load(Ordering::Relaxed),
            table_requests: self.table_requests.load(Ordering::Relaxed),
            table_write_units: self.table_write_units.load(Ordering::Relaxed),
            table_read_units: self.table_read_units.load(Ordering::Relaxed),
            table_items_written: self.table_items_written.load(Ordering::Relaxed),
            table_items_read: self.table_items_read.load(Ordering::Relaxed),
        }
    }
}
