//! worldfleet's test tooling, kept apart from the run modes that use it.
//!
//! - [`world`]: a deterministic synthetic world of players, districts and scenes that emits
//!   signed envelopes, good and deliberately bad, and remembers what should become of each;
//! - [`faults`]: crash, duplicate-delivery and expired-visibility injection for tests, as
//!   wrappers around any queue and table adapter;
//! - [`audit`]: an independent check, from the tables alone, that nothing was lost or doubled;
//! - [`derived`]: what a store derived from its events minus what is run-dependent, so two
//!   runs (or a run and its replay) can be compared table by table.
//!
//! The runtime (`worldfleet run`, the fleet), the CLI's benchmarks and the cross-crate tests
//! drive the world and audit it; this crate depends only on the domain, the ports, the shared
//! table layouts and the two stages whose rules the audit reads (distribute's republish rules,
//! prune's checkpoint entries), never on the runtime.

pub mod audit;
pub mod derived;
pub mod faults;
pub mod world;

pub use audit::{Audit, AuditReport};
pub use derived::Derived;
pub use world::{World, WorldLayout, WorldSpec};
