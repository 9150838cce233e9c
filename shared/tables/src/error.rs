//! Why reading or decoding a shared table row failed.

use thiserror::Error;

/// Why a shared table row could not be read or decoded.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Port(#[from] worldfleet_ports::Error),
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

impl Error {
    /// True when a retry may succeed: a port error worth a retry; never a corrupt row or a
    /// read behind retention.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Port(error) => error.is_worth_a_retry(),
            Self::Corrupt { .. } | Self::BehindRetention { .. } => false,
        }
    }
}

/// Result alias for the shared layouts.
pub type Result<T, E = Error> = std::result::Result<T, E>;
