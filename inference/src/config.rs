//! Server configuration: one struct, filled from command-line flags with environment
//! variable fallbacks (`WORLDFLEET_INFERENCE_*`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use candle_core::Device;

use crate::chat::ChatLimits;
use crate::chat::template::ChatTemplate;

/// Everything the inference server needs to start.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerConfig {
    /// Directory holding `config.json`, `tokenizer.json` and `model.safetensors`.
    #[arg(
        long,
        env = "WORLDFLEET_INFERENCE_MODEL_DIR",
        default_value = "models/all-MiniLM-L6-v2"
    )]
    pub model_dir: PathBuf,
    /// Name reported in responses (the `model` field).
    #[arg(
        long,
        env = "WORLDFLEET_INFERENCE_MODEL_NAME",
        default_value = "all-MiniLM-L6-v2"
    )]
    pub model_name: String,
    /// Address the HTTP server listens on.
    #[arg(
        long,
        env = "WORLDFLEET_INFERENCE_BIND",
        default_value = "0.0.0.0:8080"
    )]
    pub bind: SocketAddr,
    /// Token budget of one batch: the batcher stops adding requests once the batch holds this
    /// many tokens (no padding is counted: the forward pass is packed).
    #[arg(
        long,
        env = "WORLDFLEET_INFERENCE_MAX_BATCH_TOKENS",
        default_value_t = 8192
    )]
    pub max_batch_tokens: usize,
    /// Longest the batcher waits for more requests once it holds one, in milliseconds. It only
    /// waits while other requests are known to be on their way (admitted, not yet queued).
    #[arg(long, env = "WORLDFLEET_INFERENCE_MAX_WAIT_MS", default_value_t = 2)]
    pub max_wait_ms: u64,
    /// Requests admitted at once (queued or running); one more is refused with 429.
    #[arg(long, env = "WORLDFLEET_INFERENCE_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,
    /// Texts one request may carry (inputs plus label prototypes for classification).
    #[arg(long, env = "WORLDFLEET_INFERENCE_MAX_INPUTS", default_value_t = 256)]
    pub max_inputs_per_request: usize,
    /// Compute threads for the forward pass (matmul and attention). Defaults to the number of
    /// cores.
    #[arg(long, env = "WORLDFLEET_INFERENCE_THREADS")]
    pub threads: Option<usize>,
    /// Serve no embedding model (`/v1/embeddings` and `/v1/classify` answer 503): for a pool
    /// that only generates.
    #[arg(long, env = "WORLDFLEET_INFERENCE_DISABLE_EMBEDDINGS")]
    pub disable_embeddings: bool,
    /// GGUF file of a llama-family chat model; `/v1/chat/completions` answers 503 without one.
    #[arg(
        long,
        env = "WORLDFLEET_INFERENCE_CHAT_MODEL",
        requires = "chat_tokenizer"
    )]
    pub chat_model: Option<PathBuf>,
    /// `tokenizer.json` of the chat model (GGUF files carry no Hugging Face tokenizer).
    #[arg(long, env = "WORLDFLEET_INFERENCE_CHAT_TOKENIZER")]
    pub chat_tokenizer: Option<PathBuf>,
    /// Name reported in chat answers; defaults to the GGUF file's stem.
    #[arg(long, env = "WORLDFLEET_INFERENCE_CHAT_MODEL_NAME")]
    pub chat_model_name: Option<String>,
    /// Prompt format: llama3, llama2, zephyr or chatml; detected from the GGUF's
    /// `tokenizer.chat_template` and the vocabulary when not given.
    #[arg(long, env = "WORLDFLEET_INFERENCE_CHAT_TEMPLATE")]
    pub chat_template: Option<ChatTemplate>,
    /// Conversations generated at once (interleaved token by token); more wait in line.
    #[arg(
        long,
        env = "WORLDFLEET_INFERENCE_CHAT_MAX_SEQUENCES",
        default_value_t = 8
    )]
    pub chat_max_sequences: usize,
    /// Token budget of one generation step: one token per decoding conversation plus the
    /// prompts of those starting in that step.
    #[arg(
        long,
        env = "WORLDFLEET_INFERENCE_CHAT_MAX_STEP_TOKENS",
        default_value_t = 2048
    )]
    pub chat_max_step_tokens: usize,
    /// Longest the idle generator waits for more requests once it holds one, in milliseconds.
    #[arg(
        long,
        env = "WORLDFLEET_INFERENCE_CHAT_MAX_WAIT_MS",
        default_value_t = 5
    )]
    pub chat_max_wait_ms: u64,
    /// Chat requests admitted at once (waiting or generating); one more is refused with 429.
    #[arg(
        long,
        env = "WORLDFLEET_INFERENCE_CHAT_MAX_IN_FLIGHT",
        default_value_t = 32
    )]
    pub chat_max_in_flight: usize,
    /// `max_tokens` of a chat request that gives none.
    #[arg(
        long,
        env = "WORLDFLEET_INFERENCE_CHAT_DEFAULT_MAX_TOKENS",
        default_value_t = 256
    )]
    pub chat_default_max_tokens: usize,
    /// Largest `max_tokens` a chat request may ask for.
    #[arg(
        long,
        env = "WORLDFLEET_INFERENCE_CHAT_MAX_TOKENS",
        default_value_t = 1024
    )]
    pub chat_max_tokens: usize,
    /// Where the chat model runs: `cpu`, or `cuda` / `cuda:N` in a build with the `cuda`
    /// feature.
    #[arg(long, env = "WORLDFLEET_INFERENCE_DEVICE", default_value = "cpu")]
    pub device: String,
}

