//! The world simulation in the embedded runtime: seeding, the stages, the watchdog, settling
//! and the independent world audit.
//!
//! The same stage handlers and watchdog functions run in AWS (the watchdog on an EventBridge
//! schedule); here the registry builds them over the run's ports ([`world_settings`] sets the
//! layout's tick interval) and [`run_watchdog`]
//! calls [`watchdog`] on a timer. [`audit`] trusts no stage counter: it reads the market,
//! ecology, canon and feed tables and checks them against what the world sent.

use std::collections::{BTreeMap, BTreeSet};

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::sync::watch;
use worldfleet_domain::names::{
    CANON_TABLE, ECOLOGY_INPUT_QUEUE, ECOLOGY_TABLE, FEEDS_TABLE, MARKET_QUEUE, MARKET_TABLE,
    PRODUCTION_TABLE,
};
use worldfleet_domain::{EventKind, FeedId, PartitionUid};
use worldfleet_ecology::shell::store::{StoredCell, state_key};
use worldfleet_ecology::sim::Founders;
use worldfleet_ecology::{EcologyConfig, EcologyTickStage, TickInterval, TickTimer, seed_cell};
use worldfleet_kit::{RecordError, StageContext};
use worldfleet_ports::{Item, Query, Queue, SortKeyRange, Table, query_all};
use worldfleet_price::market::PriceChange;
use worldfleet_price::production::{Planet, Region};
use worldfleet_price::stages::records::{StoredMarket, market_key};
use worldfleet_price::{PriceConfig, seed_region};
use worldfleet_prune::PruneConfig;
use worldfleet_stages::{StageSettings, WatchdogSpec};
use worldfleet_tables::plan::page_from_item;
use worldfleet_testbed::world::{Expectation, FOUNDING_SPECIES, TRADED_GOODS, WorldLayout};

/// The ecology and market configurations of `layout`.
pub fn configs(layout: &WorldLayout) -> anyhow::Result<(EcologyConfig, PriceConfig)> {
    let mut ecology = EcologyConfig::builtin().context("ecology rules")?;
    ecology.interval =
        TickInterval::from_millis(layout.ecology_interval_ms).context("ecology interval")?;
    let price = PriceConfig::builtin().context("market rules")?;
    Ok((ecology, price))
}

/// `settings` with the ecology tick interval of `layout` (the world's own clock), for the
/// registry to build the world's stages with.
pub fn world_settings(
    mut settings: StageSettings,
    layout: &WorldLayout,
) -> anyhow::Result<StageSettings> {
    let (ecology, _) = configs(layout)?;
    settings.ecology = ecology;
    Ok(settings)
}

/// The planets of region number `index`: kinds in rotation, levels 1–10, some stock.
fn planets(layout: &WorldLayout) -> Vec<Planet> {
    let kinds = ["mining", "agri", "forge", "refinery"];
    (0..layout.planets_per_region as usize)
        .map(|index| Planet {
            id: format!("planet-{index:04}"),
            kind: kinds[index % kinds.len()].to_owned(),
            level: 1 + (index % 10) as u32,
            stock: TRADED_GOODS
                .iter()
                .map(|good| ((*good).to_owned(), 200))
                .collect(),
            last_tick: 0,
        })
        .collect()
}

/// Founds every cell and region of `layout` and arms their chains (idempotent: a store that
/// already holds them is left as it is).
pub async fn seed(context: &StageContext, layout: &WorldLayout) -> anyhow::Result<()> {
    let (ecology, price) = configs(layout)?;
    let founders: Vec<Founders> = FOUNDING_SPECIES
        .iter()
        .map(|species| Founders {
            species: (*species).to_owned(),
            count: layout.founders_per_species,
        })
        .collect();
    for (index, cell) in layout.cells().into_iter().enumerate() {
        seed_cell(
            context,
            &ecology,
            cell.clone(),
            layout.population_cap,
            layout.neighbours(index),
            &founders,
        )
        .await
        .with_context(|| format!("seed cell {cell}"))?;
    }
    for region in layout.regions() {
        let state = Region {
            region: region.clone(),
            tick: 0,
            planets: planets(layout),
        };
        seed_region(context, &price, &state)
            .await
            .with_context(|| format!("seed region {region}"))?;
    }
    Ok(())
}

