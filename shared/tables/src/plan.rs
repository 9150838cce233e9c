//! Feed pages and publication plans: how distribute's rows are laid out.
//!
//! A page holds consecutive entries of one feed under `pk = feed`, `sk = page#<last seq>`
//! (zero-padded, so pages sort by sequence), with `first_seq`, `last_seq`, the `entries`
//! (compact JSON rows: [`crate::entries`]) and `written_at_ms`. The feed's sequence counter is the `counter` row of its partition.
//! A plan record (`pk = plan#<id>`, `sk = plan`) says which events one batch covered and, per
//! feed, the first sequence number of its range; prune reads it to find the batch's bookkeeping.

use serde::{Deserialize, Serialize};
use worldfleet_domain::FeedPage;
use worldfleet_ports::{Item, Key, TTL_ATTRIBUTE};

use crate::error::{Error, Result};
use crate::position_in;

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

/// A plan as records written before 2026-12-08 store it (still read): each page names its
/// events by their position in `events` instead of repeating their ids in every feed they
/// reach, and the fields have one-letter names.
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

/// A plan as its record stores it (layout `v` 2). A record is billed by the kilobyte on its put
/// and on prune's delete, and a batch's plan names ten events and some twenty feeds, so every
/// repeated string is listed once: the events' partitions (`ps`), the feeds' scopes (`sc`:
/// `player`, `faction`, `district`) and the distinct lists of event positions the pages hold
/// (`r`: every member of a scene's cast gets the same run). An event is `[partition index,
/// event id]`; a page is `[scope index, feed name, first_seq, run index]`. Ten events of one
/// scene reaching sixteen player feeds make an 869-byte record (test
/// `a_plan_round_trips_through_its_packed_record`): one write unit, where the earlier layout
/// (1,674 bytes) took two.
#[derive(Serialize, Deserialize)]
struct PackedPlan {
    v: u32,
    id: String,
    #[serde(rename = "ps")]
    partitions: Vec<String>,
    #[serde(rename = "e")]
    events: Vec<(u32, String)>,
    #[serde(rename = "sc")]
    scopes: Vec<String>,
    #[serde(rename = "r")]
    runs: Vec<Vec<u32>>,
    #[serde(rename = "p")]
    pages: Vec<(u32, String, u64, u32)>,
    #[serde(rename = "o", default, skip_serializing_if = "Vec::is_empty")]
    over_budget: Vec<String>,
}

/// The packed layout's version.
const PACKED_V2: u32 = 2;

impl PackedPlan {
    fn from_plan(plan: &Plan) -> Result<Self> {
        let stored = StoredPlan::from_plan(plan)?;
        let mut packed = PackedPlan {
            v: PACKED_V2,
            id: stored.id,
            partitions: Vec::new(),
            events: Vec::with_capacity(stored.events.len()),
            scopes: Vec::new(),
            runs: Vec::new(),
            pages: Vec::with_capacity(stored.pages.len()),
            over_budget: stored.over_budget,
        };
        for (partition, event_id) in stored.events {
            let index = position_in(&mut packed.partitions, partition.as_str());
            packed.events.push((index, event_id));
        }
        for page in stored.pages {
            let (scope, name) = page.feed.split_once(':').ok_or_else(|| Error::Corrupt {
                what: format!("plan {}", plan.id),
                reason: format!("feed {:?} has no scope", page.feed),
            })?;
            let scope = position_in(&mut packed.scopes, scope);
            let run: Vec<u32> = page.at.iter().map(|&at| at as u32).collect();
            let run = position_in(&mut packed.runs, run.as_slice());
            packed
                .pages
                .push((scope, name.to_owned(), page.first_seq, run));
        }
        Ok(packed)
    }

