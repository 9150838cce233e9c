//! The prune stage handler: one prune request per record, each re-reading the state it prunes.
//!
//! Every request is idempotent because every decision is made again from what is stored: a
//! duplicate finds nothing left to collect, a retry after a crash finishes what was started.
//! Writes are ordered so that a crash between any two leaves nothing unreachable:
//! - event bookkeeping: a plan is deleted when distribute says it is published, which it says
//!   only after writing every page (distribute treats a missing plan as published);
//! - feed retention: the trim row is raised *before* pages are deleted, so a reader can never
//!   see a silent gap;
//! - player memory: the notice is written (once: a marker keyed by the eviction holds its
//!   sequence number) before the observations go, then the byte count is corrected by the
//!   difference between what was counted and what is kept;
//! - tombstones: see [`crate::tombstone`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use worldfleet_domain::names::{FEEDS_TABLE, MEMORY_TABLE, PRUNE_QUEUE};
use worldfleet_domain::{EventKind, FeedEntry, FeedId, FeedPage, PartitionUid, PruneRequest};
use worldfleet_kit::{BatchReport, RecordError, StageContext, StageHandler, process_batch};
use worldfleet_ports::table::MAX_BATCH_WRITE;
use worldfleet_ports::{
    BatchWrite, Comparison, Condition, Item, Key, Query, ReceivedMessage, SortKeyRange,
    TTL_ATTRIBUTE, Table, Update, query_all,
};
use worldfleet_tables::feed::{READER_PREFIX, TRIMMED_FROM, TRIMMED_THROUGH, trim_key};
use worldfleet_tables::memory::{self, OBSERVATION_PREFIX};
use worldfleet_tables::plan::{self as feed_plan, page_from_item};

use crate::checkpoint::{CheckpointOptions, checkpoint_partition};
use crate::core::{self, ObservationSize, PageAge, PruneConfig, ReaderCheckpoint};
use crate::error::{PruneError, Result};
use crate::tombstone;

/// How long an eviction's notice marker is kept (a redelivery comes within days at most).
const NOTICE_MARKER_LIFETIME_SECS: u64 = 14 * 24 * 3600;

/// What one request did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Rows deleted from hot tables.
    pub deleted: usize,
    /// Feed lines written (eviction notices).
    pub notices: usize,
}

/// The prune stage.
pub struct Prune {
    context: StageContext,
    config: Arc<PruneConfig>,
}

impl Prune {
    /// prune over `context` with `config`.
    pub fn new(context: StageContext, config: PruneConfig) -> Self {
        Self {
            context,
            config: Arc::new(config),
        }
    }

    /// The settings it runs with.
    pub fn config(&self) -> &PruneConfig {
        &self.config
    }

    fn table(&self) -> &dyn Table {
        self.context.table.as_ref()
    }

    /// Carries out one request.
    pub async fn handle(&self, request: &PruneRequest) -> Result<PruneOutcome> {
        match request {
            PruneRequest::EventsPublished { plan_id, events } => {
                let outcome = self.end_event_bookkeeping(plan_id).await?;
                self.advance_checkpoints(events).await?;
                Ok(outcome)
            }
            PruneRequest::FeedPastRetention { feed } => {
                let feed = FeedId::parse(feed).map_err(|error| PruneError::Corrupt {
                    what: "feed id".into(),
                    reason: error.to_string(),
                })?;
                self.trim_feed(&feed).await
            }
            PruneRequest::MemoryOverBudget { player } => self.cap_memory(player).await,
            PruneRequest::RegionIdle { region } => {
                tombstone::bury_if_idle(&self.context, &self.config, region).await
            }
            PruneRequest::RegionActive { region } => {
                tombstone::resurrect(&self.context, region).await
            }
        }
    }

    /// Deletes a published plan's record. (Its events kept no other bookkeeping: classify
    /// writes nothing since its decision travels in the compose request.) distribute asks only
    /// after it has written every page of the plan, so no condition is needed: the deletion is
    /// what marks the plan done, for distribute and for the ledger checkpoints.
    async fn end_event_bookkeeping(&self, plan_id: &str) -> Result<PruneOutcome> {
        let removed = self
            .table()
            .delete(FEEDS_TABLE, &feed_plan::plan_key(plan_id), None)
            .await?;
        Ok(PruneOutcome {
            deleted: usize::from(removed.is_some()),
            notices: 0,
        })
    }

