//! worldfleet inference pool: an HTTP server (OpenAI-compatible embeddings, prototype
//! classification, chat completions, health, Prometheus metrics) in front of a
//! dynamic-batching pool that runs a candle BERT sentence encoder on its own thread, and a
//! generation queue that runs a GGUF llama-family chat model on another.
//!
//! The server, its configuration and the load generators sit behind the default `server`
//! feature; without it the crate is the models and the pools alone (what the runtime embeds).

#[cfg(feature = "server")]
pub mod bench;
pub mod chat;
#[cfg(feature = "server")]
pub mod chat_bench;
pub mod classify;
#[cfg(feature = "server")]
pub mod config;
pub mod error;
#[cfg(feature = "server")]
pub mod http;
pub mod metrics;
pub mod model;
pub mod pool;

use std::path::Path;
use std::sync::Arc;

pub use chat::{ChatLimits, ChatPool};
#[cfg(feature = "server")]
pub use config::ServerConfig;
pub use error::{InferenceError, Result};
#[cfg(feature = "server")]
pub use http::{AppState, app};
pub use metrics::Metrics;
pub use pool::{Pool, PoolLimits};

use model::bert::BertEncoder;
use model::{EmbeddingModel, HuggingFaceTokenizer, TextTokenizer};

/// Sizes the global rayon pool that the forward pass (matmul, attention, GELU) runs on.
/// Call once, before the first forward pass; later calls are ignored.
pub fn init_compute_threads(threads: usize) {
    if let Err(error) = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|index| format!("inference-compute-{index}"))
        .build_global()
    {
        tracing::warn!(%error, "compute thread pool already initialised");
    }
}

/// Longest input, in tokens: the sentence-transformers `max_seq_length` when the model
/// directory declares one, else the model's position-embedding range.
fn max_sequence_length(model_dir: &Path, max_position_embeddings: usize) -> usize {
    #[derive(serde::Deserialize)]
    struct SentenceBertConfig {
        max_seq_length: usize,
    }
    std::fs::read_to_string(model_dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<SentenceBertConfig>(&text).ok())
        .map_or(max_position_embeddings, |config| {
            config.max_seq_length.min(max_position_embeddings)
        })
}

/// Loads tokenizer and model from `model_dir` (offline) and starts the pool's model thread.
pub fn load_pool(model_dir: &Path, limits: PoolLimits, metrics: Arc<Metrics>) -> Result<Pool> {
    let encoder = BertEncoder::from_model_dir(model_dir)?;
    let max_length = max_sequence_length(model_dir, encoder.config().max_position_embeddings);
    let tokenizer: Arc<dyn TextTokenizer> =
        Arc::new(HuggingFaceTokenizer::from_model_dir(model_dir, max_length)?);
    let model: Box<dyn EmbeddingModel> = Box::new(encoder);
    Pool::start(tokenizer, model, limits, metrics)
}