/// The watchdog: re-arms ecology chains, station windows and production chains that went
/// quiet; returns `(partitions checked, chains re-armed)`. One function for every mode
/// ([`worldfleet_watchdog::run`]): the embedded runtime and the fleet workers call it once a
/// minute, an EventBridge schedule does in AWS.
pub async fn watchdog(
    context: &StageContext,
    prune: &PruneConfig,
) -> anyhow::Result<(usize, usize)> {
    let pass = worldfleet_watchdog::run(context, prune).await?;
    Ok((pass.checked(), pass.rearmed()))
}

/// Calls [`watchdog`] every `spec.interval` until `shutdown` turns true, with prune's settings
/// as the registry read them (the same the prune stage runs with).
pub async fn run_watchdog(spec: WatchdogSpec, mut shutdown: watch::Receiver<bool>) {
    let WatchdogSpec {
        context,
        interval,
        prune,
    } = spec;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match watchdog(&context, &prune).await {
            Ok((checked, rearmed)) if rearmed > 0 => {
                tracing::warn!(checked, rearmed, "watchdog re-armed quiet chains");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "watchdog run failed; the next one retries"),
        }
    }
}

/// One station good's posted price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StationPrice {
    pub station: String,
    pub good: String,
    /// Milli-credits.
    pub price_milli: i64,
}

/// The world as it stands: creatures alive by species across every cell, and every station's
/// posted prices (what the dashboard charts over time).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorldSnapshot {
    pub population_by_species: BTreeMap<String, u64>,
    pub prices: Vec<StationPrice>,
}

/// Reads [`WorldSnapshot`] for `layout` (one read per cell and per station; cells and
/// stations not founded yet are left out).
pub async fn snapshot(table: &dyn Table, layout: &WorldLayout) -> anyhow::Result<WorldSnapshot> {
    let mut snapshot = WorldSnapshot::default();
    for cell in layout.cells() {
        if let Some(item) = table.get(ECOLOGY_TABLE, &state_key(cell.as_str())).await? {
            for creature in &StoredCell::from_item(&item)?.state.creatures {
                *snapshot
                    .population_by_species
                    .entry(creature.species.clone())
                    .or_default() += 1;
            }
        }
    }
    for station in layout.stations() {
        if let Some(item) = table
            .get(MARKET_TABLE, &market_key(station.as_str()))
            .await?
        {
            let stored = StoredMarket::from_item(&item)?;
            for (good, market) in &stored.market.goods {
                snapshot.prices.push(StationPrice {
                    station: station.as_str().to_owned(),
                    good: good.clone(),
                    price_milli: market.price_milli,
                });
            }
        }
    }
    Ok(snapshot)
}

/// True when the world has caught up: trades and ecology inputs all stored, no station
/// waiting for a recompute, every player request consumed by a tick, every cell past
/// `min_ecology_ticks` and every region past its first production tick.
pub async fn settled(
    queue: &dyn Queue,
    table: &dyn Table,
    layout: &WorldLayout,
) -> anyhow::Result<bool> {
    let waiting = unsettled(queue, table, layout).await?;
    if let Some(reason) = &waiting {
        tracing::debug!(reason, "world not settled yet");
    }
    Ok(waiting.is_none())
}

