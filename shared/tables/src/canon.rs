//! The canon table: one item per event under `pk = partition UID`, `sk = event id`.
//!
//! `canon` holds the [`CanonEntry`] as JSON. distribute later adds `dist_plan` (the feed
//! publication plan the event belongs to); nothing else ever changes a canon item.

use worldfleet_domain::CanonEntry;
use worldfleet_ports::{Error, Item, Key};

/// The canon item's key for an event.
pub fn key(partition: &str, event_id: &str) -> Key {
    Key::new(partition, event_id)
}

/// Encodes canon as its table item.
pub fn to_item(canon: &CanonEntry) -> Result<Item, Error> {
    let json = serde_json::to_string(canon)
        .map_err(|error| Error::Permanent(format!("encode canon: {error}")))?;
    Ok(Item::new(key(canon.partition.as_str(), &canon.event_id))
        .with("canon", json)
        .with("composed_at_ms", canon.composed_at_ms as i64))
}

/// Decodes canon from its table item.
pub fn from_item(item: &Item) -> Result<CanonEntry, Error> {
    let json = item
        .str("canon")
        .ok_or_else(|| Error::Permanent(format!("canon item {} has no canon", item.key)))?;
    serde_json::from_str(json)
        .map_err(|error| Error::Permanent(format!("canon item {} is corrupt: {error}", item.key)))
}
