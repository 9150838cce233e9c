//! The distribute stage handler: plan a batch once, then write its pages.
//!
//! 1. Read the events' canon items: an event that already points at a plan was planned by an
//!    earlier attempt (or a concurrent worker) and is never planned again.
//! 2. For the unplanned events: one atomic add per target feed allocates a sequence range
//!    (a crash here only burns numbers: feeds are gap-tolerant) and, on a player's feed, counts
//!    the bytes of the player's coming observation in the same update (the players past the
//!    cap go in the plan); then the plan record is put (a fresh id: a repeat writes the same
//!    bytes) and each event is claimed for it — its canon item's `dist_plan` set on condition
//!    that it has none — partition by partition in queue order, stopping a partition at its
//!    first event another plan holds ([`plan::claim_runs`]). No transaction: a claim is final,
//!    so a plan owns exactly the events whose canon points at it, and every executor of the
//!    plan (a redelivery, a concurrent poller) claims in the same order and finds the same
//!    events; those it does not own are planned again by the batch that carries them.
//! 3. Write each plan's pages (puts by deterministic key: replays overwrite with the same
//!    bytes) and the players' observations (`worldfleet_tables::memory`).
//! 4. Tell prune what it may collect: the plan's events are published (their bookkeeping ends
//!    with them: prune deletes the plan record), the plan's players whose memory count passed
//!    the cap, feeds that crossed a check mark; and touch the regions the events belong to (a
//!    tombstoned one is asked back).
//!
//! The plan record is not marked completed: its deletion by prune is the mark. Only step 4 asks
//! for it, after every page is written, so a plan that still exists may be unfinished and is
//! executed again by whoever finds it (rewriting the same pages), and a plan that is gone was
//! published. Marking it cost an update billed at the record's full size (about 2 KB) per batch.
//! Records written by earlier versions may carry `completed`; they are honoured.
//!
//! Every decision (which events need a plan, what a claim writes and in which order, what a plan publishes,
//! who is over budget, which regions were touched) is a pure function in [`crate::plan`]; this
//! shell reads, executes and sends. A failure at any step fails every record it touches;
//! redelivery resumes from the durable state, so no entry is lost and none is written twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::try_join_all;
use worldfleet_domain::names::{
    CANON_TABLE, DISTRIBUTE_QUEUE, FEEDS_TABLE, MEMORY_TABLE, PRUNE_QUEUE, PRUNE_TABLE,
};
use worldfleet_domain::{CanonEntry, DistributeRequest, FeedId, PruneRequest};
use worldfleet_kit::batch::FailedGroups;
use worldfleet_kit::{BatchReport, StageContext, StageHandler, activity};
use worldfleet_ports::table::{MAX_BATCH_GET, MAX_BATCH_WRITE};
use worldfleet_ports::{
    BatchWrite, Error, Item, Key, OutgoingMessage, ReceivedMessage, SendOutcome, Update,
};
use worldfleet_tables::canon;

use crate::error::{DistributeError, Result};
use crate::plan;
use crate::rules::RepublishRules;
use worldfleet_tables::memory;
use worldfleet_tables::plan::{self as layout, Plan};

const PLANNING_ATTEMPTS: usize = 6;
/// How many times one claim is tried when it fails ambiguously.
const CLAIM_ATTEMPTS: usize = 4;

pub use crate::plan::{FEED_CHECK_EVERY, REGION_DEPTH, crosses_check_mark};

/// The distribute stage.
pub struct Distribute {
    context: StageContext,
    rules: Arc<RepublishRules>,
    memory_cap_bytes: u64,
}

impl Distribute {
    /// distribute over `context` with `rules`.
    pub fn new(context: StageContext, rules: RepublishRules) -> Self {
        Self {
            context,
            rules: Arc::new(rules),
            memory_cap_bytes: memory::MEMORY_CAP_BYTES,
        }
    }

    /// Asks prune to cap a player's memory past `bytes` instead of
    /// [`memory::MEMORY_CAP_BYTES`] (keep it equal to prune's cap).
    pub fn with_memory_cap(mut self, bytes: u64) -> Self {
        self.memory_cap_bytes = bytes;
        self
    }

    /// Reads the canon items of `keys`, by event id.
    async fn canon_items(&self, keys: &[Key]) -> Result<BTreeMap<String, Item>> {
        let mut found = BTreeMap::new();
        for chunk in keys.chunks(MAX_BATCH_GET) {
            for item in self.context.table.batch_get(CANON_TABLE, chunk).await? {
                found.insert(item.key.sk.clone(), item);
            }
        }
        Ok(found)
    }

