//! `worldfleet replay`: rebuild a fresh store from another store's ledger (its latest
//! checkpoints plus the ledger after them).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub(super) struct ReplayArgs {
    /// The store whose ledger is replayed (only read).
    #[arg(long)]
    from: PathBuf,
    /// A fresh store directory to rebuild into (created when missing).
    #[arg(long)]
    into: PathBuf,
    /// Print the report as one JSON line.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let report = worldfleet_runtime::replay::replay(&args.from, &args.into).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "replayed {} narrative events ({} restored from {} checkpoints) into {}; {} ledger rows copied; {} world events copied but not re-applied",
            report.replayed,
            report.restored_from_checkpoints,
            report.checkpoints,
            args.into.display(),
            report.ledger_rows_copied,
            report.world_events_not_replayed
        );
    }
    Ok(ExitCode::SUCCESS)
}
