//! The production stage: a region's 12 s production tick, one bulk write per region.
//!
//! A timer `(region, T)`:
//!
//! * `T = marker + 1`: read the region (one query of its partition), run the pure
//!   [`production_tick`], execute its write plan step by step (planet puts in chunks, then the
//!   region marker conditioned on `tick < T`), then schedule `T + 1`;
//! * `T = marker`: tick T was applied, perhaps by a worker that died before scheduling: only
//!   schedule `T + 1`;
//! * anything else: a stale or spare timer; dropped (the watchdog re-arms lost chains).
//!
//! Scheduling `T + 1` runs under the idempotency record `production#REGION#T`, so of any
//! number of deliveries of timer T exactly one schedules the next tick: duplicates never fork
//! the chain.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use worldfleet_domain::PartitionUid;
use worldfleet_domain::names::{
    IDEMPOTENCY_TABLE, PRODUCTION_TABLE, PRODUCTION_TICK_QUEUE, TIMERS_TABLE,
};
use worldfleet_kit::timer::register;
use worldfleet_kit::{
    BatchReport, Failure, IdempotencyConfig, IdempotencyError, IdempotencyStore, RecordError,
    StageContext, StageHandler, process_batch,
};
use worldfleet_ports::table::MAX_BATCH_WRITE;
use worldfleet_ports::{
    BatchWrite, Condition, Item, OutgoingMessage, Query, ReceivedMessage, SendOutcome,
};

use super::{PRODUCTION_CHAIN, PriceConfig, ProductionTimer};
use crate::error::{PriceError, Result};
use crate::production::{
    REGION_MARKER_SK, Region, WriteStep, planet_from_item, planet_item, production_tick,
    region_marker,
};

/// Most tick latencies kept for percentiles.
const LATENCY_SAMPLES: usize = 100_000;

/// What one production timer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionTick {
    /// Tick applied: planets written, items written in all.
    Applied {
        planets: usize,
        items_written: usize,
    },
    /// The tick was applied before; only the next tick was (re)scheduled if owed.
    AlreadyApplied,
    /// Not the region's next tick; dropped.
    Stale,
}

/// The production stage.
pub struct ProductionStage {
    context: StageContext,
    config: Arc<PriceConfig>,
    idempotency: IdempotencyStore,
    latencies_us: Arc<Mutex<Vec<u64>>>,
}