    /// Plans `events` (none of which had a plan when read) and claims them. Returns the new
    /// plan and the events it lost to other plans (planned concurrently).
    async fn plan(&self, events: &[CanonEntry]) -> Result<(Plan, BTreeSet<String>)> {
        let demand = plan::feed_demand(&self.rules, events);
        let by_id: BTreeMap<&str, &CanonEntry> = events
            .iter()
            .map(|entry| (entry.event_id.as_str(), entry))
            .collect();
        let by_id = &by_id;
        let planned_at_ms = self.context.clock.now_ms();
        // A counter added twice (an attempt that timed out after it was applied, then repeated)
        // leaves a gap in the feed's numbering, which planning tolerates: the same gap opens
        // whenever a batch fails after its counters and is redelivered. So the add may be
        // repeated rather than failing the batch. The memory count rides on the same update: a
        // repeat counts high, which costs prune one early look (`worldfleet_tables::memory`).
        let allocated = try_join_all(demand.iter().map(|(feed, event_ids)| async move {
            let mut update = Update::new().add(layout::COUNTER_NEXT, event_ids.len() as i64);
            if let FeedId::Player(player) = feed {
                let observed: Vec<&CanonEntry> = event_ids
                    .iter()
                    .filter_map(|event_id| by_id.get(event_id.as_str()).copied())
                    .collect();
                let bytes = plan::observation_bytes_bound(player, &observed, planned_at_ms)?;
                update = update.add(memory::COUNT_ATTRIBUTE, bytes as i64);
            }
            let counter = self
                .context
                .table
                .update(
                    FEEDS_TABLE,
                    &layout::counter_key(&feed.to_string()),
                    update.repeatable(),
                    None,
                )
                .await?;
            let counter_after = counter.i64(layout::COUNTER_NEXT).unwrap_or(0);
            let memory_count = match feed {
                FeedId::Player(player) => Some((
                    player.clone(),
                    counter.i64(memory::COUNT_ATTRIBUTE).unwrap_or(0),
                )),
                _ => None,
            };
            if !counter.attributes.contains_key(layout::COUNTER_INDEXED) {
                // A feed's first plan puts it in prune's feed index, and only then marks its
                // counter: a crash between the two, or a plan that fails after reserving the
                // feed's first numbers, leaves the mark unset and the next plan indexes it.
                let feed_id = feed.to_string();
                let now_ms = self.context.clock.now_ms();
                activity::index_feed(self.context.table.as_ref(), PRUNE_TABLE, &feed_id, now_ms)
                    .await?;
                self.context
                    .table
                    .update(
                        FEEDS_TABLE,
                        &layout::counter_key(&feed_id),
                        // Setting a flag twice is harmless: repeat it on an ambiguous failure.
                        Update::new()
                            .set(layout::COUNTER_INDEXED, true)
                            .repeatable(),
                        None,
                    )
                    .await?;
            }
            Ok::<_, DistributeError>((
                plan::planned_page(feed, event_ids, counter_after),
                memory_count,
            ))
        }))
        .await?;
        let (pages, counts): (Vec<_>, Vec<_>) = allocated.into_iter().unzip();
        let mut plan = plan::new_plan(ulid::Ulid::new().to_string(), events, pages);
        plan.over_budget = plan::over_budget(
            counts.into_iter().flatten().collect(),
            self.memory_cap_bytes,
        );
        let now_ms = self.context.clock.now_ms();
        // The id is fresh, so the put needs no condition and may be repeated. A crash between
        // it and the claims leaves a record no canon points at: nobody executes it, and its
        // TTL removes it.
        self.context
            .table
            .put(FEEDS_TABLE, layout::plan_item(&plan, now_ms)?, None)
            .await?;
        let lost = self.claim(&plan).await?;
        Ok((plan, lost))
    }

    /// Claims `plan`'s events for it (see [`plan::claim_runs`]); returns those another plan
    /// holds, or that follow one in their partition. A claim that fails its condition was made
    /// before — by another executor of this plan, or by another plan — and the canon says which.
    async fn claim(&self, plan: &Plan) -> Result<BTreeSet<String>> {
        let runs = plan::claim_runs(plan);
        let lost = try_join_all(runs.iter().map(|run| async move {
            let mut lost = Vec::new();
            for (partition, event_id) in run {
                if !lost.is_empty() {
                    lost.push(event_id.clone());
                    continue;
                }
                let owned = self.claim_one(&plan.id, &canon::key(partition, event_id)).await?;
                if !owned {
                    tracing::info!(plan = %plan.id, event_id, "event planned elsewhere; the rest of its partition goes to a later plan");
                    lost.push(event_id.clone());
                }
            }
            Ok::<_, DistributeError>(lost)
        }))
        .await?;
        Ok(lost.into_iter().flatten().collect())
    }

