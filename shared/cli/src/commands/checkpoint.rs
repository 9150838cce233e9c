//! `worldfleet checkpoint`: checkpoint every ledger partition of an embedded store up to the
//! events old enough to be settled, optionally compacting the ledger behind the checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use worldfleet_ports::{Clock, SystemClock};

#[derive(Debug, Args)]
pub(super) struct CheckpointArgs {
    /// The embedded store directory.
    #[arg(long)]
    store: PathBuf,
    /// Delete the ledger entries the checkpoints cover (needs --min-age-secs of at least the
    /// intake clock window, 300 s: only then is an entry no longer needed to refuse a replay).
    #[arg(long)]
    compact: bool,
    /// Cover only events accepted at least this long ago (default: the intake clock window).
    #[arg(long)]
    min_age_secs: Option<u64>,
    /// Print the report as one JSON line.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: CheckpointArgs) -> anyhow::Result<ExitCode> {
    use worldfleet_runtime::replay::{CheckpointOptions, checkpoint_store};
    let now_ms = SystemClock.now_ms();
    let mut options = CheckpointOptions::safe_at(now_ms, args.compact);
    if let Some(min_age_secs) = args.min_age_secs {
        let accepted_before_ms = now_ms.saturating_sub(min_age_secs.saturating_mul(1000));
        if args.compact && accepted_before_ms > options.accepted_before_ms {
            anyhow::bail!(
                "--compact needs --min-age-secs of at least the intake clock window ({} s): a younger ledger entry still refuses replayed envelopes",
                (now_ms - options.accepted_before_ms) / 1000
            );
        }
        options.accepted_before_ms = accepted_before_ms;
    }
    let report = checkpoint_store(&args.store, options).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} of {} partitions checkpointed further, {} events covered, {} ledger entries compacted",
            report.advanced, report.partitions, report.covered, report.compacted
        );
    }
    Ok(ExitCode::SUCCESS)
}
