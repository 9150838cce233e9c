//! The independent audit: what the tables say, checked against what the world sent.
//!
//! The audit trusts no stage counter. It reads the ledger, canon, feeds and rejections through
//! the table port and compares them with the world's own record of what it emitted:
//! every good event must be in its partition's ledger, have canon, and appear exactly once in
//! every feed the republish rules name for it; every bad envelope must have a rejection row
//! with the expected reason. Latency comes from the tables too: a feed page's write time minus
//! each entry's intake time.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context as _;

use hdrhistogram::Histogram;
use serde::Serialize;
use worldfleet_distribute::RepublishRules;
use worldfleet_domain::names::{CANON_TABLE, FEEDS_TABLE, LEDGER_TABLE, REJECTIONS_TABLE};
use worldfleet_domain::{FeedId, PartitionUid, RejectReason};
use worldfleet_ports::{SortKeyRange, Table, query_all};
use worldfleet_prune::checkpoint::{SNAPSHOT_PREFIX, is_event_entry};
use worldfleet_tables::canon;
use worldfleet_tables::plan::page_from_item;

use crate::world::Expectation;

/// The audit's findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditReport {
    pub good_sent: u64,
    pub bad_sent: u64,
    /// Ledger entries found for the world's partitions.
    pub ledger_entries: u64,
    /// Canon items found.
    pub canon: u64,
    /// Feed entries found, all feeds together.
    pub feed_entries: u64,
    /// Bad envelopes with a rejection row carrying the expected reason.
    pub rejected_as_expected: u64,
    /// Rejection rows found for the world's gateways (bad ones and any wrongly refused good).
    pub rejection_rows: u64,
    /// Good events or expected feed entries missing, plus bad envelopes without a row.
    pub lost: u64,
    /// Feed entries beyond the first for the same event in the same feed.
    pub duplicates: u64,
    /// Bad envelopes refused for a different reason than expected.
    pub wrong_reason: u64,
    /// Examples of what was lost or doubled, for the operator.
    pub problems: Vec<String>,
    /// Intake-to-feed latency, from the tables.
    pub latency_p50_ms: u64,
    pub latency_p99_ms: u64,
    pub latency_max_ms: u64,
    /// The last feed write, Unix milliseconds.
    pub last_feed_write_ms: u64,
    /// Canon text by event id (for comparing runs).
    #[serde(skip)]
    pub canon_text: BTreeMap<String, String>,
    /// Event ids per feed, in sequence order (for comparing runs).
    #[serde(skip)]
    pub feeds: BTreeMap<String, Vec<String>>,
    /// The partition of every event with canon.
    #[serde(skip)]
    pub event_partition: BTreeMap<String, String>,
}

/// What the audit keeps of one canon entry.
struct CanonFound {
    text: String,
    /// The feeds the republish rules name for it that do not hold it.
    missing_from: Vec<String>,
}

/// What the audit needs to know about the world.
pub struct Audit<'a> {
    pub table: &'a dyn Table,
    pub rules: &'a RepublishRules,
    pub partitions: Vec<PartitionUid>,
    pub players: Vec<String>,
    pub factions: Vec<String>,
    pub expectations: &'a [Expectation],
    /// Keep the rows for comparing runs (`canon_text`, `feeds`, `event_partition` of the
    /// report); without them the audit needs about a third of the memory.
    pub keep_rows: bool,
}

