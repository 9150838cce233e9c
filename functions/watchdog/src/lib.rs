//! The watchdog: one pass over every timer chain of the world, re-arming those that went quiet.
//!
//! Timers are delayed queue messages; a lost one (a message expired, a crash between the
//! state write and the send) would stop its chain for good. The watchdog reads the chain
//! registry and the partitions' states and re-arms ecology cells, station windows and
//! production regions that are three intervals late. Re-arming a live chain is harmless: the
//! stages drop a timer whose `(partition, tick)` was already applied.
//!
//! The same pass runs prune's sweep when it is due (once a day, claimed by a conditional write so
//! concurrent watchdogs sweep once): the sweep asks prune about idle regions and feeds past
//! retention that no message will ask about.
//!
//! One function for every mode: an EventBridge schedule invokes it once a minute in AWS (the
//! `watchdog` binary), the embedded runtime and `worldfleet worker` call it on a timer.

use serde::Serialize;
use worldfleet_kit::StageContext;
use worldfleet_prune::PruneConfig;
use worldfleet_prune::sweep::{SWEEP_INTERVAL, sweep_if_due};

/// What one pass checked and re-armed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WatchdogPass {
    pub cells_checked: usize,
    pub cells_rearmed: usize,
    pub stations_checked: usize,
    pub windows_rearmed: usize,
    pub regions_checked: usize,
    pub regions_rearmed: usize,
    /// Whether this pass ran prune's daily sweep, and what the sweep asked prune about.
    pub prune_swept: bool,
    pub idle_regions_found: usize,
    pub feeds_checked: usize,
}

impl WatchdogPass {
    /// Partitions checked, every chain together.
    pub fn checked(&self) -> usize {
        self.cells_checked + self.stations_checked + self.regions_checked
    }

    /// Chains re-armed, every kind together.
    pub fn rearmed(&self) -> usize {
        self.cells_rearmed + self.windows_rearmed + self.regions_rearmed
    }
}

/// One watchdog pass over the ecology, market and production chains, with prune's sweep when
/// it is due (once per [`SWEEP_INTERVAL`]). `prune` is read once at start-up by the caller.
pub async fn run(context: &StageContext, prune: &PruneConfig) -> anyhow::Result<WatchdogPass> {
    let (cells_checked, cells_rearmed) = worldfleet_ecology::watchdog(context)
        .await
        .map_err(|error| anyhow::anyhow!("ecology watchdog: {error}"))?;
    let market = worldfleet_price::watchdog(context)
        .await
        .map_err(|error| anyhow::anyhow!("market watchdog: {error}"))?;
    let sweep = sweep_if_due(context, prune, SWEEP_INTERVAL)
        .await
        .map_err(|error| anyhow::anyhow!("prune sweep: {error}"))?;
    Ok(WatchdogPass {
        prune_swept: sweep.is_some(),
        idle_regions_found: sweep.as_ref().map_or(0, |report| report.regions_idle),
        feeds_checked: sweep.as_ref().map_or(0, |report| report.feeds_checked),
        cells_checked,
        cells_rearmed,
        stations_checked: market.stations_checked,
        windows_rearmed: market.windows_rearmed,
        regions_checked: market.regions_checked,
        regions_rearmed: market.regions_rearmed,
    })
}
