//! The async shell around the pure ecology tick: inputs, timers, conditional writes, fan-out.
//!
//! - [`inputs::EcologyInputStage`] (queue `ecology-input.fifo`, group = cell): stores each
//!   capture, breed request (from intake) and migrant (from a neighbour's tick) under its cell
//!   as a *pending* input, once;
//! - [`ticks::EcologyTickStage`] (queue `ecology-tick`, delayed timers `(cell, tick)`): reads
//!   the cell and its pending inputs, runs [`crate::sim::tick`], and in one table transaction
//!   writes the next state (conditioned on the tick read) with its *outbox*, deletes the
//!   inputs it consumed and leaves a *seen* marker for each; then, once per `(cell, tick)`
//!   under an idempotency record, carries out the outbox: emigrants to their destination
//!   cells, news to distribute, captured creatures and returned migrants to the table, and
//!   the timer of the next tick; the decision and the transaction's layout are the pure
//!   [`plan`] ([`plan::timer_step`], [`plan::plan_tick`]), unit-tested without a store;
//! - [`watchdog::watchdog`] (once a minute): re-arms cells whose chain went quiet.
//!
//! See [`store`] for the table layout and why each input is applied exactly once.

pub mod inputs;
pub mod plan;
pub mod store;
pub mod ticks;
pub mod watchdog;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use worldfleet_domain::PartitionUid;

use crate::error::Result;
use crate::rules::{Rules, TickInterval};
use crate::sim::Migrant;

pub use inputs::EcologyInputStage;
pub use store::{CellTotals, Outbox, StoredCell};
pub use ticks::{EcologyTickStage, TickResult, is_news_event, seed_cell};
pub use watchdog::watchdog;

/// The timer chain name of cells in the registry.
pub const ECOLOGY_CHAIN: &str = "ecology";
/// Largest population cap a stored cell may have: a cell is one table item (≤ 400 KB), and a
/// creature serialises to roughly 300–400 bytes, so 800 creatures plus a tick's outbox fit
/// with room to spare.
pub const MAX_STORED_POPULATION: u32 = 800;
/// Most pending inputs one tick consumes: the tick's transaction holds the state put plus a
/// delete and a seen marker per input, within the 100 operations of one transaction. The rest
/// wait for the next tick.
pub const MAX_INPUTS_PER_TICK: usize = 49;

/// What the ecology shells are configured with, built once per process.
#[derive(Debug, Clone)]
pub struct EcologyConfig {
    pub rules: Arc<Rules>,
    /// Interval between two ticks of a cell (5–15 s).
    pub interval: TickInterval,
}

/// The variables the ecology tick reads.
pub const VARIABLES: &[worldfleet_kit::Variable] = &[worldfleet_kit::Variable {
    name: "WORLDFLEET_ECOLOGY_INTERVAL_MS",
    default: "from the species rules",
    meaning: "a cell's tick interval in milliseconds, 5000–15000",
}];

impl EcologyConfig {
    /// The built-in rules and their tick interval.
    pub fn builtin() -> Result<Self> {
        let rules = Rules::builtin()?;
        Ok(Self {
            interval: rules.tick_interval_ms,
            rules: Arc::new(rules),
        })
    }

    /// The built-in rules, with the tick interval from `WORLDFLEET_ECOLOGY_INTERVAL_MS` when
    /// set (validated to 5–15 s) — how the Lambda and the fleet workers are configured.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(&worldfleet_kit::Env::process())
    }

    /// [`Self::from_env`] over `env`.
    pub fn from_vars(env: &worldfleet_kit::Env) -> Result<Self> {
        Self::with_interval_override(env.text("WORLDFLEET_ECOLOGY_INTERVAL_MS"))
    }

    /// The built-in rules with the tick interval `raw` (milliseconds) when given.
    pub fn with_interval_override(raw: Option<String>) -> Result<Self> {
        let mut config = Self::builtin()?;
        if let Some(raw) = raw {
            let millis = raw.trim().parse::<u64>().map_err(|_| {
                crate::EcologyError::InvalidRules(format!(
                    "WORLDFLEET_ECOLOGY_INTERVAL_MS={raw:?} is not a number of milliseconds"
                ))
            })?;
            config.interval = TickInterval::from_millis(millis)?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn the_interval_override_is_validated() {
        let builtin = EcologyConfig::builtin().unwrap().interval;
        assert_eq!(
            EcologyConfig::with_interval_override(None)
                .unwrap()
                .interval,
            builtin
        );
        let config = EcologyConfig::with_interval_override(Some("7000".into())).unwrap();
        assert_eq!(config.interval.as_millis(), 7_000);
        assert!(EcologyConfig::with_interval_override(Some("seven".into())).is_err());
        assert!(EcologyConfig::with_interval_override(Some("60000".into())).is_err());
    }
}

/// The timer of one cell's tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickTimer {
    pub cell: PartitionUid,
    pub tick: u64,
}

/// A migrant on its way to its destination cell (the other ecology input besides intake's
/// captures and breed requests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrantMessage {
    pub migrant: Migrant,
}
