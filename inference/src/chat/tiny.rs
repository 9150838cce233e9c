//! A tiny llama-family model with random weights, written as a real GGUF file plus a
//! word-level `tokenizer.json`: what the chat tests and the chat benchmark load through the
//! server's real loading code when no real model is at hand. Its answers are random words;
//! its speed says nothing about a real model's.

use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use serde_json::{Value, json};

use crate::error::{InferenceError, Result};

/// Special tokens, ids 0.. in this order: `</s>` is end of sequence, `<s>` beginning; the
/// rest make the vocabulary look like a Zephyr chat model's.
pub const SPECIAL_TOKENS: [&str; 6] = [
    "</s>",
    "<s>",
    "<unk>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
];

const WORDS: &str = "apple river stone cloud ember frost grove harbor island jade kettle lantern \
    meadow nectar orchard pebble quartz raven saddle thistle umber valley willow yarrow zephyr \
    amber birch cedar dune elm fern garnet heath iris juniper kelp lichen moss nettle onyx pine \
    quill reed sage tansy urchin vine wren yew zinnia aspen bramble clover daisy egret fjord \
    gorse hazel";

/// The shape of the model; every width must be a multiple of 32 (the quantisation block).
#[derive(Debug, Clone, Copy)]
pub struct TinyLlamaShape {
    /// Embedding width.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (fewer than `heads` exercises grouped-query attention).
    pub kv_heads: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Width of the feed-forward layer.
    pub feed_forward: usize,
    /// `llama.context_length`.
    pub context_length: usize,
    /// Output norm weights of zero: every logit is 0, so arg max picks id 0, `</s>`, at once.
    pub silent: bool,
}

impl Default for TinyLlamaShape {
    fn default() -> Self {
        TinyLlamaShape {
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            layers: 2,
            feed_forward: 128,
            context_length: 96,
            silent: false,
        }
    }
}

/// The tokenizer's vocabulary, in id order: the special tokens, then 58 words.
pub fn vocabulary() -> Vec<String> {
    SPECIAL_TOKENS
        .iter()
        .map(|token| (*token).to_owned())
        .chain(WORDS.split_whitespace().map(str::to_owned))
        .collect()
}

/// Deterministic uniform numbers in [-scale, scale).
struct Xorshift(u64);

