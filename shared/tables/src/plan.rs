//! Feed pages and publication plans: how distribute's rows are laid out.
//!
//! A page holds consecutive entries of one feed under `pk = feed`, `sk = page#<last seq>`
//! (zero-padded, so pages sort by sequence), with `first_seq`, `last_seq`, the `entries`
//! (binary: [`crate::entries`]) and `written_at_ms`. The feed's sequence counter is the `counter` row of its partition.
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
    let entries =
        crate::entries::encode(page.first_seq, &page.entries, &format!("page of {feed}"))?;
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
    let entries = crate::entries::decode(
        first_seq,
        item.attributes.get("entries"),
        &format!("page {}", item.key),
    )?;
    Ok(FeedPage { first_seq, entries })
}

/// A plan as its record stores it. A record is billed by the kilobyte on each of its writes
/// (the planning put, doubled inside a transaction; the completion update; prune's delete), so
/// each page names its events by their position in `events` instead of repeating their ids in
/// every feed they reach, and the fields have one-letter names.
#[derive(Serialize, Deserialize)]
struct StoredPlan {
    id: String,
    #[serde(rename = "e")]
    events: Vec<(String, String)>,
    #[serde(rename = "p")]
    pages: Vec<StoredPage>,
    #[serde(rename = "o", default, skip_serializing_if = "Vec::is_empty")]
    over_budget: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredPage {
    #[serde(rename = "f")]
    feed: String,
    #[serde(rename = "s")]
    first_seq: u64,
    /// Positions in the plan's events, in sequence order.
    #[serde(rename = "a", default)]
    at: Vec<usize>,
}

impl StoredPlan {
    fn from_plan(plan: &Plan) -> Result<Self> {
        let position: std::collections::HashMap<&str, usize> = plan
            .events
            .iter()
            .enumerate()
            .map(|(index, (_, event_id))| (event_id.as_str(), index))
            .collect();
        let pages =
            plan.pages
                .iter()
                .map(|page| {
                    let at =
                        page.event_ids
                            .iter()
                            .map(|event_id| {
                                position.get(event_id.as_str()).copied().ok_or_else(|| {
                            Error::Corrupt {
                                what: format!("plan {}", plan.id),
                                reason: format!(
                                    "page of {} names {event_id}, not one of the plan's events",
                                    page.feed
                                ),
                            }
                        })
                            })
                            .collect::<Result<Vec<_>>>()?;
                    Ok(StoredPage {
                        feed: page.feed.clone(),
                        first_seq: page.first_seq,
                        at,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            id: plan.id.clone(),
            events: plan.events.clone(),
            pages,
            over_budget: plan.over_budget.clone(),
        })
    }

    fn into_plan(self) -> std::result::Result<Plan, String> {
        let pages = self
            .pages
            .into_iter()
            .map(|page| {
                let event_ids = page
                    .at
                    .iter()
                    .map(|&index| {
                        self.events
                            .get(index)
                            .map(|(_, event_id)| event_id.clone())
                            .ok_or_else(|| format!("page of {} points past the events", page.feed))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(PlannedPage {
                    feed: page.feed,
                    first_seq: page.first_seq,
                    event_ids,
                })
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        Ok(Plan {
            id: self.id,
            events: self.events,
            pages,
            over_budget: self.over_budget,
        })
    }
}

/// Encodes a plan as its record.
pub fn plan_item(plan: &Plan, now_ms: u64) -> Result<Item> {
    let json =
        serde_json::to_string(&StoredPlan::from_plan(plan)?).map_err(|error| Error::Corrupt {
            what: format!("plan {}", plan.id),
            reason: error.to_string(),
        })?;
    Ok(Item::new(plan_key(&plan.id))
        .with("plan", json)
        .with(TTL_ATTRIBUTE, (now_ms / 1000 + PLAN_LIFETIME_SECS) as i64))
}

/// Decodes a plan record: the compact form, or the full one records had before it.
pub fn plan_from_item(item: &Item) -> Result<Plan> {
    let corrupt = |reason: String| Error::Corrupt {
        what: format!("plan record {}", item.key),
        reason,
    };
    let json = item.str("plan").unwrap_or_default();
    match serde_json::from_str::<StoredPlan>(json) {
        Ok(stored) => stored.into_plan().map_err(corrupt),
        Err(compact_error) => {
            serde_json::from_str::<Plan>(json).map_err(|_| corrupt(compact_error.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let ids: Vec<String> = (0..10)
            .map(|n| format!("01JD3Q7Z8X9Y0A1B2C3D4E5F{n:02}"))
            .collect();
        Plan {
            id: "01JD3Q7Z8X9Y0A1B2C3D4E5PLN".into(),
            events: ids
                .iter()
                .map(|id| ("gm-0001/district-001/scene-001".to_owned(), id.clone()))
                .collect(),
            pages: (0..16)
                .map(|feed| PlannedPage {
                    feed: format!("player:p-{feed:05}"),
                    first_seq: 1_000 + feed,
                    event_ids: ids.clone(),
                })
                .collect(),
            over_budget: vec!["p-00003".into()],
        }
    }

    #[test]
    fn a_plan_round_trips_through_its_compact_record() {
        let plan = plan();
        let item = plan_item(&plan, 7).unwrap();
        assert_eq!(plan_from_item(&item).unwrap(), plan);
        // Ten events reaching sixteen feeds fit in two kilobytes, a third of the full form.
        let full = serde_json::to_string(&plan).unwrap().len();
        assert!(item.size_bytes() <= 2_048, "{} bytes", item.size_bytes());
        assert!(full > 3 * item.size_bytes(), "{full} bytes in full");
    }

    #[test]
    fn records_written_in_the_full_form_still_decode() {
        let plan = plan();
        let item =
            Item::new(plan_key(&plan.id)).with("plan", serde_json::to_string(&plan).unwrap());
        assert_eq!(plan_from_item(&item).unwrap(), plan);
    }

    #[test]
    fn a_page_naming_an_event_outside_the_plan_is_refused() {
        let mut plan = plan();
        plan.pages[0].event_ids.push("stranger".into());
        assert!(plan_item(&plan, 7).is_err());
        let item = Item::new(plan_key("p")).with(
            "plan",
            r#"{"id":"p","e":[],"p":[{"f":"player:a","s":1,"a":[0]}]}"#,
        );
        assert!(plan_from_item(&item).is_err());
    }
}