/// What the world is still waiting for, if anything.
async fn unsettled(
    queue: &dyn Queue,
    table: &dyn Table,
    layout: &WorldLayout,
) -> anyhow::Result<Option<String>> {
    for name in [MARKET_QUEUE, ECOLOGY_INPUT_QUEUE] {
        if queue.depth(name).await?.total() > 0 {
            return Ok(Some(format!("{name} not empty")));
        }
    }
    for station in layout.stations() {
        if let Some(item) = table
            .get(MARKET_TABLE, &market_key(station.as_str()))
            .await?
            && StoredMarket::from_item(&item)?.market.pending.is_some()
        {
            return Ok(Some(format!("{station} has a pending window")));
        }
    }
    for cell in layout.cells() {
        let Some(item) = table.get(ECOLOGY_TABLE, &state_key(cell.as_str())).await? else {
            return Ok(Some(format!("{cell} not seeded")));
        };
        let tick = item.i64("tick").unwrap_or(0);
        if tick < layout.min_ecology_ticks as i64 {
            return Ok(Some(format!("{cell} at tick {tick}")));
        }
        // Migrants are always on their way somewhere in a living world; players' requests
        // must all have been consumed.
        for prefix in ["pending#c#", "pending#b#"] {
            let pending = table
                .query(
                    ECOLOGY_TABLE,
                    &Query::partition(cell.as_str())
                        .range(SortKeyRange::Prefix(prefix.into()))
                        .limit(1),
                )
                .await?;
            if !pending.items.is_empty() {
                return Ok(Some(format!("{cell} has pending player requests")));
            }
        }
    }
    for region in layout.regions() {
        let marker = table
            .get(
                PRODUCTION_TABLE,
                &worldfleet_ports::Key::new(region.as_str(), "region"),
            )
            .await?;
        let tick = marker.and_then(|item| item.i64("tick")).unwrap_or(0);
        if tick < 1 {
            return Ok(Some(format!("{region} at production tick {tick}")));
        }
    }
    Ok(None)
}

/// How long [`finish_outboxes`] keeps trying a cell's outbox: longer than an idempotency lease
/// can block (`IdempotencyConfig::max_in_progress`, 60 s).
const OUTBOX_RETRY_FOR: Duration = Duration::from_secs(75);

