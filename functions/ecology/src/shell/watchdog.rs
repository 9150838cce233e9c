//! The ecology watchdog: run once a minute (EventBridge in AWS, a task in the embedded
//! runtime), it re-arms every cell whose last tick is older than three intervals.
//!
//! A quiet cell gets timers for its last tick (which completes an outbox left unfinished,
//! sending the next timer) and for the next tick (in case the outbox was done and its timer
//! lost). The tick stage drops whichever is not needed, so re-arming a live chain is harmless.

use std::time::Duration;

use worldfleet_domain::PartitionUid;
use worldfleet_domain::names::{ECOLOGY_TABLE, TIMERS_TABLE};
use worldfleet_kit::StageContext;
use worldfleet_kit::timer::{is_stale, registered};
use worldfleet_ports::table::MAX_BATCH_GET;

use super::ECOLOGY_CHAIN;
use super::store::{StoredCell, state_key};
use super::ticks::rearm_cell;
use crate::error::Result;

/// Re-arms quiet cells; returns `(cells checked, cells re-armed)`.
pub async fn watchdog(context: &StageContext) -> Result<(usize, usize)> {
    let table = context.table.as_ref();
    let now_ms = context.clock.now_ms();
    let cells = registered(table, TIMERS_TABLE, ECOLOGY_CHAIN).await?;
    let mut checked = 0;
    let mut rearmed = 0;
    for chunk in cells.chunks(MAX_BATCH_GET) {
        let keys: Vec<_> = chunk.iter().map(|(cell, _)| state_key(cell)).collect();
        for item in table.batch_get(ECOLOGY_TABLE, &keys).await? {
            checked += 1;
            let Some((_, interval_ms)) = chunk.iter().find(|(cell, _)| *cell == item.key.pk) else {
                continue;
            };
            let updated_at_ms = item.i64("updated_at_ms").unwrap_or(0).max(0) as u64;
            if !is_stale(updated_at_ms, *interval_ms, now_ms) {
                continue;
            }
            let stored = StoredCell::from_item(&item)?;
            let tick = stored.state.tick;
            let cell: &PartitionUid = &stored.state.cell;
            tracing::warn!(cell = %cell, tick, "ecology chain quiet for three intervals; re-arming");
            let ticks: Vec<u64> = if tick == 0 {
                vec![1]
            } else {
                vec![tick, tick + 1]
            };
            rearm_cell(context, cell, &ticks, Duration::ZERO).await?;
            rearmed += 1;
        }
    }
    Ok((checked, rearmed))
}
