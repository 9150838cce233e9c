//! What the pool runs: a tokenizer (used on the async side, cheap) and an embedding model
//! (moved onto the model thread, expensive). Both are traits so the pool and the HTTP layer
//! can be tested with stand-ins; [`bert`] holds the real all-MiniLM-L6-v2 implementation.

pub mod bert;
mod kernels;

use std::path::Path;

use crate::error::{InferenceError, Result};

/// Turns text into model token ids, special tokens included.
pub trait TextTokenizer: Send + Sync + 'static {
    /// Token ids of `text`, with the model's special tokens, not truncated.
    fn token_ids(&self, text: &str) -> Result<Vec<u32>>;
    /// Longest sequence, in tokens, the model accepts.
    fn max_sequence_length(&self) -> usize;
}

/// Computes one L2-normalised embedding per token sequence. Runs on the model thread only.
pub trait EmbeddingModel: Send + 'static {
    /// Embeds every sequence; the result has one vector per sequence, in order.
    fn embed(&mut self, sequences: &[&[u32]]) -> Result<Vec<Vec<f32>>>;
}

/// A Hugging Face `tokenizer.json` tokenizer, with padding and truncation switched off: the
/// forward pass is packed (needs no padding) and over-long inputs are refused, not cut.
pub struct HuggingFaceTokenizer {
    tokenizer: tokenizers::Tokenizer,
    max_sequence_length: usize,
}

impl HuggingFaceTokenizer {
    /// Loads `tokenizer.json` from `model_dir`.
    pub fn from_model_dir(model_dir: &Path, max_sequence_length: usize) -> Result<Self> {
        let path = model_dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&path).map_err(|error| {
            InferenceError::ModelUnavailable(format!("loading {}: {error}", path.display()))
        })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|error| InferenceError::ModelUnavailable(error.to_string()))?;
        Ok(HuggingFaceTokenizer {
            tokenizer,
            max_sequence_length,
        })
    }
}

impl TextTokenizer for HuggingFaceTokenizer {
    fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|error| InferenceError::Tokenizer(error.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    fn max_sequence_length(&self) -> usize {
        self.max_sequence_length
    }
}
