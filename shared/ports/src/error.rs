//! The one error type of every port, classified so callers can decide whether to retry.

use thiserror::Error;

/// A port operation failed.
///
/// The variants sort failures into what a caller can do about them: a failed condition is an
/// answer, not a fault; throttling, timeouts and unavailability are worth a retry with backoff;
/// the rest are permanent for the same request.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// A conditional write's condition was false (DynamoDB `ConditionalCheckFailedException`).
    #[error("condition failed on {table} item {pk}/{sk}")]
    ConditionFailed {
        table: String,
        pk: String,
        sk: String,
    },
    /// A transaction was cancelled; `reasons[i]` says why operation `i` failed, if it did.
    #[error("transaction cancelled: {reasons:?}")]
    TransactionCanceled { reasons: Vec<Option<String>> },
    /// An item over the 400 KB limit.
    #[error("item is {size} bytes; the limit is {limit}")]
    ItemTooLarge { size: usize, limit: usize },
    /// The request breaks a documented limit or shape (batch size, delay range, FIFO fields).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The queue or table does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The receipt handle is no longer valid (the message was received again or deleted).
    #[error("receipt handle is no longer valid: {0}")]
    InvalidReceipt(String),
    /// Over provisioned or request-rate limits; retry with backoff.
    #[error("throttled: {0}")]
    Throttled(String),
    /// No answer in time; the operation may or may not have been applied.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A transient fault (I/O, connection); retry with backoff.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else that will fail again if retried unchanged.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl Error {
    /// True when retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled(_) | Self::Timeout(_) | Self::Unavailable(_)
        )
    }

    /// True when the record whose step made this call may succeed if it is run again: the call
    /// itself may succeed later ([`Error::is_retryable`]), or it lost a race on a condition (a
    /// concurrent writer got there first), which a retry re-reads and decides again. Every
    /// stage's error type applies this one rule to the port errors it wraps.
    pub fn is_worth_a_retry(&self) -> bool {
        self.is_retryable() || self.is_condition_failed()
    }

    /// True for a failed condition (including a transaction cancelled only by conditions).
    pub fn is_condition_failed(&self) -> bool {
        match self {
            Self::ConditionFailed { .. } => true,
            Self::TransactionCanceled { reasons } => reasons
                .iter()
                .flatten()
                .all(|reason| reason.starts_with("ConditionalCheckFailed")),
            _ => false,
        }
    }
}

/// Result alias for port operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
