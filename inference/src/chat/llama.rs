//! A GGUF-quantised llama-family model (candle-transformers' `quantized_llama`) and its
//! tokenizer, loaded offline from two files. A [`Sequence`] is one conversation being
//! generated: it shares the model's quantised weights and owns its own KV cache.

use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::{self, ModelWeights};

use super::template::ChatTemplate;
use crate::error::{InferenceError, Result};

/// The weights of a loaded model, with what the server needs to know about them.
pub struct LlamaModel {
    /// Weights with an empty KV cache; every sequence starts from a clone (the quantised
    /// tensors are reference-counted, so a clone copies no weights).
    weights: ModelWeights,
    device: Device,
    context_length: usize,
    vocab_size: usize,
}

/// Facts read from the GGUF metadata besides the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufFacts {
    /// `general.name`, when present.
    pub name: Option<String>,
    /// Longest sequence (prompt plus completion), in tokens.
    pub context_length: usize,
    /// Rows of the output projection.
    pub vocab_size: usize,
    /// `tokenizer.ggml.bos_token_id`, when present and the model wants it prepended.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`, when present.
    pub eos_token_id: Option<u32>,
    /// `tokenizer.chat_template` (Jinja source), when present.
    pub chat_template: Option<String>,
}

impl LlamaModel {
    /// Reads a GGUF file and loads its weights onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<(Self, GgufFacts)> {
        let unavailable =
            |what: String| InferenceError::ModelUnavailable(format!("{}: {what}", path.display()));
        let mut file = std::fs::File::open(path).map_err(|error| unavailable(error.to_string()))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|error| unavailable(format!("not a readable GGUF file: {error}")))?;
        let architecture = metadata_string(&content, "general.architecture");
        if architecture.as_deref() != Some("llama") {
            return Err(unavailable(format!(
                "general.architecture is {architecture:?}; only \"llama\" is supported"
            )));
        }
        let vocab_size = content
            .tensor_infos
            .get("output.weight")
            .or_else(|| content.tensor_infos.get("token_embd.weight"))
            .and_then(|info| info.shape.dims().first().copied())
            .ok_or_else(|| unavailable("no output.weight or token_embd.weight tensor".into()))?;
        let context_length = metadata_u32(&content, "llama.context_length")
            .map_or(quantized_llama::MAX_SEQ_LEN, |length| length as usize)
            .min(quantized_llama::MAX_SEQ_LEN);
        let add_bos = content
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|value| value.to_bool().ok())
            .unwrap_or(true);
        let facts = GgufFacts {
            name: metadata_string(&content, "general.name"),
            context_length,
            vocab_size,
            bos_token_id: metadata_u32(&content, "tokenizer.ggml.bos_token_id").filter(|_| add_bos),
            eos_token_id: metadata_u32(&content, "tokenizer.ggml.eos_token_id"),
            chat_template: metadata_string(&content, "tokenizer.chat_template"),
        };
        let weights = ModelWeights::from_gguf(content, &mut file, device)
            .map_err(|error| unavailable(format!("loading weights: {error}")))?;
        let model = LlamaModel {
            weights,
            device: device.clone(),
            context_length,
            vocab_size,
        };
        Ok((model, facts))
    }

    /// Longest sequence (prompt plus completion), in tokens.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Size of the vocabulary (length of a logits vector).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// A new, empty sequence.
    pub fn sequence(&self) -> Sequence {
        Sequence {
            weights: self.weights.clone(),
            device: self.device.clone(),
            position: 0,
            context_length: self.context_length,
        }
    }
}

/// One sequence under generation: its own KV cache and position.
pub struct Sequence {
    weights: ModelWeights,
    device: Device,
    position: usize,
    context_length: usize,
}

impl Sequence {
    /// Tokens held in the KV cache.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Runs the whole prompt in one forward pass (filling the KV cache) and returns the
    /// logits of the next token, `[vocab]`, f32. Restarts the sequence if it had tokens.
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<Tensor> {
        if prompt.is_empty() {
            return Err(InferenceError::InvalidRequest(
                "the prompt has no tokens".to_owned(),
            ));
        }
        self.position = 0;
        self.forward(prompt)
    }

