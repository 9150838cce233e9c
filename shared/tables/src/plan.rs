//! Feed pages and publication plans: how distribute's rows are laid out.
//!
//! A page holds consecutive entries of one feed under `pk = feed`, `sk = page#<last seq>`
//! (zero-padded, so pages sort by sequence), with `first_seq`, `last_seq`, the `entries` as
//! JSON and `written_at_ms`. The feed's sequence counter is the `counter` row of its partition.
//! A plan record (`pk = plan#<id>`, `sk = plan`) says which events one batch covered and, per
//! feed, the first sequence number of its range; prune reads it to find the batch's bookkeeping.

use serde::{Deserialize, Serialize};
use worldfleet_domain::FeedPage;
use worldfleet_ports::{Item, Key, TTL_ATTRIBUTE};

use crate::error::{Error, Result};

/// How long a plan record is kept after it is written (retries come within minutes).
pub const PLAN_LIFETIME_SECS: u64 = 7 * 24 * 3600;

/// One feed's share of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPage {
    pub feed: String,
    pub first_seq: u64,
    /// Event ids in sequence order: entry `i` gets `first_seq + i`.
    pub event_ids: Vec<String>,
}

/// A batch's publication plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    /// `(partition, event id)` of every event covered, in batch order.
    pub events: Vec<(String, String)>,
    pub pages: Vec<PlannedPage>,
    /// Players whose memory count passed the cap when the plan was made: publishing the plan
    /// asks prune to look at each (absent in records written before the count moved here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub over_budget: Vec<String>,
}

/// The sort-key prefix of feed pages.
pub const PAGE_PREFIX: &str = "page#";

/// The sort key of the page whose last sequence number is `last_seq`.
pub fn page_sort_key(last_seq: u64) -> String {
    format!("{PAGE_PREFIX}{last_seq:020}")
}

/// The counter row's attribute: the last sequence number the feed has allocated (atomic `ADD`).
pub const COUNTER_NEXT: &str = "next";
/// The counter attribute set once the feed is in prune's feed index.
pub const COUNTER_INDEXED: &str = "indexed";

/// The key of a feed's sequence counter.
pub fn counter_key(feed: &str) -> Key {
    Key::new(feed, "counter")
}

/// The key of a plan record.
pub fn plan_key(plan_id: &str) -> Key {
    Key::new(format!("plan#{plan_id}"), "plan")
}

/// Encodes a page as its item.
pub fn page_item(feed: &str, page: &FeedPage, now_ms: u64) -> Result<Item> {
    let entries = serde_json::to_string(&page.entries).map_err(|error| Error::Corrupt {
        what: format!("page of {feed}"),
        reason: error.to_string(),
    })?;
    Ok(Item::new(Key::new(feed, page_sort_key(page.last_seq())))
        .with("first_seq", page.first_seq as i64)
        .with("last_seq", page.last_seq() as i64)
        .with("entries", entries)
        .with("written_at_ms", now_ms as i64)
        .with(
            TTL_ATTRIBUTE,
            (now_ms / 1000
                + crate::feed::FEED_HARD_RETENTION.as_secs()
                + crate::feed::PAGE_TTL_GRACE.as_secs()) as i64,
        ))
}

/// Decodes a page item.
pub fn page_from_item(item: &Item) -> Result<FeedPage> {
    let corrupt = |reason: String| Error::Corrupt {
        what: format!("page {}", item.key),
        reason,
    };
    let first_seq = item
        .i64("first_seq")
        .ok_or_else(|| corrupt("no first_seq".into()))? as u64;
    let entries = serde_json::from_str(item.str("entries").unwrap_or("[]"))
        .map_err(|error| corrupt(error.to_string()))?;
    Ok(FeedPage { first_seq, entries })
}

/// Encodes a plan as its record.
pub fn plan_item(plan: &Plan, now_ms: u64) -> Result<Item> {
    let json = serde_json::to_string(plan).map_err(|error| Error::Corrupt {
        what: format!("plan {}", plan.id),
        reason: error.to_string(),
    })?;
    Ok(Item::new(plan_key(&plan.id))
        .with("plan", json)
        .with("completed", false)
        .with(TTL_ATTRIBUTE, (now_ms / 1000 + PLAN_LIFETIME_SECS) as i64))
}

/// Decodes a plan record.
pub fn plan_from_item(item: &Item) -> Result<Plan> {
    serde_json::from_str(item.str("plan").unwrap_or_default()).map_err(|error| Error::Corrupt {
        what: format!("plan record {}", item.key),
        reason: error.to_string(),
    })
}
