//! `worldfleet dlq`: how many messages each work queue's dead-letter queue holds, a sample of
//! them, and `--redrive` to send them back to their work queues once their cause is fixed
//! (embedded store, or SQS with `--aws`). See [`worldfleet_runtime::dead_letters`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use worldfleet_domain::names::{ALL_QUEUES, WORLD_QUEUES};
use worldfleet_ports::{Clock, SystemClock};
use worldfleet_runtime::dead_letters::{inspect, redrive};

#[derive(Debug, Args)]
pub(super) struct DlqArgs {
    /// The embedded store (`run --data-dir`, `serve --data-dir`; not while a process has it
    /// open).
    #[arg(long, required_unless_present = "aws")]
    data_dir: Option<PathBuf>,
    /// SQS instead (settings and endpoints from the environment).
    #[arg(long)]
    aws: bool,
    /// Only this work queue (repeatable), e.g. `compose.fifo`; default: every work queue.
    #[arg(long = "queue")]
    queues: Vec<String>,
    /// Show up to this many dead letters of each queue (id, FIFO group, body).
    #[arg(long, default_value_t = 0)]
    show: usize,
    /// Send the dead letters back to their work queues (every stage is idempotent).
    #[arg(long)]
    redrive: bool,
    /// With --redrive: at most this many per queue.
    #[arg(long, requires = "redrive")]
    limit: Option<u64>,
    /// Print one JSON line per queue (and one per redrive).
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let known: Vec<&str> = ALL_QUEUES.into_iter().chain(WORLD_QUEUES).collect();
    for queue in &args.queues {
        if !known.contains(&queue.as_str()) {
            anyhow::bail!(
                "--queue {queue:?} is not a work queue; the work queues are {}",
                known.join(", ")
            );
        }
    }
    let queues: Vec<&str> = if args.queues.is_empty() {
        known
    } else {
        args.queues.iter().map(String::as_str).collect()
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = crate::stores::OpenTables::open(args.data_dir.as_deref(), args.aws, clock).await?;
    let result = work(store.queue.as_ref(), &queues, &args).await;
    store.close();
    result
}

async fn work(
    queue: &dyn worldfleet_ports::Queue,
    queues: &[&str],
    args: &DlqArgs,
) -> anyhow::Result<ExitCode> {
    let mut total = 0;
    let mut failed = 0;
    for name in queues {
        let letters = inspect(queue, name, args.show).await?;
        total += letters.depth;
        if args.json {
            println!("{}", serde_json::to_string(&letters)?);
        } else if !args.json {
            println!(
                "{:<24} {:>8} in {}",
                letters.queue, letters.depth, letters.dead_letter_queue
            );
            for letter in &letters.sample {
                println!(
                    "    {}  group {}  {}",
                    letter.message_id,
                    letter.group_id.as_deref().unwrap_or("-"),
                    letter.body
                );
            }
        }
        if args.redrive && letters.depth > 0 {
            let moved = redrive(queue, name, args.limit.unwrap_or(u64::MAX)).await?;
            failed += moved.failed;
            if args.json {
                println!("{}", serde_json::to_string(&moved)?);
            } else {
                println!(
                    "    moved {} back to {}{}",
                    moved.moved,
                    moved.queue,
                    match &moved.first_failure {
                        Some(reason) => format!("; {} not moved: {reason}", moved.failed),
                        None => String::new(),
                    }
                );
            }
        }
    }
    if !args.json {
        eprintln!("{total} dead letters in {} queues", queues.len());
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
