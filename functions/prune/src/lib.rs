//! prune: garbage collection as a first-class stage (`docs/DESIGN.md` stage 5).
//!
//! Triggered by [`worldfleet_domain::PruneRequest`]s on `prune.fifo`, each keyed by the
//! partition it prunes — sent by distribute (events published, a player's memory over the cap,
//! a feed crossing a check mark, a tombstoned region active again) and by the watchdog
//! [`sweep`] (regions idle, feeds gone quiet):
//! - **event bookkeeping** ends with the event: the publication plan is deleted once
//!   distribute says it is published (every page written);
//! - **feed retention**: pages past retention go once every live reader has passed them (past
//!   the hard retention, whatever the readers say); readers behind get a clear error;
//! - **player memory**: over the 10 MB cap the oldest observations go until under it, and the
//!   player reads a one-line notice in their feed;
//! - **region tombstones**: six months idle, a region's hot rows are archived compactly and
//!   unloaded; its next activity brings them back ([`tombstone`]).
//!
//! Decisions are pure functions ([`core`]); the shell ([`handler`]) reads, decides, writes.

pub mod checkpoint;
pub mod core;
pub mod error;
pub mod handler;
pub mod sweep;
pub mod tombstone;

use worldfleet_kit::{Env, Variable};

pub use crate::core::PruneConfig;
pub use error::{PruneError, Result};
pub use handler::{Prune, PruneOutcome};

impl PruneConfig {
    /// The defaults, with overrides from the environment: `WORLDFLEET_FEED_RETENTION_DAYS`,
    /// `WORLDFLEET_FEED_HARD_RETENTION_DAYS`, `WORLDFLEET_MEMORY_CAP_BYTES`,
    /// `WORLDFLEET_REGION_IDLE_DAYS`, `WORLDFLEET_LEDGER_CHECKPOINTS` and
    /// `WORLDFLEET_LEDGER_COMPACTION` (`on` / `off`).
    pub fn from_env() -> Result<Self> {
        Self::from_vars(&Env::process())
    }

    /// [`Self::from_env`] over `env`.
    pub fn from_vars(env: &Env) -> Result<Self> {
        let config_error =
            |error: worldfleet_kit::ConfigError| PruneError::Config(error.to_string());
        let mut config = Self::default();
        if let Some(value) = env
            .days("WORLDFLEET_FEED_RETENTION_DAYS")
            .map_err(config_error)?
        {
            config.feed_retention = value;
        }
        if let Some(value) = env
            .days("WORLDFLEET_FEED_HARD_RETENTION_DAYS")
            .map_err(config_error)?
        {
            config.feed_hard_retention = value;
        }
        if let Some(value) = env
            .whole_number("WORLDFLEET_MEMORY_CAP_BYTES")
            .map_err(config_error)?
        {
            config.memory_cap_bytes = value;
        }
        if let Some(value) = env
            .days("WORLDFLEET_REGION_IDLE_DAYS")
            .map_err(config_error)?
        {
            config.region_idle = value;
        }
        if let Some(value) = env
            .switch("WORLDFLEET_LEDGER_CHECKPOINTS")
            .map_err(config_error)?
        {
            config.ledger_checkpoints = value;
        }
        if let Some(value) = env
            .switch("WORLDFLEET_LEDGER_COMPACTION")
            .map_err(config_error)?
        {
            config.ledger_compaction = value;
        }
        if config.feed_hard_retention < config.feed_retention {
            return Err(PruneError::Config(
                "the hard feed retention must not be shorter than the feed retention".into(),
            ));
        }
        Ok(config)
    }
}

/// The variables prune (and the watchdog's daily sweep) read.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "WORLDFLEET_FEED_RETENTION_DAYS",
        default: "7",
        meaning: "feed entries older than this are trimmed once every reader checkpoint passed them",
    },
    Variable {
        name: "WORLDFLEET_FEED_HARD_RETENTION_DAYS",
        default: "90",
        meaning: "feed entries older than this are trimmed whatever the checkpoints",
    },
    Variable {
        name: "WORLDFLEET_MEMORY_CAP_BYTES",
        default: "10485760",
        meaning: "hard cap of one player's memory, read by distribute too (it asks prune to evict past it); the oldest observations go first, with a notice",
    },
    Variable {
        name: "WORLDFLEET_REGION_IDLE_DAYS",
        default: "183",
        meaning: "a region idle this long is tombstoned (unloaded, kept for resurrection)",
    },
    Variable {
        name: "WORLDFLEET_LEDGER_CHECKPOINTS",
        default: "on",
        meaning: "move each scene's ledger checkpoint when its events are published (`on`/`off`)",
    },
    Variable {
        name: "WORLDFLEET_LEDGER_COMPACTION",
        default: "off",
        meaning: "also delete ledger entries behind a checkpoint (`on`/`off`)",
    },
];

#[cfg(test)]
mod variable_tests {
    use super::*;

    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let documented = |name: &str| -> Option<String> {
            VARIABLES
                .iter()
                .find(|variable| variable.name == name)
                .map(|variable| variable.default.to_owned())
        };
        let from_docs = PruneConfig::from_vars(&Env::from_lookup(&documented)).unwrap();
        assert_eq!(from_docs, PruneConfig::default());
        let env = Env::recording(&documented);
        PruneConfig::from_vars(&env).unwrap();
        let read: Vec<String> = env.variables_read().into_iter().collect();
        let mut declared: Vec<String> = VARIABLES.iter().map(|v| v.name.to_owned()).collect();
        declared.sort();
        assert_eq!(read, declared);
    }
}