impl ProductionStage {
    /// The stage over `context`.
    pub fn new(context: StageContext, config: PriceConfig) -> Self {
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
            latencies_us: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Durations of applied ticks (read, decide, bulk write), microseconds, oldest first.
    pub fn tick_latencies_us(&self) -> Vec<u64> {
        self.latencies_us
            .lock()
            .map(|samples| samples.clone())
            .unwrap_or_default()
    }

    /// A shared handle on the latencies, for a runtime that hands the stage away.
    pub fn latency_handle(&self) -> Arc<Mutex<Vec<u64>>> {
        Arc::clone(&self.latencies_us)
    }

    /// Handles timer `(region, tick)`.
    pub async fn on_timer(
        &self,
        timer: &ProductionTimer,
        remaining: Duration,
    ) -> Result<RegionTick> {
        let started = Instant::now();
        let region = read_region(&self.context, &timer.region).await?;
        if timer.tick == region.tick && region.tick > 0 {
            self.schedule_next(&timer.region, timer.tick, remaining)
                .await?;
            return Ok(RegionTick::AlreadyApplied);
        }
        if timer.tick != region.tick + 1 {
            tracing::debug!(region = %timer.region, tick = timer.tick, applied = region.tick, "stale production timer dropped");
            return Ok(RegionTick::Stale);
        }
        let outcome = production_tick(
            &region,
            timer.tick,
            &self.config.rules,
            self.config.write_mode,
        )?;
        let now_ms = self.context.clock.now_ms();
        let mut completed = true;
        for step in outcome.plan.iter().cloned() {
            completed = execute(&self.context, step, now_ms).await?;
        }
        if completed
            && let Ok(mut samples) = self.latencies_us.lock()
            && samples.len() < LATENCY_SAMPLES
        {
            samples.push(started.elapsed().as_micros() as u64);
        }
        self.schedule_next(&timer.region, timer.tick, remaining)
            .await?;
        if !completed {
            // A concurrent delivery wrote the marker first (our puts carried the same bytes).
            return Ok(RegionTick::AlreadyApplied);
        }
        Ok(RegionTick::Applied {
            planets: outcome.updates.len(),
            items_written: outcome.items_written(),
        })
    }

    /// Sends timer `tick + 1`, once per `(region, tick)` however often this runs.
    async fn schedule_next(
        &self,
        region: &PartitionUid,
        tick: u64,
        remaining: Duration,
    ) -> Result<()> {
        let key = format!("production#{region}#{tick}");
        let next = ProductionTimer {
            region: region.clone(),
            tick: tick + 1,
        };
        let delay = Duration::from_millis(self.config.production_interval_ms);
        let result = self
            .idempotency
            .run(&key, key.as_bytes(), remaining, || async {
                send_production_timer(&self.context, &next, delay).await
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(IdempotencyError::Work(error)) => Err(error),
            Err(IdempotencyError::Store(error)) => Err(error.into()),
            Err(error) if error.is_retryable() => Err(PriceError::Busy(error.to_string())),
            Err(error) => Err(PriceError::corrupt(key, error)),
        }
    }
}

/// Reads a region: its planets and its marker's tick (0 when there is none).
pub async fn read_region(context: &StageContext, region: &PartitionUid) -> Result<Region> {
    let mut planets = Vec::new();
    let mut tick = 0;
    let mut start_after = None;
    loop {
        let page = context
            .table
            .query(
                PRODUCTION_TABLE,
                &Query::partition(region.as_str()).start_after(start_after),
            )
            .await?;
        for item in &page.items {
            if item.key.sk == REGION_MARKER_SK {
                tick = item.i64("tick").unwrap_or(0).max(0) as u64;
            } else if let Some(planet) = planet_from_item(item) {
                planets.push(planet);
            } else {
                return Err(PriceError::corrupt(
                    format!("planet {}", item.key),
                    "not a planet",
                ));
            }
        }
        match page.last_evaluated_sk {
            Some(sk) => start_after = Some(sk),
            None => break,
        }
    }
    Ok(Region {
        region: region.clone(),
        tick,
        planets,
    })
}

/// Executes one step of a write plan; false when a failed condition said another worker
/// already wrote this step's tick (the step is done either way).
async fn execute(context: &StageContext, step: WriteStep, now_ms: u64) -> Result<bool> {
    let table = context.table.as_ref();
    let outcome = match step {
        WriteStep::Batch(writes) => table.batch_write(PRODUCTION_TABLE, writes).await,
        WriteStep::Put { item, condition } => {
            let item = item.with("updated_at_ms", now_ms as i64);
            table.put(PRODUCTION_TABLE, item, Some(condition)).await
        }
        WriteStep::Transact(operations) => table.transact(operations).await,
    };
    match outcome {
        Ok(()) => Ok(true),
        Err(error) if error.is_condition_failed() => Ok(false),
        Err(error) => Err(error.into()),
    }
}

async fn send_production_timer(
    context: &StageContext,
    timer: &ProductionTimer,
    delay: Duration,
) -> Result<()> {
    let body = serde_json::to_string(timer).map_err(|error| PriceError::corrupt("timer", error))?;
    let outcomes = context
        .queue
        .send_batch(
            PRODUCTION_TICK_QUEUE,
            vec![OutgoingMessage::delayed(body, delay)],
        )
        .await?;
    match outcomes.first() {
        Some(SendOutcome::Sent { .. }) => Ok(()),
        other => Err(PriceError::Port(worldfleet_ports::Error::Unavailable(
            format!("production timer not sent: {other:?}"),
        ))),
    }
}

/// Sends timers for ticks `ticks` of `region` with no delay (the watchdog's re-arm).
pub async fn rearm_region(
    context: &StageContext,
    region: &PartitionUid,
    ticks: &[u64],
) -> Result<()> {
    for tick in ticks {
        let timer = ProductionTimer {
            region: region.clone(),
            tick: *tick,
        };
        send_production_timer(context, &timer, Duration::ZERO).await?;
    }
    Ok(())
}

/// Stores a new region at tick 0, registers its chain and arms tick 1. Returns false (and
/// changes nothing) when the region already exists, so seeding a world twice is harmless.
pub async fn seed_region(
    context: &StageContext,
    config: &PriceConfig,
    region: &Region,
) -> Result<bool> {
    region.validate(&config.rules)?;
    let now_ms = context.clock.now_ms();
    let marker_key = region_marker(&region.region, 0).key;
    if context
        .table
        .get(PRODUCTION_TABLE, &marker_key)
        .await?
        .is_some()
    {
        return Ok(false);
    }
    for chunk in region.planets.chunks(MAX_BATCH_WRITE) {
        let writes = chunk
            .iter()
            .map(|planet| BatchWrite::Put(planet_item(&region.region, planet)))
            .collect();
        context.table.batch_write(PRODUCTION_TABLE, writes).await?;
    }
    let marker: Item = region_marker(&region.region, 0).with("updated_at_ms", now_ms as i64);
    match context
        .table
        .put(PRODUCTION_TABLE, marker, Some(Condition::ItemNotExists))
        .await
    {
        Ok(()) => {}
        Err(error) if error.is_condition_failed() => return Ok(false),
        Err(error) => return Err(error.into()),
    }
    register(
        context.table.as_ref(),
        TIMERS_TABLE,
        PRODUCTION_CHAIN,
        region.region.as_str(),
        config.production_interval_ms,
    )
    .await?;
    let first = ProductionTimer {
        region: region.region.clone(),
        tick: 1,
    };
    send_production_timer(
        context,
        &first,
        Duration::from_millis(config.production_interval_ms),
    )
    .await?;
    Ok(true)
}

#[async_trait]
impl StageHandler for ProductionStage {
    fn name(&self) -> &'static str {
        "production"
    }

    fn source_queue(&self) -> &'static str {
        PRODUCTION_TICK_QUEUE
    }

    async fn handle_batch(&self, records: &[ReceivedMessage], remaining: Duration) -> BatchReport {
        process_batch(records, false, |record| async move {
            let timer: ProductionTimer = serde_json::from_str(&record.body).map_err(|error| {
                RecordError::permanent(format!("not a production timer: {error}"))
            })?;
            self.on_timer(&timer, remaining)
                .await
                .map(|_| ())
                .map_err(RecordError::classify)
        })
        .await
    }
}
