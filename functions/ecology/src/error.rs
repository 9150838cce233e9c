//! The ecology crate's error type: every way rules, cell state or tick input can be invalid.

use thiserror::Error;
use worldfleet_domain::DomainError;

/// Why an ecology operation failed. The pure core's errors are permanent (the same input fails
/// the same way, so the message ends in its dead-letter queue); the shell's port and contention
/// errors may be retried ([`EcologyError::is_retryable`]).
#[derive(Debug, Error, Clone, PartialEq)]
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
    /// A queue or table operation failed.
    #[error("port: {0}")]
    Port(#[from] worldfleet_ports::Error),
    /// A message or stored item could not be decoded (or encoded).
    #[error("corrupt {what}: {reason}")]
    Corrupt { what: String, reason: String },
    /// Another worker holds the same state (a lost conditional write, an idempotency key in
    /// progress); retry later.
    #[error("busy: {0}")]
    Busy(String),
}

impl EcologyError {
    pub(crate) fn corrupt(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

impl worldfleet_kit::Failure for EcologyError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Port(error) => error.is_worth_a_retry(),
            Self::Busy(_) => true,
            _ => false,
        }
    }
}

/// Result alias for ecology operations.
pub type Result<T, E = EcologyError> = std::result::Result<T, E>;
