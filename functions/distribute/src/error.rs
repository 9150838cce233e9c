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
}

impl DistributeError {
    /// True when a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Port(error) => error.is_retryable() || error.is_condition_failed(),
            Self::Rules(_) | Self::Corrupt { .. } => false,
        }
    }
}

/// Result alias for distribute.
pub type Result<T, E = DistributeError> = std::result::Result<T, E>;
