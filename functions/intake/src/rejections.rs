//! The rejections table: every refused envelope, with its reason, kept 30 days.
//!
//! Rows live under `pk = gateway#GATEWAY` (`gateway#unknown` when the sender could not be
//! read). The sort key is `event#EVENT_ID#SHA256` when the refused body names a readable event
//! id, else `body#SHA256` (SHA-256 of the raw body, hex). So:
//!
//! - a gateway looks a refusal up by its own event id ([`lookup_event`]: one query on the
//!   prefix `event#EVENT_ID#`), which finds every distinct body sent under that id;
//! - the same bytes sent again land on the same row, which counts them (`count`, with
//!   `first_received_at_ms` and `last_received_at_ms`): counting rows counts distinct refused
//!   bodies, summing `count` counts refused messages. The redelivery of the message a row last
//!   counted (the same SQS message id, after a crash that followed the write) is not counted
//!   again.
//!
//! The row's attributes are the published contract (README, "Looking up a refusal"):
//! `reason`, `detail`, `event_id` (when known), `body_sha256`, `size`, `count`,
//! `first_received_at_ms`, `last_received_at_ms`, `message_id` (the last), `excerpt` (the
//! first 2 KiB of the body) and `ttl`.

use serde::Serialize;
use sha2::{Digest, Sha256};
use worldfleet_domain::RejectReason;
use worldfleet_ports::{
    Comparison, Condition, Item, Key, Query, SortKeyRange, TTL_ATTRIBUTE, Table, Update,
};

use crate::error::Result;
use crate::validate::{Refusal, sender_hints};

/// How long a rejection row is kept.
pub const RETENTION_SECS: u64 = 30 * 24 * 3600;
/// How much of a refused body is kept for forensics.
pub const EXCERPT_BYTES: usize = 2048;
/// Most rows one event-id lookup returns (distinct bodies refused under one id).
pub const MAX_LOOKUP_ROWS: usize = 100;

/// The partition key of a gateway's rejections.
pub fn partition(gateway: Option<&str>) -> String {
    format!("gateway#{}", gateway.unwrap_or("unknown"))
}

/// The SHA-256 of a raw body, hex: the `body_sha256` attribute.
pub fn body_sha256(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// The sort key of a refused body sent under `event_id` (if one could be read).
pub fn row_key(event_id: Option<&str>, raw: &[u8]) -> String {
    match event_id {
        Some(event_id) => format!("{}{}", event_prefix(event_id), body_sha256(raw)),
        None => format!("body#{}", body_sha256(raw)),
    }
}

/// Where the rejection row of `raw` lives, read from the body alone (the same gateway and
/// event id intake reads when it refuses it).
pub fn locate(raw: &[u8]) -> Key {
    let (gateway, event_id) = sender_hints(raw);
    Key::new(
        partition(gateway.as_deref()),
        row_key(event_id.as_deref(), raw),
    )
}

fn event_prefix(event_id: &str) -> String {
    format!("event#{event_id}#")
}

/// Writes (or counts again) the rejection row for `raw`, delivered as `message_id`.
pub async fn record(
    table: &dyn Table,
    table_name: &str,
    raw: &[u8],
    refusal: &Refusal,
    message_id: &str,
    now_ms: u64,
) -> Result<()> {
    let key = Key::new(
        partition(refusal.gateway.as_deref()),
        row_key(refusal.event_id.as_deref(), raw),
    );
    let excerpt_end = raw.len().min(EXCERPT_BYTES);
    let excerpt = String::from_utf8_lossy(&raw[..excerpt_end]).into_owned();
    let mut update = Update::new()
        .set("reason", refusal.reason.code())
        .set("detail", refusal.detail.as_str())
        .set("body_sha256", body_sha256(raw))
        .set("size", raw.len() as i64)
        .set("last_received_at_ms", now_ms as i64)
        .set("message_id", message_id)
        .set("excerpt", excerpt)
        .set(TTL_ATTRIBUTE, (now_ms / 1000 + RETENTION_SECS) as i64)
        .set_if_absent("first_received_at_ms", now_ms as i64)
        .add("count", 1);
    if let Some(event_id) = &refusal.event_id {
        update = update.set("event_id", event_id.as_str());
    }
    // A redelivery of the message this row last counted (a crash after the write) is already
    // counted.
    let not_this_message = Condition::Or(vec![
        Condition::NotExists("message_id".to_owned()),
        Condition::compare("message_id", Comparison::Ne, message_id),
    ]);
    match table
        .update(table_name, &key, update, Some(not_this_message))
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if error.is_condition_failed() => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Every refusal recorded for `event_id` from `gateway` (distinct bodies, at most
/// [`MAX_LOOKUP_ROWS`]); empty when none is on record in the last 30 days.
pub async fn lookup_event(
    table: &dyn Table,
    table_name: &str,
    gateway: &str,
    event_id: &str,
) -> worldfleet_ports::Result<Vec<RejectionRow>> {
    let query = Query {
        range: SortKeyRange::Prefix(event_prefix(event_id)),
        limit: Some(MAX_LOOKUP_ROWS),
        ..Query::partition(partition(Some(gateway)))
    };
    let page = table.query(table_name, &query).await?;
    Ok(page.items.iter().map(RejectionRow::from_item).collect())
}

/// The refusal recorded for exactly these bytes, if any.
pub async fn lookup_body(
    table: &dyn Table,
    table_name: &str,
    raw: &[u8],
) -> worldfleet_ports::Result<Option<RejectionRow>> {
    Ok(table
        .get(table_name, &locate(raw))
        .await?
        .map(|item| RejectionRow::from_item(&item)))
}

/// A rejection row as read back (and as `GET /v1/rejections/{event_id}` answers it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectionRow {
    /// `gateway#GATEWAY`, or `gateway#unknown`.
    pub gateway_partition: String,
    /// The reason code (`bad_signature`, `replayed`, …); `None` for a code this build does
    /// not know.
    pub reason: Option<RejectReason>,
    /// The sentence saying what was wrong and what to do.
    pub detail: String,
    pub event_id: Option<String>,
    pub body_sha256: String,
    pub size: u64,
    /// How many messages carried these bytes.
    pub count: u64,
    pub first_received_at_ms: u64,
    pub last_received_at_ms: u64,
    /// The queue message of the last refusal.
    pub message_id: String,
}

impl RejectionRow {
    /// Decodes a row of the rejections table.
    pub fn from_item(item: &Item) -> Self {
        let number = |name: &str| item.i64(name).unwrap_or(0).max(0) as u64;
        Self {
            gateway_partition: item.key.pk.clone(),
            reason: item.str("reason").and_then(RejectReason::from_code),
            detail: item.str("detail").unwrap_or_default().to_owned(),
            event_id: item.str("event_id").map(str::to_owned),
            body_sha256: item.str("body_sha256").unwrap_or_default().to_owned(),
            size: number("size"),
            count: number("count"),
            first_received_at_ms: number("first_received_at_ms"),
            last_received_at_ms: number("last_received_at_ms"),
            message_id: item.str("message_id").unwrap_or_default().to_owned(),
        }
    }
}
