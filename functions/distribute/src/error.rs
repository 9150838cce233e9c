//! distribute's error type.

use thiserror::Error;

/// Why distribute failed.
#[derive(Debug, Error)]
pub enum DistributeError {
    #[error(transparent)]
    Port(#[from] worldfleet_ports::Error),
    #[error("republish rules: {0}")]
    Rules(String),
    #[error("corrupt {what}: {reason}")]
    Corrupt { what: String, reason: String },
    /// A shared row (page, plan, memory, canon) could not be read or decoded.
    #[error(transparent)]
    Table(#[from] worldfleet_tables::Error),
}

impl worldfleet_kit::Failure for DistributeError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Port(error) => error.is_worth_a_retry(),
            Self::Table(error) => error.is_retryable(),
            Self::Rules(_) | Self::Corrupt { .. } => false,
        }
    }
}

/// Result alias for distribute.
pub type Result<T, E = DistributeError> = std::result::Result<T, E>;
