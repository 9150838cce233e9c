//! `worldfleet census`: what an embedded store holds, table by table — items, partitions,
//! bookkeeping rows and their encoded bytes — and the queues' keyspaces, next to the size of
//! the store on disk. The way to tell which table a growing store grows in.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use worldfleet_embedded::{EmbeddedStore, StoreOptions};
use worldfleet_ports::SystemClock;

#[derive(Debug, Args)]
pub(super) struct CensusArgs {
    /// The embedded store directory (`run --data-dir`, `serve --data-dir`; not while a
    /// process has it open).
    #[arg(long)]
    store: PathBuf,
    /// Print the census as one JSON line.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: CensusArgs) -> anyhow::Result<ExitCode> {
    let options = StoreOptions {
        janitor_interval: None,
        ..StoreOptions::default()
    };
    let store = EmbeddedStore::open(&args.store, Arc::new(SystemClock), options)
        .with_context(|| format!("open the store in {}", args.store.display()))?;
    let counted = tokio::task::spawn_blocking(move || {
        let census = store.census();
        let disk = store.disk_bytes();
        store.close();
        census.and_then(|census| Ok((census, disk?)))
    })
    .await
    .context("the census thread")?
    .context("count the store")?;
    let (census, disk_bytes) = counted;
    if args.json {
        let line = serde_json::json!({ "disk_bytes": disk_bytes, "census": census });
        println!("{line}");
        return Ok(ExitCode::SUCCESS);
    }
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "{:<16} {:>12} {:>11} {:>12} {:>14}",
        "table", "items", "partitions", "MiB", "bookkeeping"
    );
    for table in &census.tables {
        println!(
            "{:<16} {:>12} {:>11} {:>12.1} {:>7} items",
            table.table,
            table.items.keys,
            table.partitions,
            mib(table.items.bytes),
            table.bookkeeping.keys,
        );
    }
    for (name, tally) in &census.keyspaces {
        println!(
            "{:<16} {:>12} {:>11} {:>12.1}",
            format!("({name})"),
            tally.keys,
            "",
            mib(tally.bytes)
        );
    }
    let encoded: u64 = census.tables.iter().map(|t| t.items.bytes).sum::<u64>()
        + census.keyspaces.values().map(|t| t.bytes).sum::<u64>();
    println!(
        "encoded {:.1} MiB in all; {:.1} MiB on disk (compressed, with the journal and what compaction has not dropped yet)",
        mib(encoded),
        mib(disk_bytes)
    );
    Ok(ExitCode::SUCCESS)
}