    fn into_plan(self) -> std::result::Result<Plan, String> {
        let events = self
            .events
            .into_iter()
            .map(|(partition, event_id)| {
                self.partitions
                    .get(partition as usize)
                    .map(|partition| (partition.clone(), event_id))
                    .ok_or_else(|| format!("partition index {partition} out of range"))
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let pages = self
            .pages
            .into_iter()
            .map(|(scope, name, first_seq, run)| {
                let scope = self
                    .scopes
                    .get(scope as usize)
                    .ok_or_else(|| format!("scope index {scope} out of range"))?;
                let run = self
                    .runs
                    .get(run as usize)
                    .ok_or_else(|| format!("run index {run} out of range"))?;
                Ok(StoredPage {
                    feed: format!("{scope}:{name}"),
                    first_seq,
                    at: run.iter().map(|&at| at as usize).collect(),
                })
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        StoredPlan {
            id: self.id,
            events,
            pages,
            over_budget: self.over_budget,
        }
        .into_plan()
    }
}

/// Encodes a plan as its record.
pub fn plan_item(plan: &Plan, now_ms: u64) -> Result<Item> {
    let json =
        serde_json::to_string(&PackedPlan::from_plan(plan)?).map_err(|error| Error::Corrupt {
            what: format!("plan {}", plan.id),
            reason: error.to_string(),
        })?;
    Ok(Item::new(plan_key(&plan.id))
        .with("plan", json)
        .with(TTL_ATTRIBUTE, (now_ms / 1000 + PLAN_LIFETIME_SECS) as i64))
}

/// Decodes a plan record: the packed layout, or the compact or full ones records had before.
pub fn plan_from_item(item: &Item) -> Result<Plan> {
    let corrupt = |reason: String| Error::Corrupt {
        what: format!("plan record {}", item.key),
        reason,
    };
    let json = item.str("plan").unwrap_or_default();
    // Only the version is read first: the record is then parsed once, in its own layout.
    #[derive(Deserialize)]
    struct Layout {
        v: Option<u64>,
    }
    let layout: Layout = serde_json::from_str(json).map_err(|error| corrupt(error.to_string()))?;
    match layout.v {
        Some(version) if version == u64::from(PACKED_V2) => {
            serde_json::from_str::<PackedPlan>(json)
                .map_err(|error| corrupt(error.to_string()))?
                .into_plan()
                .map_err(corrupt)
        }
        Some(version) => Err(corrupt(format!(
            "plan layout version {version} is not known to this build"
        ))),
        None => match serde_json::from_str::<StoredPlan>(json) {
            Ok(stored) => stored.into_plan().map_err(corrupt),
            Err(compact_error) => {
                serde_json::from_str::<Plan>(json).map_err(|_| corrupt(compact_error.to_string()))
            }
        },
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
    fn a_plan_round_trips_through_its_packed_record() {
        let plan = plan();
        let item = plan_item(&plan, 7).unwrap();
        assert_eq!(plan_from_item(&item).unwrap(), plan);
        // Ten events of one scene reaching sixteen feeds fit in one kilobyte (an 869-byte item
        // when this was written; 1,674 bytes in the earlier compact layout, 6,274 in full).
        let full = serde_json::to_string(&plan).unwrap().len();
        assert!(item.size_bytes() <= 1_024, "{} bytes", item.size_bytes());
        assert!(full > 6 * item.size_bytes(), "{full} bytes in full");
    }

    #[test]
    fn a_plan_over_several_partitions_scopes_and_runs_round_trips() {
        let mut plan = plan();
        plan.events[3].0 = "gm-0001/district-002/scene-004".into();
        plan.pages[2].feed = "faction:red".into();
        plan.pages[5].feed = "district:gm-0001/district-002".into();
        plan.pages[7].feed = "player:odd:name".into();
        plan.pages[1].event_ids.truncate(3);
        let item = plan_item(&plan, 7).unwrap();
        assert_eq!(plan_from_item(&item).unwrap(), plan);
    }

    #[test]
    fn records_in_the_earlier_compact_layout_still_decode() {
        let plan = plan();
        let item = Item::new(plan_key(&plan.id)).with(
            "plan",
            serde_json::to_string(&StoredPlan::from_plan(&plan).unwrap()).unwrap(),
        );
        assert_eq!(plan_from_item(&item).unwrap(), plan);
        let future = Item::new(plan_key("p")).with("plan", r#"{"v":9,"id":"p"}"#);
        let error = plan_from_item(&future).unwrap_err();
        assert!(error.to_string().contains("version 9"), "{error}");
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
        let item = Item::new(plan_key("p")).with(
            "plan",
            r#"{"v":2,"id":"p","ps":[],"e":[],"sc":["player"],"r":[[0]],"p":[[0,"a",1,0]]}"#,
        );
        assert!(plan_from_item(&item).is_err());
    }
}
