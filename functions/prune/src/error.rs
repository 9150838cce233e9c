//! prune's error type.

use thiserror::Error;

/// Why a prune request failed.
#[derive(Debug, Error)]
pub enum PruneError {
    #[error(transparent)]
    Port(#[from] worldfleet_ports::Error),
    #[error(transparent)]
    Distribute(#[from] worldfleet_distribute::DistributeError),
    #[error("corrupt {what}: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("prune settings: {0}")]
    Config(String),
}

impl PruneError {
    /// True when a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Port(error) => error.is_retryable() || error.is_condition_failed(),
            Self::Distribute(error) => error.is_retryable(),
            Self::Corrupt { .. } | Self::Config(_) => false,
        }
    }
}

/// Result alias for prune.
pub type Result<T, E = PruneError> = std::result::Result<T, E>;
