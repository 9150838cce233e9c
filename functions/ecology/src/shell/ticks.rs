//! The ecology tick stage: one timer `(cell, tick)` → one applied tick, exactly once.
//!
//! * `tick = state.tick + 1`: first make sure the stored tick's outbox went out (its
//!   idempotency record says COMPLETED, or it is carried out now): the next tick replaces the
//!   outbox, and its timer can come first — the watchdog re-arms both ticks at once and timers
//!   are not ordered. Then read up to [`MAX_INPUTS_PER_TICK`] pending inputs, plan the tick
//!   with the pure [`plan_tick`] (which runs [`crate::sim::tick`]), and write its one
//!   transaction — conditioned on the tick read — the next state with its outbox and totals, a
//!   delete of each consumed input and its seen marker. A lost race re-reads. Then carry out
//!   the outbox.
//! * `tick = state.tick`: the tick was applied (perhaps by a worker that died before its
//!   outbox went out): carry out the outbox.
//! * anything else: a stale or spare timer; dropped.
//!
//! Carrying out the outbox runs under the idempotency record `ecology#CELL#TICK`: of any
//! number of deliveries of a tick's timer exactly one completes it, so exactly one timer for
//! the next tick is sent per tick completed (a crash mid-outbox re-sends; the spare is dropped
//! by the rule above) — a duplicate never forks a chain. Every outbox effect is idempotent on
//! its own: emigrants are FIFO messages deduplicated by their input key and stored once by the
//! destination's input stage; news canon is put only if absent and distribute publishes each
//! canon entry once; captured and returned creatures are puts by deterministic key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use worldfleet_domain::names::{
    CANON_TABLE, DISTRIBUTE_QUEUE, ECOLOGY_INPUT_QUEUE, ECOLOGY_TABLE, ECOLOGY_TICK_QUEUE,
    IDEMPOTENCY_TABLE, TIMERS_TABLE,
};
use worldfleet_domain::{CanonEntry, DistributeRequest, EventKind, Intent, PartitionUid, Tier};
use worldfleet_kit::timer::register;
use worldfleet_kit::{
    BatchReport, Failure, IdempotencyConfig, IdempotencyError, IdempotencyStore, RecordError,
    StageContext, StageHandler, process_batch, send_all,
};
use worldfleet_ports::table::MAX_BATCH_WRITE;
use worldfleet_ports::{
    BatchWrite, Condition, Item, Key, OutgoingMessage, Query, ReceivedMessage, SortKeyRange,
};
use worldfleet_tables::canon;

use super::plan::{InputVerdict, TimerStep, plan_tick, timer_step};
use super::store::{CellTotals, Outbox, PendingInput, StoredCell, state_key};
use super::{
    ECOLOGY_CHAIN, EcologyConfig, MAX_INPUTS_PER_TICK, MAX_STORED_POPULATION, MigrantMessage,
    TickTimer,
};
use crate::error::{EcologyError, Result};
use crate::sim::{Founders, NewsEvent, NewsKind, genesis};

const WRITE_ATTEMPTS: usize = 5;
/// The actor news canon is attributed to.
pub const NEWS_ACTOR: &str = "wildlife";
/// The composer recorded on news canon.
pub const NEWS_COMPOSER: &str = "ecology";

/// What one timer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickResult {
    /// Applied now: head counts of the tick and inputs consumed.
    Applied {
        tick: u64,
        population: usize,
        inputs: usize,
    },
    /// Applied before; its outbox was completed (now or earlier).
    AlreadyApplied { tick: u64 },
    /// Not the cell's next tick; dropped.
    Stale,
    /// No such cell; dropped.
    UnknownCell,
}

/// Most cells whose last completed outbox a tick stage remembers (see
/// [`EcologyTickStage::ensure_outbox_sent`]); past it the memory starts over.
const REMEMBERED_CELLS: usize = 100_000;

