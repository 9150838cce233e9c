//! `worldfleet`: run the world embedded, benchmark it (embedded, or per-stage cost on AWS), read feeds.

mod bench_aws;
mod bench_serve;
mod bench_world;
mod commands;
mod heap;
#[cfg(test)]
mod modes_test;
mod rejections;
mod serve;
mod serve_child;
mod stores;
mod worker;

use clap::Parser;

/// mimalloc instead of glibc's malloc: the pipeline allocates and frees many small buffers per
/// event on several threads (measured in the README's performance section). It counts the
/// bytes held for `/metrics` ([`heap`]).
#[global_allocator]
static ALLOCATOR: heap::CountingMiMalloc = heap::CountingMiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if let Err(error) = heap::huge_pages_from_env() {
        eprintln!("error: {error}");
        return std::process::ExitCode::from(2);
    }
    let cli = commands::Cli::parse();
    // The same filter variable as every Lambda binary (`WORLDFLEET_LOG`, then `RUST_LOG`).
    let filter = worldfleet_kit::log_filter(&worldfleet_kit::Env::process(), "warn");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match commands::dispatch(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
