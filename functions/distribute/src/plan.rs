//! Publication plans and feed pages: the pure part of distribute.
//!
//! A plan says, for one batch: which events it covers and, per target feed, the first sequence
//! number of its range and the events in order. Pages are derived from a plan and the events'
//! canon, so a plan replayed after a crash yields byte-identical pages under the same keys.
//! The rows' layout (page, plan and counter keys and codecs) is `worldfleet_tables::plan`'s.
//!
//! Every decision the handler makes lives here as a function of what it read: which events
//! still need a plan ([`by_plan`]), what a player's memory count grows by
//! ([`observation_bytes_bound`]), how an event is claimed for a plan and in which order
//! ([`claim`], [`claim_runs`]), which canon a plan still has to read ([`split_known`]), what publishing a plan writes and asks prune
//! ([`publication`], [`over_budget`], [`published`]) and which regions a batch touches
//! ([`regions`]). The handler only reads, writes and sends.

use std::collections::{BTreeMap, BTreeSet};

use worldfleet_domain::{CanonEntry, FeedEntry, FeedId, FeedPage, PartitionUid, PruneRequest};
use worldfleet_ports::{Condition, Error, Item, Key, Update};
use worldfleet_tables::plan::{Plan, PlannedPage, page_item};
use worldfleet_tables::{canon, memory};

use crate::error::{DistributeError, Result};
use crate::rules::RepublishRules;

/// A feed is put in the feed index and checked for retention each time its sequence numbers
/// cross a multiple of this (the first time it is planned, it is indexed: see the handler).
pub const FEED_CHECK_EVERY: u64 = 256;
/// How deep a region is: events of `gm/district/scene` belong to the region `gm/district`.
pub const REGION_DEPTH: usize = 2;

/// True when the run `first_seq..=last_seq` crosses a check mark.
pub fn crosses_check_mark(first_seq: u64, last_seq: u64) -> bool {
    (first_seq.max(1) - 1) / FEED_CHECK_EVERY != last_seq / FEED_CHECK_EVERY
}

/// A batch's events sorted by what their canon items say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ByPlan {
    /// Plans some of the events already belong to.
    pub plans: BTreeSet<String>,
    /// Events with no plan yet, in batch order.
    pub unplanned: Vec<CanonEntry>,
}

/// Sorts `events` by the `dist_plan` of their canon items (`items`, by event id). An event
/// whose canon cannot be read yet is an error worth a retry: compose may not have written it.
pub fn by_plan(events: &[CanonEntry], items: &BTreeMap<String, Item>) -> Result<ByPlan> {
    let mut sorted = ByPlan::default();
    for entry in events {
        let item = items.get(&entry.event_id).ok_or_else(|| {
            Error::Unavailable(format!("canon of {} not readable yet", entry.event_id))
        })?;
        match item.str("dist_plan") {
            Some(plan_id) => {
                sorted.plans.insert(plan_id.to_owned());
            }
            None => sorted.unplanned.push(entry.clone()),
        }
    }
    Ok(sorted)
}

/// The page of `feed` for `event_ids`, given the feed counter's value after adding their count.
pub fn planned_page(feed: &FeedId, event_ids: &[String], counter_after: i64) -> PlannedPage {
    let last = counter_after.max(0) as u64;
    PlannedPage {
        feed: feed.to_string(),
        first_seq: last + 1 - event_ids.len() as u64,
        event_ids: event_ids.to_vec(),
    }
}

/// The plan of `events` over the allocated `pages`.
pub fn new_plan(id: String, events: &[CanonEntry], pages: Vec<PlannedPage>) -> Plan {
    Plan {
        id,
        events: events
            .iter()
            .map(|entry| (entry.partition.to_string(), entry.event_id.clone()))
            .collect(),
        pages,
        over_budget: Vec::new(),
    }
}