/// The ecology tick stage.
pub struct EcologyTickStage {
    context: StageContext,
    config: Arc<EcologyConfig>,
    idempotency: IdempotencyStore,
    /// Per cell, the last tick whose outbox this process saw completed: the check before the
    /// next tick then needs no read (one process usually runs a cell's every tick).
    completed: Mutex<HashMap<String, u64>>,
}

impl EcologyTickStage {
    /// The stage over `context`.
    pub fn new(context: StageContext, config: EcologyConfig) -> Self {
        let idempotency = IdempotencyStore::new(
            Arc::clone(&context.table),
            IDEMPOTENCY_TABLE,
            Arc::clone(&context.clock),
            IdempotencyConfig::default(),
        );
        Self {
            context,
            config: Arc::new(config),
            idempotency,
            completed: Mutex::new(HashMap::new()),
        }
    }

    fn remembered_complete(&self, cell: &PartitionUid, tick: u64) -> bool {
        let completed = self
            .completed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        completed.get(cell.as_str()) == Some(&tick)
    }

    fn remember_complete(&self, cell: &PartitionUid, tick: u64) {
        let mut completed = self
            .completed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if completed.len() >= REMEMBERED_CELLS && !completed.contains_key(cell.as_str()) {
            completed.clear();
        }
        completed.insert(cell.to_string(), tick);
    }

    /// Handles one timer: reads the cell, asks [`timer_step`] what the timer wants, and for the
    /// next tick reads the pending inputs, executes the [`plan_tick`] transaction (re-reading on
    /// a lost condition) and carries out the outbox.
    pub async fn on_timer(&self, timer: &TickTimer, remaining: Duration) -> Result<TickResult> {
        let table = self.context.table.as_ref();
        let cell = timer.cell.as_str();
        for _ in 0..WRITE_ATTEMPTS {
            let Some(item) = table.get(ECOLOGY_TABLE, &state_key(cell)).await? else {
                tracing::warn!(
                    cell,
                    tick = timer.tick,
                    "timer for a cell that does not exist; dropped"
                );
                return Ok(TickResult::UnknownCell);
            };
            let stored = StoredCell::from_item(&item)?;
            match timer_step(timer.tick, stored.state.tick) {
                TimerStep::Apply => {
                    // The next tick replaces the stored outbox, so the stored one must have
                    // gone out first: the next tick's timer can come before the last tick's
                    // outbox was carried out (the watchdog re-arms both at once, timers are
                    // not ordered, a worker can die mid-outbox), and applying over it would
                    // drop its emigrants, news and captured creatures.
                    match self.ensure_outbox_sent(&stored, remaining).await {
                        Ok(()) => {}
                        Err(EcologyError::Busy(reason)) => {
                            // Another invocation holds the last outbox: come back in one
                            // interval rather than spend this timer's receives waiting.
                            tracing::debug!(cell, tick = timer.tick, %reason, "last outbox in progress elsewhere; timer deferred");
                            rearm_cell(
                                &self.context,
                                &timer.cell,
                                &[timer.tick],
                                Duration::from_millis(self.config.interval.as_millis()),
                            )
                            .await?;
                            return Ok(TickResult::Stale);
                        }
                        Err(error) => return Err(error),
                    }
                }
                TimerStep::CompleteOutbox => {
                    self.complete_outbox(&stored, remaining).await?;
                    return Ok(TickResult::AlreadyApplied { tick: timer.tick });
                }
                TimerStep::Stale => {
                    tracing::debug!(
                        cell,
                        tick = timer.tick,
                        applied = stored.state.tick,
                        "stale tick timer dropped"
                    );
                    return Ok(TickResult::Stale);
                }
            }
            let page = table
                .query(
                    ECOLOGY_TABLE,
                    &Query::partition(cell)
                        .range(SortKeyRange::Prefix("pending#".into()))
                        .limit(MAX_INPUTS_PER_TICK),
                )
                .await?;
            let now_ms = self.context.clock.now_ms();
            let plan = plan_tick(&stored, &page.items, timer.tick, now_ms, &self.config.rules)?;
            for input in &plan.consumed {
                if let InputVerdict::Corrupt(error) = &input.verdict {
                    tracing::warn!(cell, input = %input.input_key, %error, "corrupt pending input; consumed as refused");
                }
            }
            match table.transact(plan.writes).await {
                Ok(()) => {}
                Err(error) if error.is_condition_failed() => {
                    tracing::debug!(
                        cell,
                        tick = timer.tick,
                        "lost the race for the tick; re-reading"
                    );
                    continue;
                }
                Err(error) => return Err(error.into()),
            }
            self.complete_outbox(&plan.next, remaining).await?;
            return Ok(TickResult::Applied {
                tick: timer.tick,
                population: plan.next.state.creatures.len(),
                inputs: plan.consumed.len(),
            });
        }
        Err(EcologyError::Busy(format!(
            "cell {cell} kept changing under tick {}",
            timer.tick
        )))
    }

