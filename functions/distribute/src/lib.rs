//! distribute: publish canon once, fan it out to feeds by configured rules.
//!
//! Feeds are partitions of the feeds table with gap-tolerant, duplicate-free, monotonically
//! increasing sequence numbers. Each batch becomes one *plan*: for every target feed, one
//! sequence range (allocated by a single atomic add) and one page item holding the batch's
//! entries for that feed. The plan and every event's pointer to it are written in one
//! transaction that fails if any event already has a plan, so an event is planned exactly once;
//! pages are then written by deterministic key, so replaying a plan after a crash rewrites the
//! same pages instead of adding new ones. Readers keep their own checkpoints (`worldfleet_tables::feed`).

pub mod error;
pub mod handler;
pub mod plan;
pub mod rules;

pub use error::{DistributeError, Result};
pub use handler::Distribute;
pub use rules::RepublishRules;
