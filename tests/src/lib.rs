//! worldfleet's cross-crate tests live in `tests/tests/`; this library is empty.
//!
//! - `embedded_pipeline.rs`: the whole narrative path on the embedded store, fault-free and
//!   under injected crashes, duplicate deliveries, expired visibility timeouts and a restart,
//!   compared event for event.
