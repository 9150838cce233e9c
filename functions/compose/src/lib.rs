//! compose: the stateless compositor, `event -> canon`.
//!
//! compose renders the narrative line for a classified event and writes it to the canon table
//! exactly once: the canon put is conditional on the event not having canon yet, so the canon
//! item is compose's idempotency record. When a retry finds canon already written, it forwards
//! the canon that exists — never a second rendering — to distribute.
//!
//! This build renders every tier with the deterministic [`template`] composer; model tiers
//! (through an `LlmProvider`, with cache and budgets) arrive with the inference pool and fall
//! back to these templates.

pub mod canon;
pub mod handler;
pub mod template;

pub use handler::Compose;
pub use template::render;
