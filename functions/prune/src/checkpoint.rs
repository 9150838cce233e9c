//! Ledger checkpoints: per partition (a scene, or a scene's slot), the event boundary up to
//! which the partition's derived state is complete — every event up to it has its canon and has
//! been published to feeds (its canon carries a plan, and that plan is pruned: prune deletes it
//! when distribute says every page is written; records of earlier versions may instead say
//! `completed`).
//!
//! Stored in the ledger table beside the entries it covers, under sort keys that sort after
//! every event id (event ids are ULIDs or UUIDv7s, never `~`): `~snap#EVENT` rows holding each
//! covered event's canon (a line a model wrote cannot be re-derived without the model), then
//! the `~checkpoint` head (`through`, `events`, `taken_at_ms`). Snapshots are written before
//! the head and the head only moves forward (a conditional put on its previous `through`), so a
//! crash leaves the previous checkpoint valid. Only events accepted before a cut-off are covered
//! (by default the intake clock window ago), so compaction — deleting the covered ledger
//! entries — is safe: intake refuses an envelope that old as stale.
//!
//! prune advances a partition's checkpoint each time distribute reports events of that
//! partition published (a scene boundary: everything before it is settled), and
//! `worldfleet checkpoint` does it for a whole embedded store; `worldfleet replay` (in
//! `worldfleet-runtime`) rebuilds the derived tables from the checkpoints plus the ledger.

use anyhow::Context;
use serde::Serialize;
use worldfleet_domain::EventKind;
use worldfleet_domain::names::{CANON_TABLE, FEEDS_TABLE, LEDGER_TABLE};
use worldfleet_ports::table::MAX_BATCH_WRITE;
use worldfleet_ports::{BatchWrite, Condition, Item, Key, Query, SortKeyRange, Table, Value};
use worldfleet_tables::plan;

/// The sort key of a partition's checkpoint head.
pub const CHECKPOINT_SORT_KEY: &str = "~checkpoint";
/// The sort-key prefix of a checkpoint's snapshot rows (`~snap#EVENT`).
pub const SNAPSHOT_PREFIX: &str = "~snap#";
/// Ledger sort keys at or after this are checkpoint rows, never events.
const CHECKPOINT_ROWS_START: &str = "~";

/// The key of a partition's checkpoint head.
pub fn checkpoint_key(partition: &str) -> Key {
    Key::new(partition, CHECKPOINT_SORT_KEY)
}

/// The key of the snapshot row of `event_id` in `partition`.
pub fn snapshot_key(partition: &str, event_id: &str) -> Key {
    Key::new(partition, format!("{SNAPSHOT_PREFIX}{event_id}"))
}

/// True for a ledger row that is an event entry (not a checkpoint row).
pub fn is_event_entry(item: &Item) -> bool {
    !item.key.sk.starts_with(CHECKPOINT_ROWS_START)
}

/// How to checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointOptions {
    /// Cover only events accepted at or before this (Unix ms).
    pub accepted_before_ms: u64,
    /// Delete the covered ledger entries once the checkpoint is written.
    pub compact: bool,
    /// When the checkpoint is taken (Unix ms), recorded in the head.
    pub taken_at_ms: u64,
}

impl CheckpointOptions {
    /// Covers events older than the intake clock window (300 s) at `now_ms`, so compaction is
    /// safe: intake refuses any envelope that old as stale.
    pub fn safe_at(now_ms: u64, compact: bool) -> Self {
        let window = worldfleet_domain::envelope::DEFAULT_CLOCK_WINDOW;
        Self {
            accepted_before_ms: now_ms.saturating_sub(window.as_millis() as u64),
            compact,
            taken_at_ms: now_ms,
        }
    }
}

/// What checkpointing one partition did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckpointOutcome {
    /// Events newly covered.
    pub covered: u64,
    /// Ledger entries deleted by compaction.
    pub compacted: u64,
    /// The head's `through` afterwards (`None`: the partition has no checkpoint).
    pub through: Option<String>,
}

/// The checkpoint head of `partition`, if any: `(through, events)`.
pub async fn read_checkpoint(
    table: &dyn Table,
    partition: &str,
) -> anyhow::Result<Option<(String, u64)>> {
    let Some(head) = table.get(LEDGER_TABLE, &checkpoint_key(partition)).await? else {
        return Ok(None);
    };
    let through = head
        .str("through")
        .with_context(|| format!("checkpoint of {partition} has no `through`"))?;
    let events = head.i64("events").unwrap_or(0).max(0) as u64;
    Ok(Some((through.to_owned(), events)))
}

