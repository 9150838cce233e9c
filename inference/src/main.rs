//! `worldfleet-inference`: `serve` (default) runs the HTTP server (embeddings, classification
//! and, with `--chat-model`, chat completions); `bench` measures the pool end to end over
//! HTTP; `bench-chat` measures chat generation; `bench-sentences` prints the benchmark's
//! sentences for the reference script.

use std::sync::Arc;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use clap::{Parser, Subcommand};
use worldfleet_inference::bench::{self, BenchOptions};
use worldfleet_inference::chat::ChatModelSpec;
use worldfleet_inference::chat_bench::{self, ChatBenchOptions};
use worldfleet_inference::{AppState, ChatPool, Metrics, ServerConfig};

/// mimalloc, told never to purge, keeps freed activation buffers for reuse; with glibc's
/// allocator every large buffer was a fresh mmap, and page faults took ~8–13% of a batched
/// forward pass.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v2's `mimalloc.h` (the bindings lack the constant);
/// -1 means "never purge".
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[derive(Parser)]
#[command(version, about = "worldfleet inference pool")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ServerConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Benchmark the pool over HTTP on 127.0.0.1 (port 0).
    Bench(BenchOptions),
    /// Benchmark chat generation (in process) on `--chat-model` or a tiny random model.
    BenchChat(ChatBenchOptions),
    /// Write a tiny random-weight llama (`tiny.gguf` + `tokenizer.json`) into a directory, to
    /// try `/v1/chat/completions` without a real model. It answers random words.
    WriteTinyChatModel {
        /// Directory to write into (created if missing).
        dir: std::path::PathBuf,
    },
    /// Print the benchmark sentences, one per line.
    BenchSentences {
        /// How many sentences.
        #[arg(long, default_value_t = 2048)]
        count: usize,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Never hand freed pages back to the OS: activation buffers are reallocated every batch,
    // and re-faulting them in cost more than the memory is worth.
    // SAFETY: plain option setter of the allocator in use; called before any other thread
    // exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let cli = Cli::parse();
    let threads = cli.config.compute_threads();
    worldfleet_inference::init_compute_threads(threads);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => runtime.block_on(serve(cli.config)),
        Command::Bench(options) => runtime.block_on(bench::run(&cli.config, &options)),
        Command::BenchChat(options) => runtime.block_on(chat_bench::run(&cli.config, &options)),
        Command::WriteTinyChatModel { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let (gguf, tokenizer) = worldfleet_inference::chat::tiny::write_tiny_llama(
                &dir,
                worldfleet_inference::chat::tiny::TinyLlamaShape::default(),
            )?;
            println!("{}\n{}", gguf.display(), tokenizer.display());
            Ok(())
        }
        Command::BenchSentences { count } => {
            for sentence in bench::sentences(count) {
                println!("{sentence}");
            }
            Ok(())
        }
    }
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let mut state = AppState::loading(&config.model_name, Arc::clone(&metrics));
    if config.disable_embeddings {
        state = state.without_embeddings();
    }
    let chat_model = match (&config.chat_model, &config.chat_tokenizer) {
        (Some(gguf_path), Some(tokenizer_path)) => {
            let device = config
                .chat_device()
                .map_err(anyhow::Error::msg)
                .context("choosing the chat model's device")?;
            let name = config.chat_model_name().unwrap_or_default();
            state = state.expecting_chat(&name);
            Some((gguf_path.clone(), tokenizer_path.clone(), device))
        }
        (Some(_), None) => anyhow::bail!("--chat-model needs --chat-tokenizer"),
        (None, _) => None,
    };
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    tracing::info!(bind = %config.bind, model_dir = %config.model_dir.display(), chat_model = ?config.chat_model, "listening; loading models");
    // The models load off the runtime; until they are ready their endpoints answer 503.
    if !config.disable_embeddings {
        let loading_state = state.clone();
        let model_dir = config.model_dir.clone();
        let limits = config.pool_limits();
        let metrics = Arc::clone(&metrics);
        tokio::task::spawn_blocking(move || {
            match worldfleet_inference::load_pool(&model_dir, limits, metrics) {
                Ok(pool) => {
                    loading_state.set_pool(pool);
                    tracing::info!("embedding model loaded");
                }
                Err(error) => {
                    tracing::error!(%error, "embedding model failed to load; serving 503")
                }
            }
        });
    }
    if let Some((gguf_path, tokenizer_path, device)) = chat_model {
        let loading_state = state.clone();
        let template = config.chat_template;
        let limits = config.chat_limits();
        let metrics = Arc::clone(&metrics);
        tokio::task::spawn_blocking(move || {
            let spec = ChatModelSpec {
                gguf_path: &gguf_path,
                tokenizer_path: &tokenizer_path,
                template,
                device,
            };
            match ChatPool::load(&spec, limits, metrics) {
                Ok(chat) => loading_state.set_chat(chat),
                Err(error) => tracing::error!(%error, "chat model failed to load; serving 503"),
            }
        });
    }
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, worldfleet_inference::app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving HTTP")
}
