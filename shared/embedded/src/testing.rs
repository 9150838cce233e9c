//! A store in a temporary directory for tests (feature `testing`): the set-up every test crate
//! that drives stages over the embedded store needs, written once.
//!
//! Declaring a stage's queues and tables is not here: that is port-level work and lives in
//! `worldfleet_kit::testing::declare`, which works over any adapter.

use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use worldfleet_ports::{Clock, ManualClock, Queue, Table};

use crate::{EmbeddedStore, StoreOptions};

/// An open [`EmbeddedStore`] in a directory that is removed when this is dropped.
///
/// The fields drop in order: the store closes before its directory goes.
pub struct TempStore {
    pub store: EmbeddedStore,
    /// The clock the store runs on.
    pub clock: Arc<dyn Clock>,
    pub dir: TempDir,
}

impl TempStore {
    /// The options a test store opens with: no janitor thread (nothing expires behind the
    /// test's back; call [`EmbeddedStore::sweep_expired`] to expire), and a waiting receive
    /// that notices a moved clock within 10 ms.
    pub fn options() -> StoreOptions {
        StoreOptions {
            janitor_interval: None,
            receive_recheck: Duration::from_millis(10),
            ..StoreOptions::default()
        }
    }

    /// Opens a store in a fresh temporary directory on `clock`, with [`TempStore::options`].
    /// Panics when the directory or the store cannot be made: it is for tests only.
    pub fn open(clock: Arc<dyn Clock>) -> TempStore {
        let dir = tempfile::tempdir().expect("a temporary directory for the store");
        let store = EmbeddedStore::open(dir.path(), Arc::clone(&clock), Self::options())
            .expect("the test store opens");
        TempStore { store, clock, dir }
    }

    /// Opens a store (as [`TempStore::open`]) on a manual clock that starts at `start_ms`;
    /// the clock comes back too, for the test to move (clones share one time).
    pub fn manual(start_ms: u64) -> (TempStore, ManualClock) {
        let clock = ManualClock::new(start_ms);
        (TempStore::open(Arc::new(clock.clone())), clock)
    }

    /// The store's queue, as the port.
    pub fn queue(&self) -> Arc<dyn Queue> {
        self.store.queue()
    }

    /// The store's table, as the port.
    pub fn table(&self) -> Arc<dyn Table> {
        self.store.table()
    }
}
