//! The market stage: trades routed from intake, applied exactly once per station.
//!
//! Per trade (records of one station in order, stations in parallel):
//!
//! 1. read the station's state and the trade's record in one batched read; a record means the
//!    trade was decided before — only the window timer it may have owed is re-sent;
//! 2. decide with the pure [`StationMarket::on_transaction`];
//! 3. write the next state (conditioned on the version read), the trade's record (once) and
//!    any recompute the trade flushed inline (once) in one table transaction; a lost race
//!    re-reads and decides again;
//! 4. if the trade opened a window, send its window-end timer, delayed to the window's end.
//!
//! A crash between 3 and 4 is repaired by the redelivery (step 1) or, failing that, by the
//! watchdog, which flushes any pending window long past due.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use worldfleet_domain::names::{MARKET_QUEUE, MARKET_TABLE, PRICE_WINDOW_QUEUE, TIMERS_TABLE};
use worldfleet_domain::{AcceptedEvent, EventPayload, PartitionUid, TradeSide};
use worldfleet_kit::timer::{delay_until, register};
use worldfleet_kit::{BatchReport, RecordError, StageContext, StageHandler, process_batch};
use worldfleet_ports::{Item, OutgoingMessage, ReceivedMessage, SendOutcome};

use super::records::{StoredMarket, market_key, recompute_put, transaction_key, transaction_put};
use super::{MARKET_CHAIN, PriceConfig, WindowTimer};
use crate::error::{PriceError, Result};
use crate::market::{Decision, STATION_UID_DEPTH, Side, StationMarket, Transaction, WINDOW_MS};

/// Attempts at a conditional write before the record is handed back for redelivery.
const WRITE_ATTEMPTS: usize = 5;

/// The market stage.
pub struct MarketStage {
    context: StageContext,
    config: Arc<PriceConfig>,
}

/// What happened to one trade.
#[derive(Debug, Clone, PartialEq)]
pub enum TradeOutcome {
    /// Decided now.
    Decided(Decision),
    /// Decided by an earlier delivery; nothing changed.
    AlreadyDecided,
}

impl MarketStage {
    /// The stage over `context`.
    pub fn new(context: StageContext, config: PriceConfig) -> Self {
        Self {
            context,
            config: Arc::new(config),
        }
    }

    /// Applies one trade event exactly once.
    pub async fn apply(&self, event: &AcceptedEvent) -> Result<TradeOutcome> {
        let EventPayload::Trade(trade) = &event.payload else {
            return Err(PriceError::corrupt(
                format!("event {}", event.event_id),
                "not a trade",
            ));
        };
        let station = &event.partition;
        if station.depth() != STATION_UID_DEPTH {
            return Err(PriceError::corrupt(
                format!("event {}", event.event_id),
                "a trade's partition is region/station",
            ));
        }
        let transaction = Transaction {
            id: event.event_id.clone(),
            side: match trade.side {
                TradeSide::Buy => Side::Buy,
                TradeSide::Sell => Side::Sell,
            },
            good: trade.good.clone(),
            quantity: i64::try_from(trade.quantity).unwrap_or(i64::MAX),
        };
        let table = self.context.table.as_ref();
        let state_key = market_key(station.as_str());
        let record_key = transaction_key(station.as_str(), &transaction.id);
        for _ in 0..WRITE_ATTEMPTS {
            let now_ms = self.context.clock.now_ms();
            let items = table
                .batch_get(MARKET_TABLE, &[state_key.clone(), record_key.clone()])
                .await?;
            let state = items.iter().find(|item| item.key == state_key);
            if let Some(record) = items.iter().find(|item| item.key == record_key) {
                self.resend_owed_timer(station, record, state).await?;
                return Ok(TradeOutcome::AlreadyDecided);
            }
            let mut stored = match state {
                Some(item) => StoredMarket::from_item(item)?,
                None => self.open(station).await?,
            };
            let decision =
                stored
                    .market
                    .on_transaction(&transaction, now_ms, &self.config.rules)?;
            let mut operations = vec![
                stored.put(now_ms)?,
                transaction_put(station, &transaction, &decision, now_ms),
            ];
            if let Some(flushed) = &decision.flushed {
                operations.push(recompute_put(station, flushed)?);
            }
            match table.transact(operations).await {
                Ok(()) => {}
                Err(error) if error.is_condition_failed() => {
                    tracing::debug!(station = %station, tx = %transaction.id, "lost a race for the station; deciding again");
                    continue;
                }
                Err(error) => return Err(error.into()),
            }
            if let Some(flush_at_ms) = decision.schedule_flush_at {
                let window_id = stored.market.pending.map_or(0, |pending| pending.window_id);
                self.send_timer(station, window_id, flush_at_ms).await?;
            }
            return Ok(TradeOutcome::Decided(decision));
        }
        Err(PriceError::Busy(format!(
            "station {station} kept changing under trade {}",
            transaction.id
        )))
    }