    /// Moves the ledger checkpoint of each partition in `events` forward: the scene boundary
    /// after which those events are settled (see [`crate::checkpoint`]). A checkpoint moved
    /// concurrently by another request already covers what this one would.
    async fn advance_checkpoints(&self, events: &[(PartitionUid, String)]) -> Result<()> {
        if !self.config.ledger_checkpoints {
            return Ok(());
        }
        let options =
            CheckpointOptions::safe_at(self.context.clock.now_ms(), self.config.ledger_compaction);
        let partitions: BTreeSet<&str> = events
            .iter()
            .map(|(partition, _)| partition.as_str())
            .collect();
        for partition in partitions {
            match checkpoint_partition(self.table(), partition, options).await {
                Ok(outcome) if outcome.covered > 0 => tracing::debug!(
                    partition,
                    covered = outcome.covered,
                    compacted = outcome.compacted,
                    "ledger checkpoint advanced"
                ),
                Ok(_) => {}
                Err(error) => match error.downcast::<worldfleet_ports::Error>() {
                    Ok(port) if port.is_condition_failed() => {}
                    Ok(port) => return Err(port.into()),
                    Err(other) => {
                        return Err(PruneError::Corrupt {
                            what: format!("ledger of {partition}"),
                            reason: format!("{other:#}"),
                        });
                    }
                },
            }
        }
        Ok(())
    }

    /// The pages of feed `pk` to trim, read oldest first a page of items at a time and no
    /// further than the first page that stays: a feed is checked every 256 entries, and reading
    /// all it keeps each time would read its whole retention to trim a little of it. Reading
    /// starts at `trimmed_from` (see [`TRIMMED_FROM`]), or at the first page of a feed never
    /// trimmed.
    async fn pages_to_trim(
        &self,
        pk: &str,
        trimmed_from: Option<&str>,
        readers: &[ReaderCheckpoint],
        now_ms: u64,
    ) -> Result<core::FeedTrim> {
        const PAGE: usize = 32;
        let mut trim = core::FeedTrim::default();
        let mut start_after = None;
        let range = match trimmed_from {
            Some(from) => SortKeyRange::prefix_from(feed_plan::PAGE_PREFIX, from),
            None => SortKeyRange::Prefix(feed_plan::PAGE_PREFIX.into()),
        };
        loop {
            let query = Query::partition(pk)
                .range(range.clone())
                .limit(PAGE)
                .start_after(start_after);
            let page = self.table().query(FEEDS_TABLE, &query).await?;
            let ages: Vec<PageAge> = page
                .items
                .iter()
                .map(|item| PageAge {
                    sort_key: item.key.sk.clone(),
                    last_seq: item.i64("last_seq").unwrap_or(0).max(0) as u64,
                    written_at_ms: item.i64("written_at_ms").unwrap_or(0).max(0) as u64,
                })
                .collect();
            let part = core::trim_feed(&ages, readers, now_ms, &self.config);
            let whole_page = part.delete.len() == ages.len();
            trim.trimmed_through = trim.trimmed_through.max(part.trimmed_through);
            trim.delete.extend(part.delete);
            match page.last_evaluated_sk {
                Some(last) if whole_page => start_after = Some(last),
                _ => return Ok(trim),
            }
        }
    }