/// Whether `entry`'s derived state is complete: canon written and published to feeds.
async fn derived(table: &dyn Table, entry: &Item) -> anyhow::Result<Option<String>> {
    let Some(canon_item) = table
        .get(
            CANON_TABLE,
            &Key::new(entry.key.pk.as_str(), entry.key.sk.as_str()),
        )
        .await?
    else {
        return Ok(None);
    };
    let Some(plan_id) = canon_item.str("dist_plan") else {
        return Ok(None);
    };
    if let Some(plan_item) = table.get(FEEDS_TABLE, &plan::plan_key(plan_id)).await?
        && plan_item.attributes.get("completed") != Some(&Value::Bool(true))
    {
        return Ok(None);
    }
    let json = canon_item
        .str("canon")
        .with_context(|| format!("canon item {} has no canon", canon_item.key))?;
    Ok(Some(json.to_owned()))
}

/// Moves `partition`'s checkpoint forward over the longest run of events after it that are
/// narrative, accepted before the cut-off and fully derived; compacts when asked.
pub async fn checkpoint_partition(
    table: &dyn Table,
    partition: &str,
    options: CheckpointOptions,
) -> anyhow::Result<CheckpointOutcome> {
    let previous = read_checkpoint(table, partition).await?;
    let (previous_through, previous_events) = match &previous {
        Some((through, events)) => (Some(through.clone()), *events),
        None => (None, 0),
    };
    let range = match &previous_through {
        Some(through) => SortKeyRange::GreaterThan(through.clone()),
        None => SortKeyRange::All,
    };
    let mut covered: Vec<(String, String)> = Vec::new();
    let mut start_after = None;
    // Most calls come right after distribute published the partition's newest events, while
    // the entry after the checkpoint is still inside the clock window: the first page holds
    // one entry so that such a call reads (and decodes) one entry, not a page, before it
    // stops; pages grow from there for a partition with a backlog to cover.
    let mut limit = 1;
    'scan: loop {
        let query = Query::partition(partition)
            .range(range.clone())
            .limit(limit)
            .start_after(start_after);
        limit = (limit * 8).min(100);
        let page = table.query(LEDGER_TABLE, &query).await?;
        for entry in &page.items {
            if !is_event_entry(entry) {
                break 'scan;
            }
            let narrative = entry.str("kind").is_some_and(|name| {
                EventKind::ALL
                    .iter()
                    .any(|kind| kind.as_str() == name && !kind.is_world())
            });
            let accepted_at_ms = entry.i64("accepted_at_ms").unwrap_or(i64::MAX);
            if !narrative || accepted_at_ms > options.accepted_before_ms as i64 {
                break 'scan;
            }
            match derived(table, entry).await? {
                Some(canon_json) => covered.push((entry.key.sk.clone(), canon_json)),
                None => break 'scan,
            }
        }
        match page.last_evaluated_sk {
            Some(sk) => start_after = Some(sk),
            None => break,
        }
    }
    let Some((through, _)) = covered.last() else {
        return Ok(CheckpointOutcome {
            through: previous_through,
            ..CheckpointOutcome::default()
        });
    };
    let through = through.clone();
    let snapshots: Vec<BatchWrite> = covered
        .iter()
        .map(|(event_id, canon_json)| {
            BatchWrite::Put(
                Item::new(snapshot_key(partition, event_id)).with("canon", canon_json.as_str()),
            )
        })
        .collect();
    for chunk in snapshots.chunks(MAX_BATCH_WRITE) {
        table.batch_write(LEDGER_TABLE, chunk.to_vec()).await?;
    }
    let head = Item::new(checkpoint_key(partition))
        .with("through", through.as_str())
        .with("events", (previous_events + covered.len() as u64) as i64)
        .with("taken_at_ms", options.taken_at_ms as i64);
    let unchanged = match &previous_through {
        Some(previous) => Condition::eq("through", previous.as_str()),
        None => Condition::ItemNotExists,
    };
    table
        .put(LEDGER_TABLE, head, Some(unchanged))
        .await
        .with_context(|| format!("checkpoint of {partition} moved concurrently; take it again"))?;
    let mut compacted = 0;
    if options.compact {
        let deletes: Vec<BatchWrite> = covered
            .iter()
            .map(|(event_id, _)| BatchWrite::Delete(Key::new(partition, event_id.as_str())))
            .collect();
        for chunk in deletes.chunks(MAX_BATCH_WRITE) {
            table.batch_write(LEDGER_TABLE, chunk.to_vec()).await?;
            compacted += chunk.len() as u64;
        }
    }
    Ok(CheckpointOutcome {
        covered: covered.len() as u64,
        compacted,
        through: Some(through),
    })
}
