//! prune: garbage collection as a first-class stage (DESIGN.md stage 5).
//!
//! Triggered by [`worldfleet_domain::PruneRequest`]s on `prune.fifo`, each keyed by the
//! partition it prunes — sent by distribute (events published, a player's memory over the cap,
//! a feed crossing a check mark, a tombstoned region active again) and by the watchdog
//! [`sweep`] (regions idle, feeds gone quiet):
//! - **event bookkeeping** ends with the event: the publication plan and classify's
//!   idempotency records are deleted once the plan is completed;
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

pub use crate::core::PruneConfig;
pub use error::{PruneError, Result};
pub use handler::{Prune, PruneOutcome};

impl PruneConfig {
    /// The defaults, with overrides from the environment: `WORLDFLEET_FEED_RETENTION_DAYS`,
    /// `WORLDFLEET_FEED_HARD_RETENTION_DAYS`, `WORLDFLEET_MEMORY_CAP_BYTES`,
    /// `WORLDFLEET_REGION_IDLE_DAYS`, `WORLDFLEET_LEDGER_CHECKPOINTS` and
    /// `WORLDFLEET_LEDGER_COMPACTION` (`on` / `off`).
    pub fn from_env() -> Result<Self> {
        let mut config = Self::default();
        let number = |name: &str| -> Result<Option<u64>> {
            match std::env::var(name) {
                Ok(raw) => raw.trim().parse::<u64>().map(Some).map_err(|error| {
                    PruneError::Config(format!("{name}={raw:?} is not a whole number: {error}"))
                }),
                Err(_) => Ok(None),
            }
        };
        let days = |count: u64| std::time::Duration::from_secs(count * 24 * 3600);
        if let Some(value) = number("WORLDFLEET_FEED_RETENTION_DAYS")? {
            config.feed_retention = days(value);
        }
        if let Some(value) = number("WORLDFLEET_FEED_HARD_RETENTION_DAYS")? {
            config.feed_hard_retention = days(value);
        }
        if let Some(value) = number("WORLDFLEET_MEMORY_CAP_BYTES")? {
            config.memory_cap_bytes = value;
        }
        if let Some(value) = number("WORLDFLEET_REGION_IDLE_DAYS")? {
            config.region_idle = days(value);
        }
        let switch = |name: &str, current: bool| -> Result<bool> {
            match std::env::var(name).as_deref().map(str::trim) {
                Err(_) => Ok(current),
                Ok("on" | "true" | "1") => Ok(true),
                Ok("off" | "false" | "0") => Ok(false),
                Ok(other) => Err(PruneError::Config(format!(
                    "{name}={other:?} is not on or off"
                ))),
            }
        };
        config.ledger_checkpoints =
            switch("WORLDFLEET_LEDGER_CHECKPOINTS", config.ledger_checkpoints)?;
        config.ledger_compaction =
            switch("WORLDFLEET_LEDGER_COMPACTION", config.ledger_compaction)?;
        if config.feed_hard_retention < config.feed_retention {
            return Err(PruneError::Config(
                "the hard feed retention must not be shorter than the feed retention".into(),
            ));
        }
        Ok(config)
    }
}
