//! What a store derived from its events, minus what is run-dependent: the view two runs of the
//! same world must agree on, whatever crashed, was retried or was replayed in between.
//!
//! Compared, row by row:
//! - `canon`: every item, every attribute except `composed_at_ms` (when compose ran, also
//!   inside the `canon` JSON), `accepted_at_ms` inside the JSON (when intake accepted the
//!   event) and `dist_plan` (the id of the publication plan, a fresh ULID per plan);
//! - `feeds`: every feed's entries with all their content, and their order within each source
//!   partition; not their sequence numbers, page boundaries or counters, which depend on how
//!   distribute batched and interleaved partitions in that run (feeds are gap-tolerant by
//!   design), nor when intake accepted them (`accepted_at_ms`); publication plans left behind
//!   that own events (some canon item points at them) are counted (prune removes completed
//!   ones), not plan records no event points at: distribute puts a plan before it claims its
//!   events, so a crash between the two leaves one, which its TTL removes;
//! - `memory`: each player's observed entries, as for feeds (observation keys and byte counts
//!   follow the pages);
//! - `prune`: the keys of region activity, region partitions and the feed index (their
//!   attributes are timestamps), not the sweep's schedule row (`sweep/due`: whether a run was
//!   long enough for the watchdog's minute to come round), nor the keys of the world's cells
//!   (`wild/…`), where only the ticks' news is published;
//! - `ledger`: every event row, every attribute except `accepted_at_ms` and `message_id` (when
//!   and from which queue message intake accepted it); not prune's checkpoint rows
//!   (`~checkpoint`, `~snap#…`), which cover the events older than intake's clock window whose
//!   derived state was complete when prune last ran, so how far they reach depends on timing;
//! - `rejections`: each refused body's key and reason (its timestamps, message id and count of
//!   messages carrying it depend on how often a gateway resent it).
//!
//! - `market` (the world's stations): every transaction record's verdict, good, side and
//!   quantity, and each station's stock per good. A station decides its trades one at a time in
//!   the order its FIFO group delivers them, so verdicts and stock follow from the events alone;
//!   not the price window a trade joined, its unit price, the recomputes or the prices, which
//!   follow the wall-clock windows (a station recomputes at most once a second);
//! - `ecology`: which captures and breed requests a tick consumed (their seen markers' keys);
//!   not the tick that consumed them or its outcome, the cells' creatures, migrants or news.
//!
//! The world's ticks run on wall-clock timers, so two runs tick a different number of times and
//! a player's request joins whichever tick comes next: what a tick made of it (creatures, the
//! news it published to district feeds, production, timers) is run-dependent by design. The news
//! rows in `canon`, `feeds` and `memory` ([`worldfleet_ecology::is_news_event`]) are left out
//! with it; the world audit (`worldfleet_runtime::simulation::audit`) checks those tables for
//! loss and duplication instead.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use anyhow::Context;
use sha2::{Digest, Sha256};
use worldfleet_domain::FeedEntry;
use worldfleet_domain::names::{
    CANON_TABLE, ECOLOGY_TABLE, FEEDS_TABLE, LEDGER_TABLE, MARKET_TABLE, MEMORY_TABLE, PRUNE_TABLE,
    REJECTIONS_TABLE,
};
use worldfleet_ecology::is_news_event;
use worldfleet_ports::Item;
use worldfleet_price::stages::records::{MARKET_SK, StoredMarket};
use worldfleet_prune::checkpoint::is_event_entry;
use worldfleet_tables::memory::{OBSERVATION_PREFIX, observation_entries};
use worldfleet_tables::plan::{PAGE_PREFIX, page_from_item, plan_key};

use crate::world::WILD_REALM;

/// The partition of prune's sweep schedule row.
const SWEEP_SCHEDULE_PK: &str = "sweep";

/// Per feed (or player), per source partition: the digests of the entries in sequence order,
/// each entry without its sequence number.
pub type Streams = BTreeMap<String, BTreeMap<String, Vec<RowDigest>>>;

/// The first 16 bytes of the SHA-256 of one row's compared content: what is kept per row, so
/// two stores of millions of rows are compared in a few hundred MiB (a difference names the
/// row; read it from the store to see the content).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowDigest([u8; 16]);

