//! The window stage: window-end timers of station markets.
//!
//! A timer `(station, window_id)` runs the pure [`StationMarket::on_window_end`]: a due window
//! is recomputed and stored (state conditioned on its version, the recompute record once); an
//! early timer is sent again for the window's end; a timer of a window already flushed, or of
//! a station with nothing pending, does nothing. So a re-delivered or spare timer never
//! recomputes twice, and a pending station is always flushed.
//!
//! [`StationMarket::on_window_end`]: crate::market::StationMarket::on_window_end

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use worldfleet_domain::names::{MARKET_TABLE, PRICE_WINDOW_QUEUE};
use worldfleet_kit::{BatchReport, RecordError, StageContext, StageHandler, process_batch};
use worldfleet_ports::ReceivedMessage;

use super::records::{StoredMarket, market_key, recompute_put};
use super::trades::send_window_timer;
use super::{PriceConfig, WindowTimer};
use crate::error::{PriceError, Result};
use crate::market::WindowEnd;

const WRITE_ATTEMPTS: usize = 5;

/// The window stage.
pub struct WindowStage {
    context: StageContext,
    config: Arc<PriceConfig>,
}

impl WindowStage {
    /// The stage over `context`.
    pub fn new(context: StageContext, config: PriceConfig) -> Self {
        Self {
            context,
            config: Arc::new(config),
        }
    }

    /// Handles one window-end timer.
    pub async fn on_timer(&self, timer: &WindowTimer) -> Result<WindowEnd> {
        let key = market_key(timer.station.as_str());
        for _ in 0..WRITE_ATTEMPTS {
            let now_ms = self.context.clock.now_ms();
            let Some(item) = self.context.table.get(MARKET_TABLE, &key).await? else {
                tracing::warn!(station = %timer.station, "window timer for a station with no market; dropped");
                return Ok(WindowEnd::NothingPending);
            };
            let mut stored = StoredMarket::from_item(&item)?;
            let end = stored
                .market
                .on_window_end(timer.window_id, now_ms, &self.config.rules)?;
            match &end {
                WindowEnd::Recomputed(outcome) => {
                    let operations =
                        vec![stored.put(now_ms)?, recompute_put(&timer.station, outcome)?];
                    match self.context.table.transact(operations).await {
                        Ok(()) => return Ok(end),
                        Err(error) if error.is_condition_failed() => continue,
                        Err(error) => return Err(error.into()),
                    }
                }
                WindowEnd::NotDue {
                    window_id,
                    flush_at_ms,
                } => {
                    send_window_timer(&self.context, &timer.station, *window_id, *flush_at_ms)
                        .await?;
                    return Ok(end);
                }
                WindowEnd::AlreadyFlushed { .. } | WindowEnd::NothingPending => return Ok(end),
            }
        }
        Err(PriceError::Busy(format!(
            "station {} kept changing under its window timer",
            timer.station
        )))
    }
}

#[async_trait]
impl StageHandler for WindowStage {
    fn name(&self) -> &'static str {
        "price-window"
    }

    fn source_queue(&self) -> &'static str {
        PRICE_WINDOW_QUEUE
    }

    async fn handle_batch(&self, records: &[ReceivedMessage], _remaining: Duration) -> BatchReport {
        process_batch(records, false, |record| async move {
            let timer: WindowTimer = serde_json::from_str(&record.body)
                .map_err(|error| RecordError::permanent(format!("not a window timer: {error}")))?;
            self.on_timer(&timer)
                .await
                .map(|_| ())
                .map_err(RecordError::classify)
        })
        .await
    }
}
