//! `worldfleet send`: sign and post envelopes (files, or a synthetic world) to the intake queue
//! on SQS.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use worldfleet_testbed::WorldSpec;

#[derive(Debug, Args)]
pub(super) struct SendArgs {
    /// Envelope files to post (e.g. `events/samples/*.json`).
    files: Vec<PathBuf>,
    /// Re-stamp `sent_at_ms` with now and re-sign each file with this gateway key (hex).
    #[arg(long)]
    resign_key: Option<String>,
    /// Instead of files: post a synthetic world of this many events, signed with --resign-key
    /// as gateway `gw-synthetic`.
    #[arg(long)]
    world: Option<u64>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub(super) async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    use worldfleet_ports::{OutgoingMessage, SendOutcome};
    let context = worldfleet_lambda::aws_context().await?;
    let key = args
        .resign_key
        .as_deref()
        .map(hex::decode)
        .transpose()
        .context("--resign-key is not hex")?;
    let now_ms = context.clock.now_ms();
    let mut messages = Vec::new();
    if let Some(events) = args.world {
        let key = key
            .clone()
            .context("--world needs --resign-key (the gateway key to sign with)")?;
        let mut world = worldfleet_testbed::World::new(WorldSpec {
            events,
            gateway_key: key,
            ..WorldSpec::small(args.seed)
        });
        while let Some(emitted) = world.next(now_ms) {
            messages.push(OutgoingMessage::fifo(
                emitted.body,
                &emitted.group,
                &emitted.dedup_id,
            ));
        }
    }
    for path in &args.files {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        // Intake's strict reader: a file with a repeated member name cannot be re-signed (which
        // copy would the signature cover?); without a key the file goes as it is, for intake
        // to judge.
        let parsed = worldfleet_domain::json::parse_object(text.as_bytes());
        let body = match &key {
            Some(key) => {
                let mut envelope = parsed
                    .with_context(|| format!("{} is not an envelope to re-sign", path.display()))?;
                envelope.remove("signature");
                envelope.insert("sent_at_ms".into(), serde_json::Value::from(now_ms));
                let mut envelope = serde_json::Value::Object(envelope);
                let canonical = worldfleet_domain::envelope::canonical_bytes(&envelope)?;
                envelope["signature"] = serde_json::Value::from(
                    worldfleet_domain::envelope::signature_hex(key, &canonical)?,
                );
                envelope.to_string()
            }
            None => text.trim().to_owned(),
        };
        let fields = worldfleet_domain::json::parse_object(body.as_bytes()).unwrap_or_default();
        let group = fields
            .get("partition")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("unpartitioned")
            .to_owned();
        let dedup = fields
            .get("event_id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{now_ms}-{}", messages.len()));
        messages.push(OutgoingMessage::fifo(body, &group, &dedup));
    }
    let mut sent = 0;
    let mut failed = 0;
    for chunk in messages.chunks(worldfleet_ports::queue::MAX_BATCH) {
        for outcome in context
            .queue
            .send_batch(worldfleet_domain::names::INTAKE_QUEUE, chunk.to_vec())
            .await?
        {
            match outcome {
                SendOutcome::Sent { .. } => sent += 1,
                SendOutcome::Failed { reason, .. } => {
                    failed += 1;
                    eprintln!("refused by the queue: {reason}");
                }
            }
        }
    }
    eprintln!("posted {sent} envelopes to intake ({failed} refused by the queue)");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
