//! worldfleet's embedded store: the default runtime's durable queue and table.
//!
//! [`EmbeddedStore`] opens one fjall database and starts one group-commit writer thread;
//! [`EmbeddedQueue`] (SQS semantics) and [`EmbeddedTable`] (DynamoDB semantics) share both, so
//! the writes of every concurrent stage worker coalesce into few fsyncs. With
//! [`Durability::Boundary`] only the store's acknowledging handles (what answers the outside
//! world) wait for a fsync; the stages' writes are answered on commit, because fjall's single
//! ordered journal loses at most a suffix in a crash (see the crate README). Conditional and atomic
//! writes run on the writer thread, which makes check-and-set race-free; plain reads go to
//! fjall directly from the caller's thread. Time (visibility, delays, deduplication windows,
//! TTL) comes from the `Clock` port, so tests can drive it with a `ManualClock`.
//!
//! Both adapters pass the contract suites of `worldfleet-contract`, the same ones the
//! SQS/DynamoDB adapters run against. With the `testing` feature, [`testing::TempStore`] opens
//! one in a temporary directory for other crates' tests.

mod census;
// Public only for the fuzz targets (`worldfleet-fuzz`), through the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
pub mod codec;
#[cfg(not(feature = "fuzzing"))]
mod codec;
mod queue;
mod store;
mod table;
#[cfg(feature = "testing")]
pub mod testing;
mod writer;

pub use census::{StoreCensus, TableCensus, Tally};
pub use queue::EmbeddedQueue;
pub use store::{
    CACHE_MIB_VARIABLE, DEFAULT_CACHE_BYTES, DEFAULT_MEMTABLE_BYTES, DEFAULT_TABLE_BYTES,
    EmbeddedStore, MEMTABLE_MIB_VARIABLE, StoreGauge, StoreMemory, StoreOptions,
    TABLE_MIB_VARIABLE, WORKERS_VARIABLE, default_background_workers,
};
pub use table::EmbeddedTable;
pub use writer::{Durability, JournalProgress};
