//! The rejections table: every refused envelope, with its reason, kept 30 days.
//!
//! Rows live under `pk = gateway#GATEWAY` (`gateway#unknown` when the sender could not be
//! read) and `sk = SHA-256 of the raw body`, so a redelivered or replayed copy of the same
//! bytes lands on the same row: counting rows counts distinct refused envelopes.

use sha2::{Digest, Sha256};
use worldfleet_domain::RejectReason;
use worldfleet_ports::{Item, Key, TTL_ATTRIBUTE, Table};

use crate::error::Result;
use crate::validate::Refusal;

/// How long a rejection row is kept.
pub const RETENTION_SECS: u64 = 30 * 24 * 3600;
/// How much of a refused body is kept for forensics.
pub const EXCERPT_BYTES: usize = 2048;

/// The partition key of a gateway's rejections.
pub fn partition(gateway: Option<&str>) -> String {
    format!("gateway#{}", gateway.unwrap_or("unknown"))
}

/// The sort key of a refused body.
pub fn row_key(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// Writes the rejection row for `raw`.
pub async fn record(
    table: &dyn Table,
    table_name: &str,
    raw: &[u8],
    refusal: &Refusal,
    message_id: &str,
    now_ms: u64,
) -> Result<()> {
    let excerpt_end = raw.len().min(EXCERPT_BYTES);
    let excerpt = String::from_utf8_lossy(&raw[..excerpt_end]).into_owned();
    let mut item = Item::new(Key::new(
        partition(refusal.gateway.as_deref()),
        row_key(raw),
    ))
    .with("reason", refusal.reason.code())
    .with("detail", refusal.detail.as_str())
    .with("size", raw.len() as i64)
    .with("received_at_ms", now_ms as i64)
    .with("message_id", message_id)
    .with("excerpt", excerpt)
    .with(TTL_ATTRIBUTE, (now_ms / 1000 + RETENTION_SECS) as i64);
    if let Some(event_id) = &refusal.event_id {
        item = item.with("event_id", event_id.as_str());
    }
    table.put(table_name, item, None).await?;
    Ok(())
}

/// A rejection row as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionRow {
    pub gateway_partition: String,
    pub body_hash: String,
    pub reason: Option<RejectReason>,
    pub detail: String,
    pub event_id: Option<String>,
}

impl RejectionRow {
    /// Decodes a row of the rejections table.
    pub fn from_item(item: &Item) -> Self {
        Self {
            gateway_partition: item.key.pk.clone(),
            body_hash: item.key.sk.clone(),
            reason: item.str("reason").and_then(RejectReason::from_code),
            detail: item.str("detail").unwrap_or_default().to_owned(),
            event_id: item.str("event_id").map(str::to_owned),
        }
    }
}