    /// Carries out the stored tick's outbox unless this process saw it completed or its
    /// idempotency record says it was.
    async fn ensure_outbox_sent(&self, stored: &StoredCell, remaining: Duration) -> Result<()> {
        let Some(outbox) = stored_tick_outbox(stored) else {
            return Ok(());
        };
        let cell = &stored.state.cell;
        if self.remembered_complete(cell, outbox.tick) {
            return Ok(());
        }
        if self
            .idempotency
            .is_completed(&outbox_key(cell, outbox.tick))
            .await?
        {
            self.remember_complete(cell, outbox.tick);
            return Ok(());
        }
        tracing::debug!(
            cell = %stored.state.cell,
            tick = outbox.tick,
            "the last tick's outbox is owed; carrying it out before the next tick"
        );
        self.complete_outbox(stored, remaining).await
    }

    /// Carries out the outbox of the stored tick, once per `(cell, tick)`.
    async fn complete_outbox(&self, stored: &StoredCell, remaining: Duration) -> Result<()> {
        let Some(outbox) = stored_tick_outbox(stored) else {
            return Ok(());
        };
        let key = outbox_key(&stored.state.cell, outbox.tick);
        let result = self
            .idempotency
            .run(&key, key.as_bytes(), remaining, || async {
                self.send_outbox(&stored.state.cell, outbox).await
            })
            .await;
        match result {
            Ok(_) => {
                self.remember_complete(&stored.state.cell, outbox.tick);
                Ok(())
            }
            Err(IdempotencyError::Work(error)) => Err(error),
            Err(IdempotencyError::Store(error)) => Err(error.into()),
            Err(error) if error.is_retryable() => Err(EcologyError::Busy(error.to_string())),
            Err(error) => Err(EcologyError::corrupt(key, error)),
        }
    }

