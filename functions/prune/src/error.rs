//! prune's error type.

use thiserror::Error;

/// Why a prune request failed.
#[derive(Debug, Error)]
pub enum PruneError {
    #[error(transparent)]
    Port(#[from] worldfleet_ports::Error),
    /// A shared row (page, plan, observation) could not be read or decoded.
    #[error(transparent)]
    Table(#[from] worldfleet_tables::Error),
    #[error("corrupt {what}: {reason}")]
    Corrupt { what: String, reason: String },
    /// A row this request read was changed by another before it wrote: decide again.
    #[error("{0}")]
    Moved(String),
    #[error("prune settings: {0}")]
    Config(String),
}

impl worldfleet_kit::Failure for PruneError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Port(error) => error.is_worth_a_retry(),
            Self::Table(error) => error.is_retryable(),
            Self::Moved(_) => true,
            Self::Corrupt { .. } | Self::Config(_) => false,
        }
    }
}

/// Result alias for prune.
pub type Result<T, E = PruneError> = std::result::Result<T, E>;