impl Audit<'_> {
    /// Reads everything and reports.
    pub async fn run(&self) -> anyhow::Result<AuditReport> {
        let mut report = AuditReport::default();
        let mut ledger = BTreeSet::new();
        for partition in &self.partitions {
            for item in query_all(
                self.table,
                LEDGER_TABLE,
                partition.as_str(),
                SortKeyRange::All,
            )
            .await?
            {
                // Checkpoint rows are not events; an event compacted behind a checkpoint
                // stays accounted for by its snapshot row.
                if let Some(event_id) = item.key.sk.strip_prefix(SNAPSHOT_PREFIX) {
                    ledger.insert(event_id.to_owned());
                } else if is_event_entry(&item) {
                    ledger.insert(item.key.sk.clone());
                }
            }
        }
        report.ledger_entries = ledger.len() as u64;

        // Feeds: every entry of every feed the world could have touched.
        let mut feed_ids: Vec<FeedId> = self.players.iter().cloned().map(FeedId::Player).collect();
        feed_ids.extend(self.factions.iter().cloned().map(FeedId::Faction));
        let districts: BTreeSet<PartitionUid> =
            self.partitions.iter().map(|uid| uid.prefix(2)).collect();
        feed_ids.extend(districts.into_iter().map(FeedId::District));
        let mut latency = LatencyHistogram::new();
        // Event ids are interned: every feed entry is a (feed, event) pair of indexes, so the
        // audit holds each id once however many feeds it reached (owned (feed, event) string
        // pairs cost ~150 MiB at 100,000 events with fan-out 8). The rows themselves, one id
        // per entry, are kept only when asked for (`keep_rows`).
        let mut ids: HashMap<Arc<str>, u32> = HashMap::new();
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut feed_index: HashMap<String, u32> = HashMap::new();
        let mut feed_rows: Vec<(String, Vec<u32>)> = Vec::new();
        let mut occurrences: HashSet<(u32, u32)> = HashSet::new();
        for feed in &feed_ids {
            let pk = feed.to_string();
            let feed_number = u32::try_from(feed_rows.len()).context("too many feeds")?;
            let mut events = Vec::new();
            let mut repeated: BTreeMap<Arc<str>, u64> = BTreeMap::new();
            for item in query_all(
                self.table,
                FEEDS_TABLE,
                &pk,
                SortKeyRange::Prefix("page#".into()),
            )
            .await?
            {
                let written_at = item.i64("written_at_ms").unwrap_or(0).max(0) as u64;
                report.last_feed_write_ms = report.last_feed_write_ms.max(written_at);
                for entry in page_from_item(&item)?.entries {
                    latency.record_ms(written_at.saturating_sub(entry.accepted_at_ms));
                    let event = match ids.get(entry.event_id.as_str()) {
                        Some(&event) => event,
                        None => {
                            let event = u32::try_from(names.len()).context("too many events")?;
                            let name: Arc<str> = entry.event_id.into();
                            ids.insert(Arc::clone(&name), event);
                            names.push(name);
                            event
                        }
                    };
                    if !occurrences.insert((feed_number, event)) {
                        *repeated
                            .entry(Arc::clone(&names[event as usize]))
                            .or_insert(1) += 1;
                    }
                    if self.keep_rows {
                        events.push(event);
                    }
                    report.feed_entries += 1;
                }
            }
            for (event_id, count) in repeated {
                report.duplicates += count - 1;
                report.note(format!("event {event_id} appears {count} times in {pk}"));
            }
            feed_index.insert(pk.clone(), feed_number);
            feed_rows.push((pk, events));
        }

        // Canon, read after the feeds: each entry's feeds are checked as it is read, so only its
        // text and the feeds it is missing from are kept, not the whole entry (its audience
        // alone is larger than the rest of the audit's state per event).
        let mut canon_by_event: HashMap<String, CanonFound> = HashMap::new();
        for partition in &self.partitions {
            for item in query_all(
                self.table,
                CANON_TABLE,
                partition.as_str(),
                SortKeyRange::All,
            )
            .await?
            {
                let entry = canon::from_item(&item)?;
                let event = ids.get(entry.event_id.as_str()).copied();
                let missing_from = self
                    .rules
                    .targets(&entry)
                    .into_iter()
                    .map(|feed| feed.to_string())
                    .filter(|feed| {
                        let found = feed_index.get(feed).copied().zip(event);
                        !found.is_some_and(|pair| occurrences.contains(&pair))
                    })
                    .collect();
                canon_by_event.insert(
                    entry.event_id,
                    CanonFound {
                        text: if self.keep_rows {
                            entry.text
                        } else {
                            String::new()
                        },
                        missing_from,
                    },
                );
            }
        }
        report.canon = canon_by_event.len() as u64;
        drop(occurrences);
        drop(ids);
        if self.keep_rows {
            report.feeds = feed_rows
                .into_iter()
                .filter(|(_, events)| !events.is_empty())
                .map(|(pk, events)| {
                    let events = events
                        .into_iter()
                        .map(|event| names[event as usize].to_string())
                        .collect();
                    (pk, events)
                })
                .collect();
        }
        drop(names);

        // Rejections: rows for every gateway partition the world used.
        let mut rows: BTreeMap<(String, String), Option<RejectReason>> = BTreeMap::new();
        let gateway_partitions: BTreeSet<String> = self
            .expectations
            .iter()
            .filter_map(|expectation| match expectation {
                Expectation::Rejected {
                    gateway_partition, ..
                } => Some(gateway_partition.clone()),
                Expectation::Accepted { .. } | Expectation::World { .. } => None,
            })
            .collect();
        for partition in gateway_partitions {
            for item in
                query_all(self.table, REJECTIONS_TABLE, &partition, SortKeyRange::All).await?
            {
                let reason = item.str("reason").and_then(RejectReason::from_code);
                let body_sha256 = item.str("body_sha256").unwrap_or_default().to_owned();
                rows.insert((partition.clone(), body_sha256), reason);
            }
        }
        report.rejection_rows = rows.len() as u64;

        for expectation in self.expectations {
            match expectation {
                Expectation::Accepted {
                    partition,
                    event_id,
                } => {
                    report.good_sent += 1;
                    if !ledger.contains(event_id) {
                        report.lost += 1;
                        report.note(format!(
                            "event {event_id} of {partition} is not in the ledger"
                        ));
                        continue;
                    }
                    let Some(entry) = canon_by_event.get(event_id) else {
                        report.lost += 1;
                        report.note(format!("event {event_id} of {partition} has no canon"));
                        continue;
                    };
                    if self.keep_rows {
                        report
                            .canon_text
                            .insert(event_id.clone(), entry.text.clone());
                        report
                            .event_partition
                            .insert(event_id.clone(), partition.clone());
                    }
                    for feed in &entry.missing_from {
                        report.lost += 1;
                        report.note(format!("event {event_id} is missing from {feed}"));
                    }
                }
                // World events are the world audit's (`worldfleet_runtime::simulation`).
                Expectation::World { .. } => {}
                Expectation::Rejected {
                    reason,
                    gateway_partition,
                    body_hash,
                } => {
                    report.bad_sent += 1;
                    match rows.get(&(gateway_partition.clone(), body_hash.clone())) {
                        None => {
                            report.lost += 1;
                            report.note(format!(
                                "bad envelope {body_hash} ({}) has no rejection row",
                                reason.code()
                            ));
                        }
                        Some(found) if *found == Some(*reason) => report.rejected_as_expected += 1,
                        Some(found) => {
                            report.wrong_reason += 1;
                            report.note(format!(
                                "bad envelope {body_hash} refused as {:?}, expected {}",
                                found.map(RejectReason::code),
                                reason.code()
                            ));
                        }
                    }
                }
            }
        }
        (
            report.latency_p50_ms,
            report.latency_p99_ms,
            report.latency_max_ms,
        ) = latency.summary();
        Ok(report)
    }
}