    /// Claims the event whose canon item is `key` for `plan_id`; true when it is the plan's.
    /// Claiming for the same plan twice is harmless (the second fails its condition and the
    /// canon says the plan's), so an ambiguous failure (a timeout or 5xx after which the write
    /// may have applied) is repeated here rather than failing the whole batch.
    async fn claim_one(&self, plan_id: &str, key: &Key) -> Result<bool> {
        let mut attempt = 0;
        loop {
            let (update, condition) = plan::claim(plan_id);
            match self
                .context
                .table
                .update(CANON_TABLE, key, update, Some(condition))
                .await
            {
                Ok(_) => return Ok(true),
                Err(error) if error.is_condition_failed() => {
                    let item = self.context.table.get(CANON_TABLE, key).await?;
                    return Ok(item.is_some_and(|item| item.str("dist_plan") == Some(plan_id)));
                }
                Err(error) if error.is_retryable() && attempt + 1 < CLAIM_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(plan = plan_id, %error, attempt, "claim failed ambiguously; repeating it");
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Writes the pages of the plan `plan_id` unless it is gone (published). `claimed` is the
    /// set of events the plan lost when the caller has just claimed them; otherwise they are
    /// claimed here (a plan found through its events' canon may not have finished claiming).
    async fn execute(
        &self,
        plan_id: &str,
        known: &BTreeMap<String, CanonEntry>,
        claimed: Option<BTreeSet<String>>,
    ) -> Result<()> {
        let Some(record) = self
            .context
            .table
            .get(FEEDS_TABLE, &layout::plan_key(plan_id))
            .await?
        else {
            // Plans are removed only once published (by prune, asked after every page was
            // written; or by their TTL much later): an event pointing at a missing plan was
            // published already.
            tracing::info!(plan = plan_id, "plan already published and pruned");
            return Ok(());
        };
        let plan = layout::plan_from_item(&record)?;
        if record.attributes.get("completed") == Some(&worldfleet_ports::Value::Bool(true)) {
            // A record an earlier version marked completed: a crash may have come between the
            // mark and telling prune, so tell it again.
            let lost = plan::lost_of(&record)?;
            return self.send_prune(vec![plan::published(&plan, &lost)]).await;
        }
        let lost = match claimed {
            Some(lost) => lost,
            None => self.claim(&plan).await?,
        };
        let (mut canon, missing) = plan::split_known(&plan, known, &lost);
        for item in self.canon_items(&missing).await?.values() {
            let entry = canon::from_item(item)?;
            canon.insert(entry.event_id.clone(), entry);
        }
        let now_ms = self.context.clock.now_ms();
        let publication = plan::publication(&plan, &canon, &lost, now_ms)?;
        self.batch_write(FEEDS_TABLE, &publication.pages).await?;
        let observations: Vec<Item> = publication
            .observations
            .iter()
            .map(|(_, item)| item.clone())
            .collect();
        self.batch_write(MEMORY_TABLE, &observations).await?;
        let mut requests = vec![plan::published(&plan, &lost)];
        requests.extend(plan::memory_requests(&plan));
        for feed in &publication.checked_feeds {
            activity::index_feed(self.context.table.as_ref(), PRUNE_TABLE, feed, now_ms).await?;
            requests.push(PruneRequest::FeedPastRetention { feed: feed.clone() });
        }
        self.send_prune(requests).await
    }

    /// Puts `items` into `table`, a batch write at a time.
    async fn batch_write(&self, table: &str, items: &[Item]) -> Result<()> {
        for chunk in items.chunks(MAX_BATCH_WRITE) {
            let writes = chunk.iter().cloned().map(BatchWrite::Put).collect();
            self.context.table.batch_write(table, writes).await?;
        }
        Ok(())
    }

    /// Sends prune its requests, ten at a time; any refusal fails the batch (it is retried,
    /// and every request is safe to repeat).
    async fn send_prune(&self, requests: Vec<PruneRequest>) -> Result<()> {
        let messages: Vec<OutgoingMessage> = requests
            .iter()
            .map(|request| {
                let body =
                    serde_json::to_string(request).map_err(|error| DistributeError::Corrupt {
                        what: "prune request".into(),
                        reason: error.to_string(),
                    })?;
                Ok(OutgoingMessage::fifo(
                    body,
                    &request.group(),
                    &request.dedup_id(),
                ))
            })
            .collect::<Result<_>>()?;
        for chunk in messages.chunks(worldfleet_ports::queue::MAX_BATCH) {
            let outcomes = self
                .context
                .queue
                .send_batch(PRUNE_QUEUE, chunk.to_vec())
                .await?;
            if let Some(SendOutcome::Failed { reason, .. }) = outcomes
                .into_iter()
                .find(|outcome| matches!(outcome, SendOutcome::Failed { .. }))
            {
                return Err(Error::Unavailable(format!("prune request not sent: {reason}")).into());
            }
        }
        Ok(())
    }

    /// Records the activity of the batch's regions; asks for tombstoned ones to come back.
    async fn touch_regions(&self, events: &[CanonEntry]) -> Result<()> {
        let now_ms = self.context.clock.now_ms();
        let mut requests = Vec::new();
        for (region, partitions) in plan::regions(events) {
            let tombstoned = activity::touch_region(
                self.context.table.as_ref(),
                PRUNE_TABLE,
                region.as_str(),
                &partitions,
                now_ms,
            )
            .await?;
            if tombstoned {
                requests.push(PruneRequest::RegionActive { region });
            }
        }
        self.send_prune(requests).await
    }

    async fn distribute(&self, events: &[CanonEntry]) -> Result<()> {
        let known: BTreeMap<String, CanonEntry> = events
            .iter()
            .map(|entry| (entry.event_id.clone(), entry.clone()))
            .collect();
        let keys: Vec<Key> = events
            .iter()
            .map(|entry| canon::key(entry.partition.as_str(), &entry.event_id))
            .collect();
        // Until every event points at a plan executed here: plans found first (executing one
        // claims the rest of its events, some of which may look unplanned now), then one new
        // plan for what is still unplanned. Each round either finishes or makes progress.
        let mut executed = BTreeSet::new();
        for attempt in 0.. {
            let sorted = plan::by_plan(events, &self.canon_items(&keys).await?)?;
            let found: Vec<String> = sorted.plans.difference(&executed).cloned().collect();
            if found.is_empty() && sorted.unplanned.is_empty() {
                break;
            }
            if attempt == PLANNING_ATTEMPTS {
                return Err(
                    Error::Throttled("events keep being planned concurrently".into()).into(),
                );
            }
            if !found.is_empty() {
                for plan_id in found {
                    self.execute(&plan_id, &known, None).await?;
                    executed.insert(plan_id);
                }
                continue;
            }
            let (plan, lost) = self.plan(&sorted.unplanned).await?;
            let claimed_all = lost.is_empty();
            self.execute(&plan.id, &known, Some(lost)).await?;
            executed.insert(plan.id);
            if claimed_all {
                break;
            }
        }
        self.touch_regions(events).await
    }
}

#[async_trait]
impl StageHandler for Distribute {
    fn name(&self) -> &'static str {
        "distribute"
    }

    fn source_queue(&self) -> &'static str {
        DISTRIBUTE_QUEUE
    }

    fn describe(&self) -> String {
        format!(
            "distribute: asks prune to evict a player's memory past {} bytes",
            self.memory_cap_bytes
        )
    }

    async fn handle_batch(&self, records: &[ReceivedMessage], _remaining: Duration) -> BatchReport {
        let mut report = BatchReport::default();
        let mut events: Vec<CanonEntry> = Vec::new();
        let mut carriers: Vec<&ReceivedMessage> = Vec::new();
        let mut broken_groups = FailedGroups::default();
        for record in records {
            if broken_groups.skip(record, &mut report) {
                continue;
            }
            match serde_json::from_str::<DistributeRequest>(&record.body) {
                Ok(request) => {
                    if !events
                        .iter()
                        .any(|event| event.event_id == request.canon.event_id)
                    {
                        events.push(request.canon);
                    }
                    carriers.push(record);
                }
                Err(error) => {
                    // Later records of this group are skipped above, so order holds.
                    tracing::warn!(message_id = %record.message_id, %error, "not a distribute request; it goes to the dead-letter queue");
                    report.fail_permanently(&record.message_id);
                    broken_groups.fail(record);
                }
            }
        }
        match self.distribute(&events).await {
            Ok(()) => report.succeeded += carriers.len(),
            Err(error) => {
                tracing::warn!(%error, retryable = worldfleet_kit::Failure::is_retryable(&error), records = carriers.len(), "distribution failed; the batch will be redelivered");
                for record in carriers {
                    report.fail(&record.message_id);
                }
            }
        }
        report
    }
}
