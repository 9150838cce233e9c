//! The pure part of prune: what to collect, given what was read. No I/O.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long things are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneConfig {
    /// Feed pages older than this go once every live reader's checkpoint has passed them.
    pub feed_retention: Duration,
    /// Feed pages older than this go whatever the readers say; a checkpoint not moved for this
    /// long no longer holds pages back.
    pub feed_hard_retention: Duration,
    /// A player's observations over this many bytes lose their oldest until under it.
    pub memory_cap_bytes: u64,
    /// A region with no activity for this long is tombstoned.
    pub region_idle: Duration,
    /// The tables whose rows, keyed by a region's partitions, make up the region's hot state.
    pub region_tables: Vec<String>,
    /// Advance each partition's ledger checkpoint when distribute reports its events published.
    pub ledger_checkpoints: bool,
    /// Delete the ledger entries a checkpoint covers (safe only while intake's clock window is
    /// at most the default 300 s the cut-off assumes; off by default).
    pub ledger_compaction: bool,
}

/// Six months, as the idle limit of a region (183 days).
pub const SIX_MONTHS: Duration = Duration::from_secs(183 * 24 * 3600);

impl Default for PruneConfig {
    fn default() -> Self {
        Self {
            feed_retention: worldfleet_tables::feed::FEED_RETENTION,
            feed_hard_retention: worldfleet_tables::feed::FEED_HARD_RETENTION,
            memory_cap_bytes: worldfleet_tables::memory::MEMORY_CAP_BYTES,
            region_idle: SIX_MONTHS,
            region_tables: vec![worldfleet_domain::names::CANON_TABLE.to_owned()],
            ledger_checkpoints: true,
            ledger_compaction: false,
        }
    }
}

/// One observation, as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservationSize {
    pub sort_key: String,
    pub bytes: u64,
}

/// What to evict from a player's memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Eviction {
    /// Sort keys of the observations to delete, oldest first.
    pub evict: Vec<String>,
    pub evicted_bytes: u64,
    /// What the player keeps.
    pub kept_bytes: u64,
}

/// Over `cap`, the oldest observations go until the rest fits under it — with a tenth of the
/// cap to spare, so that a player at the cap is not evicted from (and told about it) on every
/// new observation. `observations` are all the player's, in sort-key order (oldest first).
pub fn evict_memory(observations: &[ObservationSize], cap: u64) -> Eviction {
    let total: u64 = observations
        .iter()
        .map(|observation| observation.bytes)
        .sum();
    evict_oldest(total, observations, cap)
}

/// The bytes a memory of `total` bytes over `cap` must lose (0 when it is not over).
pub fn bytes_to_evict(total: u64, cap: u64) -> u64 {
    if total <= cap {
        0
    } else {
        total - eviction_target(cap)
    }
}

/// What an eviction brings a memory over its cap down to.
fn eviction_target(cap: u64) -> u64 {
    cap - cap / 10
}

/// [`evict_memory`] for a memory of `total` bytes of which only the oldest are given: enough of
/// them to cover [`bytes_to_evict`], or all there are. The decision is the same as over the
/// whole list, since only the oldest go.
pub fn evict_oldest(total: u64, oldest: &[ObservationSize], cap: u64) -> Eviction {
    let mut eviction = Eviction {
        kept_bytes: total,
        ..Eviction::default()
    };
    if total <= cap {
        return eviction;
    }
    let target = eviction_target(cap);
    for observation in oldest {
        if eviction.kept_bytes <= target {
            break;
        }
        eviction.evict.push(observation.sort_key.clone());
        eviction.evicted_bytes += observation.bytes;
        eviction.kept_bytes = eviction.kept_bytes.saturating_sub(observation.bytes);
    }
    eviction
}

/// The one line a player reads in their feed when memories were evicted.
pub fn eviction_notice(eviction: &Eviction, cap: u64) -> String {
    format!(
        "Your {} oldest memories ({} KB) faded to keep your memory under its {} MB limit.",
        eviction.evict.len(),
        eviction.evicted_bytes.div_ceil(1024),
        cap / (1024 * 1024)
    )
}

/// One feed page, as trimming sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageAge {
    pub sort_key: String,
    pub last_seq: u64,
    pub written_at_ms: u64,
}

/// One reader's checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderCheckpoint {
    pub seq: u64,
    pub updated_at_ms: u64,
}

/// What to trim from a feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedTrim {
    /// Sort keys of the pages to delete (a prefix of the feed: trimming never leaves holes).
    pub delete: Vec<String>,
    /// The highest sequence number trimmed; readers behind it get a retention error.
    pub trimmed_through: u64,
}