    /// Appends one token (attending to the KV cache) and returns the next token's logits.
    pub fn step(&mut self, token: u32) -> Result<Tensor> {
        if self.position == 0 {
            return Err(InferenceError::Model(
                "step before prefill: the sequence is empty".to_owned(),
            ));
        }
        self.forward(&[token])
    }

    fn forward(&mut self, tokens: &[u32]) -> Result<Tensor> {
        if self.position + tokens.len() > self.context_length {
            return Err(InferenceError::Model(format!(
                "sequence would exceed the context length of {} tokens",
                self.context_length
            )));
        }
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let logits = self.weights.forward(&input, self.position)?;
        self.position += tokens.len();
        Ok(logits.squeeze(0)?.to_dtype(candle_core::DType::F32)?)
    }
}

fn metadata_u32(content: &gguf_file::Content, key: &str) -> Option<u32> {
    content
        .metadata
        .get(key)
        .and_then(|value| value.to_u32().ok())
}

fn metadata_string(content: &gguf_file::Content, key: &str) -> Option<String> {
    content
        .metadata
        .get(key)
        .and_then(|value| value.to_string().ok())
        .cloned()
}

/// The model's tokenizer (`tokenizer.json`) with the ids the generator needs.
pub struct ChatTokenizer {
    tokenizer: tokenizers::Tokenizer,
    bos_token_id: Option<u32>,
    stop_token_ids: Vec<u32>,
}

impl ChatTokenizer {
    /// Loads `tokenizer.json`; the stop tokens are the GGUF's end-of-sequence token and the
    /// template's end-of-turn token, where the vocabulary has them.
    pub fn load(path: &Path, facts: &GgufFacts, template: ChatTemplate) -> Result<Self> {
        let mut tokenizer = tokenizers::Tokenizer::from_file(path).map_err(|error| {
            InferenceError::ModelUnavailable(format!("loading {}: {error}", path.display()))
        })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|error| InferenceError::ModelUnavailable(error.to_string()))?;
        let mut stop_token_ids: Vec<u32> = facts.eos_token_id.into_iter().collect();
        stop_token_ids.extend(tokenizer.token_to_id(template.end_of_turn()));
        stop_token_ids.sort_unstable();
        stop_token_ids.dedup();
        if stop_token_ids.is_empty() {
            return Err(InferenceError::ModelUnavailable(format!(
                "no end-of-sequence token: the GGUF has no tokenizer.ggml.eos_token_id and {} \
                 has no {:?} token",
                path.display(),
                template.end_of_turn()
            )));
        }
        if let Some(out_of_range) = stop_token_ids
            .iter()
            .chain(&facts.bos_token_id)
            .find(|&&id| id as usize >= facts.vocab_size)
        {
            return Err(InferenceError::ModelUnavailable(format!(
                "special token id {out_of_range} is outside the model's vocabulary of {}",
                facts.vocab_size
            )));
        }
        Ok(ChatTokenizer {
            tokenizer,
            bos_token_id: facts.bos_token_id,
            stop_token_ids,
        })
    }

    /// Whether the vocabulary has `token` as one token.
    pub fn has_token(&self, token: &str) -> bool {
        self.tokenizer.token_to_id(token).is_some()
    }

    /// Token ids of a rendered prompt, beginning-of-sequence token first when the model has
    /// one (added here unless the tokenizer's post-processor already did).
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|error| InferenceError::Tokenizer(error.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        if let Some(bos) = self.bos_token_id
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    /// Text of generated tokens, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|error| InferenceError::Tokenizer(error.to_string()))
    }

    /// Tokens that end generation.
    pub fn is_stop_token(&self, id: u32) -> bool {
        self.stop_token_ids.contains(&id)
    }
}