    /// Trims a feed's pages past retention; raises the trim row first.
    async fn trim_feed(&self, feed: &FeedId) -> Result<PruneOutcome> {
        let pk = feed.to_string();
        let now_ms = self.context.clock.now_ms();
        let readers: Vec<ReaderCheckpoint> = query_all(
            self.table(),
            FEEDS_TABLE,
            &pk,
            SortKeyRange::Prefix(READER_PREFIX.into()),
        )
        .await?
        .iter()
        .map(|item| ReaderCheckpoint {
            seq: item.i64("seq").unwrap_or(0).max(0) as u64,
            updated_at_ms: item.i64("updated_at_ms").unwrap_or(0).max(0) as u64,
        })
        .collect();
        let trimmed_from = self
            .table()
            .get(FEEDS_TABLE, &trim_key(feed))
            .await?
            .and_then(|row| row.str(TRIMMED_FROM).map(str::to_owned));
        let trim = self
            .pages_to_trim(&pk, trimmed_from.as_deref(), &readers, now_ms)
            .await?;
        let Some(oldest_deleted) = trim.delete.first() else {
            return Ok(PruneOutcome::default());
        };
        let raise = Condition::Or(vec![
            Condition::NotExists(TRIMMED_THROUGH.into()),
            Condition::compare(TRIMMED_THROUGH, Comparison::Lt, trim.trimmed_through as i64),
        ]);
        match self
            .table()
            .update(
                FEEDS_TABLE,
                &trim_key(feed),
                Update::new()
                    .set(TRIMMED_THROUGH, trim.trimmed_through as i64)
                    .set(TRIMMED_FROM, oldest_deleted.as_str())
                    .set("trimmed_at_ms", now_ms as i64),
                Some(raise),
            )
            .await
        {
            Ok(_) => {}
            Err(error) if error.is_condition_failed() => {}
            Err(error) => return Err(error.into()),
        }
        let deletes: Vec<BatchWrite> = trim
            .delete
            .iter()
            .map(|sk| BatchWrite::Delete(Key::new(pk.clone(), sk.clone())))
            .collect();
        for chunk in deletes.chunks(MAX_BATCH_WRITE) {
            self.table()
                .batch_write(FEEDS_TABLE, chunk.to_vec())
                .await?;
        }
        tracing::info!(feed = %pk, pages = deletes.len(), trimmed_through = trim.trimmed_through, "feed trimmed past retention");
        Ok(PruneOutcome {
            deleted: deletes.len(),
            notices: 0,
        })
    }

    /// Evicts a player's oldest observations until under the cap, and tells the player.
    ///
    /// The exact count is the tally kept on the counter row plus the observations written
    /// since it was taken ([`worldfleet_tables::memory`]); only when that is over the cap are
    /// the oldest read, as many as the eviction needs. Writes go notice, tally, deletes: the new
    /// tally (conditional on the one read) leaves the evicted observations out before they are
    /// deleted, so a crash in between can leave some stored but never counts them twice, and
    /// the next eviction deletes them uncounted.
    async fn cap_memory(&self, player: &str) -> Result<PruneOutcome> {
        let pk = memory::memory_pk(player);
        let count_key = memory::count_key(player);
        let row = self.table().get(FEEDS_TABLE, &count_key).await?;
        let text = |name: &str| {
            row.as_ref()
                .and_then(|row| row.str(name))
                .map(str::to_owned)
        };
        let number = |name: &str| row.as_ref().and_then(|row| row.i64(name)).unwrap_or(0);
        let counted = number(memory::COUNT_ATTRIBUTE);
        let tallied_through = text(memory::TALLIED_THROUGH);
        let evicted_through = text(memory::EVICTED_THROUGH);
        let evicted_from = text(memory::EVICTED_FROM);
        let tallied_bytes = match tallied_through {
            Some(_) => number(memory::TALLIED_BYTES).max(0) as u64,
            None => 0,
        };
        let since = match &tallied_through {
            Some(through) => SortKeyRange::GreaterThan(through.clone()),
            None => SortKeyRange::Prefix(OBSERVATION_PREFIX.into()),
        };
        let written_since: Vec<ObservationSize> = query_all(self.table(), MEMORY_TABLE, &pk, since)
            .await?
            .iter()
            .filter(|item| item.key.sk.starts_with(OBSERVATION_PREFIX))
            .map(observation_size)
            .collect();
        let total = tallied_bytes
            + written_since
                .iter()
                .map(|observation| observation.bytes)
                .sum::<u64>();
        let newest = written_since
            .last()
            .map(|observation| observation.sort_key.clone())
            .or_else(|| tallied_through.clone());
        let cap = self.config.memory_cap_bytes;
        let need = core::bytes_to_evict(total, cap);
        let (oldest, leftovers) = if need == 0 {
            (Vec::new(), Vec::new())
        } else if tallied_through.is_none() {
            // Everything was just read, oldest first.
            (written_since, Vec::new())
        } else {
            let typical = match written_since.len() as u64 {
                0 => 1024,
                count => (total - tallied_bytes) / count,
            };
            self.oldest_observations(
                &pk,
                evicted_from.as_deref(),
                evicted_through.as_deref(),
                need,
                typical,
            )
            .await?
        };
        let eviction = core::evict_oldest(total, &oldest, cap);
        let mut outcome = PruneOutcome::default();
        if let Some(last_evicted) = eviction.evict.last() {
            let text = core::eviction_notice(&eviction, cap);
            self.notify(player, last_evicted, &text).await?;
            outcome.notices = 1;
        }
        // Correct the count by the difference: concurrent adds since it was read survive.
        let correction = eviction.kept_bytes as i64 - counted;
        if newest != tallied_through
            || eviction.kept_bytes != tallied_bytes
            || !eviction.evict.is_empty()
            || correction != 0
        {
            let mut update = Update::new().set(memory::TALLIED_BYTES, eviction.kept_bytes as i64);
            if let Some(newest) = &newest {
                update = update.set(memory::TALLIED_THROUGH, newest.as_str());
            }
            if let Some(last_evicted) = eviction.evict.last() {
                update = update.set(memory::EVICTED_THROUGH, last_evicted.as_str());
                // Leftovers come before this eviction's observations, and are deleted after
                // the tally: the next eviction reads from the oldest that may still be stored.
                let oldest_taken = leftovers.first().or(eviction.evict.first());
                if let Some(oldest_taken) = oldest_taken {
                    update = update.set(memory::EVICTED_FROM, oldest_taken.as_str());
                }
            }
            if correction != 0 {
                update = update.add(memory::COUNT_ATTRIBUTE, correction);
            }
            let unchanged = match &tallied_through {
                Some(through) => Condition::eq(memory::TALLIED_THROUGH, through.as_str()),
                None => Condition::NotExists(memory::TALLIED_THROUGH.into()),
            };
            match self
                .table()
                .update(FEEDS_TABLE, &count_key, update, Some(unchanged))
                .await
            {
                Ok(_) => {}
                Err(error) if error.is_condition_failed() => {
                    return Err(PruneError::Moved(format!(
                        "the memory tally of {player} moved while it was counted"
                    )));
                }
                Err(error) => return Err(error.into()),
            }
        }
        let deletes: Vec<BatchWrite> = leftovers
            .iter()
            .chain(&eviction.evict)
            .map(|sk| BatchWrite::Delete(Key::new(pk.clone(), sk.clone())))
            .collect();
        for chunk in deletes.chunks(MAX_BATCH_WRITE) {
            self.table()
                .batch_write(MEMORY_TABLE, chunk.to_vec())
                .await?;
        }
        outcome.deleted = deletes.len();
        if !eviction.evict.is_empty() {
            tracing::info!(
                player,
                evicted = eviction.evict.len(),
                bytes = eviction.evicted_bytes,
                "player memory over its cap: oldest observations evicted"
            );
        }
        Ok(outcome)
    }