/// An upper bound of the bytes the observation of `events` in `player`'s feed accounts for
/// once written at `now_ms`, whatever sequence numbers the page gets: the count is added when
/// the numbers are allocated, before they are known, and must never run low.
pub fn observation_bytes_bound(player: &str, events: &[&CanonEntry], now_ms: u64) -> Result<u64> {
    // Entry `i` of a page is stored at offset `i` from the first sequence number, or further
    // when earlier entries were lost to other plans, in which case the page holds fewer.
    let first_seq = u64::MAX - events.len() as u64;
    let page = FeedPage {
        first_seq,
        entries: events
            .iter()
            .zip(first_seq..)
            .map(|(entry, seq)| feed_entry(entry, seq))
            .collect(),
    };
    let observation = memory::observation_item(player, &page, now_ms)?;
    Ok(memory::observation_bytes(&observation))
}

/// The feed entry of `entry` at sequence number `seq`.
fn feed_entry(entry: &CanonEntry, seq: u64) -> FeedEntry {
    FeedEntry {
        seq,
        event_id: entry.event_id.clone(),
        partition: entry.partition.clone(),
        kind: entry.kind,
        actor: entry.actor.clone(),
        text: entry.text.clone(),
        accepted_at_ms: entry.accepted_at_ms,
    }
}

/// The claim of one event for the plan `plan_id`: set its canon item's `dist_plan`, on
/// condition that the item exists and has no plan yet. The first claim of an event is final —
/// no write ever changes a `dist_plan` — so an event belongs to exactly one plan.
pub fn claim(plan_id: &str) -> (Update, Condition) {
    (
        Update::new().set("dist_plan", plan_id),
        Condition::And(vec![
            Condition::ItemExists,
            Condition::NotExists("dist_plan".into()),
        ]),
    )
}

/// `plan`'s events grouped by partition, each partition's in plan (that is, queue) order: the
/// order every executor of the plan claims them in, stopping a partition at its first event
/// another plan holds. A plan thus owns a prefix of each partition's events, and the rest go
/// to a later plan with later sequence numbers, so a partition's events reach every feed in
/// order; and since claims are final, every executor of a plan finds the same prefix.
pub fn claim_runs(plan: &Plan) -> Vec<Vec<(String, String)>> {
    let mut runs: Vec<Vec<(String, String)>> = Vec::new();
    for (partition, event_id) in &plan.events {
        match runs.iter_mut().find(|run| run[0].0 == *partition) {
            Some(run) => run.push((partition.clone(), event_id.clone())),
            None => runs.push(vec![(partition.clone(), event_id.clone())]),
        }
    }
    runs
}

/// The plan record's attribute that versions before 2026-12-08 set when they marked a plan
/// completed and some of its events belonged to another plan: their ids, as a JSON array.
pub const LOST_ATTRIBUTE: &str = "lost";

/// The events a plan record an earlier version marked completed says went to other plans.
pub fn lost_of(record: &Item) -> Result<BTreeSet<String>> {
    match record.str(LOST_ATTRIBUTE) {
        None => Ok(BTreeSet::new()),
        Some(json) => serde_json::from_str(json).map_err(|error| DistributeError::Corrupt {
            what: format!("plan record {}", record.key),
            reason: error.to_string(),
        }),
    }
}

/// The canon of `plan`'s events found in `known` (the batch's own events), and the keys of the
/// rest, which have to be read.
pub fn split_known(
    plan: &Plan,
    known: &BTreeMap<String, CanonEntry>,
    lost: &BTreeSet<String>,
) -> (BTreeMap<String, CanonEntry>, Vec<Key>) {
    let mut canon_found = BTreeMap::new();
    let mut missing = Vec::new();
    for (partition, event_id) in &plan.events {
        if lost.contains(event_id) {
            continue;
        }
        match known.get(event_id) {
            Some(entry) => {
                canon_found.insert(event_id.clone(), entry.clone());
            }
            None => missing.push(canon::key(partition, event_id)),
        }
    }
    (canon_found, missing)
}

