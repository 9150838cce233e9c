//! Region tombstones: a region idle for six months is archived compactly and unloaded from the
//! hot tables; its next activity brings it back.
//!
//! A region's hot state is every row, in the configured region tables, whose partition key is
//! one of the region's partitions (the `parts#REGION` rows of the activity record), plus those
//! part rows themselves. The archive is one JSON list of `(table, item)`, LZ4-compressed and
//! split into chunks under `tombstone#REGION` in prune's table, with a `head` row saying how
//! many chunks there are.
//!
//! Burying, in crash-safe order: (1) merge whatever an interrupted earlier attempt archived
//! with the rows still hot, (2) write the chunks, then the head, (3) delete the hot rows,
//! (4) flag the activity record `tombstoned`, on condition that no activity came in since it
//! was read; if some did, the region is resurrected at once. Resurrecting: (1) put every archived
//! row back unless a newer one exists, (2) clear the flag, (3) delete the archive. A retry at
//! any point redoes the same work and ends in the same state.

use std::collections::BTreeMap;

use worldfleet_domain::PartitionUid;
use worldfleet_domain::names::PRUNE_TABLE;
use worldfleet_kit::StageContext;
use worldfleet_kit::activity::{activity_key, parts_pk};
use worldfleet_ports::table::MAX_BATCH_WRITE;
use worldfleet_ports::{
    BatchWrite, Condition, Item, Key, SortKeyRange, Table, Update, Value, query_all,
};

use crate::core::{self, ArchivedRow, PruneConfig};
use crate::error::{PruneError, Result};
use crate::handler::PruneOutcome;

/// Compressed bytes per archive chunk (well under the 400 KB item limit).
pub const CHUNK_BYTES: usize = 300 * 1024;

/// The partition of a region's archive.
pub fn tombstone_pk(region: &PartitionUid) -> String {
    format!("tombstone#{region}")
}

/// The key of a region's archive head.
pub fn head_key(region: &PartitionUid) -> Key {
    Key::new(tombstone_pk(region), "head")
}

fn chunk_key(region: &PartitionUid, index: usize) -> Key {
    Key::new(tombstone_pk(region), format!("chunk#{index:06}"))
}

fn corrupt(region: &PartitionUid, reason: impl std::fmt::Display) -> PruneError {
    PruneError::Corrupt {
        what: format!("archive of {region}"),
        reason: reason.to_string(),
    }
}

/// Encodes archived rows: JSON, LZ4-compressed, split into chunks.
pub fn encode_archive(rows: &[ArchivedRow]) -> Result<(Vec<Vec<u8>>, usize)> {
    let json = serde_json::to_vec(rows).map_err(|error| PruneError::Corrupt {
        what: "archive".into(),
        reason: error.to_string(),
    })?;
    let compressed = lz4_flex::compress_prepend_size(&json);
    Ok((
        compressed.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect(),
        json.len(),
    ))
}

/// Decodes what [`encode_archive`] wrote.
pub fn decode_archive(chunks: &[Vec<u8>]) -> std::result::Result<Vec<ArchivedRow>, String> {
    let compressed = chunks.concat();
    let json =
        lz4_flex::decompress_size_prepended(&compressed).map_err(|error| error.to_string())?;
    serde_json::from_slice(&json).map_err(|error| error.to_string())
}

/// The rows of a region's archive (none when it has no head).
pub async fn load_archive(table: &dyn Table, region: &PartitionUid) -> Result<Vec<ArchivedRow>> {
    let Some(head) = table.get(PRUNE_TABLE, &head_key(region)).await? else {
        return Ok(Vec::new());
    };
    let count = head.i64("chunks").unwrap_or(0).max(0) as usize;
    let mut chunks = Vec::with_capacity(count);
    for index in 0..count {
        let chunk = table
            .get(PRUNE_TABLE, &chunk_key(region, index))
            .await?
            .ok_or_else(|| corrupt(region, format!("chunk {index} of {count} is missing")))?;
        chunks.push(
            chunk
                .bytes("data")
                .ok_or_else(|| corrupt(region, format!("chunk {index} has no data")))?
                .to_vec(),
        );
    }
    decode_archive(&chunks).map_err(|reason| corrupt(region, reason))
}

async fn delete_keys(table: &dyn Table, table_name: &str, keys: Vec<Key>) -> Result<()> {
    let writes: Vec<BatchWrite> = keys.into_iter().map(BatchWrite::Delete).collect();
    for chunk in writes.chunks(MAX_BATCH_WRITE) {
        table.batch_write(table_name, chunk.to_vec()).await?;
    }
    Ok(())
}