/// Pages past retention whose entries every live reader has read, or past the hard retention,
/// oldest first, stopping at the first page that must stay. `pages` are in sort-key order.
pub fn trim_feed(
    pages: &[PageAge],
    readers: &[ReaderCheckpoint],
    now_ms: u64,
    config: &PruneConfig,
) -> FeedTrim {
    let hard_ms = config.feed_hard_retention.as_millis() as u64;
    let soft_ms = config.feed_retention.as_millis() as u64;
    let slowest_live_reader = readers
        .iter()
        .filter(|reader| reader.updated_at_ms.saturating_add(hard_ms) > now_ms)
        .map(|reader| reader.seq)
        .min()
        .unwrap_or(u64::MAX);
    let mut trim = FeedTrim::default();
    for page in pages {
        let age = now_ms.saturating_sub(page.written_at_ms);
        let read_by_all = page.last_seq <= slowest_live_reader;
        if age >= hard_ms || (age >= soft_ms && read_by_all) {
            trim.delete.push(page.sort_key.clone());
            trim.trimmed_through = trim.trimmed_through.max(page.last_seq);
        } else {
            break;
        }
    }
    trim
}

/// True when a region last active at `last_active_ms` has been idle long enough.
pub fn region_is_idle(last_active_ms: u64, now_ms: u64, config: &PruneConfig) -> bool {
    now_ms.saturating_sub(last_active_ms) >= config.region_idle.as_millis() as u64
}

/// One archived row of a tombstoned region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedRow {
    pub table: String,
    pub item: worldfleet_ports::Item,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 24 * 3600 * 1000;

    fn observations(sizes: &[u64]) -> Vec<ObservationSize> {
        sizes
            .iter()
            .enumerate()
            .map(|(index, bytes)| ObservationSize {
                sort_key: format!("obs#{index:03}"),
                bytes: *bytes,
            })
            .collect()
    }

    #[test]
    fn evicting_from_the_oldest_alone_decides_as_over_the_whole_memory() {
        let all = observations(&[40, 30, 20, 10, 25, 5]);
        let total: u64 = all.iter().map(|observation| observation.bytes).sum();
        let whole = evict_memory(&all, 60);
        let need = bytes_to_evict(total, 60);
        let mut covered = 0;
        let oldest: Vec<ObservationSize> = all
            .iter()
            .take_while(|observation| {
                let take = covered < need;
                covered += observation.bytes;
                take
            })
            .cloned()
            .collect();
        assert!(oldest.len() < all.len());
        assert_eq!(evict_oldest(total, &oldest, 60), whole);
        assert_eq!(bytes_to_evict(50, 60), 0);
        assert_eq!(evict_oldest(50, &all, 60).evict, Vec::<String>::new());
    }

    #[test]
    fn memory_over_the_cap_loses_its_oldest_until_under_it() {
        let eviction = evict_memory(&observations(&[40, 30, 20, 10]), 35);
        assert_eq!(eviction.evict, ["obs#000", "obs#001"]);
        assert_eq!((eviction.evicted_bytes, eviction.kept_bytes), (70, 30));
        assert_eq!(
            evict_memory(&observations(&[10, 10]), 20),
            Eviction {
                kept_bytes: 20,
                ..Eviction::default()
            }
        );
        let notice = eviction_notice(&eviction, 10 * 1024 * 1024);
        assert!(!notice.contains('\n'));
        assert!(notice.contains("2 oldest memories"));
    }

    fn pages(ages_days: &[(u64, u64)], now_ms: u64) -> Vec<PageAge> {
        ages_days
            .iter()
            .map(|(last_seq, age_days)| PageAge {
                sort_key: format!("page#{last_seq:020}"),
                last_seq: *last_seq,
                written_at_ms: now_ms - age_days * DAY_MS,
            })
            .collect()
    }

    #[test]
    fn feeds_trim_only_what_every_live_reader_has_passed() {
        let config = PruneConfig::default();
        let now = 1_000 * DAY_MS;
        let feed = pages(&[(10, 20), (20, 10), (30, 8), (40, 1)], now);
        let reader = |seq, idle_days: u64| ReaderCheckpoint {
            seq,
            updated_at_ms: now - idle_days * DAY_MS,
        };
        // Past retention and read by everyone: 10 and 20; 30 is unread by the slow reader.
        let trim = trim_feed(&feed, &[reader(35, 0), reader(20, 1)], now, &config);
        assert_eq!(trim.delete.len(), 2);
        assert_eq!(trim.trimmed_through, 20);
        // Nobody has read anything: nothing past retention goes until the hard limit.
        assert_eq!(
            trim_feed(&feed, &[reader(0, 0)], now, &config),
            FeedTrim::default()
        );
        // A reader idle past the hard retention holds nothing back.
        let trim = trim_feed(&feed, &[reader(0, 91)], now, &config);
        assert_eq!(trim.trimmed_through, 30);
        // Past the hard retention, pages go whatever the readers say.
        let old = pages(&[(10, 95), (20, 3)], now);
        assert_eq!(
            trim_feed(&old, &[reader(0, 0)], now, &config).trimmed_through,
            10
        );
    }

    #[test]
    fn regions_go_idle_after_six_months() {
        let config = PruneConfig::default();
        assert!(!region_is_idle(0, 182 * DAY_MS, &config));
        assert!(region_is_idle(0, 183 * DAY_MS, &config));
    }
}