impl AuditReport {
    fn note(&mut self, problem: String) {
        if self.problems.len() < 20 {
            self.problems.push(problem);
        }
    }
}

/// Intake-to-feed latencies in milliseconds, up to a day without clamping (three significant
/// figures). A value past a day is counted as a day; nothing shorter is ever clamped, so a
/// saturated run reports the seconds it really took.
struct LatencyHistogram(Histogram<u64>);

/// The longest latency recorded as itself.
const LATENCY_CEILING_MS: u64 = 24 * 60 * 60 * 1000;

impl LatencyHistogram {
    fn new() -> Self {
        Self(
            Histogram::new_with_bounds(1, LATENCY_CEILING_MS, 3)
                .expect("1 ms to a day at 3 significant figures is a valid histogram"),
        )
    }

    fn record_ms(&mut self, latency_ms: u64) {
        self.0.saturating_record(latency_ms.min(LATENCY_CEILING_MS));
    }

    /// p50, p99 and max in milliseconds (zeros when nothing was recorded).
    fn summary(&self) -> (u64, u64, u64) {
        if self.0.is_empty() {
            return (0, 0, 0);
        }
        (
            self.0.value_at_quantile(0.50),
            self.0.value_at_quantile(0.99),
            self.0.max(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within 0.1 % (three significant figures).
    fn close(found: u64, expected: u64) -> bool {
        found.abs_diff(expected) * 1000 <= expected
    }

    #[test]
    fn long_latencies_are_reported_as_measured_not_clamped() {
        let mut latency = LatencyHistogram::new();
        for _ in 0..98 {
            latency.record_ms(5);
        }
        latency.record_ms(10_000);
        latency.record_ms(36_000);
        let (p50, p99, max) = latency.summary();
        assert_eq!(p50, 5);
        assert!(close(p99, 10_000), "a 10 s latency reads {p99} ms");
        assert!(close(max, 36_000), "a 36 s latency reads {max} ms");
    }

    #[test]
    fn past_a_day_counts_as_a_day_and_nothing_is_an_empty_summary() {
        assert_eq!(LatencyHistogram::new().summary(), (0, 0, 0));
        let mut latency = LatencyHistogram::new();
        latency.record_ms(u64::MAX);
        let (_, _, max) = latency.summary();
        assert!(close(max, LATENCY_CEILING_MS));
    }
}
