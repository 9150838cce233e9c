//! worldfleet's domain model: the vocabulary every stage speaks.
//!
//! Nothing here does I/O. Partition UIDs ([`uid`]), the signed gateway envelope ([`envelope`]),
//! the messages stages pass to each other ([`messages`]), canon and feed entries ([`feed`]) and
//! the logical names of queues and tables ([`names`]) are plain data with validation.

pub mod envelope;
pub mod error;
pub mod feed;
pub mod json;
pub mod messages;
pub mod names;
pub mod prune;
pub mod uid;

pub use envelope::{
    BreedPayload, CapturePayload, Envelope, EventKind, EventPayload, MAX_ENVELOPE_BYTES,
    TradePayload, TradeSide,
};
pub use error::{DomainError, Result};
pub use feed::{FeedEntry, FeedId, FeedPage};
pub use messages::{
    AcceptedEvent, CanonEntry, Classification, ComposeRequest, DistributeRequest, Intent,
    RejectReason, Tier,
};
pub use prune::PruneRequest;
pub use uid::PartitionUid;
