//! Ports: the small traits through which stages reach queues, tables and time.
//!
//! A stage never names an AWS type. The embedded adapters (`worldfleet-embedded`) and the AWS
//! adapters (`worldfleet-aws`) implement these traits with the same observable semantics, which
//! the contract suites in `worldfleet-contract` check against every adapter.

pub mod clock;
pub mod error;
pub mod metrics;
pub mod queue;
pub mod table;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use metrics::{OperationCounters, UsageSnapshot};
pub use queue::{
    DeleteOutcome, OutgoingMessage, Queue, QueueDepth, QueueSpec, ReceiveRequest, ReceivedMessage,
    SendOutcome,
};
pub use table::{
    Attributes, BatchWrite, Comparison, Condition, Item, Key, Query, QueryPage, SortKeyRange,
    TTL_ATTRIBUTE, Table, TableSpec, TransactWrite, Update, Value, query_all,
};
