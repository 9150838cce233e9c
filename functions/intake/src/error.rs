//! intake's error type: failures of the machinery, never of the input (bad input is a
//! [`crate::Refusal`], recorded and acknowledged).

use thiserror::Error;

/// Something went wrong that is not the envelope's fault.
#[derive(Debug, Error)]
pub enum IntakeError {
    /// A queue or table operation failed.
    #[error(transparent)]
    Port(#[from] worldfleet_ports::Error),
    /// Configuration is missing or invalid.
    #[error("intake configuration: {0}")]
    Config(String),
    /// An internal message could not be encoded.
    #[error("could not encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },
}

impl worldfleet_kit::Failure for IntakeError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Port(error) => error.is_worth_a_retry(),
            Self::Config(_) | Self::Encode { .. } => false,
        }
    }
}

/// Result alias for intake.
pub type Result<T, E = IntakeError> = std::result::Result<T, E>;
