//! compose: the stateless compositor, `event -> canon`.
//!
//! compose renders the narrative line for a classified event and writes it to the canon table
//! exactly once: the canon put is conditional on the event not having canon yet, so the canon
//! item is compose's idempotency record. When a retry finds canon already written, it forwards
//! the canon that exists — never a second rendering — to distribute.
//!
//! By default every tier renders with the deterministic [`template`] composer. Configured with
//! models ([`config`]), driver and deep tiers are written by an [`provider::LlmProvider`]
//! (OpenAI-compatible HTTP: the project's pool, vLLM, Ollama or a cloud API) from a
//! [`prompt`] of scene context and the persona's memory, through the result [`cache`] and the
//! [`budget`]s, and fall back to templates whenever any of them says no ([`composer`]).

pub mod budget;
pub mod cache;
pub mod composer;
pub mod config;
pub mod handler;
pub mod metrics;
pub mod prompt;
pub mod provider;
pub mod template;

pub use composer::{Composer, ModelComposer};
pub use handler::Compose;
pub use template::render;
