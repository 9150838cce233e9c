//! Player memory: what each player has observed, with its size accounted.
//!
//! Every page distribute writes to a player's feed is also that player's observation: the
//! entries the player took part in or received. Observations live in the memory table under
//! `player#ID`, sorted by the feed sequence number they start at (so oldest first), each with
//! its size in `bytes`. The player's total is counted on the counter row of the player's feed
//! (feeds table, [`count_key`], attribute [`COUNT_ATTRIBUTE`]): distribute adds an upper bound of
//! each observation's size in the same atomic update that allocates the page's sequence
//! numbers, so counting costs no write of its own. A repeated add (an ambiguous failure, a
//! redelivered batch, a plan that failed after its counters) counts bytes twice or counts bytes
//! never written: the count can only run high, never low, and prune counts exactly before it
//! evicts anything, so an overcount costs one early check, never a lost observation.
//!
//! prune's exact count is kept on the same row between requests ([`TALLIED_THROUGH`],
//! [`TALLIED_BYTES`]), so that a request reads only the observations written since the last one
//! and the oldest it evicts — never a player's whole memory, which at the cap would read ten
//! times what it evicts. An observation whose page is written after a newer one was tallied
//! (a late plan) is missed by the tally: the exact count can run low by such pages, which keeps a
//! player a little over the cap, never evicts more than needed.

use worldfleet_domain::{FeedEntry, FeedId, FeedPage};
use worldfleet_ports::{Item, Key, Value};

use crate::error::{Error, Result};

/// The size a player's memory is expected to settle at: what compose reads as recent memory.
pub const MEMORY_BASELINE_BYTES: u64 = 100 * 1024;
/// Over this, prune evicts the oldest observations until the player is under it again.
pub const MEMORY_CAP_BYTES: u64 = 10 * 1024 * 1024;

/// The memory partition of a player.
pub fn memory_pk(player: &str) -> String {
    format!("player#{player}")
}

/// The sort-key prefix of observations.
pub const OBSERVATION_PREFIX: &str = "obs#";

/// The sort key of the observation starting at feed sequence `first_seq`.
pub fn observation_sort_key(first_seq: u64) -> String {
    format!("{OBSERVATION_PREFIX}{first_seq:020}")
}

/// The attribute of a player feed's counter row that counts the player's observation bytes.
pub const COUNT_ATTRIBUTE: &str = "memory_bytes";

/// Counter-row attribute: the sort key of the newest observation prune has tallied.
pub const TALLIED_THROUGH: &str = "memory_tallied_through";
/// Counter-row attribute: the exact bytes of the player's observations up to
/// [`TALLIED_THROUGH`] that were not evicted, when prune last counted.
pub const TALLIED_BYTES: &str = "memory_tallied_bytes";
/// Counter-row attribute: the sort key of the newest observation prune has evicted. Observations
/// up to it are gone from the tally; one still stored (a crash between the tally and the
/// deletes) is deleted by the next eviction without being counted again.
pub const EVICTED_THROUGH: &str = "memory_evicted_through";
/// Counter-row attribute: the sort key of the oldest observation the last eviction took (or of
/// the oldest it found still stored). Every older observation is deleted, so the next eviction
/// reads from here: a scan from the start of the partition would walk the deletion markers of
/// every eviction so far, which an ordered store keeps until compaction drops them, and the
/// cost of each eviction would grow with the player's history. An observation written late,
/// under a sequence number older than this (a plan that stalled between allocating its numbers
/// and writing its pages), is not evicted: it stays stored and uncounted.
pub const EVICTED_FROM: &str = "memory_evicted_from";

/// The key of the row holding a player's byte count: the counter row of the player's feed, in
/// the feeds table.
pub fn count_key(player: &str) -> Key {
    crate::plan::counter_key(&FeedId::Player(player.to_owned()).to_string())
}

/// The observation item of one page of a player's feed, its size in `bytes`.
pub fn observation_item(player: &str, page: &FeedPage, now_ms: u64) -> Result<Item> {
    let entries = crate::entries::encode(
        page.first_seq,
        &page.entries,
        &format!("observation of {player}"),
    )?;
    Ok(observation(player, page.first_seq, entries, now_ms))
}

/// The observation of `player` for the page item `page` of the player's feed, as
/// [`observation_item`] makes it from the decoded page: the encoded entries are taken over as
/// they are, not decoded and encoded again.
pub fn observation_of_page(player: &str, page: &Item, now_ms: u64) -> Result<Item> {
    let corrupt = |reason: &str| Error::Corrupt {
        what: format!("page {}", page.key),
        reason: reason.to_owned(),
    };
    let first_seq = page
        .i64("first_seq")
        .ok_or_else(|| corrupt("no first_seq"))?
        .max(0) as u64;
    let entries = page
        .attributes
        .get("entries")
        .cloned()
        .ok_or_else(|| corrupt("no entries"))?;
    Ok(observation(player, first_seq, entries, now_ms))
}

fn observation(player: &str, first_seq: u64, entries: Value, now_ms: u64) -> Item {
    let item = Item::new(Key::new(memory_pk(player), observation_sort_key(first_seq)))
        .with("entries", entries)
        .with("observed_at_ms", now_ms as i64);
    // The size attribute counts itself (at most 9 bytes for any realistic size).
    let bytes = item.size_bytes() + "bytes".len() + 9;
    item.with("bytes", bytes as i64)
}

/// The size an observation item accounts for.
pub fn observation_bytes(item: &Item) -> u64 {
    item.i64("bytes")
        .map_or(item.size_bytes() as u64, |bytes| bytes.max(0) as u64)
}

/// Decodes an observation's entries (compact JSON rows, [`crate::entries`]; the first
/// sequence number is the one its sort key names).
pub fn observation_entries(item: &Item) -> Result<Vec<FeedEntry>> {
    let what = format!("observation {}", item.key);
    let first_seq = item
        .key
        .sk
        .strip_prefix(OBSERVATION_PREFIX)
        .and_then(|digits| digits.parse::<u64>().ok())
        .ok_or_else(|| Error::Corrupt {
            what: what.clone(),
            reason: "its sort key names no first sequence number".to_owned(),
        })?;
    crate::entries::decode(first_seq, item.attributes.get("entries"), &what)
}

#[cfg(test)]
mod tests {
    use worldfleet_domain::{EventKind, PartitionUid};

    use super::*;

    #[test]
    fn observations_sort_oldest_first_and_account_their_size() {
        let page = FeedPage {
            first_seq: 9,
            entries: vec![FeedEntry {
                seq: 9,
                event_id: "e".into(),
                partition: PartitionUid::parse("gm/d/s").unwrap(),
                kind: EventKind::Dialogue,
                actor: "a".into(),
                text: "hello".into(),
                accepted_at_ms: 1,
            }],
        };
        let item = observation_item("a", &page, 5).unwrap();
        assert!(observation_sort_key(9) < observation_sort_key(10));
        assert!(observation_bytes(&item) >= item.size_bytes() as u64);
        assert!(observation_bytes(&item) <= item.size_bytes() as u64 + 9);
        assert_eq!(observation_entries(&item).unwrap(), page.entries);
        let page_item = crate::plan::page_item("player:a", &page, 5).unwrap();
        assert_eq!(observation_of_page("a", &page_item, 5).unwrap(), item);
    }
}
