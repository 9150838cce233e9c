//! `worldfleet feed`: read a feed from a reader's checkpoint (embedded store, or DynamoDB with
//! `--aws`), and optionally move the checkpoint past what was read.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use worldfleet_domain::FeedId;
use worldfleet_domain::names::FEEDS_TABLE;
use worldfleet_ports::{Clock, SystemClock};
use worldfleet_tables::feed::{checkpoint, commit_checkpoint};
use worldfleet_tables::read_feed;

#[derive(Debug, Args)]
pub(super) struct FeedArgs {
    /// The store written by `worldfleet run --data-dir`.
    #[arg(long, required_unless_present = "aws")]
    data_dir: Option<PathBuf>,
    /// Read from DynamoDB (settings and endpoints from the environment) instead.
    #[arg(long)]
    aws: bool,
    /// `player:ID`, `faction:NAME` or `district:UID`.
    #[arg(long)]
    feed: String,
    /// Read entries after this sequence number (default: the reader's checkpoint, else 0).
    #[arg(long)]
    after: Option<u64>,
    /// A reader name: its checkpoint is where reading starts.
    #[arg(long, default_value = "cli")]
    reader: String,
    /// Move the reader's checkpoint past what was read.
    #[arg(long)]
    commit: bool,
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

pub(super) async fn run(args: FeedArgs) -> anyhow::Result<ExitCode> {
    let feed = FeedId::parse(&args.feed).context("--feed")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tables =
        crate::stores::OpenTables::open(args.data_dir.as_deref(), args.aws, Arc::clone(&clock))
            .await?;
    let code = read_and_print(tables.table.as_ref(), &feed, &args, clock.as_ref()).await;
    tables.close();
    code
}

async fn read_and_print(
    table: &dyn worldfleet_ports::Table,
    feed: &FeedId,
    args: &FeedArgs,
    clock: &dyn Clock,
) -> anyhow::Result<ExitCode> {
    let after = match args.after {
        Some(after) => after,
        None => checkpoint(table, FEEDS_TABLE, feed, &args.reader).await?,
    };
    let read = read_feed(table, FEEDS_TABLE, feed, after, args.limit, clock.now_ms()).await?;
    for entry in &read.entries {
        println!("{:>8}  {}  {}", entry.seq, entry.event_id, entry.text);
    }
    eprintln!(
        "{} entries after {} in {}; next checkpoint {}",
        read.entries.len(),
        after,
        feed,
        read.next_after_seq
    );
    if args.commit && read.next_after_seq > after {
        commit_checkpoint(
            table,
            FEEDS_TABLE,
            feed,
            &args.reader,
            read.next_after_seq,
            clock.now_ms(),
        )
        .await?;
        eprintln!(
            "checkpoint of reader {:?} moved to {}",
            args.reader, read.next_after_seq
        );
    }
    Ok(ExitCode::SUCCESS)
}
