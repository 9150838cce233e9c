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

use worldfleet_ports::{BatchWrite, Item, Key, Table, Update};

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

/// Records that `partitions` of `region` were active at `now_ms`. Returns true when the region
/// is tombstoned: the caller then asks prune to resurrect it (its archived state comes back
/// beside whatever the new activity writes).
pub async fn touch_region(
    table: &dyn Table,
    table_name: &str,
    region: &str,
    partitions: &[&str],
    now_ms: u64,
) -> worldfleet_ports::Result<bool> {
    let record = table
        .update(
            table_name,
            &activity_key(region),
            Update::new().set("last_active_ms", now_ms as i64),
            None,
        )
        .await?;
    let writes: Vec<BatchWrite> = partitions
        .iter()
        .map(|partition| {
            BatchWrite::Put(
                Item::new(Key::new(parts_pk(region), *partition))
                    .with("last_active_ms", now_ms as i64),
            )
        })
        .collect();
    for chunk in writes.chunks(worldfleet_ports::table::MAX_BATCH_WRITE) {
        table.batch_write(table_name, chunk.to_vec()).await?;
    }
    Ok(record.attributes.get("tombstoned") == Some(&worldfleet_ports::Value::Bool(true)))
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
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("gm-1/district-2"), shard_of("gm-1/district-2"));
        let used: std::collections::BTreeSet<u32> = (0..200)
            .map(|index| shard_of(&format!("player:p-{index}")))
            .collect();
        assert_eq!(used.len(), INDEX_SHARDS as usize);
        assert_eq!(activity_key("r").pk, activity_shard_pk(shard_of("r")));
    }
}