    /// A station's first trade: open its market and register it with the watchdog.
    async fn open(&self, station: &PartitionUid) -> Result<StoredMarket> {
        register(
            self.context.table.as_ref(),
            TIMERS_TABLE,
            MARKET_CHAIN,
            station.as_str(),
            WINDOW_MS,
        )
        .await?;
        Ok(StoredMarket {
            market: StationMarket::open(
                station.clone(),
                self.config.initial_supply,
                &self.config.rules,
            )?,
            version: 0,
            initial_supply: self.config.initial_supply,
        })
    }

    /// A trade decided before may have opened a window whose timer was never sent (a crash
    /// after the write): send it again while that window is still pending. A spare timer is
    /// harmless: the window stage ignores timers of flushed windows.
    async fn resend_owed_timer(
        &self,
        station: &PartitionUid,
        record: &Item,
        state: Option<&Item>,
    ) -> Result<()> {
        let (Some(flush_at_ms), Some(window_id)) =
            (record.i64("flush_at_ms"), record.i64("window_id"))
        else {
            return Ok(());
        };
        let still_pending = match state {
            Some(item) => StoredMarket::from_item(item)?
                .market
                .pending
                .is_some_and(|pending| pending.window_id == window_id as u64),
            None => false,
        };
        if still_pending {
            self.send_timer(station, window_id as u64, flush_at_ms as u64)
                .await?;
        }
        Ok(())
    }

    async fn send_timer(
        &self,
        station: &PartitionUid,
        window_id: u64,
        flush_at_ms: u64,
    ) -> Result<()> {
        send_window_timer(&self.context, station, window_id, flush_at_ms).await
    }
}

/// Sends the window-end timer of `(station, window_id)`, visible no earlier than `flush_at_ms`
/// (and at least one second from now: the window rule's floor).
pub async fn send_window_timer(
    context: &StageContext,
    station: &PartitionUid,
    window_id: u64,
    flush_at_ms: u64,
) -> Result<()> {
    let body = serde_json::to_string(&WindowTimer {
        station: station.clone(),
        window_id,
    })
    .map_err(|error| PriceError::corrupt("window timer", error))?;
    let delay = delay_until(
        context.clock.now_ms(),
        flush_at_ms,
        Duration::from_millis(WINDOW_MS),
    );
    let outcomes = context
        .queue
        .send_batch(
            PRICE_WINDOW_QUEUE,
            vec![OutgoingMessage::delayed(body, delay)],
        )
        .await?;
    match outcomes.first() {
        Some(SendOutcome::Sent { .. }) => Ok(()),
        Some(SendOutcome::Failed { reason, .. }) => Err(PriceError::Port(
            worldfleet_ports::Error::Unavailable(format!("window timer not sent: {reason}")),
        )),
        None => Err(PriceError::Port(worldfleet_ports::Error::Unavailable(
            "window timer not sent: no outcome".into(),
        ))),
    }
}

#[async_trait]
impl StageHandler for MarketStage {
    fn name(&self) -> &'static str {
        "market"
    }

    fn source_queue(&self) -> &'static str {
        MARKET_QUEUE
    }

    async fn handle_batch(&self, records: &[ReceivedMessage], _remaining: Duration) -> BatchReport {
        process_batch(records, true, |record| async move {
            let event: AcceptedEvent = serde_json::from_str(&record.body).map_err(|error| {
                RecordError::permanent(format!("not an accepted trade event: {error}"))
            })?;
            self.apply(&event)
                .await
                .map(|_| ())
                .map_err(RecordError::classify)
        })
        .await
    }
}
