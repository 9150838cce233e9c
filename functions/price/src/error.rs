//! The price crate's error type: every way rules, market state or production state can be
//! invalid. Bad transactions are not errors: they are refused in the decision.

use thiserror::Error;
use worldfleet_domain::DomainError;

/// Why a market or production operation failed. The pure core's errors are permanent (the
/// same input fails the same way); the shell's port and contention errors may be retried
/// ([`PriceError::is_retryable`]).
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PriceError {
    /// The rules file could not be parsed.
    #[error("rules do not parse: {0}")]
    RulesParse(String),
    /// The rules parse but break an invariant.
    #[error("invalid rules: {0}")]
    InvalidRules(String),
    /// The stored station market breaks an invariant.
    #[error("invalid market state for {station}: {reason}")]
    InvalidMarket { station: String, reason: String },
    /// The stored region breaks an invariant.
    #[error("invalid region state for {region}: {reason}")]
    InvalidRegion { region: String, reason: String },
    /// The production tick asked for is not the one after the region's last completed tick.
    #[error("production tick {got} asked for, but the region expects tick {expected}")]
    TickOutOfOrder { expected: u64, got: u64 },
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

impl PriceError {
    pub(crate) fn corrupt(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

impl worldfleet_kit::Failure for PriceError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Port(error) => error.is_worth_a_retry(),
            Self::Busy(_) => true,
            _ => false,
        }
    }
}

/// Result alias for market and production operations.
pub type Result<T, E = PriceError> = std::result::Result<T, E>;
