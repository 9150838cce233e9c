//! intake: the front door of worldfleet.
//!
//! Each record is one gateway envelope. intake refuses oversized, malformed, forged, stale,
//! replayed and over-rate envelopes — each refusal a row in the rejections table with a reason
//! code, never a retry and never a silent drop — and appends every accepted event to its
//! partition's ledger *before* routing it by kind to the next stage, with the partition UID as
//! the FIFO message group. The ledger entry doubles as intake's idempotency record.

pub mod config;
pub mod error;
pub mod handler;
pub mod keys;
pub mod ratelimit;
pub mod rejections;
pub mod validate;

pub use config::{IntakeConfig, KeySecret, RateLimit};
pub use error::{IntakeError, Result};
pub use handler::Intake;
pub use keys::{GatewayKey, GatewayKeys, KeySet, KeySource};
pub use validate::{Refusal, Validated};
