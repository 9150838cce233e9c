//! The batch and idempotency kit every stage is built with.
//!
//! Rust has no Powertools for AWS Lambda; this crate carries its semantics:
//! - [`batch`]: per-record processing of a queue batch with a partial-failure report, where on
//!   a FIFO queue a failure stops only its own message group;
//! - [`idempotency`]: records that move IN_PROGRESS → COMPLETED, with an in-progress expiry tied
//!   to the invocation's remaining time and a payload hash that refuses a different payload under
//!   the same key, expiry checked in code;
//! - [`activity`]: region activity records and the feed index that prune's sweep walks;
//! - [`timer`]: delayed-message timer chains, their registry and the watchdog's staleness rule;
//! - [`stage`]: the [`stage::StageHandler`] trait the embedded runtime, the fleet workers and
//!   the Lambda binaries all drive;
//! - [`env`]: one way to read settings from environment variables, with errors that name the
//!   variable;
//! - [`breaker`] and [`http`]: the circuit breaker and JSON client for calls to remote
//!   services (the inference pool, model servers), whose failures stages fall back from;
//! - [`testing`]: declaring a stage's queues and tables, building the events and deliveries it
//!   is handed, and reading back what it wrote, for the stage crates' tests over an in-process
//!   store.

pub mod activity;
pub mod batch;
pub mod breaker;
pub mod env;
pub mod http;
pub mod idempotency;
pub mod stage;
pub mod testing;
pub mod timer;

pub use batch::{
    BatchReport, FailedGroups, Failure, RecordError, dead_letter_permanent, process_batch,
};
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use env::{ConfigError, Env, Variable, log_filter};
pub use idempotency::{IdempotencyConfig, IdempotencyError, IdempotencyStore, Outcome};
pub use stage::{
    StageContext, StageHandler, forward_batch, forward_batch_keyed, handle_in_place, send_all,
};