/// What publishing a plan writes, before it is marked completed.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// One page item per target feed (feeds table).
    pub pages: Vec<Item>,
    /// Each player page as the player's observation (memory table), with its player.
    pub observations: Vec<(String, Item)>,
    /// Feeds whose run crosses a check mark: indexed again and checked for retention.
    pub checked_feeds: Vec<String>,
}

/// What publishing `plan` over its events' `canon` writes at `now_ms`, leaving out the events
/// it `lost` to other plans.
pub fn publication(
    plan: &Plan,
    canon: &BTreeMap<String, CanonEntry>,
    lost: &BTreeSet<String>,
    now_ms: u64,
) -> Result<Publication> {
    let pages = pages(plan, canon, lost, now_ms)?;
    let mut observations = Vec::new();
    for page_item in &pages {
        if let Ok(FeedId::Player(player)) = FeedId::parse(&page_item.key.pk) {
            let observation = memory::observation_of_page(&player, page_item, now_ms)?;
            observations.push((player, observation));
        }
    }
    let checked_feeds = plan
        .pages
        .iter()
        .filter(|planned| {
            let last_seq = planned.first_seq + planned.event_ids.len() as u64 - 1;
            crosses_check_mark(planned.first_seq, last_seq)
        })
        .map(|planned| planned.feed.clone())
        .collect();
    Ok(Publication {
        pages,
        observations,
        checked_feeds,
    })
}

/// The players whose memory count (`counts`: player, bytes after this batch's add) is over
/// `cap_bytes`.
pub fn over_budget(counts: Vec<(String, i64)>, cap_bytes: u64) -> Vec<String> {
    counts
        .into_iter()
        .filter(|(_, bytes)| *bytes > cap_bytes as i64)
        .map(|(player, _)| player)
        .collect()
}

/// What publishing `plan` asks prune about its players' memory.
pub fn memory_requests(plan: &Plan) -> Vec<PruneRequest> {
    plan.over_budget
        .iter()
        .map(|player| PruneRequest::MemoryOverBudget {
            player: player.clone(),
        })
        .collect()
}

/// The request that ends a published plan's bookkeeping: the events it published (not those
/// it `lost` to other plans, which end with theirs).
pub fn published(plan: &Plan, lost: &BTreeSet<String>) -> PruneRequest {
    PruneRequest::EventsPublished {
        plan_id: plan.id.clone(),
        events: plan
            .events
            .iter()
            .filter(|(_, event_id)| !lost.contains(event_id))
            .filter_map(|(partition, event_id)| {
                PartitionUid::parse(partition)
                    .ok()
                    .map(|partition| (partition, event_id.clone()))
            })
            .collect(),
    }
}

