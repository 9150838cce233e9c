//! worldfleet's market stage: per-station price recompute windows ([`market`]) and regional
//! production ticks ([`production`]), as pure synchronous cores.
//!
//! The async shells ([`stages`]: trades from intake, window-end and production timer
//! messages in; conditional writes and timers out; and the watchdog) wrap them.

pub mod error;
pub mod market;
pub mod production;
pub mod rules;
pub mod stages;

pub use error::{PriceError, Result};
pub use rules::MarketRules;
pub use stages::{
    MarketStage, PriceConfig, ProductionStage, ProductionTimer, WatchdogReport, WindowStage,
    WindowTimer, seed_region, watchdog,
};
