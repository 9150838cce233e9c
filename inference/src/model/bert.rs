//! all-MiniLM-L6-v2 as a packed BERT encoder on candle: every sequence of a batch is laid
//! end to end along one `[tokens, hidden]` matrix, so the dense layers run as single large
//! matmuls with no padding at all, and attention is computed per sequence by
//! [`super::kernels::PackedSelfAttention`]. Output: mean pooling over each sequence's tokens,
//! then L2 normalisation (the sentence-transformers recipe for this model).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::EmbeddingModel;
use super::kernels::{BiasGelu, BiasResidualLayerNorm, PackedSelfAttention};
use crate::error::{InferenceError, Result};

/// The fields of a Hugging Face BERT `config.json` this implementation uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Longest sequence the position embeddings cover.
    pub max_position_embeddings: usize,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// Activation; only `gelu` (erf) is supported.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
}

fn default_hidden_act() -> String {
    "gelu".to_owned()
}

impl BertConfig {
    /// Reads `config.json` from `model_dir`.
    pub fn from_model_dir(model_dir: &Path) -> Result<Self> {
        let path = model_dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|error| {
            InferenceError::ModelUnavailable(format!("reading {}: {error}", path.display()))
        })?;
        let config: BertConfig = serde_json::from_str(&text).map_err(|error| {
            InferenceError::ModelUnavailable(format!("parsing {}: {error}", path.display()))
        })?;
        if config.hidden_act != "gelu" {
            return Err(InferenceError::ModelUnavailable(format!(
                "unsupported activation {:?}",
                config.hidden_act
            )));
        }
        if config.num_attention_heads == 0 || config.hidden_size % config.num_attention_heads != 0 {
            return Err(InferenceError::ModelUnavailable(
                "hidden_size is not a multiple of num_attention_heads".to_owned(),
            ));
        }
        Ok(config)
    }
}

/// A dense layer holding its weight pre-transposed to `[in, out]`, so the matmul reads both
/// operands row-major.
struct Dense {
    weight_in_out: Tensor,
    bias: Tensor,
    bias_values: Vec<f32>,
}

impl Dense {
    fn new(weight_out_in: &Tensor, bias: Tensor) -> Result<Self> {
        Ok(Dense {
            weight_in_out: weight_out_in.t()?.contiguous()?,
            bias_values: bias.to_vec1::<f32>()?,
            bias,
        })
    }

    /// `x · W` without the bias (for callers that fuse the bias into the next op).
    fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight_in_out)?)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.matmul(x)?.broadcast_add(&self.bias)?)
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    weight_values: Vec<f32>,
    bias_values: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            x,
            &self.weight,
            &self.bias,
            self.eps,
        )?)
    }

    /// `layer_norm(x · W + b + residual)`: a dense layer's output, residual connection and
    /// norm fused into one pass after the matmul.
    fn dense_residual(&self, dense: &Dense, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let fused = BiasResidualLayerNorm {
            bias: &dense.bias_values,
            gamma: &self.weight_values,
            beta: &self.bias_values,
            eps: self.eps,
        };
        Ok(dense.matmul(x)?.apply_op2_no_bwd(residual, &fused)?)
    }
}

struct EncoderLayer {
    query_key_value: Dense,
    attention_output: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

/// The all-MiniLM-L6-v2 sentence encoder (any post-norm BERT with erf GELU, in fact).
pub struct BertEncoder {
    config: BertConfig,
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_zero: Tensor,
    embeddings_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
    device: Device,
}

/// Looks tensors up by their Hugging Face names, with or without a `bert.` prefix.
struct Weights {
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
}

impl Weights {
    fn get(&self, name: &str) -> Result<Tensor> {
        let full_name = format!("{}{name}", self.prefix);
        let tensor = self.tensors.get(&full_name).ok_or_else(|| {
            InferenceError::ModelUnavailable(format!("model.safetensors lacks tensor {full_name}"))
        })?;
        Ok(tensor.to_dtype(DType::F32)?)
    }

    fn dense(&self, name: &str) -> Result<Dense> {
        Dense::new(
            &self.get(&format!("{name}.weight"))?,
            self.get(&format!("{name}.bias"))?,
        )
    }

