//! Ledger checkpoints and `worldfleet replay`: the ledger as the source of truth.
//!
//! # What is derived from the ledger
//!
//! intake appends every accepted event to its partition's ledger (`pk` = partition UID,
//! `sk` = event id; the world's event ids sort in emission order, and a partition's events
//! reach intake in that order through its FIFO group, so a partition's ledger order is its
//! sort-key order). From the narrative events (dialogue, action, combat, quest) the stages
//! after intake derive:
//! - `canon` — one item per event (classify decides, compose writes);
//! - `feeds` — pages of every feed the republish rules name, with their sequence counters
//!   and publication plans (distribute), trimmed and cleaned by prune;
//! - `memory` — each player's observations and byte count (distribute, capped by prune);
//! - `prune` — region activity records and the feed index (distribute, prune).
//!
//! Replay rebuilds exactly these. It does *not* rebuild: `rejections` (refused envelopes never
//! reach the ledger), `ratelimits` and `idempotency` (bookkeeping of live traffic, not world
//! state), and the world simulation's tables (`market`, `production`, `ecology`, `timers`):
//! trades, captures and breeds are in the ledger, but those tables also advance on timer ticks
//! whose timing is not in the ledger, so re-running them would not reproduce the live state.
//! Those events are copied with the ledger and counted in the report, not re-applied.
//!
//! # Checkpoints
//!
//! A checkpoint is taken per ledger partition (a scene, or a scene's slot) at an event boundary
//! up to which the partition's derived state is complete: every event up to it has its canon
//! and has been published to feeds (its canon carries a plan, and that plan is completed or
//! already pruned). It is stored beside the entries it covers, in the ledger table, under sort
//! keys that sort after every event id (event ids are ULIDs or UUIDv7s, never `~`):
//! - `~snap#EVENT` — one row per covered event holding its canon (the composed line: a line a
//!   model wrote cannot be re-derived without the model, and a replay never calls models);
//! - `~checkpoint` — the head: `through` (the last covered event id), `events` (how many the
//!   checkpoint covers) and `taken_at_ms`.
//!
//! Snapshot rows are written before the head, and the head only moves forward (a conditional
//! put on its previous `through`), so a crash while checkpointing leaves the previous
//! checkpoint valid; snapshot rows past the head's `through` are ignored. Only events accepted
//! before a cut-off are covered (by default the intake clock window ago), so that compaction —
//! deleting the covered ledger entries once the head is written — is safe: an envelope that
//! old is refused as stale by intake, so the entry is no longer needed as intake's idempotency
//! record. Feeds and memory are not snapshotted: they are re-derived from the snapshot canon by
//! distribute, which is deterministic and calls no model.
//!
//! # Replay
//!
//! [`replay`] copies the source ledger (entries and checkpoints) into a fresh store, restores
//! each partition's checkpointed canon and queues it for distribute, queues every narrative
//! event after the checkpoint (or every one, without a checkpoint) for classify, and runs the
//! real classify (rules), compose (templates), distribute and prune handlers through the same
//! pollers as `worldfleet run` until every queue has drained. Events are queued in ledger
//! order: each partition's in sort-key order, partitions merged by acceptance time (then
//! partition UID), checkpointed events first; FIFO groups keep each partition's order through
//! every stage. A ledger entry whose id sorts at or before a checkpoint's `through` but has no
//! snapshot (it reached the ledger after the checkpoint was taken) is replayed, not skipped;
//! checkpoints never cover it, so compaction never deletes it.
//!
//! What a replay reproduces exactly, and what it cannot: canon items are identical except
//! `composed_at_ms` (when compose ran) and `dist_plan` (the id of the publication plan, a fresh
//! ULID per plan); every feed holds the same entries with the same content and the same order
//! within each partition, but sequence numbers and page boundaries depend on how events were
//! batched and interleaved across partitions at distribute (feeds are gap-tolerant by design:
//! a crash burns numbers), so they are run-specific, and so are observation keys and byte
//! counts of player memory, which follow the pages.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use worldfleet_domain::envelope::ReceivedEnvelope;
use worldfleet_domain::names::{
    ALL_QUEUES, CANON_TABLE, CLASSIFY_QUEUE, DISTRIBUTE_QUEUE, LEDGER_TABLE, dead_letter_queue,
};
use worldfleet_domain::{AcceptedEvent, CanonEntry, DistributeRequest};
use worldfleet_embedded::{EmbeddedStore, StoreOptions};
use worldfleet_intake::handler::{accepted_event, route};
use worldfleet_intake::{GatewayKeys, IntakeConfig};
use worldfleet_kit::{StageContext, send_all};
use worldfleet_ports::table::MAX_BATCH_WRITE;
use worldfleet_ports::{BatchWrite, Clock, Item, OutgoingMessage, Queue, SystemClock, Table};
use worldfleet_tables::canon;

