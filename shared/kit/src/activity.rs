//! Region activity records and the feed index: what prune's sweep walks.
//!
//! A *region* is a partition UID prefix (a district of the narrative, a zone of the ecology, a
//! market region) whose state can be unloaded as a whole when nobody has touched it for months.
//! Any stage that touches a partition calls [`touch_region`] with the region and the partitions
//! it touched; it writes two kinds of rows in prune's table:
//!
//! | pk | sk | attributes |
//! |---|---|---|
//! | `activity#NN` (a shard of 16) | region | `last_active_ms`, `tombstoned` once archived |
//! | `parts#REGION` | partition | `last_active_ms` |
//!
//! The shard keeps the index off one hot partition while letting the sweep enumerate every
//! region with 16 queries. [`index_feed`] keeps a similar index of feeds (`feeds#NN` → feed id)
//! so the sweep can find feeds whose writers went quiet. Neither kind of row expires: they are
//! what decides expiry of everything else, and they are a few dozen bytes each.
//!
//! Activity is kept to [`ACTIVITY_RESOLUTION_MS`]: a touch first reads the rows (a read unit
//! costs a fifth of a write unit) and rewrites only those older than that, so a busy region is
//! written about once an hour instead of once per batch. Idleness is judged in months, and a
//! burial is conditional on the activity it read, so a row at most an hour stale never lets a
//! live region be buried; a tombstoned region is always written, and reported.

use worldfleet_ports::{BatchWrite, Item, Key, Table, Update, Value};

/// How stale an activity row may be before a touch rewrites it.
pub const ACTIVITY_RESOLUTION_MS: u64 = 3_600_000;

/// How many shards the activity and feed indexes are spread over.
pub const INDEX_SHARDS: u32 = 16;

/// The shard of a region or feed id (FNV-1a; stable across processes and releases).
pub fn shard_of(id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % INDEX_SHARDS
}

/// The partition key of an activity-index shard.
pub fn activity_shard_pk(shard: u32) -> String {
    format!("activity#{shard:02}")
}

/// The key of a region's activity record.
pub fn activity_key(region: &str) -> Key {
    Key::new(activity_shard_pk(shard_of(region)), region)
}

/// The partition holding one row per partition of `region`.
pub fn parts_pk(region: &str) -> String {
    format!("parts#{region}")
}

/// The partition key of a feed-index shard.
pub fn feed_shard_pk(shard: u32) -> String {
    format!("feeds#{shard:02}")
}

/// The key of a feed's index row.
pub fn feed_index_key(feed: &str) -> Key {
    Key::new(feed_shard_pk(shard_of(feed)), feed)
}

/// Records that `partitions` of `region` were active at `now_ms` (to [`ACTIVITY_RESOLUTION_MS`]). Returns true when the region
/// is tombstoned: the caller then asks prune to resurrect it (its archived state comes back
/// beside whatever the new activity writes).
pub async fn touch_region(
    table: &dyn Table,
    table_name: &str,
    region: &str,
    partitions: &[&str],
    now_ms: u64,
) -> worldfleet_ports::Result<bool> {
    let region_key = activity_key(region);
    let partition_keys: Vec<Key> = partitions
        .iter()
        .map(|partition| Key::new(parts_pk(region), *partition))
        .collect();
    let mut keys = vec![region_key.clone()];
    keys.extend(partition_keys.iter().cloned());
    let mut stored = Vec::new();
    for chunk in keys.chunks(worldfleet_ports::table::MAX_BATCH_GET) {
        stored.extend(table.batch_get(table_name, chunk).await?);
    }
    let row = |key: &Key| stored.iter().find(|item| item.key == *key);
    let region_row = row(&region_key);
    let tombstoned = region_row
        .is_some_and(|item| item.attributes.get("tombstoned") == Some(&Value::Bool(true)));
    let mut reported = false;
    if tombstoned || !is_recent(region_row, now_ms) {
        let record = table
            .update(
                table_name,
                &region_key,
                Update::new().set("last_active_ms", now_ms as i64),
                None,
            )
            .await?;
        reported = record.attributes.get("tombstoned") == Some(&Value::Bool(true));
    }
    let writes: Vec<BatchWrite> = partition_keys
        .into_iter()
        .filter(|key| !is_recent(row(key), now_ms))
        .map(|key| BatchWrite::Put(Item::new(key).with("last_active_ms", now_ms as i64)))
        .collect();
    for chunk in writes.chunks(worldfleet_ports::table::MAX_BATCH_WRITE) {
        table.batch_write(table_name, chunk.to_vec()).await?;
    }
    Ok(reported)
}

/// True when an activity row says it was active within [`ACTIVITY_RESOLUTION_MS`] of `now_ms`.
fn is_recent(row: Option<&Item>, now_ms: u64) -> bool {
    row.and_then(|item| item.i64("last_active_ms"))
        .is_some_and(|last| now_ms.saturating_sub(last.max(0) as u64) < ACTIVITY_RESOLUTION_MS)
}

/// Puts `feed` in the feed index (idempotent: the same row each time).
pub async fn index_feed(
    table: &dyn Table,
    table_name: &str,
    feed: &str,
    now_ms: u64,
) -> worldfleet_ports::Result<()> {
    table
        .put(
            table_name,
            Item::new(feed_index_key(feed)).with("indexed_at_ms", now_ms as i64),
            None,
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rows_older_than_the_resolution_are_rewritten() {
        let at = |ms: i64| Item::new(Key::new("p", "s")).with("last_active_ms", ms);
        let now = 10 * ACTIVITY_RESOLUTION_MS;
        assert!(!is_recent(None, now));
        assert!(is_recent(Some(&at(now as i64 - 1)), now));
        assert!(is_recent(Some(&at(now as i64 + 5)), now), "a clock behind");
        assert!(!is_recent(
            Some(&at((now - ACTIVITY_RESOLUTION_MS) as i64)),
            now
        ));
        assert!(!is_recent(Some(&Item::new(Key::new("p", "s"))), now));
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("gm-1/district-2"), shard_of("gm-1/district-2"));
        let used: std::collections::BTreeSet<u32> = (0..200)
            .map(|index| shard_of(&format!("player:p-{index}")))
            .collect();
        assert_eq!(used.len(), INDEX_SHARDS as usize);
        assert_eq!(activity_key("r").pk, activity_shard_pk(shard_of("r")));
    }
}