impl RowDigest {
    fn of(content: &str) -> Self {
        let digest = Sha256::digest(content.as_bytes());
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&digest[..16]);
        Self(bytes)
    }
}

impl Debug for RowDigest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in &self.0[..8] {
            write!(formatter, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The derived tables of a store, minus what is run-dependent (see the module): one digest per
/// compared row, not the row.
#[derive(Debug, Default, PartialEq)]
pub struct Derived {
    pub canon: BTreeMap<String, RowDigest>,
    pub feeds: Streams,
    pub plans_left: usize,
    pub memory: Streams,
    pub prune_keys: Vec<String>,
    pub ledger: BTreeMap<String, RowDigest>,
    pub rejections: BTreeMap<String, String>,
    /// Per station transaction (`station/tx#EVENT`): verdict, good, side, quantity.
    pub trades: BTreeMap<String, String>,
    /// Per station: its stock of every good.
    pub stock: BTreeMap<String, String>,
    /// The captures and breed requests consumed (`cell/seen#KEY`).
    pub requests_consumed: BTreeSet<String>,
}

/// Visits every item of one table (a store's scan, one item at a time).
pub type Visit<'a> = &'a mut dyn FnMut(Item);

impl Derived {
    /// Reads a store's tables through `scan`, which hands every item of the named table to the
    /// visitor, in the store's scan order; nothing but the digests is kept.
    pub fn read(
        mut scan: impl FnMut(&str, Visit<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let mut derived = Self::default();
        let mut failure: Option<anyhow::Error> = None;
        let mut fail = |error: anyhow::Error| {
            failure.get_or_insert(error);
        };

        let mut claimed_plans: BTreeSet<String> = BTreeSet::new();
        scan(CANON_TABLE, &mut |item| match canon_row(item) {
            Ok(Some((key, digest, plan))) => {
                if let Some(plan) = plan {
                    claimed_plans.insert(plan);
                }
                derived.canon.insert(key, digest);
            }
            Ok(None) => {}
            Err(error) => fail(error),
        })?;

        let mut pages = Pages::default();
        scan(FEEDS_TABLE, &mut |item| {
            if claimed_plans.contains(&item.key.pk) {
                derived.plans_left += 1;
            }
            if item.key.sk.starts_with(PAGE_PREFIX) {
                match page_from_item(&item) {
                    Ok(page) => pages.add(&item.key.pk, page.entries),
                    Err(error) => fail(anyhow::anyhow!("feed page {}: {error}", item.key)),
                }
            }
        })?;
        derived.feeds = pages.into_streams();

        let mut observations = Pages::default();
        scan(MEMORY_TABLE, &mut |item| {
            if item.key.sk.starts_with(OBSERVATION_PREFIX) {
                match observation_entries(&item) {
                    Ok(entries) => observations.add(&item.key.pk, entries),
                    Err(error) => fail(anyhow::anyhow!("observation {}: {error}", item.key)),
                }
            }
        })?;
        derived.memory = observations.into_streams();

        scan(PRUNE_TABLE, &mut |item| {
            if item.key.pk != SWEEP_SCHEDULE_PK
                && !names_wild(&item.key.pk)
                && !names_wild(&item.key.sk)
            {
                derived.prune_keys.push(item.key.to_string());
            }
        })?;
        scan(LEDGER_TABLE, &mut |mut item| {
            if is_event_entry(&item) {
                item.attributes.remove("accepted_at_ms");
                item.attributes.remove("message_id");
                derived.ledger.insert(
                    item.key.to_string(),
                    RowDigest::of(&format!("{:?}", item.attributes)),
                );
            }
        })?;
        scan(REJECTIONS_TABLE, &mut |item| {
            derived.rejections.insert(
                item.key.to_string(),
                item.str("reason").unwrap_or_default().to_owned(),
            );
        })?;
        scan(MARKET_TABLE, &mut |item| {
            if let Err(error) = market_row(item, &mut derived.trades, &mut derived.stock) {
                fail(error);
            }
        })?;
        scan(ECOLOGY_TABLE, &mut |item| {
            if item.key.sk.starts_with(SEEN_CAPTURE_PREFIX)
                || item.key.sk.starts_with(SEEN_BREED_PREFIX)
            {
                derived.requests_consumed.insert(item.key.to_string());
            }
        })?;
        match failure {
            Some(error) => Err(error),
            None => Ok(derived),
        }
    }

    /// [`Self::read`] over whole tables (`scan` returns every item of the named table): for
    /// tests and small stores.
    pub fn read_tables(
        mut scan: impl FnMut(&str) -> anyhow::Result<Vec<Item>>,
    ) -> anyhow::Result<Self> {
        Self::read(|table, visit| {
            scan(table)?.into_iter().for_each(visit);
            Ok(())
        })
    }

    /// Feed entries in all feeds.
    pub fn feed_entries(&self) -> usize {
        self.feeds
            .values()
            .flat_map(BTreeMap::values)
            .map(Vec::len)
            .sum()
    }

    /// The first difference from `other` in the event-derived tables (canon, feeds, memory,
    /// prune, plans left), readably: a whole `Derived` is too long to print.
    pub fn first_difference(&self, other: &Self) -> Option<String> {
        first_in("canon", &self.canon, &other.canon)
            .or_else(|| first_in("feed", &self.feeds, &other.feeds))
            .or_else(|| first_in("memory", &self.memory, &other.memory))
            .or_else(|| {
                (self.plans_left != other.plans_left).then(|| {
                    format!(
                        "plans left: {} here, {} there",
                        self.plans_left, other.plans_left
                    )
                })
            })
            .or_else(|| {
                let only = |one: &[String], two: &[String]| {
                    one.iter().find(|key| !two.contains(key)).cloned()
                };
                match (
                    only(&self.prune_keys, &other.prune_keys),
                    only(&other.prune_keys, &self.prune_keys),
                ) {
                    (Some(key), _) => Some(format!("prune {key}: only here")),
                    (None, Some(key)) => Some(format!("prune {key}: missing here")),
                    (None, None) => None,
                }
            })
    }

    /// The first difference from `other` in the intake tables (ledger, rejections).
    pub fn first_intake_difference(&self, other: &Self) -> Option<String> {
        first_in("ledger", &self.ledger, &other.ledger)
            .or_else(|| first_in("rejection", &self.rejections, &other.rejections))
    }

    /// One content digest per table (rows, SHA-256 of the compared content), for a report two
    /// runs can be checked against by eye.
    pub fn digests(&self) -> Vec<TableDigest> {
        let feed_rows = |streams: &Streams| {
            streams
                .values()
                .flat_map(BTreeMap::values)
                .map(Vec::len)
                .sum()
        };
        let mut digests = vec![
            TableDigest::of(LEDGER_TABLE, self.ledger.len(), &self.ledger),
            TableDigest::of(REJECTIONS_TABLE, self.rejections.len(), &self.rejections),
            TableDigest::of(CANON_TABLE, self.canon.len(), &self.canon),
            TableDigest::of(
                FEEDS_TABLE,
                feed_rows(&self.feeds),
                &(&self.feeds, self.plans_left),
            ),
            TableDigest::of(MEMORY_TABLE, feed_rows(&self.memory), &self.memory),
            TableDigest::of(PRUNE_TABLE, self.prune_keys.len(), &self.prune_keys),
        ];
        if !self.stock.is_empty() || !self.requests_consumed.is_empty() {
            digests.extend([
                TableDigest::of(
                    MARKET_TABLE,
                    self.trades.len(),
                    &(&self.trades, &self.stock),
                ),
                TableDigest::of(
                    ECOLOGY_TABLE,
                    self.requests_consumed.len(),
                    &self.requests_consumed,
                ),
            ]);
        }
        digests
    }

    /// The first difference from `other` in the world's tables (market, ecology).
    pub fn first_world_difference(&self, other: &Self) -> Option<String> {
        first_in("trade", &self.trades, &other.trades)
            .or_else(|| first_in("stock", &self.stock, &other.stock))
            .or_else(|| {
                match (
                    self.requests_consumed
                        .difference(&other.requests_consumed)
                        .next(),
                    other
                        .requests_consumed
                        .difference(&self.requests_consumed)
                        .next(),
                ) {
                    (Some(key), _) => Some(format!("ecology {key}: only here")),
                    (None, Some(key)) => Some(format!("ecology {key}: missing here")),
                    (None, None) => None,
                }
            })
    }
}

/// A table's compared content in a line: rows and a SHA-256 over them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableDigest {
    pub table: &'static str,
    pub rows: usize,
    pub sha256: String,
}

impl TableDigest {
    fn of(table: &'static str, rows: usize, content: &impl Debug) -> Self {
        // Hashed as it is formatted: the text of a million-row table is never built.
        struct Hasher(Sha256);
        impl std::fmt::Write for Hasher {
            fn write_str(&mut self, text: &str) -> std::fmt::Result {
                self.0.update(text.as_bytes());
                Ok(())
            }
        }
        use std::fmt::Write as _;
        let mut hasher = Hasher(Sha256::new());
        let _ = write!(hasher, "{content:?}");
        Self {
            table,
            rows,
            sha256: hex::encode(hasher.0.finalize()),
        }
    }
}

/// The sort-key prefixes of the seen markers of consumed captures and breed requests (see
/// `worldfleet_ecology::shell::store`); migrants' markers (`seen#m#`) follow the ticks.
const SEEN_CAPTURE_PREFIX: &str = "seen#c#";
const SEEN_BREED_PREFIX: &str = "seen#b#";

/// Whether a prune key names a region, partition or feed of the world's cells (`wild/…`,
/// `parts#wild/…`, `district:wild/…`), where only the ticks' news is published.
fn names_wild(text: &str) -> bool {
    text.split(['#', ':']).any(|part| {
        part.strip_prefix(WILD_REALM)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Whether a canon entry (its JSON) is a world tick's news.
fn is_news(canon: &serde_json::Value) -> bool {
    match (canon["partition"].as_str(), canon["event_id"].as_str()) {
        (Some(partition), Some(event_id)) => is_news_event(partition, event_id),
        _ => false,
    }
}

/// Adds a market item's compared content: a transaction record's verdict, good, side and
/// quantity, or a station's stock.
fn market_row(
    item: Item,
    trades: &mut BTreeMap<String, String>,
    stock: &mut BTreeMap<String, String>,
) -> anyhow::Result<()> {
    if item.key.sk.starts_with("tx#") {
        let field = |name: &str| item.str(name).unwrap_or_default().to_owned();
        trades.insert(
            item.key.to_string(),
            format!(
                "{} {} {} {}",
                field("verdict"),
                field("good"),
                field("side"),
                item.i64("quantity").unwrap_or_default()
            ),
        );
    } else if item.key.sk == MARKET_SK {
        let stored = StoredMarket::from_item(&item)
            .map_err(|error| anyhow::anyhow!("market {}: {error}", item.key))?;
        let supply: Vec<String> = stored
            .market
            .goods
            .iter()
            .map(|(good, market)| format!("{good}={}", market.supply))
            .collect();
        stock.insert(item.key.pk.clone(), supply.join(" "));
    }
    Ok(())
}

/// A canon item's key, the digest of its compared content and the plan it points at; `None`
/// for a tick's news.
fn canon_row(mut item: Item) -> anyhow::Result<Option<(String, RowDigest, Option<String>)>> {
    let json = item
        .str("canon")
        .with_context(|| format!("canon {} has no canon JSON", item.key))?;
    let mut json: serde_json::Value =
        serde_json::from_str(json).with_context(|| format!("canon {}", item.key))?;
    if is_news(&json) {
        return Ok(None);
    }
    let plan = item.str("dist_plan").map(|plan_id| plan_key(plan_id).pk);
    if let Some(object) = json.as_object_mut() {
        object.remove("composed_at_ms");
        object.remove("accepted_at_ms");
    }
    item.attributes.remove("composed_at_ms");
    item.attributes.remove("dist_plan");
    item.attributes.remove("canon");
    let digest = RowDigest::of(&format!("{json} {:?}", item.attributes));
    Ok(Some((item.key.to_string(), digest, plan)))
}

/// Feed pages (or observation items) as they are scanned: per owner, per source partition, each
/// entry's sequence number and digest; sorted into [`Streams`] at the end.
#[derive(Default)]
struct Pages(BTreeMap<String, BTreeMap<String, Vec<(u64, RowDigest)>>>);

impl Pages {
    fn add(&mut self, owner: &str, entries: Vec<FeedEntry>) {
        for mut entry in entries {
            if is_news_event(entry.partition.as_str(), &entry.event_id) {
                continue;
            }
            let seq = entry.seq;
            entry.seq = 0;
            entry.accepted_at_ms = 0;
            let digest = RowDigest::of(&format!("{entry:?}"));
            let by_partition = match self.0.get_mut(owner) {
                Some(by_partition) => by_partition,
                None => self.0.entry(owner.to_owned()).or_default(),
            };
            match by_partition.get_mut(entry.partition.as_str()) {
                Some(stream) => stream.push((seq, digest)),
                None => {
                    by_partition.insert(entry.partition.to_string(), vec![(seq, digest)]);
                }
            }
        }
    }

    fn into_streams(self) -> Streams {
        self.0
            .into_iter()
            .map(|(owner, by_partition)| {
                let by_partition = by_partition
                    .into_iter()
                    .map(|(partition, mut stream)| {
                        stream.sort_unstable_by_key(|(seq, _)| *seq);
                        (
                            partition,
                            stream.into_iter().map(|(_, digest)| digest).collect(),
                        )
                    })
                    .collect();
                (owner, by_partition)
            })
            .collect()
    }
}

fn first_in<V: PartialEq + Debug>(
    what: &str,
    here: &BTreeMap<String, V>,
    there: &BTreeMap<String, V>,
) -> Option<String> {
    for (key, value) in there {
        match here.get(key) {
            None => return Some(format!("{what} {key}: missing here")),
            Some(other) if other != value => {
                return Some(format!("{what} {key}: here {other:?}, there {value:?}"));
            }
            Some(_) => {}
        }
    }
    here.keys()
        .find(|key| !there.contains_key(*key))
        .map(|key| format!("{what} {key}: only here"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use worldfleet_ports::Key;

    fn ledger_row(event: &str, accepted_at_ms: i64) -> Item {
        Item::new(Key::new("p#district-1", event))
            .with("envelope", "{}")
            .with("accepted_at_ms", accepted_at_ms)
            .with("message_id", format!("m-{accepted_at_ms}"))
    }

    fn read(ledger: Vec<Item>) -> Derived {
        Derived::read_tables(|table| {
            Ok(if table == LEDGER_TABLE {
                ledger.clone()
            } else {
                Vec::new()
            })
        })
        .expect("read")
    }

    fn read_tables(tables: Vec<(&'static str, Vec<Item>)>) -> Derived {
        Derived::read_tables(|name| {
            Ok(tables
                .iter()
                .find(|(table, _)| *table == name)
                .map(|(_, items)| items.clone())
                .unwrap_or_default())
        })
        .expect("read")
    }

    fn trade(window_id: i64, verdict: &str) -> Item {
        Item::new(Key::new(
            "core/r-0/station-1",
            "tx#01JD0000000000000000000001",
        ))
        .with("good", "ore")
        .with("side", "buy")
        .with("quantity", 3_i64)
        .with("verdict", verdict)
        .with("window_id", window_id)
        .with("unit_price_milli", 1_000 + window_id)
    }

    fn page(feed: &str, entries: &[(u64, &str, &str)]) -> Item {
        use worldfleet_domain::{EventKind, FeedPage, PartitionUid};
        let entries: Vec<FeedEntry> = entries
            .iter()
            .map(|(seq, event_id, text)| FeedEntry {
                seq: *seq,
                event_id: (*event_id).to_owned(),
                partition: PartitionUid::parse("gm/d-1/s-1").unwrap(),
                kind: EventKind::Action,
                actor: "p-1".into(),
                text: (*text).to_owned(),
                accepted_at_ms: *seq * 7,
            })
            .collect();
        let page = FeedPage {
            first_seq: entries[0].seq,
            entries,
        };
        worldfleet_tables::plan::page_item(feed, &page, 1).unwrap()
    }

    #[test]
    fn feeds_compare_entries_in_order_not_their_numbers_or_pages() {
        let one = read_tables(vec![(
            FEEDS_TABLE,
            vec![page("player:p-1", &[(1, "e1", "a"), (2, "e2", "b")])],
        )]);
        let renumbered = read_tables(vec![(
            FEEDS_TABLE,
            vec![
                page("player:p-1", &[(5, "e1", "a")]),
                page("player:p-1", &[(9, "e2", "b")]),
            ],
        )]);
        assert_eq!(one.digests(), renumbered.digests());
        assert_eq!(one.first_difference(&renumbered), None);
        let reworded = read_tables(vec![(
            FEEDS_TABLE,
            vec![page("player:p-1", &[(1, "e1", "a"), (2, "e2", "c")])],
        )]);
        assert_ne!(one.digests(), reworded.digests());
        let difference = one.first_difference(&reworded).expect("a difference");
        assert!(
            difference.starts_with("feed player:p-1: here {"),
            "{difference}"
        );
        let swapped = read_tables(vec![(
            FEEDS_TABLE,
            vec![page("player:p-1", &[(1, "e2", "b"), (2, "e1", "a")])],
        )]);
        assert!(one.first_difference(&swapped).is_some(), "order counts");
    }

    #[test]
    fn plans_left_count_only_plans_that_own_events() {
        let canon = Item::new(Key::new("gm/d-1/s-1", "e1"))
            .with("canon", r#"{"partition":"gm/d-1/s-1","event_id":"e1"}"#)
            .with("dist_plan", "p-owner");
        let plan = |id: &str| Item::new(plan_key(id)).with("plan", "{}");
        let crashed = read_tables(vec![
            (CANON_TABLE, vec![canon.clone()]),
            (FEEDS_TABLE, vec![plan("p-owner"), plan("p-orphan")]),
        ]);
        let calm = read_tables(vec![
            (CANON_TABLE, vec![canon]),
            (FEEDS_TABLE, vec![plan("p-owner")]),
        ]);
        assert_eq!(crashed.plans_left, 1);
        assert_eq!(crashed.digests(), calm.digests());
    }

    #[test]
    fn trades_compare_by_verdict_not_by_their_price_window() {
        let one = read_tables(vec![(MARKET_TABLE, vec![trade(1, "applied")])]);
        let later = read_tables(vec![(MARKET_TABLE, vec![trade(7, "applied")])]);
        assert_eq!(one.digests(), later.digests());
        let refused = read_tables(vec![(
            MARKET_TABLE,
            vec![trade(1, "refused:insufficient_stock")],
        )]);
        assert!(one.first_world_difference(&refused).is_some());
    }

    #[test]
    fn requests_consumed_count_and_migrants_do_not() {
        let seen = |sk: &str| Item::new(Key::new("wild/zone-00/cell-01", sk)).with("tick", 4_i64);
        let one = read_tables(vec![(
            ECOLOGY_TABLE,
            vec![seen("seen#c#e1"), seen("seen#m#x"), seen("state")],
        )]);
        let other = read_tables(vec![(ECOLOGY_TABLE, vec![seen("seen#c#e1")])]);
        assert_eq!(one.digests(), other.digests());
        let missing = read_tables(vec![(ECOLOGY_TABLE, vec![seen("seen#b#e2")])]);
        assert_eq!(
            one.first_world_difference(&missing).as_deref(),
            Some("ecology wild/zone-00/cell-01/seen#c#e1: only here")
        );
    }

    #[test]
    fn news_rows_and_wild_prune_keys_are_left_out() {
        let prune = |pk: &str, sk: &str| Item::new(Key::new(pk, sk)).with("at_ms", 1_i64);
        let with_news = read_tables(vec![(
            PRUNE_TABLE,
            vec![
                prune("activity#03", "gm/d-1"),
                prune("activity#05", "wild/zone-00"),
                prune("parts#wild/zone-00", "wild/zone-00/cell-01"),
                prune("feeds#02", "district:wild/zone-00"),
            ],
        )]);
        assert_eq!(with_news.prune_keys, vec!["activity#03/gm/d-1".to_owned()]);
        assert!(names_wild("district:wild/zone-00"));
        assert!(!names_wild("district:wilder/zone-00"));
    }

    #[test]
    fn run_dependent_fields_do_not_count_and_content_does() {
        let one = read(vec![ledger_row("e1", 10), ledger_row("e2", 11)]);
        let later = read(vec![ledger_row("e1", 99), ledger_row("e2", 98)]);
        assert_eq!(one.digests(), later.digests());
        assert_eq!(one.first_intake_difference(&later), None);

        let missing = read(vec![ledger_row("e1", 10)]);
        assert_ne!(one.digests(), missing.digests());
        assert_eq!(
            one.first_intake_difference(&missing).as_deref(),
            Some("ledger p#district-1/e2: only here")
        );
    }
}