impl Xorshift {
    fn values(&mut self, count: usize, scale: f32) -> Vec<f32> {
        (0..count)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

fn quantize(values: Vec<f32>, rows: usize, cols: usize, dtype: GgmlDType) -> Result<QTensor> {
    let tensor = Tensor::from_vec(values, (rows, cols), &Device::Cpu)?;
    Ok(QTensor::quantize(&tensor, dtype)?)
}

/// Writes `tiny.gguf` and `tokenizer.json` into `dir` and returns their paths. The same shape
/// always gives the same weights. Attention weights are Q8_0, feed-forward weights Q4_0.
pub fn write_tiny_llama(dir: &Path, shape: TinyLlamaShape) -> Result<(PathBuf, PathBuf)> {
    if shape.heads == 0 || shape.kv_heads == 0 || shape.heads % shape.kv_heads != 0 {
        return Err(InferenceError::InvalidRequest(
            "heads must be a non-zero multiple of kv_heads".to_owned(),
        ));
    }
    let head_dim = shape.hidden / shape.heads;
    let kv_width = shape.kv_heads * head_dim;
    if [shape.hidden, shape.feed_forward, kv_width]
        .iter()
        .any(|width| *width == 0 || width % 32 != 0)
        || head_dim % 2 != 0
    {
        return Err(InferenceError::InvalidRequest(
            "hidden, feed_forward and kv_heads * head_dim must be multiples of 32".to_owned(),
        ));
    }
    let vocab = vocabulary();
    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d);
    let norm = |value: f32| -> Result<QTensor> {
        let tensor = Tensor::from_vec(vec![value; shape.hidden], shape.hidden, &Device::Cpu)?;
        Ok(QTensor::quantize(&tensor, GgmlDType::F32)?)
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            quantize(
                rng.values(vocab.len() * shape.hidden, 1.0),
                vocab.len(),
                shape.hidden,
                GgmlDType::Q8_0,
            )?,
        ),
        (
            "output_norm.weight".into(),
            norm(if shape.silent { 0.0 } else { 1.0 })?,
        ),
    ];
    // Special tokens get zero output rows (logit 0): with the other logits spread around 0,
    // greedy decoding never picks them, so completions run to max_tokens.
    let mut output = rng.values(vocab.len() * shape.hidden, 0.25);
    output[..SPECIAL_TOKENS.len() * shape.hidden].fill(0.0);
    tensors.push((
        "output.weight".into(),
        quantize(output, vocab.len(), shape.hidden, GgmlDType::Q8_0)?,
    ));
    let scale = 2.4 / (shape.hidden as f32).sqrt();
    for layer in 0..shape.layers {
        let prefix = format!("blk.{layer}");
        for (name, rows, cols, dtype) in [
            ("attn_q", shape.hidden, shape.hidden, GgmlDType::Q8_0),
            ("attn_k", kv_width, shape.hidden, GgmlDType::Q8_0),
            ("attn_v", kv_width, shape.hidden, GgmlDType::Q8_0),
            ("attn_output", shape.hidden, shape.hidden, GgmlDType::Q8_0),
            (
                "ffn_gate",
                shape.feed_forward,
                shape.hidden,
                GgmlDType::Q4_0,
            ),
            ("ffn_up", shape.feed_forward, shape.hidden, GgmlDType::Q4_0),
            (
                "ffn_down",
                shape.hidden,
                shape.feed_forward,
                GgmlDType::Q4_0,
            ),
        ] {
            tensors.push((
                format!("{prefix}.{name}.weight"),
                quantize(rng.values(rows * cols, scale), rows, cols, dtype)?,
            ));
        }
        tensors.push((format!("{prefix}.attn_norm.weight"), norm(1.0)?));
        tensors.push((format!("{prefix}.ffn_norm.weight"), norm(1.0)?));
    }
    let u32_value = |value: usize| gguf_file::Value::U32(value as u32);
    let metadata: Vec<(&str, gguf_file::Value)> = vec![
        (
            "general.architecture",
            gguf_file::Value::String("llama".into()),
        ),
        (
            "general.name",
            gguf_file::Value::String("tiny-test-llama".into()),
        ),
        ("llama.context_length", u32_value(shape.context_length)),
        ("llama.embedding_length", u32_value(shape.hidden)),
        ("llama.block_count", u32_value(shape.layers)),
        ("llama.feed_forward_length", u32_value(shape.feed_forward)),
        ("llama.attention.head_count", u32_value(shape.heads)),
        ("llama.attention.head_count_kv", u32_value(shape.kv_heads)),
        ("llama.rope.dimension_count", u32_value(head_dim)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            gguf_file::Value::F32(1e-5),
        ),
        ("tokenizer.ggml.bos_token_id", gguf_file::Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", gguf_file::Value::U32(0)),
        (
            "tokenizer.chat_template",
            gguf_file::Value::String(
                "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}</s>\n{% endfor %}\
                 <|assistant|>\n"
                    .into(),
            ),
        ),
    ];
    let io_error = |what: &str, error: std::io::Error| {
        InferenceError::Model(format!("writing the tiny model's {what}: {error}"))
    };
    let gguf_path = dir.join("tiny.gguf");
    let mut file = std::fs::File::create(&gguf_path).map_err(|error| io_error("GGUF", error))?;
    let metadata_refs: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(key, value)| (*key, value)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors
        .iter()
        .map(|(name, tensor)| (name.as_str(), tensor))
        .collect();
    gguf_file::write(&mut file, &metadata_refs, &tensor_refs)?;

    let added_tokens: Vec<Value> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .filter(|(_, token)| **token != "<unk>")
        .map(|(id, token)| {
            json!({"id": id, "content": token, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let vocab_map: serde_json::Map<String, Value> = vocab
        .iter()
        .enumerate()
        .map(|(id, token)| (token.clone(), json!(id)))
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab_map, "unk_token": "<unk>"}
    });
    let tokenizer_path = dir.join("tokenizer.json");
    std::fs::write(&tokenizer_path, tokenizer.to_string())
        .map_err(|error| io_error("tokenizer", error))?;
    Ok((gguf_path, tokenizer_path))
}
