//! Server configuration: one struct, filled from command-line flags with environment
//! variable fallbacks (`WORLDFLEET_INFERENCE_*`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
}

impl ServerConfig {
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