    /// A player's oldest observations, enough to cover `need` bytes (or all there are), and
    /// the sort keys of those an earlier eviction already took out of the tally (up to
    /// `evicted_through`), to be deleted uncounted. Reading starts at `evicted_from` (every
    /// older observation is deleted; see [`memory::EVICTED_FROM`]), or at the first observation
    /// of a memory never evicted from. Pages are sized by the `typical` observation's bytes, so
    /// that little more than needed is read.
    async fn oldest_observations(
        &self,
        pk: &str,
        evicted_from: Option<&str>,
        evicted_through: Option<&str>,
        need: u64,
        typical: u64,
    ) -> Result<(Vec<ObservationSize>, Vec<String>)> {
        let mut oldest = Vec::new();
        let mut leftovers = Vec::new();
        let mut covered = 0;
        let mut start_after = None;
        loop {
            let wanted = need.saturating_sub(covered).div_ceil(typical.max(1)) + 1;
            let range = match evicted_from {
                Some(from) => SortKeyRange::prefix_from(OBSERVATION_PREFIX, from),
                None => SortKeyRange::Prefix(OBSERVATION_PREFIX.into()),
            };
            let query = Query::partition(pk)
                .range(range)
                .limit(wanted.clamp(2, 256) as usize)
                .start_after(start_after);
            let page = self.table().query(MEMORY_TABLE, &query).await?;
            for item in &page.items {
                if evicted_through.is_some_and(|through| item.key.sk.as_str() <= through) {
                    leftovers.push(item.key.sk.clone());
                    continue;
                }
                if covered >= need {
                    return Ok((oldest, leftovers));
                }
                let observation = observation_size(item);
                covered += observation.bytes;
                oldest.push(observation);
            }
            match page.last_evaluated_sk {
                Some(last) if covered < need => start_after = Some(last),
                _ => return Ok((oldest, leftovers)),
            }
        }
    }

