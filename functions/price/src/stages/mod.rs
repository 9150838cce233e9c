//! The async shells around the pure market and production cores.
//!
//! Three stage handlers and a watchdog, all reaching the world only through the ports:
//!
//! - [`trades::MarketStage`] (queue `market.fifo`, group = station): applies trades routed from
//!   intake with [`crate::market::StationMarket::on_transaction`], writing the station state, a
//!   record of the transaction and any inline recompute in one conditional transaction; the
//!   transaction that opens a window sends its window-end timer;
//! - [`windows::WindowStage`] (queue `price-window`, delayed timers): recomputes a due window;
//! - [`regions::ProductionStage`] (queue `production-tick`, 12 s timers): runs a region's
//!   production tick and executes its bulk write plan, then schedules the next tick;
//! - [`watchdog::watchdog`] (once a minute): flushes stations whose window timer was lost and
//!   re-arms production chains that went quiet.

pub mod records;
pub mod regions;
pub mod trades;
pub mod watchdog;
pub mod windows;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use worldfleet_domain::PartitionUid;

use crate::production::{PRODUCTION_TICK_MS, WriteMode};
use crate::rules::MarketRules;

pub use regions::{ProductionStage, seed_region};
pub use trades::MarketStage;
pub use watchdog::{WatchdogReport, watchdog};
pub use windows::WindowStage;

/// Timer chain names in the registry.
pub const MARKET_CHAIN: &str = "market";
/// Timer chain name of regional production.
pub const PRODUCTION_CHAIN: &str = "production";

/// What the price shells are configured with, built once per process.
#[derive(Debug, Clone)]
pub struct PriceConfig {
    pub rules: Arc<MarketRules>,
    /// Units of every good a station opens with on its first trade.
    pub initial_supply: i64,
    /// Interval between production ticks of a region (12 s).
    pub production_interval_ms: u64,
    /// How production writes are chunked.
    pub write_mode: WriteMode,
}

impl PriceConfig {
    /// The built-in rules, 10 000 units per good, 12 s production ticks, batch writes.
    pub fn builtin() -> crate::Result<Self> {
        Ok(Self {
            rules: Arc::new(MarketRules::builtin()?),
            initial_supply: 10_000,
            production_interval_ms: PRODUCTION_TICK_MS,
            write_mode: WriteMode::Batch,
        })
    }
}

/// The window-end timer of one station's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowTimer {
    pub station: PartitionUid,
    pub window_id: u64,
}

/// The production timer of one region's tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductionTimer {
    pub region: PartitionUid,
    pub tick: u64,
}