/// Tombstones `region` if its activity record says it has been idle long enough.
pub async fn bury_if_idle(
    context: &StageContext,
    config: &PruneConfig,
    region: &PartitionUid,
) -> Result<PruneOutcome> {
    let table = context.table.as_ref();
    let Some(activity) = table
        .get(PRUNE_TABLE, &activity_key(region.as_str()))
        .await?
    else {
        return Ok(PruneOutcome::default());
    };
    if activity.attributes.get("tombstoned") == Some(&Value::Bool(true)) {
        return Ok(PruneOutcome::default());
    }
    let last_active_ms = activity.i64("last_active_ms").unwrap_or(0);
    let now_ms = context.clock.now_ms();
    if !core::region_is_idle(last_active_ms.max(0) as u64, now_ms, config) {
        return Ok(PruneOutcome::default());
    }
    // (1) What an interrupted attempt archived, overlaid by what is hot now.
    let mut rows: BTreeMap<(String, Key), Item> = load_archive(table, region)
        .await?
        .into_iter()
        .map(|row| ((row.table, row.item.key.clone()), row.item))
        .collect();
    let mut hot: Vec<(String, Key)> = Vec::new();
    let parts = query_all(
        table,
        PRUNE_TABLE,
        &parts_pk(region.as_str()),
        SortKeyRange::All,
    )
    .await?;
    for part in parts {
        for table_name in &config.region_tables {
            for item in query_all(table, table_name, &part.key.sk, SortKeyRange::All).await? {
                hot.push((table_name.clone(), item.key.clone()));
                rows.insert((table_name.clone(), item.key.clone()), item);
            }
        }
        hot.push((PRUNE_TABLE.to_owned(), part.key.clone()));
        rows.insert((PRUNE_TABLE.to_owned(), part.key.clone()), part);
    }
    let archived: Vec<ArchivedRow> = rows
        .into_iter()
        .map(|((table, _), item)| ArchivedRow { table, item })
        .collect();
    // (2) The archive: chunks first, then the head that makes them readable.
    let (chunks, raw_bytes) = encode_archive(&archived)?;
    let compressed_bytes: usize = chunks.iter().map(Vec::len).sum();
    for (index, chunk) in chunks.iter().enumerate() {
        table
            .put(
                PRUNE_TABLE,
                Item::new(chunk_key(region, index)).with("data", chunk.clone()),
                None,
            )
            .await?;
    }
    table
        .put(
            PRUNE_TABLE,
            Item::new(head_key(region))
                .with("chunks", chunks.len() as i64)
                .with("rows", archived.len() as i64)
                .with("raw_bytes", raw_bytes as i64)
                .with("compressed_bytes", compressed_bytes as i64)
                .with("archived_at_ms", now_ms as i64)
                .with("last_active_ms", last_active_ms),
            None,
        )
        .await?;
    // (3) Unload the hot rows.
    let mut by_table: BTreeMap<String, Vec<Key>> = BTreeMap::new();
    for (table_name, key) in hot {
        by_table.entry(table_name).or_default().push(key);
    }
    let mut deleted = 0;
    for (table_name, keys) in by_table {
        deleted += keys.len();
        delete_keys(table, &table_name, keys).await?;
    }
    // (4) Flag it, unless activity came in meanwhile.
    let unchanged = Condition::eq("last_active_ms", last_active_ms);
    match table
        .update(
            PRUNE_TABLE,
            &activity_key(region.as_str()),
            Update::new().set("tombstoned", true),
            Some(unchanged),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(region = %region, rows = archived.len(), raw_bytes, compressed_bytes, "region idle: tombstoned");
            Ok(PruneOutcome {
                deleted,
                notices: 0,
            })
        }
        Err(error) if error.is_condition_failed() => {
            tracing::info!(region = %region, "region became active while being tombstoned; resurrecting");
            resurrect(context, region).await
        }
        Err(error) => Err(error.into()),
    }
}

/// Brings a tombstoned region's archived rows back and removes its tombstone.
pub async fn resurrect(context: &StageContext, region: &PartitionUid) -> Result<PruneOutcome> {
    let table = context.table.as_ref();
    let rows = load_archive(table, region).await?;
    for row in &rows {
        match table
            .put(&row.table, row.item.clone(), Some(Condition::ItemNotExists))
            .await
        {
            Ok(()) => {}
            // A newer row under the same key came with the new activity: it wins.
            Err(error) if error.is_condition_failed() => {}
            Err(error) => return Err(error.into()),
        }
    }
    match table
        .update(
            PRUNE_TABLE,
            &activity_key(region.as_str()),
            Update::new().remove("tombstoned"),
            Some(Condition::ItemExists),
        )
        .await
    {
        Ok(_) => {}
        Err(error) if error.is_condition_failed() => {}
        Err(error) => return Err(error.into()),
    }
    let archive_keys: Vec<Key> =
        query_all(table, PRUNE_TABLE, &tombstone_pk(region), SortKeyRange::All)
            .await?
            .into_iter()
            .map(|item| item.key)
            .collect();
    delete_keys(table, PRUNE_TABLE, archive_keys).await?;
    if !rows.is_empty() {
        tracing::info!(region = %region, rows = rows.len(), "region active again: resurrected");
    }
    Ok(PruneOutcome::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_round_trip_compressed() {
        let rows: Vec<ArchivedRow> = (0..200)
            .map(|index| ArchivedRow {
                table: "canon".into(),
                item: Item::new(Key::new("gm/d/s", format!("e{index}")))
                    .with("text", "the same line of narrative, again and again"),
            })
            .collect();
        let (chunks, raw_bytes) = encode_archive(&rows).unwrap();
        assert!(chunks.iter().map(Vec::len).sum::<usize>() * 4 < raw_bytes);
        assert_eq!(decode_archive(&chunks).unwrap(), rows);
        assert!(decode_archive(&[vec![1, 2, 3]]).is_err());
    }
}
