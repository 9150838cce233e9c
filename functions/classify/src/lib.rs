//! classify: what does an event mean for the story, and who should write it?
//!
//! For each accepted narrative event, classify decides the intent, a salience from 0 to 100
//! and the tier that will compose it (deep model, driver model, or template). classify writes no
//! table: the decision travels in the compose request, and compose's conditional canon put is
//! the one point where it becomes final, so a retry that decides differently — say because the
//! inference pool came back — loses to the canon that exists (see [`handler`]).
//! Two classifiers: [`rules`] (keywords and structure, instant, the default) and [`embedding`]
//! (similarity to labelled prototype sentences through the inference pool), which falls back to
//! the rules per event when the pool is slow, failing or its circuit is open. [`eval`] scores
//! both on a held-out set; [`config`] picks one from the environment.

pub mod config;
pub mod embedding;
pub mod eval;
pub mod handler;
pub mod rules;

pub use embedding::{Embedder, EmbeddingClassifier, HttpEmbedder, Prototypes};
pub use handler::{Classifier, Classify};
pub use rules::classify;
