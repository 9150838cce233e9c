//! The market and production watchdog: run once a minute (EventBridge in AWS, a task in the
//! embedded runtime), it re-arms what a lost timer would otherwise strand.
//!
//! * Stations: a pending window still unflushed three window lengths after it became due gets
//!   a fresh window-end timer (the window stage flushes any due window, whichever timer).
//! * Regions: a region whose marker has not moved for three production intervals gets timers
//!   for its last tick (to finish an interrupted schedule) and the next one; the production
//!   stage drops whichever is not needed.

use worldfleet_domain::PartitionUid;
use worldfleet_domain::names::{MARKET_TABLE, PRODUCTION_TABLE, TIMERS_TABLE};
use worldfleet_kit::StageContext;
use worldfleet_kit::timer::{is_stale, registered};
use worldfleet_ports::Key;
use worldfleet_ports::table::MAX_BATCH_GET;

use super::records::{StoredMarket, market_key};
use super::regions::rearm_region;
use super::trades::send_window_timer;
use super::{MARKET_CHAIN, PRODUCTION_CHAIN};
use crate::error::Result;
use crate::market::WINDOW_MS;
use crate::production::REGION_MARKER_SK;

/// What one watchdog run found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchdogReport {
    pub stations_checked: usize,
    pub windows_rearmed: usize,
    pub regions_checked: usize,
    pub regions_rearmed: usize,
}

/// Re-arms stalled station windows and production chains.
pub async fn watchdog(context: &StageContext) -> Result<WatchdogReport> {
    let mut report = WatchdogReport::default();
    let now_ms = context.clock.now_ms();
    let table = context.table.as_ref();
    let stations = registered(table, TIMERS_TABLE, MARKET_CHAIN).await?;
    let keys: Vec<Key> = stations
        .iter()
        .map(|(station, _)| market_key(station))
        .collect();
    for chunk in keys.chunks(MAX_BATCH_GET) {
        for item in table.batch_get(MARKET_TABLE, chunk).await? {
            report.stations_checked += 1;
            let stored = StoredMarket::from_item(&item)?;
            if let Some(pending) = stored.market.pending
                && is_stale(pending.flush_at_ms, WINDOW_MS, now_ms)
            {
                tracing::warn!(station = %stored.market.station, window = pending.window_id, "window long past due; re-arming its timer");
                send_window_timer(context, &stored.market.station, pending.window_id, now_ms)
                    .await?;
                report.windows_rearmed += 1;
            }
        }
    }
    let regions = registered(table, TIMERS_TABLE, PRODUCTION_CHAIN).await?;
    for chunk in regions.chunks(MAX_BATCH_GET) {
        let keys: Vec<Key> = chunk
            .iter()
            .map(|(region, _)| Key::new(region.as_str(), REGION_MARKER_SK))
            .collect();
        let markers = table.batch_get(PRODUCTION_TABLE, &keys).await?;
        for (region, interval_ms) in chunk {
            report.regions_checked += 1;
            let Some(marker) = markers.iter().find(|item| item.key.pk == *region) else {
                continue;
            };
            let tick = marker.i64("tick").unwrap_or(0).max(0) as u64;
            let updated_at_ms = marker.i64("updated_at_ms").unwrap_or(0).max(0) as u64;
            if is_stale(updated_at_ms, *interval_ms, now_ms) {
                let uid = PartitionUid::parse(region)?;
                tracing::warn!(region = %uid, tick, "production chain quiet for three intervals; re-arming");
                let ticks: Vec<u64> = if tick == 0 {
                    vec![1]
                } else {
                    vec![tick, tick + 1]
                };
                rearm_region(context, &uid, &ticks).await?;
                report.regions_rearmed += 1;
            }
        }
    }
    Ok(report)
}