use worldfleet_stages::{
    ClassifierSetting, ComposerSetting, NARRATIVE_STAGES, StageSettings, build_stages,
};

use crate::fleet::{Fleet, wait_for_drain};
use crate::poller::PollerConfig;
use crate::resources::{QueueSettings, declare};

pub use worldfleet_prune::checkpoint::{
    CHECKPOINT_SORT_KEY, CheckpointOptions, CheckpointOutcome, SNAPSHOT_PREFIX, checkpoint_key,
    checkpoint_partition, is_event_entry, read_checkpoint, snapshot_key,
};

/// What checkpointing a store did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckpointReport {
    pub partitions: u64,
    /// Partitions whose checkpoint moved.
    pub advanced: u64,
    pub covered: u64,
    pub compacted: u64,
}

/// Checkpoints every ledger partition of the embedded store in `dir`.
pub async fn checkpoint_store(
    dir: &Path,
    options: CheckpointOptions,
) -> anyhow::Result<CheckpointReport> {
    let store = open_existing(dir)?;
    let result = checkpoint_open_store(&store, options).await;
    store.close();
    result
}

async fn checkpoint_open_store(
    store: &EmbeddedStore,
    options: CheckpointOptions,
) -> anyhow::Result<CheckpointReport> {
    let table = store.table();
    let mut partitions: Vec<String> = table
        .scan(LEDGER_TABLE)?
        .into_iter()
        .map(|item| item.key.pk)
        .collect();
    partitions.dedup();
    let mut report = CheckpointReport::default();
    for partition in &partitions {
        let outcome = checkpoint_partition(table.as_ref(), partition, options).await?;
        report.partitions += 1;
        if outcome.covered > 0 {
            report.advanced += 1;
        }
        report.covered += outcome.covered;
        report.compacted += outcome.compacted;
    }
    Ok(report)
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    /// Ledger rows copied into the fresh store (entries and checkpoint rows).
    pub ledger_rows_copied: u64,
    /// Partitions that had a checkpoint.
    pub checkpoints: u64,
    /// Events whose canon came from a checkpoint (re-published, not re-composed).
    pub restored_from_checkpoints: u64,
    /// Narrative events after the checkpoints, run through classify, compose and distribute.
    pub replayed: u64,
    /// Trades, captures and breeds: copied with the ledger, not re-applied (see the module).
    pub world_events_not_replayed: u64,
    /// Whether every queue drained.
    pub drained: bool,
    /// Messages left in dead-letter queues (0 for a correct replay).
    pub dead_letters: u64,
}

/// How long [`replay`] waits for the stages to drain before giving up.
pub const REPLAY_DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

fn open_existing(dir: &Path) -> anyhow::Result<EmbeddedStore> {
    if !dir.is_dir() {
        bail!("{} is not a store directory", dir.display());
    }
    let options = StoreOptions {
        janitor_interval: None,
        ..StoreOptions::default()
    };
    EmbeddedStore::open(dir, Arc::new(SystemClock), options)
        .with_context(|| format!("open the embedded store in {}", dir.display()))
}

/// One partition's ledger as read from the source store.
#[derive(Default)]
struct PartitionLedger {
    head: Option<(String, u64)>,
    snapshots: BTreeMap<String, String>,
    /// Event entries in sort-key (ledger) order.
    entries: Vec<Item>,
}

/// What replay feeds one stage with, in ledger order.
enum Work {
    /// Checkpointed canon: restored, then published by distribute.
    Restored(CanonEntry),
    /// A narrative event after the checkpoint: classified, composed, published.
    Event(AcceptedEvent),
}

impl Work {
    fn order_key(&self) -> (u64, String) {
        match self {
            Self::Restored(entry) => (entry.accepted_at_ms, entry.partition.to_string()),
            Self::Event(event) => (event.accepted_at_ms, event.partition.to_string()),
        }
    }
}

/// Merges per-partition runs (each in ledger order) by acceptance time, then partition UID,
/// keeping each run's own order.
fn merge_in_ledger_order(runs: Vec<Vec<Work>>) -> Vec<Work> {
    let mut runs: Vec<std::vec::IntoIter<Work>> = runs.into_iter().map(Vec::into_iter).collect();
    let mut heads: Vec<Option<Work>> = runs.iter_mut().map(Iterator::next).collect();
    let mut heap = BinaryHeap::new();
    for (index, head) in heads.iter().enumerate() {
        if let Some(work) = head {
            heap.push(Reverse((work.order_key(), index)));
        }
    }
    let mut merged = Vec::new();
    while let Some(Reverse((_, index))) = heap.pop() {
        if let Some(work) = heads[index].take() {
            merged.push(work);
        }
        heads[index] = runs[index].next();
        if let Some(work) = &heads[index] {
            heap.push(Reverse((work.order_key(), index)));
        }
    }
    merged
}