impl ServerConfig {
    /// Scheduling limits of the chat model.
    pub fn chat_limits(&self) -> ChatLimits {
        ChatLimits {
            max_sequences: self.chat_max_sequences.max(1),
            max_step_tokens: self.chat_max_step_tokens.max(1),
            max_wait: Duration::from_millis(self.chat_max_wait_ms),
            max_in_flight: self.chat_max_in_flight.max(1),
            default_max_tokens: self.chat_default_max_tokens.max(1),
            max_tokens_cap: self.chat_max_tokens.max(1),
        }
    }

    /// Name of the chat model in answers: the configured one, else the GGUF file's stem.
    pub fn chat_model_name(&self) -> Option<String> {
        self.chat_model_name.clone().or_else(|| {
            self.chat_model.as_ref().map(|path| {
                path.file_stem().map_or_else(
                    || path.display().to_string(),
                    |stem| stem.to_string_lossy().into_owned(),
                )
            })
        })
    }

    /// The device named by `--device`.
    pub fn chat_device(&self) -> Result<Device, String> {
        parse_device(&self.device)
    }

    /// Batching limits derived from this configuration.
    pub fn pool_limits(&self) -> crate::pool::PoolLimits {
        crate::pool::PoolLimits {
            max_batch_tokens: self.max_batch_tokens.max(1),
            max_wait: Duration::from_millis(self.max_wait_ms),
            max_in_flight: self.max_in_flight.max(1),
            max_inputs_per_request: self.max_inputs_per_request.max(1),
        }
    }

    /// Compute threads, falling back to the number of available cores.
    pub fn compute_threads(&self) -> usize {
        self.threads
            .filter(|&threads| threads > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// `cpu`, `cuda` or `cuda:N`. Without the `cuda` feature candle refuses CUDA with an error
/// that says so, which is reported at start-up.
pub fn parse_device(name: &str) -> Result<Device, String> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(|error| format!("device cuda: {error}")),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => {
                Device::new_cuda(ordinal).map_err(|error| format!("device {other}: {error}"))
            }
            _ => Err(format!(
                "unknown device {other:?}; expected cpu, cuda or cuda:N"
            )),
        },
    }
}
