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
//!   are counted (prune removes completed ones);
//! - `memory`: each player's observed entries, as for feeds (observation keys and byte counts
//!   follow the pages);
//! - `prune`: the keys of region activity, region partitions and the feed index (their
//!   attributes are timestamps), not the sweep's schedule row (`sweep/due`: whether a run was
//!   long enough for the watchdog's minute to come round);
//! - `ledger`: every event row, every attribute except `accepted_at_ms` and `message_id` (when
//!   and from which queue message intake accepted it); not prune's checkpoint rows
//!   (`~checkpoint`, `~snap#…`), which cover the events older than intake's clock window whose
//!   derived state was complete when prune last ran, so how far they reach depends on timing;
//! - `rejections`: each refused body's key and reason (its timestamps, message id and count of
//!   messages carrying it depend on how often a gateway resent it).
//!
//! The world's tables (ecology, market, production, timers) are not part of it: their ticks
//! and price windows run on wall-clock timers, so two runs of different length tick a
//! different number of times by design.

use std::collections::BTreeMap;
use std::fmt::Debug;

use anyhow::Context;
use sha2::{Digest, Sha256};
use worldfleet_domain::FeedEntry;
use worldfleet_domain::names::{
    CANON_TABLE, FEEDS_TABLE, LEDGER_TABLE, MEMORY_TABLE, PRUNE_TABLE, REJECTIONS_TABLE,
};
use worldfleet_ports::Item;
use worldfleet_prune::checkpoint::is_event_entry;
use worldfleet_tables::memory::{OBSERVATION_PREFIX, observation_entries};
use worldfleet_tables::plan::{PAGE_PREFIX, page_from_item};

/// The partition of prune's sweep schedule row.
const SWEEP_SCHEDULE_PK: &str = "sweep";

/// Per feed (or player), per source partition: the entries in sequence order, without their
/// sequence numbers.
pub type Streams = BTreeMap<String, BTreeMap<String, Vec<FeedEntry>>>;

/// The derived tables of a store, minus what is run-dependent (see the module).
#[derive(Debug, Default, PartialEq)]
pub struct Derived {
    pub canon: BTreeMap<String, String>,
    pub feeds: Streams,
    pub plans_left: usize,
    pub memory: Streams,
    pub prune_keys: Vec<String>,
    pub ledger: BTreeMap<String, String>,
    pub rejections: BTreeMap<String, String>,
}

impl Derived {
    /// Reads a store's tables through `scan` (every item of the named table).
    pub fn read(mut scan: impl FnMut(&str) -> anyhow::Result<Vec<Item>>) -> anyhow::Result<Self> {
        let canon = scan(CANON_TABLE)?
            .into_iter()
            .map(|mut item| {
                item.attributes.remove("composed_at_ms");
                item.attributes.remove("dist_plan");
                let mut json: serde_json::Value = serde_json::from_str(
                    item.str("canon")
                        .with_context(|| format!("canon {} has no canon JSON", item.key))?,
                )
                .with_context(|| format!("canon {}", item.key))?;
                if let Some(object) = json.as_object_mut() {
                    object.remove("composed_at_ms");
                    object.remove("accepted_at_ms");
                }
                item.attributes.remove("canon");
                Ok((
                    item.key.to_string(),
                    format!("{json} {:?}", item.attributes),
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        let feed_items = scan(FEEDS_TABLE)?;
        let plans_left = feed_items
            .iter()
            .filter(|item| item.key.pk.starts_with("plan#"))
            .count();
        let pages = feed_items
            .iter()
            .filter(|item| item.key.sk.starts_with(PAGE_PREFIX))
            .map(|item| {
                let page = page_from_item(item)
                    .map_err(|error| anyhow::anyhow!("feed page {}: {error}", item.key))?;
                Ok((item.key.pk.clone(), page.entries))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let observations = scan(MEMORY_TABLE)?
            .iter()
            .filter(|item| item.key.sk.starts_with(OBSERVATION_PREFIX))
            .map(|item| {
                let entries = observation_entries(item)
                    .map_err(|error| anyhow::anyhow!("observation {}: {error}", item.key))?;
                Ok((item.key.pk.clone(), entries))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let prune_keys = scan(PRUNE_TABLE)?
            .iter()
            .filter(|item| item.key.pk != SWEEP_SCHEDULE_PK)
            .map(|item| item.key.to_string())
            .collect();
        let ledger = scan(LEDGER_TABLE)?
            .into_iter()
            .filter(is_event_entry)
            .map(|mut item| {
                item.attributes.remove("accepted_at_ms");
                item.attributes.remove("message_id");
                (item.key.to_string(), format!("{:?}", item.attributes))
            })
            .collect();
        let rejections = scan(REJECTIONS_TABLE)?
            .iter()
            .map(|item| {
                (
                    item.key.to_string(),
                    item.str("reason").unwrap_or_default().to_owned(),
                )
            })
            .collect();
        Ok(Self {
            canon,
            feeds: streams(pages),
            plans_left,
            memory: streams(observations),
            prune_keys,
            ledger,
            rejections,
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
        vec![
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
        ]
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
        let digest = Sha256::digest(format!("{content:?}").as_bytes());
        Self {
            table,
            rows,
            sha256: hex::encode(digest),
        }
    }
}

fn streams(items: impl IntoIterator<Item = (String, Vec<FeedEntry>)>) -> Streams {
    let mut sorted: BTreeMap<String, Vec<FeedEntry>> = BTreeMap::new();
    for (owner, entries) in items {
        sorted.entry(owner).or_default().extend(entries);
    }
    sorted
        .into_iter()
        .map(|(owner, mut entries)| {
            entries.sort_by_key(|entry| entry.seq);
            let mut by_partition: BTreeMap<String, Vec<FeedEntry>> = BTreeMap::new();
            for mut entry in entries {
                entry.seq = 0;
                entry.accepted_at_ms = 0;
                by_partition
                    .entry(entry.partition.to_string())
                    .or_default()
                    .push(entry);
            }
            (owner, by_partition)
        })
        .collect()
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
        Derived::read(|table| {
            Ok(if table == LEDGER_TABLE {
                ledger.clone()
            } else {
                Vec::new()
            })
        })
        .expect("read")
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