    fn layer_norm(&self, name: &str, eps: f64) -> Result<LayerNorm> {
        let weight = self.get(&format!("{name}.weight"))?;
        let bias = self.get(&format!("{name}.bias"))?;
        Ok(LayerNorm {
            weight_values: weight.to_vec1::<f32>()?,
            bias_values: bias.to_vec1::<f32>()?,
            weight,
            bias,
            eps: eps as f32,
        })
    }
}

impl BertEncoder {
    /// Loads `config.json` and `model.safetensors` from `model_dir` (no network access).
    pub fn from_model_dir(model_dir: &Path) -> Result<Self> {
        let config = BertConfig::from_model_dir(model_dir)?;
        let path = model_dir.join("model.safetensors");
        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load(&path, &device).map_err(|error| {
            InferenceError::ModelUnavailable(format!("loading {}: {error}", path.display()))
        })?;
        let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let weights = Weights { tensors, prefix };
        let eps = config.layer_norm_eps;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for index in 0..config.num_hidden_layers {
            let name = format!("encoder.layer.{index}");
            let attention = format!("{name}.attention.self");
            // Query, key and value fused into one [3*hidden, hidden] projection: one matmul.
            let fused_weight = Tensor::cat(
                &[
                    weights.get(&format!("{attention}.query.weight"))?,
                    weights.get(&format!("{attention}.key.weight"))?,
                    weights.get(&format!("{attention}.value.weight"))?,
                ],
                0,
            )?;
            let fused_bias = Tensor::cat(
                &[
                    weights.get(&format!("{attention}.query.bias"))?,
                    weights.get(&format!("{attention}.key.bias"))?,
                    weights.get(&format!("{attention}.value.bias"))?,
                ],
                0,
            )?;
            layers.push(EncoderLayer {
                query_key_value: Dense::new(&fused_weight, fused_bias)?,
                attention_output: weights.dense(&format!("{name}.attention.output.dense"))?,
                attention_norm: weights
                    .layer_norm(&format!("{name}.attention.output.LayerNorm"), eps)?,
                intermediate: weights.dense(&format!("{name}.intermediate.dense"))?,
                output: weights.dense(&format!("{name}.output.dense"))?,
                output_norm: weights.layer_norm(&format!("{name}.output.LayerNorm"), eps)?,
            });
        }
        Ok(BertEncoder {
            word_embeddings: weights.get("embeddings.word_embeddings.weight")?,
            position_embeddings: weights.get("embeddings.position_embeddings.weight")?,
            token_type_zero: weights
                .get("embeddings.token_type_embeddings.weight")?
                .get(0)?,
            embeddings_norm: weights.layer_norm("embeddings.LayerNorm", eps)?,
            layers,
            config,
            device,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Final hidden states `[tokens, hidden]` of the packed sequences.
    fn encode_packed(&self, sequences: &[&[u32]]) -> Result<Tensor> {
        let lengths: Vec<usize> = sequences.iter().map(|sequence| sequence.len()).collect();
        let token_ids: Vec<u32> = sequences
            .iter()
            .flat_map(|sequence| sequence.iter().copied())
            .collect();
        let position_ids: Vec<u32> = lengths.iter().flat_map(|&len| 0..len as u32).collect();
        let tokens = token_ids.len();
        let token_ids = Tensor::from_vec(token_ids, tokens, &self.device)?;
        let position_ids = Tensor::from_vec(position_ids, tokens, &self.device)?;
        let embeddings = self
            .word_embeddings
            .index_select(&token_ids, 0)?
            .add(&self.position_embeddings.index_select(&position_ids, 0)?)?
            .broadcast_add(&self.token_type_zero)?;
        let mut hidden = self.embeddings_norm.forward(&embeddings)?;
        let attention = PackedSelfAttention {
            sequence_lengths: &lengths,
            heads: self.config.num_attention_heads,
            head_dim: self.config.hidden_size / self.config.num_attention_heads,
        };
        for layer in &self.layers {
            let query_key_value = layer.query_key_value.forward(&hidden)?;
            let context = query_key_value.apply_op1_no_bwd(&attention)?;
            let attended =
                layer
                    .attention_norm
                    .dense_residual(&layer.attention_output, &context, &hidden)?;
            let intermediate = layer
                .intermediate
                .matmul(&attended)?
                .apply_op2_no_bwd(&layer.intermediate.bias, &BiasGelu)?;
            hidden = layer
                .output_norm
                .dense_residual(&layer.output, &intermediate, &attended)?;
        }
        Ok(hidden)
    }
}

impl EmbeddingModel for BertEncoder {
    fn embed(&mut self, sequences: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        if sequences.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(sequence) = sequences.iter().find(|sequence| {
            sequence.is_empty() || sequence.len() > self.config.max_position_embeddings
        }) {
            return Err(InferenceError::Model(format!(
                "sequence length {} outside 1..={}",
                sequence.len(),
                self.config.max_position_embeddings
            )));
        }
        let hidden = self.encode_packed(sequences)?;
        let width = self.config.hidden_size;
        let values = hidden.flatten_all()?.to_vec1::<f32>()?;
        let mut embeddings = Vec::with_capacity(sequences.len());
        let mut rows = values.chunks_exact(width);
        for sequence in sequences {
            // Mean pooling: all tokens of a packed sequence are real (the mask is all ones).
            let mut pooled = vec![0.0f32; width];
            for row in rows.by_ref().take(sequence.len()) {
                for (sum, value) in pooled.iter_mut().zip(row) {
                    *sum += value;
                }
            }
            // Normalising the sum gives the same unit vector as normalising the mean.
            let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt();
            let scale = 1.0 / norm.max(1e-12);
            pooled.iter_mut().for_each(|value| *value *= scale);
            embeddings.push(pooled);
        }
        Ok(embeddings)
    }
}
