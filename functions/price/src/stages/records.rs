//! How market state, transactions and recomputes are stored in the market table.
//!
//! Under `pk = station UID`:
//!
//! | sort key | what | written |
//! |---|---|---|
//! | `market` | the [`StationMarket`] as JSON, `version`, `updated_at_ms`, `initial_supply` | conditionally on `version` |
//! | `tx#EVENT_ID` | one per transaction decided: verdict, good, side, quantity, window | once (`ItemNotExists`) |
//! | `recompute#WINDOW` | one per recompute: transactions counted, price changes | once (`ItemNotExists`) |
//!
//! The transaction record is written in the same table transaction as the state that applied
//! it, so it is both the shell's exactly-once guard (older duplicates than the core remembers)
//! and the audit trail the independent audit counts.

use worldfleet_domain::PartitionUid;
use worldfleet_domain::names::MARKET_TABLE;
use worldfleet_ports::{Condition, Item, Key, TransactWrite};

use crate::error::{PriceError, Result};
use crate::market::{Decision, RecomputeOutcome, Side, StationMarket, Transaction, Verdict};

/// Sort key of a station's state.
pub const MARKET_SK: &str = "market";

/// The key of a station's state.
pub fn market_key(station: &str) -> Key {
    Key::new(station, MARKET_SK)
}

/// The key of a transaction's record.
pub fn transaction_key(station: &str, transaction_id: &str) -> Key {
    Key::new(station, format!("tx#{transaction_id}"))
}

/// The key of a window's recompute record.
pub fn recompute_key(station: &str, window_id: u64) -> Key {
    Key::new(station, format!("recompute#{window_id:020}"))
}

/// A station's state as read, with the version its next write is conditioned on.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMarket {
    pub market: StationMarket,
    /// 0: not stored yet.
    pub version: i64,
    pub initial_supply: i64,
}

impl StoredMarket {
    /// Decodes a `market` item.
    pub fn from_item(item: &Item) -> Result<Self> {
        let json = item
            .str("state")
            .ok_or_else(|| PriceError::corrupt(format!("market {}", item.key), "no state"))?;
        let market = serde_json::from_str(json)
            .map_err(|error| PriceError::corrupt(format!("market {}", item.key), error))?;
        Ok(Self {
            market,
            version: item.i64("version").unwrap_or(0),
            initial_supply: item.i64("initial_supply").unwrap_or(0),
        })
    }

    /// The put that stores this state as version `version + 1`, conditioned on the version
    /// read (or on no item, for a station's first write).
    pub fn put(&self, now_ms: u64) -> Result<TransactWrite> {
        let json = serde_json::to_string(&self.market)
            .map_err(|error| PriceError::corrupt("market state", error))?;
        let item = Item::new(market_key(self.market.station.as_str()))
            .with("state", json)
            .with("version", self.version + 1)
            .with("initial_supply", self.initial_supply)
            .with("updated_at_ms", now_ms as i64);
        let condition = if self.version == 0 {
            Condition::ItemNotExists
        } else {
            Condition::eq("version", self.version)
        };
        Ok(TransactWrite::Put {
            table: MARKET_TABLE.to_owned(),
            item,
            condition: Some(condition),
        })
    }
}

/// The wire name of a side.
pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// The once-only put of a transaction's record.
pub fn transaction_put(
    station: &PartitionUid,
    transaction: &Transaction,
    decision: &Decision,
    now_ms: u64,
) -> TransactWrite {
    let mut item = Item::new(transaction_key(station.as_str(), &transaction.id))
        .with("good", transaction.good.as_str())
        .with("side", side_name(transaction.side))
        .with("quantity", transaction.quantity)
        .with("decided_at_ms", now_ms as i64);
    item = item.with("verdict", decision.verdict.code().as_ref());
    if let Verdict::Applied {
        window_id,
        unit_price_milli,
        ..
    } = decision.verdict
    {
        item = item
            .with("window_id", window_id as i64)
            .with("unit_price_milli", unit_price_milli);
    }
    if let Some(flush_at_ms) = decision.schedule_flush_at {
        item = item.with("flush_at_ms", flush_at_ms as i64);
    }
    TransactWrite::Put {
        table: MARKET_TABLE.to_owned(),
        item,
        condition: Some(Condition::ItemNotExists),
    }
}

/// The once-only put of a recompute's record.
pub fn recompute_put(station: &PartitionUid, outcome: &RecomputeOutcome) -> Result<TransactWrite> {
    let changes = serde_json::to_string(&outcome.changes)
        .map_err(|error| PriceError::corrupt("price changes", error))?;
    let item = Item::new(recompute_key(station.as_str(), outcome.window_id))
        .with("window_id", outcome.window_id as i64)
        .with("transactions", i64::from(outcome.transactions))
        .with("recomputed_at_ms", outcome.recomputed_at_ms as i64)
        .with("changes", changes);
    Ok(TransactWrite::Put {
        table: MARKET_TABLE.to_owned(),
        item,
        condition: Some(Condition::ItemNotExists),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::RefuseReason;

    fn record(verdict: Verdict) -> Item {
        let transaction = Transaction {
            id: "tx-1".into(),
            side: Side::Buy,
            good: "ore".into(),
            quantity: 2,
        };
        let decision = Decision {
            verdict,
            schedule_flush_at: None,
            flushed: None,
        };
        let station = PartitionUid::parse("region-1/station-1").unwrap();
        match transaction_put(&station, &transaction, &decision, 9) {
            TransactWrite::Put {
                item,
                condition: Some(Condition::ItemNotExists),
                ..
            } => item,
            other => panic!("a transaction record is put once, got {other:?}"),
        }
    }

    #[test]
    fn records_store_the_verdict_code_and_an_applied_trade_s_window_and_price() {
        let applied = record(Verdict::Applied {
            window_id: 4,
            unit_price_milli: 1_250,
            total_milli: 2_500,
        });
        assert_eq!(applied.str("verdict"), Some("applied"));
        assert_eq!(applied.i64("window_id"), Some(4));
        assert_eq!(applied.i64("unit_price_milli"), Some(1_250));
        assert_eq!(applied.str("side"), Some("buy"));
        let refused = record(Verdict::Refused(RefuseReason::StockFull));
        assert_eq!(refused.str("verdict"), Some("refused:stock_full"));
        assert_eq!(refused.i64("window_id"), None);
        assert_eq!(record(Verdict::Duplicate).str("verdict"), Some("duplicate"));
    }
}