    /// Writes the one-line eviction notice to the player's feed, once per eviction: a marker
    /// keyed by the last evicted observation holds the notice's sequence number, so a retry
    /// rewrites the same page instead of adding a second line.
    async fn notify(&self, player: &str, last_evicted: &str, text: &str) -> Result<()> {
        let feed = FeedId::Player(player.to_owned()).to_string();
        let marker_key = Key::new(memory::memory_pk(player), format!("notice#{last_evicted}"));
        let now_ms = self.context.clock.now_ms();
        let marker = match self.table().get(MEMORY_TABLE, &marker_key).await? {
            Some(marker) => marker,
            None => {
                let counter = self
                    .table()
                    .update(
                        FEEDS_TABLE,
                        &feed_plan::counter_key(&feed),
                        Update::new().add(feed_plan::COUNTER_NEXT, 1),
                        None,
                    )
                    .await?;
                let marker = Item::new(marker_key.clone())
                    .with("seq", counter.i64(feed_plan::COUNTER_NEXT).unwrap_or(1))
                    .with("text", text)
                    .with("at_ms", now_ms as i64)
                    .with(
                        TTL_ATTRIBUTE,
                        (now_ms / 1000 + NOTICE_MARKER_LIFETIME_SECS) as i64,
                    );
                match self
                    .table()
                    .put(MEMORY_TABLE, marker.clone(), Some(Condition::ItemNotExists))
                    .await
                {
                    Ok(()) => marker,
                    // Another attempt got there first (our number is a harmless gap).
                    Err(error) if error.is_condition_failed() => self
                        .table()
                        .get(MEMORY_TABLE, &marker_key)
                        .await?
                        .ok_or_else(|| PruneError::Corrupt {
                            what: format!("notice marker {marker_key}"),
                            reason: "vanished right after a conflicting write".into(),
                        })?,
                    Err(error) => return Err(error.into()),
                }
            }
        };
        let seq = marker.i64("seq").unwrap_or(1).max(1) as u64;
        let partition = PartitionUid::parse(&format!("memory/{player}")).map_err(|error| {
            PruneError::Corrupt {
                what: format!("player id {player}"),
                reason: error.to_string(),
            }
        })?;
        let page = FeedPage {
            first_seq: seq,
            entries: vec![FeedEntry {
                seq,
                event_id: format!("notice-{}", marker_key.sk),
                partition,
                kind: EventKind::Action,
                actor: "worldfleet".into(),
                text: marker.str("text").unwrap_or(text).to_owned(),
                accepted_at_ms: marker.i64("at_ms").unwrap_or(now_ms as i64).max(0) as u64,
            }],
        };
        let item = feed_plan::page_item(&feed, &page, now_ms)?;
        self.table().put(FEEDS_TABLE, item, None).await?;
        Ok(())
    }
}

/// An observation item's sort key and accounted size.
fn observation_size(item: &Item) -> ObservationSize {
    ObservationSize {
        sort_key: item.key.sk.clone(),
        bytes: memory::observation_bytes(item),
    }
}

/// Parses a record's body as a prune request.
pub fn request_from_record(record: &ReceivedMessage) -> Result<PruneRequest, RecordError> {
    serde_json::from_str(&record.body)
        .map_err(|error| RecordError::permanent(format!("not a prune request: {error}")))
}

#[async_trait]
impl StageHandler for Prune {
    fn name(&self) -> &'static str {
        "prune"
    }

    fn source_queue(&self) -> &'static str {
        PRUNE_QUEUE
    }

    async fn handle_batch(&self, records: &[ReceivedMessage], _remaining: Duration) -> BatchReport {
        process_batch(records, true, |record| async move {
            let request = request_from_record(record)?;
            self.handle(&request)
                .await
                .map(|_| ())
                .map_err(RecordError::classify)
        })
        .await
    }
}

/// Page entries of a feed, for tests and tools: every entry still stored, in order.
pub async fn stored_entries(table: &dyn Table, feed: &FeedId) -> Result<Vec<FeedEntry>> {
    let mut entries = Vec::new();
    let mut start_after = None;
    loop {
        let query = Query::partition(feed.to_string())
            .range(SortKeyRange::Prefix("page#".into()))
            .start_after(start_after);
        let page = table.query(FEEDS_TABLE, &query).await?;
        for item in &page.items {
            entries.extend(page_from_item(item)?.entries);
        }
        match page.last_evaluated_sk {
            Some(last) => start_after = Some(last),
            None => return Ok(entries),
        }
    }
}
