//! The price crate's error type: every way rules, market state or production state can be
//! invalid. Bad transactions are not errors: they are refused in the decision.

use thiserror::Error;
use worldfleet_domain::DomainError;

/// Why a market or production operation was refused. None is retryable: the same input fails
/// the same way.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
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
}

/// Result alias for market and production operations.
pub type Result<T, E = PriceError> = std::result::Result<T, E>;