/// Once the timer stages are stopped: completes the outbox of every cell's last tick (a
/// no-op where it was completed), so no news or emigrant of an applied tick is left unsent.
///
/// An attempt that stopped while holding an outbox's idempotency record (a crash, an injected
/// fault) blocks it until its lease ends; a retryable failure of a cell (its read, or its
/// outbox) is tried again every 250 ms for up to [`OUTBOX_RETRY_FOR`] before the run gives up
/// on that cell.
pub async fn finish_outboxes(context: &StageContext, layout: &WorldLayout) -> anyhow::Result<()> {
    let (ecology, _) = configs(layout)?;
    let stage = EcologyTickStage::new(context.clone(), ecology);
    for cell in layout.cells() {
        let give_up_at = tokio::time::Instant::now() + OUTBOX_RETRY_FOR;
        loop {
            match finish_outbox(context, &stage, &cell).await {
                Ok(()) => break,
                Err(error) if error.retryable && tokio::time::Instant::now() < give_up_at => {
                    tracing::info!(%cell, %error, "outbox not completed yet; trying again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(error) => return Err(anyhow::anyhow!(error.reason)),
            }
        }
    }
    Ok(())
}

/// Completes the outbox of `cell`'s last tick, if the cell exists; a failure says which and
/// whether it is worth another try.
async fn finish_outbox(
    context: &StageContext,
    stage: &EcologyTickStage,
    cell: &PartitionUid,
) -> Result<(), RecordError> {
    let Some(item) = context
        .table
        .get(ECOLOGY_TABLE, &state_key(cell.as_str()))
        .await
        .map_err(|error| {
            let mut failure = RecordError::classify(error);
            failure.reason = format!("read the state of {cell}: {}", failure.reason);
            failure
        })?
    else {
        return Ok(());
    };
    let tick = item.i64("tick").unwrap_or(0).max(0) as u64;
    let timer = TickTimer {
        cell: cell.clone(),
        tick,
    };
    stage
        .on_timer(&timer, Duration::from_secs(30))
        .await
        .map_err(|error| {
            let mut failure = RecordError::classify(error);
            failure.reason = format!(
                "complete the outbox of {cell} tick {tick}: {}",
                failure.reason
            );
            failure
        })?;
    Ok(())
}

/// One good's price at one station: at the first recompute and after the last.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceMove {
    pub station: String,
    pub good: String,
    pub from_milli: i64,
    pub to_milli: i64,
}

/// The world audit's findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorldReport {
    pub trades_sent: u64,
    /// Trades with exactly one transaction record.
    pub trades_recorded: u64,
    pub trades_applied: u64,
    pub trades_refused: u64,
    /// Recomputes found, all stations.
    pub recomputes: u64,
    /// Applied trades whose window's recompute counts a different number of trades (or has no
    /// recompute): a trade counted twice or not at all.
    pub miscounted_windows: u64,
    /// Station goods whose stock is not `initial + sold − bought` over the applied records.
    pub stock_mismatches: u64,
    pub price_moves: Vec<PriceMove>,
    pub captures_sent: u64,
    pub breeds_sent: u64,
    /// Captures and breed requests consumed by a tick (seen marker found).
    pub requests_applied: u64,
    pub requests_refused: u64,
    pub cells: u64,
    pub ecology_ticks: u64,
    pub population: u64,
    pub population_by_species: BTreeMap<String, u64>,
    /// Lineage roots with living descendants.
    pub lineages: u64,
    pub lineages_founded: u64,
    pub births: u64,
    pub deaths: u64,
    pub emigrated: u64,
    pub arrived: u64,
    /// Migrants stored at their destination, waiting for its next tick.
    pub migrants_waiting: u64,
    /// Migrants a cell refused and handed back (kept, not destroyed).
    pub migrants_returned: u64,
    /// Cells whose creatures differ from what their running head counts say.
    pub unbalanced_cells: u64,
    pub news_events: u64,
    pub news_published: u64,
    /// Production ticks applied, every region together (from the regions' markers).
    pub production_ticks: u64,
    /// Production tick latencies, from the ticks this process timed (a tick applied by an
    /// invocation that then crashed is applied but not timed).
    pub production_tick_p50_ms: f64,
    pub production_tick_p99_ms: f64,
    /// World events missing (no record), news not published, creatures unaccounted for.
    pub lost: u64,
    /// World events or news applied twice, creatures in two places.
    pub duplicates: u64,
    pub problems: Vec<String>,
}

impl WorldReport {
    fn note(&mut self, problem: String) {
        if self.problems.len() < 20 {
            self.problems.push(problem);
        }
    }
}

