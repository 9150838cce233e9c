//! worldfleet's market stage: per-station price recompute windows ([`market`]) and regional
//! production ticks ([`production`]), as pure synchronous cores.
//!
//! The async shells (transactions from intake, window-end and production timer messages in;
//! conditional writes out) are not here yet.

pub mod error;
pub mod market;
pub mod production;
pub mod rules;

pub use error::{PriceError, Result};
pub use rules::MarketRules;
