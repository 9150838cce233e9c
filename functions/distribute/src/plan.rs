//! Publication plans and feed pages: the pure part of distribute.
//!
//! A plan says, for one batch: which events it covers and, per target feed, the first sequence
//! number of its range and the events in order. Pages are derived from a plan and the events'
//! canon, so a plan replayed after a crash yields byte-identical pages under the same keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use worldfleet_domain::{CanonEntry, FeedEntry, FeedId, FeedPage};
use worldfleet_ports::{Item, Key, TTL_ATTRIBUTE};

use crate::error::{DistributeError, Result};
use crate::rules::RepublishRules;

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
}

/// The feeds each event goes to, and how many entries each feed needs, in first-seen order.
pub fn feed_demand(rules: &RepublishRules, canon: &[CanonEntry]) -> Vec<(FeedId, Vec<String>)> {
    let mut demand: Vec<(FeedId, Vec<String>)> = Vec::new();
    for entry in canon {
        for feed in rules.targets(entry) {
            match demand.iter_mut().find(|(existing, _)| *existing == feed) {
                Some((_, events)) => events.push(entry.event_id.clone()),
                None => demand.push((feed, vec![entry.event_id.clone()])),
            }
        }
    }
    demand
}

/// The sort key of the page whose last sequence number is `last_seq`.
pub fn page_sort_key(last_seq: u64) -> String {
    format!("page#{last_seq:020}")
}

/// The key of a feed's sequence counter.
pub fn counter_key(feed: &str) -> Key {
    Key::new(feed, "counter")
}

/// The key of a plan record.
pub fn plan_key(plan_id: &str) -> Key {
    Key::new(format!("plan#{plan_id}"), "plan")
}

/// Builds the page items of `plan` from the canon of its events.
pub fn pages(plan: &Plan, canon: &BTreeMap<String, CanonEntry>, now_ms: u64) -> Result<Vec<Item>> {
    plan.pages
        .iter()
        .map(|planned| {
            let entries = planned
                .event_ids
                .iter()
                .enumerate()
                .map(|(offset, event_id)| {
                    let entry = canon
                        .get(event_id)
                        .ok_or_else(|| DistributeError::Corrupt {
                            what: format!("plan {}", plan.id),
                            reason: format!("no canon for event {event_id}"),
                        })?;
                    Ok(FeedEntry {
                        seq: planned.first_seq + offset as u64,
                        event_id: event_id.clone(),
                        partition: entry.partition.clone(),
                        kind: entry.kind,
                        actor: entry.actor.clone(),
                        text: entry.text.clone(),
                        accepted_at_ms: entry.accepted_at_ms,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let page = FeedPage {
                first_seq: planned.first_seq,
                entries,
            };
            page_item(&planned.feed, &page, now_ms)
        })
        .collect()
}

/// Encodes a page as its item.
pub fn page_item(feed: &str, page: &FeedPage, now_ms: u64) -> Result<Item> {
    let entries =
        serde_json::to_string(&page.entries).map_err(|error| DistributeError::Corrupt {
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
    let corrupt = |reason: String| DistributeError::Corrupt {
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
    let json = serde_json::to_string(plan).map_err(|error| DistributeError::Corrupt {
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
    serde_json::from_str(item.str("plan").unwrap_or_default()).map_err(|error| {
        DistributeError::Corrupt {
            what: format!("plan record {}", item.key),
            reason: error.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use worldfleet_domain::{EventKind, Intent, PartitionUid, Tier};

    use super::*;

    fn canon(event_id: &str, audience: &[&str]) -> CanonEntry {
        CanonEntry {
            event_id: event_id.into(),
            partition: PartitionUid::parse("gm/d/s").unwrap(),
            kind: EventKind::Dialogue,
            actor: audience[0].into(),
            audience: audience.iter().map(|member| member.to_string()).collect(),
            faction: None,
            intent: Intent::Social,
            salience: 10,
            tier: Tier::Template,
            text: format!("line {event_id}"),
            composer: "template".into(),
            accepted_at_ms: 1,
            composed_at_ms: 2,
        }
    }

    #[test]
    fn demand_coalesces_a_scene_into_one_run_per_feed() {
        let batch = vec![
            canon("e1", &["a", "b"]),
            canon("e2", &["b", "a"]),
            canon("e3", &["c"]),
        ];
        let demand = feed_demand(&RepublishRules::default_rules(), &batch);
        let summary: Vec<(String, usize)> = demand
            .iter()
            .map(|(feed, events)| (feed.to_string(), events.len()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("player:a".into(), 2),
                ("player:b".into(), 2),
                ("player:c".into(), 1)
            ]
        );
    }

    #[test]
    fn pages_are_deterministic_and_round_trip() {
        let plan = Plan {
            id: "p1".into(),
            events: vec![
                ("gm/d/s".into(), "e1".into()),
                ("gm/d/s".into(), "e2".into()),
            ],
            pages: vec![PlannedPage {
                feed: "player:a".into(),
                first_seq: 41,
                event_ids: vec!["e1".into(), "e2".into()],
            }],
        };
        let canon: BTreeMap<String, CanonEntry> = [canon("e1", &["a"]), canon("e2", &["a"])]
            .into_iter()
            .map(|entry| (entry.event_id.clone(), entry))
            .collect();
        let first = pages(&plan, &canon, 5).unwrap();
        assert_eq!(first, pages(&plan, &canon, 5).unwrap());
        assert_eq!(first[0].key.sk, page_sort_key(42));
        let page = page_from_item(&first[0]).unwrap();
        assert_eq!(
            page.entries
                .iter()
                .map(|entry| entry.seq)
                .collect::<Vec<_>>(),
            vec![41, 42]
        );
        assert_eq!(plan_from_item(&plan_item(&plan, 0).unwrap()).unwrap(), plan);
    }
}
