//! Publication plans and feed pages: the pure part of distribute.
//!
//! A plan says, for one batch: which events it covers and, per target feed, the first sequence
//! number of its range and the events in order. Pages are derived from a plan and the events'
//! canon, so a plan replayed after a crash yields byte-identical pages under the same keys.
//! The rows' layout (page, plan and counter keys and codecs) is `worldfleet_tables::plan`'s.

use std::collections::BTreeMap;

use worldfleet_domain::{CanonEntry, FeedEntry, FeedId, FeedPage};
use worldfleet_ports::Item;
use worldfleet_tables::plan::{Plan, page_item};

use crate::error::{DistributeError, Result};
use crate::rules::RepublishRules;

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
            Ok(page_item(&planned.feed, &page, now_ms)?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use worldfleet_domain::{EventKind, Intent, PartitionUid, Tier};

    use worldfleet_tables::plan::{
        PlannedPage, page_from_item, page_sort_key, plan_from_item, plan_item,
    };

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
