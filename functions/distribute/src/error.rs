//! distribute's error type.

use thiserror::Error;

/// Why distribute or a feed read failed.
#[derive(Debug, Error)]
pub enum DistributeError {
    #[error(transparent)]
    Port(#[from] worldfleet_ports::Error),
    #[error("republish rules: {0}")]
    Rules(String),
    #[error("corrupt {what}: {reason}")]
    Corrupt { what: String, reason: String },
    /// The reader asked for entries that were trimmed past retention: answering with what is
    /// left would be a silent gap.
    #[error(
        "reader is behind retention: {feed} has trimmed its entries up to seq {trimmed_through}, \
         and the read asked for entries after seq {after_seq}; entries {first_missing} to \
         {trimmed_through} are gone. Recover by rebuilding the reader's view from canon, then \
         read on from seq {trimmed_through} (`worldfleet feed --after {trimmed_through}`, or \
         commit the reader's checkpoint to {trimmed_through})"
    )]
    BehindRetention {
        feed: String,
        after_seq: u64,
        first_missing: u64,
        trimmed_through: u64,
    },
}

impl DistributeError {
    /// True when a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Port(error) => error.is_retryable() || error.is_condition_failed(),
            Self::Rules(_) | Self::Corrupt { .. } | Self::BehindRetention { .. } => false,
        }
    }
}

/// Result alias for distribute.
pub type Result<T, E = DistributeError> = std::result::Result<T, E>;