    async fn send_outbox(&self, cell: &PartitionUid, outbox: &Outbox) -> Result<()> {
        let table = self.context.table.as_ref();
        // News canon first: distribute refuses a request whose canon it cannot read.
        let mut messages: Vec<(usize, &'static str, OutgoingMessage)> = Vec::new();
        for (ordinal, news) in outbox.news.iter().enumerate() {
            let entry = news_canon(news, ordinal, outbox.applied_at_ms);
            match table
                .put(
                    CANON_TABLE,
                    canon::to_item(&entry)?,
                    Some(Condition::ItemNotExists),
                )
                .await
            {
                Ok(()) => {}
                Err(error) if error.is_condition_failed() => {}
                Err(error) => return Err(error.into()),
            }
            let body = encode(&DistributeRequest {
                canon: entry.clone(),
            })?;
            messages.push((
                messages.len(),
                DISTRIBUTE_QUEUE,
                OutgoingMessage::fifo(body, cell.as_str(), &dedup_id(&entry.event_id)),
            ));
        }
        for migrant in &outbox.emigrants {
            let input_key = PendingInput::Arrival(migrant.clone()).key();
            let body = encode(&MigrantMessage {
                migrant: migrant.clone(),
            })?;
            messages.push((
                messages.len(),
                ECOLOGY_INPUT_QUEUE,
                OutgoingMessage::fifo(body, migrant.destination.as_str(), &dedup_id(&input_key)),
            ));
        }
        let mut puts = Vec::new();
        for captured in &outbox.captured {
            puts.push(BatchWrite::Put(
                Item::new(Key::new(
                    cell.as_str(),
                    format!("captured#{}", captured.request_id),
                ))
                .with("player", captured.player_id.as_str())
                .with("creature", encode(&captured.creature)?)
                .with("tick", outbox.tick as i64),
            ));
        }
        for migrant in &outbox.returned {
            let input_key = PendingInput::Arrival(migrant.clone()).key();
            puts.push(BatchWrite::Put(
                Item::new(Key::new(cell.as_str(), format!("returned#{input_key}")))
                    .with("migrant", encode(migrant)?)
                    .with("tick", outbox.tick as i64),
            ));
        }
        for chunk in puts.chunks(MAX_BATCH_WRITE) {
            table.batch_write(ECOLOGY_TABLE, chunk.to_vec()).await?;
        }
        let next = TickTimer {
            cell: cell.clone(),
            tick: outbox.tick + 1,
        };
        messages.push((
            messages.len(),
            ECOLOGY_TICK_QUEUE,
            OutgoingMessage::delayed(
                encode(&next)?,
                Duration::from_millis(self.config.interval.as_millis()),
            ),
        ));
        let failures = send_all(&self.context, messages).await;
        if let Some((_, reason)) = failures.first() {
            return Err(EcologyError::Port(worldfleet_ports::Error::Unavailable(
                format!(
                    "{} outbox messages of {cell} tick {} not sent: {reason}",
                    failures.len(),
                    outbox.tick
                ),
            )));
        }
        Ok(())
    }
}

/// The outbox of the tick the cell stores, if it has one (an older tick's is done with).
fn stored_tick_outbox(stored: &StoredCell) -> Option<&Outbox> {
    stored
        .outbox
        .as_ref()
        .filter(|outbox| outbox.tick == stored.state.tick)
}

/// The idempotency key under which the outbox of `(cell, tick)` is carried out once.
fn outbox_key(cell: &PartitionUid, tick: u64) -> String {
    format!("ecology#{cell}#{tick}")
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|error| EcologyError::corrupt("message", error))
}

/// A FIFO deduplication id (≤ 128 characters) for an arbitrary key.
fn dedup_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether `event_id` under `partition` names a news item of a tick: news canon is keyed by its
/// cell, tick and ordinal ([`NewsEvent::idempotency_key`]), never by a gateway's event id (a
/// ULID or UUIDv7, which holds no `#`). What news a world publishes depends on which ticks ran,
/// so comparisons of two runs (`worldfleet chaos`) leave these rows out.
pub fn is_news_event(partition: &str, event_id: &str) -> bool {
    event_id
        .strip_prefix(partition)
        .is_some_and(|rest| rest.starts_with('#'))
}

/// The canon entry of a news item: published by distribute to the zone's district feed
/// (the cell's first two UID segments), attributed to [`NEWS_ACTOR`], salient enough for the
/// district rule, stamped with the tick's time so a re-sent outbox carries identical canon.
pub fn news_canon(news: &NewsEvent, ordinal: usize, applied_at_ms: u64) -> CanonEntry {
    let salience = match news.kind {
        NewsKind::LineageFounded { .. } | NewsKind::LocalExtinction { .. } => 90,
        _ => 80,
    };
    CanonEntry {
        event_id: news.idempotency_key(ordinal),
        partition: news.cell.clone(),
        kind: EventKind::Action,
        actor: NEWS_ACTOR.to_owned(),
        audience: Vec::new(),
        faction: None,
        intent: Intent::Lore,
        salience,
        tier: Tier::Template,
        text: news.headline.clone(),
        composer: NEWS_COMPOSER.to_owned(),
        accepted_at_ms: applied_at_ms,
        composed_at_ms: applied_at_ms,
    }
}

