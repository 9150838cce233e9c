//! classify: what does an event mean for the story, and who should write it?
//!
//! For each accepted narrative event, classify decides the intent, a salience from 0 to 100
//! and the tier that will compose it (deep model, driver model, or template). The decision is
//! made once per event under an idempotency record, so a retry — even one that would now decide
//! differently, say because the inference pool came back — forwards the decision already made.
//! This build classifies with [`rules`]; the embedding classifier arrives with the inference
//! pool and falls back to these rules when the pool is slow or down.

pub mod handler;
pub mod rules;

pub use handler::Classify;
pub use rules::classify;
