//! The domain's error type: every way a piece of input can be invalid.

use thiserror::Error;

/// Why a value failed domain validation. Each variant maps to a rejection reason code at intake.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DomainError {
    #[error("invalid uid {uid:?}: {reason}")]
    InvalidUid { uid: String, reason: &'static str },
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("unsupported envelope version {0}; this gateway API speaks version 1")]
    UnsupportedVersion(u64),
    #[error("invalid envelope field `{field}`: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// A feed id (not an envelope field) that does not parse.
    #[error(
        "{feed:?} is not a feed id ({reason}); feeds are player:ID, faction:NAME or district:GM_EVENT/DISTRICT"
    )]
    InvalidFeed { feed: String, reason: String },
    #[error("envelope is {size} bytes; the limit is {limit}")]
    Oversized { size: usize, limit: usize },
    #[error("signature does not match the envelope")]
    BadSignature,
    #[error("could not canonicalise the envelope: {0}")]
    Canonicalisation(String),
}

/// Result alias for domain operations.
pub type Result<T, E = DomainError> = std::result::Result<T, E>;
