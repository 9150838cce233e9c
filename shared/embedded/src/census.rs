//! What a store holds, counted: items and bytes per table, and keys and bytes per keyspace
//! (the queues' messages, receive counts and deduplication ids, the TTL index).
//!
//! The bytes are the encoded keys and values as the store writes them, before fjall's block
//! compression and without the tombstones and overwritten versions that compaction has not
//! dropped yet; so they say what the data is, and the directory's size on disk says what it
//! costs. A census reads every key once (a full scan of the store, seconds per gigabyte).

use std::collections::BTreeMap;

use serde::Serialize;
use worldfleet_ports::Result;

use crate::codec;
use crate::store::Spaces;
use crate::writer::storage_error;

/// Rows and bytes of one table or keyspace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Keys (items, messages, ids).
    pub keys: u64,
    /// Encoded key bytes plus value bytes.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, key: &[u8], value: &[u8]) {
        self.keys += 1;
        self.bytes += (key.len() + value.len()) as u64;
    }
}

/// One table's share of the items keyspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableCensus {
    pub table: String,
    /// Every item of the table.
    pub items: Tally,
    /// Of those, the items whose sort key starts with `~`: the stages' bookkeeping rows
    /// (ledger checkpoints and snapshots, counters, markers), as opposed to the data itself.
    pub bookkeeping: Tally,
    /// Distinct partition keys.
    pub partitions: u64,
}

/// What [`crate::EmbeddedStore::census`] counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreCensus {
    /// Tables in name order.
    pub tables: Vec<TableCensus>,
    /// The other keyspaces by name: `ttl`, `messages`, `receives`, `dedup`, `meta`.
    pub keyspaces: BTreeMap<&'static str, Tally>,
}

/// Counts what `spaces` hold.
pub(crate) fn census(spaces: &Spaces) -> Result<StoreCensus> {
    let mut tables: BTreeMap<String, TableCensus> = BTreeMap::new();
    let mut last_partition: Vec<u8> = Vec::new();
    for entry in spaces.items.iter() {
        let (key, value) = entry.into_inner().map_err(storage_error)?;
        let (table, _, sk) = codec::split_item_key(&key)?;
        let counted = match tables.get_mut(table) {
            Some(counted) => counted,
            None => tables
                .entry(table.to_owned())
                .or_insert_with(|| TableCensus {
                    table: table.to_owned(),
                    ..TableCensus::default()
                }),
        };
        counted.items.add(&key, &value);
        if sk.starts_with('~') {
            counted.bookkeeping.add(&key, &value);
        }
        // Keys sort by table, then partition: a new prefix is a new partition.
        let prefix = &key[..key.len() - sk.len()];
        if prefix != last_partition.as_slice() {
            counted.partitions += 1;
            last_partition.clear();
            last_partition.extend_from_slice(prefix);
        }
    }
    let mut keyspaces = BTreeMap::new();
    for (name, space) in [
        ("ttl", &spaces.ttl),
        ("messages", &spaces.messages),
        ("receives", &spaces.receives),
        ("dedup", &spaces.dedup),
        ("meta", &spaces.meta),
    ] {
        let mut tally = Tally::default();
        for entry in space.iter() {
            let (key, value) = entry.into_inner().map_err(storage_error)?;
            tally.add(&key, &value);
        }
        keyspaces.insert(name, tally);
    }
    Ok(StoreCensus {
        tables: tables.into_values().collect(),
        keyspaces,
    })
}
