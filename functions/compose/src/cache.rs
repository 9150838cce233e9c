//! The result cache: model-written lines keyed by (persona, memory hash, intent).
//!
//! Items live in the canon table under `compose-cache#<persona>` partitions (`#` keeps them
//! apart from partition UIDs), sort key `<memory hash>#<intent>`, expiring after a TTL. A hit
//! costs one read instead of a model call; in particular a redelivered event whose model call
//! succeeded before a crash finds its line here and is not billed twice.

use std::time::Duration;

use worldfleet_domain::Intent;
use worldfleet_domain::names::CANON_TABLE;
use worldfleet_ports::{Item, Key, TTL_ATTRIBUTE, Table};

/// A cached line and the model that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedLine {
    pub text: String,
    pub composer: String,
}

/// The cache key of a prompt.
pub fn key(persona: &str, memory_hash: &str, intent: Intent) -> Key {
    Key::new(
        format!("compose-cache#{persona}"),
        format!("{memory_hash}#{}", intent.as_str()),
    )
}

/// The cached line under `key`, if any (expired ones read as absent).
pub async fn get(table: &dyn Table, key: &Key) -> worldfleet_ports::Result<Option<CachedLine>> {
    Ok(table.get(CANON_TABLE, key).await?.and_then(|item| {
        Some(CachedLine {
            text: item.str("text")?.to_owned(),
            composer: item.str("composer")?.to_owned(),
        })
    }))
}

/// Caches `line` under `key` until `now_secs + ttl`.
pub async fn put(
    table: &dyn Table,
    key: Key,
    line: &CachedLine,
    now_secs: u64,
    ttl: Duration,
) -> worldfleet_ports::Result<()> {
    let item = Item::new(key)
        .with("text", line.text.as_str())
        .with("composer", line.composer.as_str())
        .with(TTL_ATTRIBUTE, (now_secs + ttl.as_secs()) as i64);
    table.put(CANON_TABLE, item, None).await
}
