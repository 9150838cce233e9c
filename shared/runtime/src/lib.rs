//! worldfleet's runtime: everything that drives stage handlers without being one.
//!
//! - [`resources`]: the queues (with dead-letter queues) and tables a deployment declares;
//! - [`dead_letters`]: what is in the dead-letter queues, and moving it back (`worldfleet dlq`);
//! - [`poller`]: long-polls a queue and drives a stage handler with the batch semantics of a
//!   Lambda SQS event source mapping — the embedded runtime and the fleet workers both use it;
//! - [`simulation`]: the world simulation (ecology, market, production) in the embedded run:
//!   seeding, the watchdog, settling and the world audit;
//! - [`fleet`]: the stages of one process, posting a world, waiting for the queues to drain;
//! - [`embedded`]: `worldfleet run` — all stages in one process on the embedded store;
//! - [`doors`]: the run through the HTTP door, with every player following their feed live;
//! - [`replay`]: ledger checkpoints and `worldfleet replay` — the derived tables rebuilt
//!   from the ledger by the real stages;
//! - [`models`]: which classifier and composer the narrative stages use (models when
//!   configured or present, rules and templates otherwise), and why.
//!
//! The test tooling the run modes drive — the synthetic world, fault injection and the audit —
//! is `worldfleet-testbed`; the benchmarks are the CLI's (`shared/cli/src/bench_*.rs`).

pub mod dead_letters;
pub mod doors;
pub mod embedded;
pub mod fleet;
pub mod models;
pub mod poller;
pub mod replay;
pub mod resources;
pub mod simulation;

pub use embedded::{RunOptions, RunSummary, run_embedded};
pub use fleet::{Fleet, FleetStages};
pub use models::ModelChoice;
pub use poller::{PollerConfig, PollerStats, run_stage};
pub use simulation::WorldReport;
