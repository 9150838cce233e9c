//! `worldfleet rejections`: what intake refused, looked up by gateway and event id (or by the
//! exact bytes of a body), with the reason code, the advice and how many messages carried it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use worldfleet_domain::envelope::validate_event_id;
use worldfleet_domain::names::REJECTIONS_TABLE;
use worldfleet_intake::rejections::{RejectionRow, lookup_body, lookup_event};
use worldfleet_ports::{Clock, SystemClock};

use crate::stores::OpenTables;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["event_id", "body"])))]
pub struct RejectionsArgs {
    /// The store written by `worldfleet run` or `serve` with `--data-dir`.
    #[arg(long, required_unless_present = "aws")]
    data_dir: Option<PathBuf>,
    /// Read from DynamoDB (settings and endpoints from the environment) instead.
    #[arg(long)]
    aws: bool,
    /// The gateway that sent the event (needed with --event-id).
    #[arg(long, requires = "event_id")]
    gateway: Option<String>,
    /// The event id the gateway gave the envelope.
    #[arg(long, requires = "gateway")]
    event_id: Option<String>,
    /// A file holding the exact body that was sent: finds its row whatever it says.
    #[arg(long, conflicts_with = "event_id")]
    body: Option<PathBuf>,
    /// Print the rows as JSON lines.
    #[arg(long)]
    json: bool,
}

/// Runs `worldfleet rejections`: exit 0 when a refusal was found, 1 when none is on record.
pub async fn run(args: RejectionsArgs) -> anyhow::Result<ExitCode> {
    if let Some(event_id) = &args.event_id {
        validate_event_id(event_id).context("--event-id")?;
    }
    let body = args
        .body
        .as_ref()
        .map(|path| std::fs::read(path).with_context(|| format!("read {}", path.display())))
        .transpose()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tables = OpenTables::open(args.data_dir.as_deref(), args.aws, clock).await?;
    let table = tables.table.as_ref();
    let rows = match (&args.gateway, &args.event_id, &body) {
        (Some(gateway), Some(event_id), _) => {
            lookup_event(table, REJECTIONS_TABLE, gateway, event_id).await
        }
        (_, _, Some(body)) => lookup_body(table, REJECTIONS_TABLE, body)
            .await
            .map(|row| row.into_iter().collect()),
        _ => Ok(Vec::new()),
    };
    tables.close();
    let rows = rows?;
    for row in &rows {
        print_row(row, args.json)?;
    }
    if rows.is_empty() {
        eprintln!(
            "no refusal on record (rows are kept 30 days): the envelope was accepted, is still \
             queued, or never arrived"
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_row(row: &RejectionRow, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(row)?);
        return Ok(());
    }
    let reason = row.reason.map_or("unknown", |reason| reason.code());
    println!(
        "{reason}  ×{}  event {}  body sha256 {}  {} bytes  first {} ms, last {} ms\n  {}",
        row.count,
        row.event_id.as_deref().unwrap_or("-"),
        row.body_sha256,
        row.size,
        row.first_received_at_ms,
        row.last_received_at_ms,
        row.detail
    );
    Ok(())
}