/// Rebuilds the derived tables of the store in `from` into the fresh store `into` (created
/// when missing; refused when it already holds a ledger) by re-running the stages on the
/// ledger. `from` is only read.
pub async fn replay(from: &Path, into: &Path) -> anyhow::Result<ReplayReport> {
    let source = open_existing(from)?;
    let rows = source.table().scan(LEDGER_TABLE);
    source.close();
    let rows = rows.with_context(|| format!("read the ledger of {}", from.display()))?;
    std::fs::create_dir_all(into).with_context(|| format!("create {}", into.display()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let target = EmbeddedStore::open(into, Arc::clone(&clock), StoreOptions::default())
        .with_context(|| format!("open the embedded store in {}", into.display()))?;
    let result = replay_rows(rows, &target, clock).await;
    target.close();
    result
}

async fn replay_rows(
    rows: Vec<Item>,
    target: &EmbeddedStore,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<ReplayReport> {
    let settings = QueueSettings::default();
    declare(target.queue().as_ref(), target.table().as_ref(), settings).await?;
    if !target.table().scan(LEDGER_TABLE)?.is_empty() {
        bail!("the replay target already holds a ledger: replay into a fresh store directory");
    }
    let mut report = ReplayReport {
        ledger_rows_copied: rows.len() as u64,
        ..ReplayReport::default()
    };
    // The ledger first: the fresh store is a whole store, its ledger the same source of truth.
    let copies: Vec<BatchWrite> = rows.iter().cloned().map(BatchWrite::Put).collect();
    for chunk in copies.chunks(MAX_BATCH_WRITE) {
        target
            .table()
            .batch_write(LEDGER_TABLE, chunk.to_vec())
            .await?;
    }
    let mut ledgers: BTreeMap<String, PartitionLedger> = BTreeMap::new();
    for row in rows {
        let ledger = ledgers.entry(row.key.pk.clone()).or_default();
        if row.key.sk == CHECKPOINT_SORT_KEY {
            let through = row
                .str("through")
                .with_context(|| format!("checkpoint {} has no `through`", row.key))?;
            ledger.head = Some((
                through.to_owned(),
                row.i64("events").unwrap_or(0).max(0) as u64,
            ));
        } else if let Some(event_id) = row.key.sk.strip_prefix(SNAPSHOT_PREFIX) {
            let canon_json = row
                .str("canon")
                .with_context(|| format!("snapshot {} has no canon", row.key))?;
            ledger
                .snapshots
                .insert(event_id.to_owned(), canon_json.to_owned());
        } else if is_event_entry(&row) {
            ledger.entries.push(row);
        } else {
            bail!("unknown ledger row {}", row.key);
        }
    }

    let mut restored_runs = Vec::new();
    let mut event_runs = Vec::new();
    for (partition, ledger) in ledgers {
        let through = ledger.head.as_ref().map(|(through, _)| through.as_str());
        if let Some((through, events)) = &ledger.head {
            report.checkpoints += 1;
            let covered: Vec<&String> = ledger
                .snapshots
                .iter()
                .take_while(|(event_id, _)| event_id.as_str() <= through.as_str())
                .map(|(_, json)| json)
                .collect();
            if covered.len() as u64 != *events {
                bail!(
                    "checkpoint of {partition} covers {events} events but {} snapshot rows are at or before {through}",
                    covered.len()
                );
            }
            let mut run = Vec::new();
            for json in covered {
                let entry: CanonEntry = serde_json::from_str(json)
                    .with_context(|| format!("corrupt snapshot in {partition}"))?;
                run.push(Work::Restored(entry));
            }
            report.restored_from_checkpoints += run.len() as u64;
            restored_runs.push(run);
        }
        let mut run = Vec::new();
        for entry in ledger.entries {
            // Covered by the checkpoint. An entry at or before `through` without a snapshot
            // arrived after the checkpoint was taken (its id sorts early): replay it.
            if through.is_some_and(|through| entry.key.sk.as_str() <= through)
                && ledger.snapshots.contains_key(&entry.key.sk)
            {
                continue;
            }
            let raw = entry
                .str("envelope")
                .with_context(|| format!("ledger entry {} has no envelope", entry.key))?;
            let envelope = ReceivedEnvelope::parse(raw.as_bytes())
                .with_context(|| format!("ledger entry {} holds a bad envelope", entry.key))?
                .envelope;
            let accepted_at_ms = entry
                .i64("accepted_at_ms")
                .with_context(|| format!("ledger entry {} has no accepted_at_ms", entry.key))?
                .max(0) as u64;
            if route(envelope.kind) != CLASSIFY_QUEUE {
                report.world_events_not_replayed += 1;
                continue;
            }
            run.push(Work::Event(accepted_event(&envelope, accepted_at_ms)));
        }
        report.replayed += run.len() as u64;
        event_runs.push(run);
    }

    // Checkpointed events go first: in their partition they precede every later event, and
    // the distribute queue's scene groups keep that order.
    let context = StageContext::new(target.queue(), target.table(), Arc::clone(&clock));
    let mut messages = Vec::new();
    let mut restored_canon = Vec::new();
    for work in merge_in_ledger_order(restored_runs)
        .into_iter()
        .chain(merge_in_ledger_order(event_runs))
    {
        match work {
            Work::Restored(entry) => {
                restored_canon.push(BatchWrite::Put(canon::to_item(&entry)?));
                let group = entry.partition.prefix(3).to_string();
                let event_id = entry.event_id.clone();
                let body = serde_json::to_string(&DistributeRequest { canon: entry })?;
                messages.push((
                    messages.len(),
                    DISTRIBUTE_QUEUE,
                    OutgoingMessage::fifo(body, &group, &event_id),
                ));
            }
            Work::Event(event) => {
                let partition = event.partition.to_string();
                let event_id = event.event_id.clone();
                let body = serde_json::to_string(&event)?;
                messages.push((
                    messages.len(),
                    CLASSIFY_QUEUE,
                    OutgoingMessage::fifo(body, &partition, &event_id),
                ));
            }
        }
    }
    for chunk in restored_canon.chunks(MAX_BATCH_WRITE) {
        target
            .table()
            .batch_write(CANON_TABLE, chunk.to_vec())
            .await?;
    }
    let failures = send_all(&context, messages).await;
    if let Some((_, reason)) = failures.first() {
        bail!(
            "{} replay messages were not queued: {reason}",
            failures.len()
        );
    }

    // The real stages, from the registry with the environment's settings, deterministic
    // choices only: rules classify, templates compose.
    let mut stage_settings = StageSettings::from_env()?;
    stage_settings.intake = Ok(IntakeConfig::new(GatewayKeys::default()));
    stage_settings.classifier = ClassifierSetting::Rules;
    stage_settings.composer = ComposerSetting::Templates;
    let stages = build_stages(&NARRATIVE_STAGES, &context, &stage_settings)?;
    let poller = PollerConfig {
        workers: 2,
        wait: Duration::from_millis(100),
        visibility_timeout: settings.visibility_timeout,
        batching_window: Duration::ZERO,
    };
    let fleet = Fleet::launch(stages, target.queue(), poller, None);
    report.drained = wait_for_drain(target.queue().as_ref(), REPLAY_DRAIN_TIMEOUT, || {}).await?;
    fleet.stop().await;
    for name in ALL_QUEUES {
        report.dead_letters += target
            .queue()
            .depth(&dead_letter_queue(name))
            .await?
            .total();
    }
    if !report.drained || report.dead_letters > 0 {
        bail!(
            "replay did not complete: drained {}, {} messages in dead-letter queues",
            report.drained,
            report.dead_letters
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use worldfleet_domain::{Intent, Tier};

    use super::*;

    fn event(partition: &str, event_id: &str, accepted_at_ms: u64) -> Work {
        Work::Restored(CanonEntry {
            event_id: event_id.into(),
            partition: worldfleet_domain::PartitionUid::parse(partition).unwrap(),
            kind: worldfleet_domain::EventKind::Dialogue,
            actor: "a".into(),
            audience: vec!["a".into()],
            faction: None,
            intent: Intent::Other,
            salience: 1,
            tier: Tier::Template,
            text: String::new(),
            composer: String::new(),
            accepted_at_ms,
            composed_at_ms: 0,
        })
    }

    fn ids(works: &[Work]) -> Vec<String> {
        works
            .iter()
            .map(|work| match work {
                Work::Restored(entry) => entry.event_id.clone(),
                Work::Event(event) => event.event_id.clone(),
            })
            .collect()
    }

    #[test]
    fn merge_keeps_each_partition_in_ledger_order_and_interleaves_by_acceptance() {
        let merged = merge_in_ledger_order(vec![
            vec![event("g/d/a", "01", 5), event("g/d/a", "02", 3)],
            vec![event("g/d/b", "03", 4), event("g/d/b", "04", 9)],
        ]);
        // "02" was accepted earlier than "03" but comes after "01" in its partition.
        assert_eq!(ids(&merged), ["03", "01", "02", "04"]);
    }

    #[test]
    fn checkpoint_rows_sort_after_every_event_id() {
        for event_id in [
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "0190b3c4-7e2a-7000-8000-000000000000",
        ] {
            assert!(event_id < CHECKPOINT_SORT_KEY);
            assert!(event_id < snapshot_key("g/d/s", "0").sk.as_str());
        }
    }
}
