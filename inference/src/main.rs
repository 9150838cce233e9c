//! `worldfleet-inference`: `serve` (default) runs the HTTP server; `bench` measures the pool
//! end to end over HTTP; `bench-sentences` prints the benchmark's sentences for the reference
//! script.

use std::sync::Arc;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use clap::{Parser, Subcommand};
use worldfleet_inference::bench::{self, BenchOptions};
use worldfleet_inference::{AppState, Metrics, ServerConfig};

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
    let state = AppState::loading(&config.model_name, Arc::clone(&metrics));
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    tracing::info!(bind = %config.bind, model_dir = %config.model_dir.display(), "listening; loading model");
    // The model loads off the runtime; until it is ready the model endpoints answer 503.
    let loading_state = state.clone();
    tokio::task::spawn_blocking(move || {
        match worldfleet_inference::load_pool(&config.model_dir, config.pool_limits(), metrics) {
            Ok(pool) => {
                loading_state.set_pool(pool);
                tracing::info!("model loaded");
            }
            Err(error) => tracing::error!(%error, "model failed to load; serving 503"),
        }
    });
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