/// Founds a cell at tick 0, registers its chain and arms tick 1. Returns false (changing
/// nothing) when the cell exists, so seeding a world twice is harmless. The cap is limited to
/// [`MAX_STORED_POPULATION`] so the cell always fits one table item.
pub async fn seed_cell(
    context: &StageContext,
    config: &EcologyConfig,
    cell: PartitionUid,
    population_cap: u32,
    neighbours: Vec<PartitionUid>,
    founders: &[Founders],
) -> Result<bool> {
    let state = genesis(
        cell.clone(),
        population_cap.min(MAX_STORED_POPULATION),
        neighbours,
        founders,
        &config.rules,
    )?;
    let now_ms = context.clock.now_ms();
    let stored = StoredCell {
        totals: CellTotals {
            founders: state.creatures.len() as u64,
            ..CellTotals::default()
        },
        state,
        outbox: None,
        updated_at_ms: now_ms,
    };
    match context
        .table
        .put(
            ECOLOGY_TABLE,
            stored.to_item()?,
            Some(Condition::ItemNotExists),
        )
        .await
    {
        Ok(()) => {}
        Err(error) if error.is_condition_failed() => return Ok(false),
        Err(error) => return Err(error.into()),
    }
    register(
        context.table.as_ref(),
        TIMERS_TABLE,
        ECOLOGY_CHAIN,
        cell.as_str(),
        config.interval.as_millis(),
    )
    .await?;
    rearm_cell(
        context,
        &cell,
        &[1],
        Duration::from_millis(config.interval.as_millis()),
    )
    .await?;
    Ok(true)
}

/// Sends timers for `ticks` of `cell` after `delay`.
pub async fn rearm_cell(
    context: &StageContext,
    cell: &PartitionUid,
    ticks: &[u64],
    delay: Duration,
) -> Result<()> {
    let mut messages = Vec::new();
    for tick in ticks {
        let body = encode(&TickTimer {
            cell: cell.clone(),
            tick: *tick,
        })?;
        messages.push((
            messages.len(),
            ECOLOGY_TICK_QUEUE,
            OutgoingMessage::delayed(body, delay),
        ));
    }
    let failures = send_all(context, messages).await;
    match failures.first() {
        None => Ok(()),
        Some((_, reason)) => Err(EcologyError::Port(worldfleet_ports::Error::Unavailable(
            format!("tick timer of {cell} not sent: {reason}"),
        ))),
    }
}

#[async_trait]
impl StageHandler for EcologyTickStage {
    fn name(&self) -> &'static str {
        "ecology"
    }

    fn source_queue(&self) -> &'static str {
        ECOLOGY_TICK_QUEUE
    }

    async fn handle_batch(&self, records: &[ReceivedMessage], remaining: Duration) -> BatchReport {
        process_batch(records, false, |record| async move {
            let timer: TickTimer = serde_json::from_str(&record.body)
                .map_err(|error| RecordError::permanent(format!("not a tick timer: {error}")))?;
            self.on_timer(&timer, remaining)
                .await
                .map(|_| ())
                .map_err(RecordError::classify)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn news_ids_are_told_from_gateway_event_ids() {
        let uid = |text: &str| PartitionUid::parse(text).expect("uid");
        let news = NewsEvent {
            cell: uid("wild/zone-00/cell-01"),
            zone: uid("wild/zone-00"),
            tick: 7,
            kind: NewsKind::PopulationDoubled {
                species: "glimmerfox".into(),
                from: 10,
                to: 20,
            },
            headline: "glimmerfox numbers doubled".into(),
        };
        assert!(is_news_event(news.cell.as_str(), &news.idempotency_key(2)));
        assert!(!is_news_event(
            news.cell.as_str(),
            "01JD0000000000000000000000"
        ));
        assert!(!is_news_event(
            "wild/zone-00/cell-0",
            &news.idempotency_key(0)
        ));
    }
}