fn percentile_ms(samples: &mut [u64], quantile: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let index = ((samples.len() as f64 * quantile).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[index] as f64 / 1000.0
}

/// Reads the world's tables and checks them against what the world sent.
pub async fn audit(
    table: &dyn Table,
    layout: &WorldLayout,
    expectations: &[Expectation],
    production_latencies_us: &[u64],
) -> anyhow::Result<WorldReport> {
    let mut report = WorldReport::default();
    let mut trades: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut requests: Vec<(EventKind, String, String)> = Vec::new();
    for expectation in expectations {
        if let Expectation::World {
            kind,
            partition,
            event_id,
        } = expectation
        {
            match kind {
                EventKind::Trade => {
                    report.trades_sent += 1;
                    trades
                        .entry(partition.clone())
                        .or_default()
                        .push(event_id.clone());
                }
                EventKind::Capture => report.captures_sent += 1,
                EventKind::Breed => report.breeds_sent += 1,
                _ => {}
            }
            if matches!(kind, EventKind::Capture | EventKind::Breed) {
                requests.push((*kind, partition.clone(), event_id.clone()));
            }
        }
    }
    audit_market(table, layout, &trades, &mut report).await?;
    audit_ecology(table, layout, &requests, &mut report).await?;
    for region in layout.regions() {
        let marker = table
            .get(
                PRODUCTION_TABLE,
                &worldfleet_ports::Key::new(region.as_str(), "region"),
            )
            .await?;
        report.production_ticks +=
            marker.and_then(|item| item.i64("tick")).unwrap_or(0).max(0) as u64;
    }
    let mut latencies = production_latencies_us.to_vec();
    report.production_tick_p50_ms = percentile_ms(&mut latencies, 0.50);
    report.production_tick_p99_ms = percentile_ms(&mut latencies, 0.99);
    Ok(report)
}

async fn audit_market(
    table: &dyn Table,
    layout: &WorldLayout,
    trades: &BTreeMap<String, Vec<String>>,
    report: &mut WorldReport,
) -> anyhow::Result<()> {
    for station in layout.stations() {
        let pk = station.as_str();
        let records: BTreeMap<String, Item> =
            query_all(table, MARKET_TABLE, pk, SortKeyRange::Prefix("tx#".into()))
                .await?
                .into_iter()
                .map(|item| (item.key.sk.trim_start_matches("tx#").to_owned(), item))
                .collect();
        for event_id in trades.get(pk).into_iter().flatten() {
            if records.contains_key(event_id) {
                report.trades_recorded += 1;
            } else {
                report.lost += 1;
                report.note(format!(
                    "trade {event_id} at {pk} has no transaction record"
                ));
            }
        }
        let recomputes = query_all(
            table,
            MARKET_TABLE,
            pk,
            SortKeyRange::Prefix("recompute#".into()),
        )
        .await?;
        report.recomputes += recomputes.len() as u64;
        let counted: BTreeMap<i64, i64> = recomputes
            .iter()
            .filter_map(|item| Some((item.i64("window_id")?, item.i64("transactions")?)))
            .collect();
        let mut applied_per_window: BTreeMap<i64, i64> = BTreeMap::new();
        let mut stock_delta: BTreeMap<String, i64> = BTreeMap::new();
        for record in records.values() {
            match record.str("verdict") {
                Some("applied") => {
                    report.trades_applied += 1;
                    if let Some(window) = record.i64("window_id") {
                        *applied_per_window.entry(window).or_default() += 1;
                    }
                    let quantity = record.i64("quantity").unwrap_or(0);
                    let good = record.str("good").unwrap_or_default().to_owned();
                    let signed = match record.str("side") {
                        Some("buy") => -quantity,
                        _ => quantity,
                    };
                    *stock_delta.entry(good).or_default() += signed;
                }
                Some("duplicate") => {
                    report.duplicates += 1;
                    report.note(format!("{pk} recorded {} as a duplicate", record.key.sk));
                }
                _ => report.trades_refused += 1,
            }
        }
        for (window, applied) in &applied_per_window {
            let found = counted.get(window).copied().unwrap_or(0);
            if found != *applied {
                report.miscounted_windows += 1;
                if found > *applied {
                    report.duplicates += (found - applied) as u64;
                } else {
                    report.lost += (applied - found) as u64;
                }
                report.note(format!(
                    "{pk} window {window}: {applied} trades applied, recompute counted {found}"
                ));
            }
        }
        if let Some(item) = table.get(MARKET_TABLE, &market_key(pk)).await? {
            let stored = StoredMarket::from_item(&item)?;
            for (good, market) in &stored.market.goods {
                let expected = stored.initial_supply + stock_delta.get(good).copied().unwrap_or(0);
                if market.supply != expected {
                    report.stock_mismatches += 1;
                    report.note(format!(
                        "{pk} {good}: stock {} but the records say {expected}",
                        market.supply
                    ));
                }
            }
        }
        let mut first: BTreeMap<String, i64> = BTreeMap::new();
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        for item in &recomputes {
            let changes: Vec<PriceChange> =
                serde_json::from_str(item.str("changes").unwrap_or("[]"))?;
            for change in changes {
                first
                    .entry(change.good.clone())
                    .or_insert(change.before_milli);
                last.insert(change.good, change.after_milli);
            }
        }
        for (good, from_milli) in first {
            let to_milli = last.get(&good).copied().unwrap_or(from_milli);
            report.price_moves.push(PriceMove {
                station: pk.to_owned(),
                good,
                from_milli,
                to_milli,
            });
        }
    }
    Ok(())
}

async fn audit_ecology(
    table: &dyn Table,
    layout: &WorldLayout,
    requests: &[(EventKind, String, String)],
    report: &mut WorldReport,
) -> anyhow::Result<()> {
    let mut creatures: BTreeMap<String, u32> = BTreeMap::new();
    let mut roots = BTreeSet::new();
    let mut news_canon: BTreeMap<String, PartitionUid> = BTreeMap::new();
    for cell in layout.cells() {
        let pk = cell.as_str();
        let Some(item) = table.get(ECOLOGY_TABLE, &state_key(pk)).await? else {
            report.lost += 1;
            report.note(format!("cell {pk} has no state"));
            continue;
        };
        let stored = StoredCell::from_item(&item)?;
        report.cells += 1;
        report.ecology_ticks += stored.state.tick;
        report.population += stored.state.creatures.len() as u64;
        for creature in &stored.state.creatures {
            *report
                .population_by_species
                .entry(creature.species.clone())
                .or_default() += 1;
            *creatures.entry(creature.id.to_string()).or_default() += 1;
            roots.insert(creature.lineage.root.to_string());
        }
        let totals = stored.totals;
        if totals.expected_population() != stored.state.creatures.len() as i64 {
            report.unbalanced_cells += 1;
            report.note(format!(
                "cell {pk}: {} creatures, head counts say {}",
                stored.state.creatures.len(),
                totals.expected_population()
            ));
        }
        report.lineages_founded += totals.lineages_founded;
        report.births += totals.born;
        report.deaths += totals.died + totals.culled;
        report.emigrated += totals.emigrated;
        report.arrived += totals.arrived;
        report.migrants_returned += totals.returned;
        let waiting = query_all(
            table,
            ECOLOGY_TABLE,
            pk,
            SortKeyRange::Prefix("pending#a#".into()),
        )
        .await?;
        report.migrants_waiting += waiting.len() as u64;
        for item in &waiting {
            if let Some(json) = item.str("input")
                && let Ok(worldfleet_ecology::shell::store::PendingInput::Arrival(migrant)) =
                    serde_json::from_str(json)
            {
                *creatures
                    .entry(migrant.creature.id.to_string())
                    .or_default() += 1;
            }
        }
        for item in query_all(table, CANON_TABLE, pk, SortKeyRange::All).await? {
            news_canon.insert(item.key.sk.clone(), cell.prefix(2));
        }
    }
    report.lineages = roots.len() as u64;
    let doubled = creatures.values().filter(|count| **count > 1).count() as u64;
    if doubled > 0 {
        report.duplicates += doubled;
        report.note(format!("{doubled} creatures are in two places"));
    }
    if report.emigrated != report.arrived + report.migrants_returned + report.migrants_waiting {
        let missing = report
            .emigrated
            .abs_diff(report.arrived + report.migrants_returned + report.migrants_waiting);
        report.lost += missing;
        report.note(format!(
            "{} emigrated but {} arrived, {} were returned and {} wait",
            report.emigrated, report.arrived, report.migrants_returned, report.migrants_waiting
        ));
    }
    if report.unbalanced_cells > 0 {
        report.lost += report.unbalanced_cells;
    }
    for (kind, cell, event_id) in requests {
        let prefix = if *kind == EventKind::Capture {
            "c"
        } else {
            "b"
        };
        let seen = table
            .get(
                ECOLOGY_TABLE,
                &worldfleet_ports::Key::new(cell.as_str(), format!("seen#{prefix}#{event_id}")),
            )
            .await?;
        match seen.as_ref().and_then(|item| item.str("outcome")) {
            Some("applied") => report.requests_applied += 1,
            Some(_) => report.requests_refused += 1,
            None => {
                report.lost += 1;
                report.note(format!(
                    "{} {event_id} in {cell} was never consumed",
                    kind.as_str()
                ));
            }
        }
    }
    // News: every news canon entry exactly once in its zone's district feed.
    report.news_events = news_canon.len() as u64;
    let zones: BTreeSet<PartitionUid> = news_canon.values().cloned().collect();
    let mut published: BTreeMap<String, u64> = BTreeMap::new();
    for zone in zones {
        let feed = FeedId::District(zone).to_string();
        for item in query_all(
            table,
            FEEDS_TABLE,
            &feed,
            SortKeyRange::Prefix("page#".into()),
        )
        .await?
        {
            for entry in page_from_item(&item)?.entries {
                *published.entry(entry.event_id).or_default() += 1;
            }
        }
    }
    for event_id in news_canon.keys() {
        match published.get(event_id).copied().unwrap_or(0) {
            0 => {
                report.lost += 1;
                report.note(format!("news {event_id} is in no feed"));
            }
            1 => report.news_published += 1,
            count => {
                report.news_published += 1;
                report.duplicates += count - 1;
                report.note(format!("news {event_id} published {count} times"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use worldfleet_domain::names::IDEMPOTENCY_TABLE;
    use worldfleet_embedded::testing::TempStore;
    use worldfleet_kit::IdempotencyStore;
    use worldfleet_ports::{Clock, Key, SystemClock, TTL_ATTRIBUTE};

    use super::*;
    use crate::resources::{QueueSettings, declare};

    #[tokio::test]
    async fn finishing_waits_out_an_outbox_an_unfinished_attempt_still_holds() {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = TempStore::open(Arc::clone(&clock));
        declare(
            store.queue().as_ref(),
            store.table().as_ref(),
            QueueSettings::default(),
        )
        .await
        .unwrap();
        let context = StageContext::new(store.queue(), store.table(), Arc::clone(&clock));
        let layout = WorldLayout {
            zones: 1,
            cells_per_zone: 1,
            ..WorldLayout::default()
        };
        let (ecology, _) = configs(&layout).unwrap();
        let cell = layout.cells().remove(0);
        let founders: Vec<Founders> = FOUNDING_SPECIES
            .iter()
            .map(|species| Founders {
                species: (*species).to_owned(),
                count: 20,
            })
            .collect();
        seed_cell(&context, &ecology, cell.clone(), 200, Vec::new(), &founders)
            .await
            .unwrap();
        EcologyTickStage::new(context.clone(), ecology)
            .on_timer(
                &TickTimer {
                    cell: cell.clone(),
                    tick: 1,
                },
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        // Tick 1's outbox as an attempt that stopped mid-way leaves it: claimed, not completed,
        // its lease ending in 700 ms.
        let key = format!("ecology#{cell}#1");
        let now_ms = clock.now_ms();
        let held = Item::new(Key::new(key.as_str(), "idempotency"))
            .with("status", "IN_PROGRESS")
            .with("claim", "an-attempt-that-stopped")
            .with(
                "payload_hash",
                IdempotencyStore::hash_payload(key.as_bytes()),
            )
            .with("in_progress_expiry_ms", (now_ms + 700) as i64)
            .with(TTL_ATTRIBUTE, (now_ms / 1000 + 3600) as i64);
        context
            .table
            .put(IDEMPOTENCY_TABLE, held, None)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        finish_outboxes(&context, &layout).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "completed only once the lease ended: {:?}",
            started.elapsed()
        );
        let record = context
            .table
            .get(IDEMPOTENCY_TABLE, &Key::new(key.as_str(), "idempotency"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.str("status"), Some("COMPLETED"));
    }
}
