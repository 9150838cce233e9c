//! Reading feeds: from a checkpoint, page by page, and keeping reader checkpoints.
//!
//! A reader asks for entries after the last sequence number it has seen. Pages are keyed by
//! their last sequence number, so the pages that can hold newer entries are exactly those
//! whose key sorts after the checkpoint's. Each reader keeps its own checkpoint item in the
//! feed's partition; checkpoints only move forward.

use worldfleet_domain::{FeedEntry, FeedId};
use worldfleet_ports::{Comparison, Condition, Item, Key, Query, SortKeyRange, Table};

use crate::error::Result;
use crate::plan::{page_from_item, page_sort_key};

/// Entries read from a feed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedRead {
    pub entries: Vec<FeedEntry>,
    /// Pass as `after_seq` to continue; equals the input when nothing new was found.
    pub next_after_seq: u64,
}

/// Up to `limit` entries of `feed` with sequence numbers above `after_seq`, in order.
pub async fn read_feed(
    table: &dyn Table,
    table_name: &str,
    feed: &FeedId,
    after_seq: u64,
    limit: usize,
) -> Result<FeedRead> {
    let pk = feed.to_string();
    let mut read = FeedRead {
        entries: Vec::new(),
        next_after_seq: after_seq,
    };
    let mut start_after = None;
    loop {
        let query = Query::partition(pk.clone())
            .range(SortKeyRange::Between(
                page_sort_key(after_seq.saturating_add(1)),
                "page#~".into(),
            ))
            .limit(64)
            .start_after(start_after);
        let page = table.query(table_name, &query).await?;
        for item in &page.items {
            for entry in page_from_item(item)?.entries {
                if entry.seq > after_seq && read.entries.len() < limit {
                    read.next_after_seq = read.next_after_seq.max(entry.seq);
                    read.entries.push(entry);
                }
            }
        }
        if read.entries.len() >= limit || page.last_evaluated_sk.is_none() {
            return Ok(read);
        }
        start_after = page.last_evaluated_sk;
    }
}

fn checkpoint_key(feed: &FeedId, reader: &str) -> Key {
    Key::new(feed.to_string(), format!("reader#{reader}"))
}

/// The reader's checkpoint (0 when it has none).
pub async fn checkpoint(
    table: &dyn Table,
    table_name: &str,
    feed: &FeedId,
    reader: &str,
) -> Result<u64> {
    let item = table.get(table_name, &checkpoint_key(feed, reader)).await?;
    Ok(item.and_then(|item| item.i64("seq")).unwrap_or(0).max(0) as u64)
}

/// Moves the reader's checkpoint forward to `seq` (never backward); true when it moved.
pub async fn commit_checkpoint(
    table: &dyn Table,
    table_name: &str,
    feed: &FeedId,
    reader: &str,
    seq: u64,
    now_ms: u64,
) -> Result<bool> {
    let item = Item::new(checkpoint_key(feed, reader))
        .with("seq", seq as i64)
        .with("updated_at_ms", now_ms as i64);
    let forward = Condition::Or(vec![
        Condition::ItemNotExists,
        Condition::compare("seq", Comparison::Lt, seq as i64),
    ]);
    match table.put(table_name, item, Some(forward)).await {
        Ok(()) => Ok(true),
        Err(error) if error.is_condition_failed() => Ok(false),
        Err(error) => Err(error.into()),
    }
}
