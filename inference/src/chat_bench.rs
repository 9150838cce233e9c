//! Benchmark of chat generation: loads the configured GGUF model (or writes and loads a tiny
//! random-weight one) and drives the generation queue in process with N concurrent clients,
//! each sending greedy requests back to back. Reports generated tokens per second, request
//! latency, time to first token and how many conversations shared each step. HTTP is left
//! out on purpose: at these request rates it is noise next to generation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::chat::template::{Message, Role};
use crate::chat::tiny::{TinyLlamaShape, write_tiny_llama};
use crate::chat::{ChatModelSpec, ChatPool, GenerationParams};
use crate::{Metrics, ServerConfig};

/// Options of the `bench-chat` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ChatBenchOptions {
    /// Concurrent clients to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    pub concurrency: Vec<usize>,
    /// Requests each client sends, back to back.
    #[arg(long, default_value_t = 4)]
    pub requests_per_client: usize,
    /// Tokens each request asks for (greedy, so all of them unless the model ends its turn).
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Instead of `--chat-model`, write and load a tiny random-weight llama of this width
    /// (a multiple of 64). Its figures say nothing about a real model's.
    #[arg(long)]
    pub tiny_hidden: Option<usize>,
    /// Blocks of the tiny model.
    #[arg(long, default_value_t = 4)]
    pub tiny_layers: usize,
}

/// Runs every measurement and prints a Markdown table.
pub async fn run(config: &ServerConfig, options: &ChatBenchOptions) -> anyhow::Result<()> {
    if options.concurrency.is_empty() || options.concurrency.contains(&0) {
        bail!("--concurrency needs positive client counts");
    }
    let tiny_dir =
        std::env::temp_dir().join(format!("worldfleet-tiny-chat-{}", std::process::id()));
    let (gguf_path, tokenizer_path, label) = match options.tiny_hidden {
        Some(hidden) => {
            std::fs::create_dir_all(&tiny_dir)
                .with_context(|| format!("creating {}", tiny_dir.display()))?;
            let heads = (hidden / 32).max(2);
            let shape = TinyLlamaShape {
                hidden,
                heads,
                kv_heads: heads / 2,
                layers: options.tiny_layers,
                feed_forward: hidden * 4,
                context_length: 4096,
                silent: false,
            };
            let (gguf, tokenizer) =
                write_tiny_llama(&tiny_dir, shape).context("writing the tiny model")?;
            let label = format!(
                "tiny random llama, hidden {hidden}, {} layers, Q8_0/Q4_0",
                options.tiny_layers
            );
            (gguf, tokenizer, label)
        }
        None => match (&config.chat_model, &config.chat_tokenizer) {
            (Some(gguf), Some(tokenizer)) => {
                (gguf.clone(), tokenizer.clone(), gguf.display().to_string())
            }
            _ => bail!("give --chat-model and --chat-tokenizer, or --tiny-hidden"),
        },
    };
    let max_clients = options.concurrency.iter().copied().max().unwrap_or(1);
    let mut limits = config.chat_limits();
    limits.max_in_flight = limits.max_in_flight.max(max_clients);
    limits.max_tokens_cap = limits.max_tokens_cap.max(options.max_tokens);
    let metrics = Arc::new(Metrics::default());
    let spec = ChatModelSpec {
        gguf_path: &gguf_path,
        tokenizer_path: &tokenizer_path,
        template: config.chat_template,
        device: config.chat_device().map_err(anyhow::Error::msg)?,
    };
    let loading = Instant::now();
    let chat = Arc::new(ChatPool::load(&spec, limits, Arc::clone(&metrics))?);
    let load_time = loading.elapsed();
    if options.tiny_hidden.is_some() {
        let _ = std::fs::remove_dir_all(&tiny_dir);
    }
    let prompts: Vec<String> = crate::bench::sentences(64);

    println!(
        "model: {label} (loaded in {:.2} s)",
        load_time.as_secs_f64()
    );
    println!(
        "device: {}, compute threads: {}, max sequences: {}, max_tokens: {}",
        config.device,
        config.compute_threads(),
        limits.max_sequences,
        options.max_tokens
    );
    println!();
    println!(
        "| clients | generated tokens/s | requests | p50 latency | p99 latency | mean time to first token | mean conversations per step |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &clients in &options.concurrency {
        let steps_before = (
            metrics.chat_step_sequences.count(),
            metrics.chat_step_sequences.sum(),
        );
        let first_token_before = (
            metrics.chat_time_to_first_token.count(),
            metrics.chat_time_to_first_token.sum(),
        );
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(clients);
        for client in 0..clients {
            let chat = Arc::clone(&chat);
            let prompts = prompts.clone();
            let requests = options.requests_per_client;
            let max_tokens = options.max_tokens;
            tasks.push(tokio::spawn(async move {
                let mut outcomes = Vec::with_capacity(requests);
                for request in 0..requests {
                    let messages = [
                        Message {
                            role: Role::System,
                            content: "You narrate a village in three sentences.".to_owned(),
                        },
                        Message {
                            role: Role::User,
                            content: prompts[(client * requests + request) % prompts.len()].clone(),
                        },
                    ];
                    let params = GenerationParams {
                        max_tokens,
                        temperature: 0.0,
                        top_p: 1.0,
                        seed: 0,
                        stop: Vec::new(),
                    };
                    let sent = Instant::now();
                    let completion = chat.complete(&messages, params).await?;
                    outcomes.push((sent.elapsed(), completion.token_ids.len()));
                }
                Ok::<_, crate::InferenceError>(outcomes)
            }));
        }
        let mut latencies = Vec::new();
        let mut generated = 0;
        for task in tasks {
            for (latency, tokens) in task.await.context("client task")?? {
                latencies.push(latency);
                generated += tokens;
            }
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let percentile = |p: f64| -> Duration {
            let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            latencies.get(index).copied().unwrap_or_default()
        };
        let mean_of = |(count_before, sum_before): (u64, f64), count: u64, sum: f64| {
            let count = count - count_before;
            if count == 0 {
                0.0
            } else {
                (sum - sum_before) / count as f64
            }
        };
        let per_step = mean_of(
            steps_before,
            metrics.chat_step_sequences.count(),
            metrics.chat_step_sequences.sum(),
        );
        let first_token = mean_of(
            first_token_before,
            metrics.chat_time_to_first_token.count(),
            metrics.chat_time_to_first_token.sum(),
        );
        println!(
            "| {clients} | {:.1} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {per_step:.2} |",
            generated as f64 / elapsed.as_secs_f64(),
            latencies.len(),
            percentile(0.5).as_secs_f64() * 1e3,
            percentile(0.99).as_secs_f64() * 1e3,
            first_token * 1e3,
        );
    }
    Ok(())
}
