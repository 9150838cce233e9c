//! Reading feeds: from a checkpoint, page by page, and keeping reader checkpoints.
//!
//! A reader asks for entries after the last sequence number it has seen. Pages are keyed by
//! their last sequence number, so the pages that can hold newer entries are exactly those
//! whose key sorts after the checkpoint's. Each reader keeps its own checkpoint item in the
//! feed's partition; checkpoints only move forward.
//!
//! A read returns a contiguous run from the checkpoint: it stops at a hole in the sequence
//! numbers while the page after the hole is younger than [`GAP_GRACE`] (a range allocated by a
//! batch that has not written its page yet), and passes an older hole (burned numbers).
//!
//! Retention: prune deletes the oldest pages once they are older than [`FEED_RETENTION`] and
//! every live reader's checkpoint has passed them, or once they are older than
//! [`FEED_HARD_RETENTION`] whatever the readers say. Before it deletes a page it raises the
//! feed's `trim` row to the page's last sequence number, so a read that asks for anything at
//! or below it fails with [`Error::BehindRetention`] instead of returning a silent
//! gap. A checkpoint not moved for [`FEED_HARD_RETENTION`] no longer holds pages back (it is
//! ignored in code, and its `ttl` lets the store's janitor remove it).

use worldfleet_domain::{FeedEntry, FeedId};
use worldfleet_ports::{Comparison, Condition, Item, Key, Query, SortKeyRange, Table};

use std::time::Duration;

use worldfleet_ports::TTL_ATTRIBUTE;

use crate::error::{Error, Result};
use crate::plan::{page_from_item, page_sort_key};

/// Pages older than this go once every live reader's checkpoint has passed them.
pub const FEED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Pages older than this go whatever the readers say; checkpoints idle this long are dead.
pub const FEED_HARD_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// How long after the hard retention a page's `ttl` lets the store's janitor remove it: prune
/// trims well before, so the janitor only ever cleans behind a sweep that did not run.
pub const PAGE_TTL_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The sort key of a feed's trim row (`trimmed_through`: the highest trimmed sequence number).
pub const TRIM_SORT_KEY: &str = "trim";
/// The trim row's attribute: the highest sequence number trimmed.
pub const TRIMMED_THROUGH: &str = "trimmed_through";
/// The trim row's attribute: the sort key of the oldest page the last trim deleted. Every older
/// page is gone, so prune's next check reads from here: read from the feed's first page, it
/// would walk the deletion markers of every trim so far, which an ordered store keeps until
/// compaction drops them.
pub const TRIMMED_FROM: &str = "trimmed_from";
/// The sort-key prefix of reader checkpoints.
pub const READER_PREFIX: &str = "reader#";

/// The key of a feed's trim row.
pub fn trim_key(feed: &FeedId) -> Key {
    Key::new(feed.to_string(), TRIM_SORT_KEY)
}

/// The highest sequence number trimmed from `feed` (0 when nothing was).
pub async fn trimmed_through(table: &dyn Table, table_name: &str, feed: &FeedId) -> Result<u64> {
    let item = table.get(table_name, &trim_key(feed)).await?;
    Ok(item
        .and_then(|item| item.i64(TRIMMED_THROUGH))
        .unwrap_or(0)
        .max(0) as u64)
}

/// Entries read from a feed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedRead {
    pub entries: Vec<FeedEntry>,
    /// Pass as `after_seq` to continue; equals the input when nothing new was found.
    pub next_after_seq: u64,
}

/// How long a hole in a feed's sequence numbers is waited for before readers skip it, counted
/// from when the page after the hole was written. Distribute allocates a range with one atomic
/// add and writes its page moments later, so concurrent batches can land a later page first:
/// that hole fills within milliseconds. A range whose batch crashed before planning is never
/// written (its numbers are burned); readers pass it once it is this old.
pub const GAP_GRACE: Duration = Duration::from_secs(60);

/// Entries of `feed` after `after_seq`, at most `limit`, at time `now_ms`.
///
/// Reads stop at a hole younger than [`GAP_GRACE`] (an allocated range whose page is not
/// written yet): what comes back is always a contiguous run from the checkpoint, so a reader
/// that moves its checkpoint to `next_after_seq` never steps over an entry still being written.
/// A hole older than the grace is burned numbers and is skipped.
pub async fn read_feed(
    table: &dyn Table,
    table_name: &str,
    feed: &FeedId,
    after_seq: u64,
    limit: usize,
    now_ms: u64,
) -> Result<FeedRead> {
    let pk = feed.to_string();
    let trimmed = trimmed_through(table, table_name, feed).await?;
    if trimmed > after_seq {
        return Err(Error::BehindRetention {
            feed: pk,
            after_seq,
            first_missing: after_seq + 1,
            trimmed_through: trimmed,
        });
    }
    let mut read = FeedRead {
        entries: Vec::new(),
        next_after_seq: after_seq,
    };
    let grace_ms = GAP_GRACE.as_millis() as u64;
    let mut expected = after_seq.saturating_add(1);
    let mut start_after = None;
    loop {
        let query = Query::partition(pk.clone())
            .range(SortKeyRange::prefix_from(
                crate::plan::PAGE_PREFIX,
                page_sort_key(after_seq.saturating_add(1)),
            ))
            .limit(64)
            .start_after(start_after);
        let page = table.query(table_name, &query).await?;
        for item in &page.items {
            let decoded = page_from_item(item)?;
            if decoded.first_seq > expected {
                let written_at_ms = item.i64("written_at_ms").unwrap_or(0).max(0) as u64;
                if now_ms.saturating_sub(written_at_ms) < grace_ms {
                    // A range still being written: stop before it.
                    return Ok(read);
                }
                expected = decoded.first_seq;
            }
            for entry in decoded.entries {
                if entry.seq < expected {
                    continue;
                }
                if read.entries.len() >= limit {
                    return Ok(read);
                }
                expected = entry.seq + 1;
                read.next_after_seq = entry.seq;
                read.entries.push(entry);
            }
        }
        if read.entries.len() >= limit || page.last_evaluated_sk.is_none() {
            return Ok(read);
        }
        start_after = page.last_evaluated_sk;
    }
}

fn checkpoint_key(feed: &FeedId, reader: &str) -> Key {
    Key::new(feed.to_string(), format!("{READER_PREFIX}{reader}"))
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
        .with("updated_at_ms", now_ms as i64)
        .with(
            TTL_ATTRIBUTE,
            (now_ms / 1000 + FEED_HARD_RETENTION.as_secs()) as i64,
        );
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
