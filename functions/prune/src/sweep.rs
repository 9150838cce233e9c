//! The watchdog sweep: finds what no message will ask about and asks prune about it.
//!
//! Messages from distribute cover active feeds and players; the sweep covers the quiet ones. It
//! walks the 16 shards of the region activity index and of the feed index
//! ([`worldfleet_kit::activity`]) and sends a `region_idle` request for every region idle past
//! the limit that is not tombstoned yet, and a `feed_past_retention` request for every indexed
//! feed. It decides nothing itself: prune re-reads and decides, so a sweep may run twice.
//!
//! The watchdog's schedule triggers it: the watchdog runs every minute and calls
//! [`sweep_if_due`], which claims the next sweep with one conditional write (a `sweep`/`due` row
//! in the prune table holding when the next sweep is due), so however many watchdogs run, one
//! sweep happens per [`SWEEP_INTERVAL`].

use std::time::Duration;
use worldfleet_domain::names::{PRUNE_QUEUE, PRUNE_TABLE};
use worldfleet_domain::{PartitionUid, PruneRequest};
use worldfleet_kit::StageContext;
use worldfleet_kit::activity::{INDEX_SHARDS, activity_shard_pk, feed_shard_pk};

use worldfleet_ports::{
    Condition, Item, Key, OutgoingMessage, SendOutcome, SortKeyRange, Value, query_all,
};

use crate::core::{self, PruneConfig};
use crate::error::{PruneError, Result};

/// How often the watchdog sweeps: once a day (every rule it feeds works in days or months).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The row that says when the next sweep is due.
pub fn sweep_due_key() -> Key {
    Key::new("sweep", "due")
}

/// Sweeps when the next sweep is due (claimed by a conditional write, so concurrent callers
/// sweep once), and moves the due time `interval` on. `None` when it was not due. A sweep that
/// fails after the claim is retried at the next due time; nothing it would have asked for is
/// lost, because the next sweep finds the same regions and feeds.
pub async fn sweep_if_due(
    context: &StageContext,
    config: &PruneConfig,
    interval: Duration,
) -> Result<Option<SweepReport>> {
    let now_ms = context.clock.now_ms();
    let next_ms = now_ms.saturating_add(interval.as_millis() as u64);
    let claim = Item::new(sweep_due_key()).with("next_ms", next_ms as i64);
    let due = Condition::Or(vec![
        Condition::ItemNotExists,
        Condition::compare("next_ms", worldfleet_ports::Comparison::Le, now_ms as i64),
    ]);
    match context.table.put(PRUNE_TABLE, claim, Some(due)).await {
        Ok(()) => Ok(Some(sweep(context, config).await?)),
        Err(worldfleet_ports::Error::ConditionFailed { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// What a sweep asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub regions_idle: usize,
    pub feeds_checked: usize,
}

/// The requests a sweep at `now_ms` makes.
pub async fn sweep_requests(
    context: &StageContext,
    config: &PruneConfig,
) -> Result<Vec<PruneRequest>> {
    let table = context.table.as_ref();
    let now_ms = context.clock.now_ms();
    let mut requests = Vec::new();
    for shard in 0..INDEX_SHARDS {
        for record in query_all(
            table,
            PRUNE_TABLE,
            &activity_shard_pk(shard),
            SortKeyRange::All,
        )
        .await?
        {
            let tombstoned = record.attributes.get("tombstoned") == Some(&Value::Bool(true));
            let last_active_ms = record.i64("last_active_ms").unwrap_or(0).max(0) as u64;
            if tombstoned || !core::region_is_idle(last_active_ms, now_ms, config) {
                continue;
            }
            match PartitionUid::parse(&record.key.sk) {
                Ok(region) => requests.push(PruneRequest::RegionIdle { region }),
                Err(error) => {
                    tracing::warn!(key = %record.key, %error, "activity record of an invalid region; skipped")
                }
            }
        }
        for record in
            query_all(table, PRUNE_TABLE, &feed_shard_pk(shard), SortKeyRange::All).await?
        {
            requests.push(PruneRequest::FeedPastRetention {
                feed: record.key.sk.clone(),
            });
        }
    }
    Ok(requests)
}

/// Sweeps once and sends the requests to the prune queue.
pub async fn sweep(context: &StageContext, config: &PruneConfig) -> Result<SweepReport> {
    let requests = sweep_requests(context, config).await?;
    let report = SweepReport {
        regions_idle: requests
            .iter()
            .filter(|request| matches!(request, PruneRequest::RegionIdle { .. }))
            .count(),
        feeds_checked: requests
            .iter()
            .filter(|request| matches!(request, PruneRequest::FeedPastRetention { .. }))
            .count(),
    };
    let messages = requests
        .iter()
        .map(|request| {
            serde_json::to_string(request)
                .map(|body| OutgoingMessage::fifo(body, &request.group(), &request.dedup_id()))
                .map_err(|error| PruneError::Corrupt {
                    what: "prune request".into(),
                    reason: error.to_string(),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    for chunk in messages.chunks(worldfleet_ports::queue::MAX_BATCH) {
        for outcome in context
            .queue
            .send_batch(PRUNE_QUEUE, chunk.to_vec())
            .await?
        {
            if let SendOutcome::Failed { reason, .. } = outcome {
                return Err(worldfleet_ports::Error::Unavailable(format!(
                    "sweep request not sent: {reason}"
                ))
                .into());
            }
        }
    }
    Ok(report)
}