/// The regions of a batch's events (`REGION_DEPTH`), each with its partitions that had events.
pub fn regions(events: &[CanonEntry]) -> BTreeMap<PartitionUid, Vec<&str>> {
    let mut regions: BTreeMap<PartitionUid, BTreeSet<&str>> = BTreeMap::new();
    for entry in events {
        regions
            .entry(entry.partition.prefix(REGION_DEPTH))
            .or_default()
            .insert(entry.partition.as_str());
    }
    regions
        .into_iter()
        .map(|(region, partitions)| (region, partitions.into_iter().collect()))
        .collect()
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

/// Builds the page items of `plan` from the canon of its events, leaving out the events it
/// `lost` (their numbers stay unused: feeds are gap-tolerant) and pages left with none.
pub fn pages(
    plan: &Plan,
    canon: &BTreeMap<String, CanonEntry>,
    lost: &BTreeSet<String>,
    now_ms: u64,
) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for planned in &plan.pages {
        let entries = planned
            .event_ids
            .iter()
            .enumerate()
            .filter(|(_, event_id)| !lost.contains(*event_id))
            .map(|(offset, event_id)| {
                let entry = canon
                    .get(event_id)
                    .ok_or_else(|| DistributeError::Corrupt {
                        what: format!("plan {}", plan.id),
                        reason: format!("no canon for event {event_id}"),
                    })?;
                Ok(feed_entry(entry, planned.first_seq + offset as u64))
            })
            .collect::<Result<Vec<_>>>()?;
        if entries.is_empty() {
            continue;
        }
        let page = FeedPage {
            first_seq: planned.first_seq,
            entries,
        };
        items.push(page_item(&planned.feed, &page, now_ms)?);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use worldfleet_domain::{EventKind, Intent, PartitionUid, Tier};

    use worldfleet_tables::plan::{page_from_item, page_sort_key, plan_from_item, plan_item};

    use super::*;

    fn canon(event_id: &str, audience: &[&str]) -> CanonEntry {
        canon_in("gm/d/s", event_id, audience)
    }

    fn canon_in(partition: &str, event_id: &str, audience: &[&str]) -> CanonEntry {
        CanonEntry {
            event_id: event_id.into(),
            partition: PartitionUid::parse(partition).unwrap(),
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
            over_budget: vec!["a".into()],
        };
        let canon: BTreeMap<String, CanonEntry> = [canon("e1", &["a"]), canon("e2", &["a"])]
            .into_iter()
            .map(|entry| (entry.event_id.clone(), entry))
            .collect();
        let first = pages(&plan, &canon, &BTreeSet::new(), 5).unwrap();
        assert_eq!(first, pages(&plan, &canon, &BTreeSet::new(), 5).unwrap());
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

    fn canon_by_id(entries: &[CanonEntry]) -> BTreeMap<String, CanonEntry> {
        entries
            .iter()
            .map(|entry| (entry.event_id.clone(), entry.clone()))
            .collect()
    }

    fn canon_item(entry: &CanonEntry, plan_id: Option<&str>) -> Item {
        let item = Item::new(canon::key(entry.partition.as_str(), &entry.event_id));
        match plan_id {
            Some(plan_id) => item.with("dist_plan", plan_id),
            None => item,
        }
    }

    #[test]
    fn check_marks_are_a_feed_s_first_entry_and_each_multiple_of_the_period() {
        assert!(
            !crosses_check_mark(1, 1),
            "a feed's start is indexed when planned"
        );
        assert!(crosses_check_mark(255, 257));
        assert!(crosses_check_mark(256, 256));
        assert!(!crosses_check_mark(257, 511));
        assert!(!crosses_check_mark(2, 255));
    }

    #[test]
    fn events_are_sorted_by_their_plan_and_unreadable_canon_is_retried() {
        let batch = vec![
            canon("e1", &["a"]),
            canon("e2", &["a"]),
            canon("e3", &["b"]),
        ];
        let mut items: BTreeMap<String, Item> = [
            ("e1".to_owned(), canon_item(&batch[0], Some("p1"))),
            ("e2".to_owned(), canon_item(&batch[1], None)),
        ]
        .into_iter()
        .collect();
        let unreadable = by_plan(&batch, &items).unwrap_err();
        assert!(
            matches!(&unreadable, DistributeError::Port(Error::Unavailable(reason)) if reason.contains("e3")),
            "{unreadable:?}"
        );
        items.insert("e3".into(), canon_item(&batch[2], Some("p1")));
        let sorted = by_plan(&batch, &items).unwrap();
        assert_eq!(sorted.plans, BTreeSet::from(["p1".to_owned()]));
        assert_eq!(sorted.unplanned, vec![batch[1].clone()]);
    }

    #[test]
    fn a_planned_page_ends_at_the_counter_after_the_add() {
        let ids = vec!["e1".to_owned(), "e2".to_owned(), "e3".to_owned()];
        let page = planned_page(&FeedId::Player("a".into()), &ids, 10);
        assert_eq!(
            page,
            PlannedPage {
                feed: "player:a".into(),
                first_seq: 8,
                event_ids: ids,
            }
        );
    }

    #[test]
    fn a_claim_sets_the_pointer_only_on_existing_canon_without_one() {
        assert_eq!(
            claim("p1"),
            (
                Update::new().set("dist_plan", "p1"),
                Condition::And(vec![
                    Condition::ItemExists,
                    Condition::NotExists("dist_plan".into()),
                ])
            )
        );
    }

    #[test]
    fn claims_run_per_partition_in_plan_order() {
        let batch = vec![
            canon_in("gm/d/s1", "e1", &["a"]),
            canon_in("gm/d/s2", "e2", &["a"]),
            canon_in("gm/d/s1", "e3", &["a"]),
        ];
        let plan = new_plan("p1".into(), &batch, Vec::new());
        let runs = claim_runs(&plan);
        let ids: Vec<Vec<&str>> = runs
            .iter()
            .map(|run| run.iter().map(|(_, event_id)| event_id.as_str()).collect())
            .collect();
        assert_eq!(ids, vec![vec!["e1", "e3"], vec!["e2"]]);
    }

    #[test]
    fn events_lost_to_another_plan_are_left_out_of_pages_reads_and_the_published_request() {
        let batch = vec![
            canon("e1", &["a"]),
            canon("e2", &["a"]),
            canon("e3", &["b"]),
        ];
        let plan = new_plan(
            "p1".into(),
            &batch,
            vec![
                PlannedPage {
                    feed: "player:a".into(),
                    first_seq: 10,
                    event_ids: vec!["e1".into(), "e2".into()],
                },
                PlannedPage {
                    feed: "player:b".into(),
                    first_seq: 4,
                    event_ids: vec!["e3".into()],
                },
            ],
        );
        let lost = BTreeSet::from(["e2".to_owned(), "e3".to_owned()]);
        let mut canon = canon_by_id(&batch);
        canon.remove("e2");
        canon.remove("e3");
        let written = pages(&plan, &canon, &lost, 5).unwrap();
        assert_eq!(written.len(), 1, "player:b's page had only a lost event");
        let page = page_from_item(&written[0]).unwrap();
        assert_eq!(
            page.entries
                .iter()
                .map(|entry| (entry.seq, entry.event_id.as_str()))
                .collect::<Vec<_>>(),
            vec![(10, "e1")]
        );
        let (found, missing) = split_known(&plan, &BTreeMap::new(), &lost);
        assert!(found.is_empty());
        assert_eq!(missing, vec![canon::key("gm/d/s", "e1")]);
        assert_eq!(
            published(&plan, &lost),
            PruneRequest::EventsPublished {
                plan_id: "p1".into(),
                events: vec![(PartitionUid::parse("gm/d/s").unwrap(), "e1".into())],
            }
        );
        let record = plan_item(&plan, 0)
            .unwrap()
            .with(LOST_ATTRIBUTE, serde_json::to_string(&lost).unwrap());
        assert_eq!(lost_of(&record).unwrap(), lost);
        assert!(lost_of(&plan_item(&plan, 0).unwrap()).unwrap().is_empty());
    }

    #[test]
    fn only_canon_the_batch_does_not_hold_is_read() {
        let plan = new_plan(
            "p1".into(),
            &[canon("e1", &["a"]), canon("e2", &["a"])],
            Vec::new(),
        );
        let known = canon_by_id(&[canon("e1", &["a"]), canon("e9", &["a"])]);
        let (found, missing) = split_known(&plan, &known, &BTreeSet::new());
        assert_eq!(found.keys().collect::<Vec<_>>(), vec!["e1"]);
        assert_eq!(missing, vec![canon::key("gm/d/s", "e2")]);
    }

    #[test]
    fn publication_observes_player_pages_and_checks_feeds_that_cross_a_mark() {
        let batch = vec![canon("e1", &["a", "b"]), canon("e2", &["a", "b"])];
        let event_ids = vec!["e1".to_owned(), "e2".to_owned()];
        let page = |feed: &str, first_seq| PlannedPage {
            feed: feed.into(),
            first_seq,
            event_ids: event_ids.clone(),
        };
        let plan = new_plan(
            "p1".into(),
            &batch,
            vec![
                page("player:a", 1),
                page("player:b", 300),
                page("district:gm/d", 256),
            ],
        );
        let publication = publication(&plan, &canon_by_id(&batch), &BTreeSet::new(), 5).unwrap();
        assert_eq!(
            publication.pages,
            pages(&plan, &canon_by_id(&batch), &BTreeSet::new(), 5).unwrap()
        );
        let players: Vec<&str> = publication
            .observations
            .iter()
            .map(|(player, _)| player.as_str())
            .collect();
        assert_eq!(players, vec!["a", "b"]);
        let page_a = page_from_item(&publication.pages[0]).unwrap();
        assert_eq!(
            publication.observations[0].1,
            memory::observation_item("a", &page_a, 5).unwrap()
        );
        assert_eq!(publication.checked_feeds, vec!["district:gm/d".to_owned()]);
    }

    #[test]
    fn the_counted_bound_is_never_below_the_observation_written() {
        let batch = vec![canon("e1", &["a"]), canon("e2", &["a"])];
        let refs: Vec<&CanonEntry> = batch.iter().collect();
        let bound = observation_bytes_bound("a", &refs, 1_763_700_000_000).unwrap();
        for first_seq in [1, 9, 10, 99_999, 1 << 40] {
            let plan = new_plan(
                "p1".into(),
                &batch,
                vec![PlannedPage {
                    feed: "player:a".into(),
                    first_seq,
                    event_ids: vec!["e1".into(), "e2".into()],
                }],
            );
            let publication = publication(
                &plan,
                &canon_by_id(&batch),
                &BTreeSet::new(),
                1_763_700_000_000,
            )
            .unwrap();
            let written = memory::observation_bytes(&publication.observations[0].1);
            assert!(written <= bound, "{written} > {bound} at {first_seq}");
            assert!(bound - written < 64, "a tight bound: {bound} for {written}");
        }
    }

    #[test]
    fn a_plan_asks_prune_about_the_players_it_found_over_budget() {
        let mut plan = new_plan("p1".into(), &[canon("e1", &["a", "b"])], Vec::new());
        assert!(memory_requests(&plan).is_empty());
        plan.over_budget = vec!["b".into()];
        assert_eq!(
            memory_requests(&plan),
            vec![PruneRequest::MemoryOverBudget { player: "b".into() }]
        );
        let decoded = plan_from_item(&plan_item(&plan, 0).unwrap()).unwrap();
        assert_eq!(decoded.over_budget, vec!["b".to_owned()]);
    }

    #[test]
    fn only_players_past_the_cap_are_reported() {
        let counts = vec![("a".to_owned(), 100), ("b".to_owned(), 101)];
        assert_eq!(over_budget(counts, 100), vec!["b".to_owned()]);
    }

    #[test]
    fn the_published_request_names_the_plan_s_parseable_events() {
        let plan = Plan {
            id: "p1".into(),
            events: vec![
                ("gm/d/s".into(), "e1".into()),
                ("not a uid".into(), "e2".into()),
            ],
            pages: Vec::new(),
            over_budget: Vec::new(),
        };
        assert_eq!(
            published(&plan, &BTreeSet::new()),
            PruneRequest::EventsPublished {
                plan_id: "p1".into(),
                events: vec![(PartitionUid::parse("gm/d/s").unwrap(), "e1".into())],
            }
        );
    }

    #[test]
    fn regions_group_each_partition_once() {
        let batch = vec![
            canon_in("gm/d/s2", "e1", &["a"]),
            canon_in("gm/d/s1", "e2", &["a"]),
            canon_in("gm/d/s2", "e3", &["a"]),
            canon_in("gm/e/s", "e4", &["a"]),
        ];
        let regions = regions(&batch);
        let summary: Vec<(String, Vec<&str>)> = regions
            .iter()
            .map(|(region, partitions)| (region.to_string(), partitions.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("gm/d".to_owned(), vec!["gm/d/s1", "gm/d/s2"]),
                ("gm/e".to_owned(), vec!["gm/e/s"]),
            ]
        );
    }
}
