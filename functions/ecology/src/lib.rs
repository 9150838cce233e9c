//! worldfleet's ecology stage: a per-cell wildlife simulation ticked every 5–15 s.
//!
//! This crate is the pure core ([`sim`]): creatures breed, mutate, age, starve, migrate to
//! neighbouring cells and are culled by per-cell caps, deterministically for a given
//! (cell UID, tick number). Stats come from rule templates ([`rules`], `rules/species.toml`).
//! The async shell ([`shell`]: pending inputs, delayed tick timers, conditional writes on
//! `(cell, tick)`, emigrants, news and the watchdog) wraps it.

pub mod error;
pub mod rules;
pub mod shell;
pub mod sim;

pub use error::{EcologyError, Result};
pub use rules::{Rules, SpeciesRules, TickInterval};
pub use shell::{
    EcologyConfig, EcologyInputStage, EcologyTickStage, TickTimer, is_news_event, seed_cell,
    watchdog,
};
