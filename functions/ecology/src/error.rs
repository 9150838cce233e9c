//! The ecology crate's error type: every way rules, cell state or tick input can be invalid.

use thiserror::Error;
use worldfleet_domain::DomainError;

/// Why an ecology operation was refused. None of these is retryable: the same input fails the
/// same way, so a shell sends the message to its dead-letter path instead of retrying it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EcologyError {
    /// The rule templates could not be parsed.
    #[error("rules do not parse: {0}")]
    RulesParse(String),
    /// The rule templates parse but break an invariant.
    #[error("invalid rules: {0}")]
    InvalidRules(String),
    /// The tick interval is outside 5–15 s.
    #[error("tick interval {0} ms is outside {min}..={max} ms", min = crate::rules::MIN_TICK_INTERVAL_MS, max = crate::rules::MAX_TICK_INTERVAL_MS)]
    InvalidTickInterval(u64),
    /// The stored cell state breaks an invariant (duplicate ids, unknown species, bad UID).
    #[error("invalid cell state for {cell}: {reason}")]
    InvalidCell { cell: String, reason: String },
    /// The tick asked for is not the one after the cell's last applied tick. A shell treats
    /// `got <= expected - 1` as "already applied" and anything else as a lost or reordered timer.
    #[error("tick {got} asked for, but the cell expects tick {expected}")]
    TickOutOfOrder { expected: u64, got: u64 },
    /// A species name no rule template defines.
    #[error("unknown species {0:?}")]
    UnknownSpecies(String),
    /// A UID or identifier failed domain validation.
    #[error(transparent)]
    Domain(#[from] DomainError),
}

/// Result alias for ecology operations.
pub type Result<T, E = EcologyError> = std::result::Result<T, E>;
