//! Per-station markets: transactions applied exactly once, and the recompute window as a pure
//! state machine.
//!
//! The window rule: a station recomputes its prices at most once per second, and every
//! transaction joins exactly one recompute.
//!
//! * The first applied transaction after a recompute opens a window and returns
//!   `schedule_flush_at = max(now, last_recompute_at) + 1000 ms`: the shell sends one delayed
//!   timer message for `(station, window_id)`. Later transactions join the open window and
//!   schedule nothing.
//! * [`StationMarket::on_window_end`] recomputes once the window is due, and is idempotent: a
//!   re-delivered timer for a window already recomputed does nothing, an early one says when
//!   to come back, and a timer for any window flushes whatever pending window is due (so a
//!   pending station is always flushed when its window ends, even if its own timer was lost
//!   and the watchdog fires another).
//! * A transaction that finds a pending window already due flushes it first (inline) and then
//!   opens the next one; the late timer then finds nothing to do.
//!
//! Since every recompute happens at a `now` at least 1000 ms after the previous recompute's
//! `now`, no station recomputes twice within a second of the clock it is given.
//!
//! Transaction ids decided (applied or refused) in the open window and in the window before it
//! are remembered, so a duplicate delivered within that span is refused as a duplicate;
//! older duplicates are the idempotency table's job in the shell.

mod formula;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use worldfleet_domain::PartitionUid;
use worldfleet_domain::uid::validate_identifier;

pub use formula::{FormulaInput, MAX_RATIO, next_price, target_price};

use crate::error::{PriceError, Result};
use crate::rules::MarketRules;

/// Window length and the least time between two recomputes of one station, milliseconds.
pub const WINDOW_MS: u64 = 1_000;
/// Largest stock, demand or quantity the market handles (units).
pub const MAX_STOCK: i64 = 1_000_000_000_000;
/// Largest quantity of one transaction.
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// Depth of a station UID: `region/station`.
pub const STATION_UID_DEPTH: usize = 2;

/// One good at one station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoodMarket {
    /// Units in stock.
    pub supply: i64,
    /// Demand pressure: buys add to it; it decays toward the good's baseline each recompute.
    pub demand: i64,
    /// Posted price, milli-credits: what every transaction in the window pays.
    pub price_milli: i64,
}

/// The window waiting for its recompute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingWindow {
    pub window_id: u64,
    /// When it may be recomputed, Unix milliseconds.
    pub flush_at_ms: u64,
    /// Transactions applied in it.
    pub transactions: u32,
}

/// A station's market: the state a shell stores under the station UID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationMarket {
    /// `region/station`.
    pub station: PartitionUid,
    pub goods: BTreeMap<String, GoodMarket>,
    /// The open window, if any transaction is waiting for a recompute.
    pub pending: Option<PendingWindow>,
    /// The last window recomputed (0: none yet). Window ids count up from 1.
    pub last_window_id: u64,
    /// When the last recompute ran, Unix milliseconds (0: never).
    pub last_recompute_at_ms: u64,
    /// Recomputes so far.
    pub recomputes: u64,
    /// Transaction ids decided since the last recompute.
    pub decided_current: BTreeSet<String>,
    /// Transaction ids decided in the window before.
    pub decided_previous: BTreeSet<String>,
}

/// Buy from or sell to the station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    Buy,
    Sell,
}

/// A player's trade (from intake).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    /// The intake event id: the idempotency key.
    pub id: String,
    pub side: Side,
    pub good: String,
    pub quantity: i64,
}

/// Why a transaction was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseReason {
    /// Malformed transaction id (not remembered: it could not be keyed).
    MalformedId,
    UnknownGood,
    /// Quantity outside `1..=MAX_QUANTITY`.
    InvalidQuantity,
    /// A buy larger than the stock.
    InsufficientStock,
    /// A sell that would push stock past [`MAX_STOCK`].
    StockFull,
}

impl RefuseReason {
    /// The stable code stored in transaction records (`refused:<code>`) and shown to players.
    pub fn code(self) -> &'static str {
        match self {
            Self::MalformedId => "malformed_id",
            Self::UnknownGood => "unknown_good",
            Self::InvalidQuantity => "invalid_quantity",
            Self::InsufficientStock => "insufficient_stock",
            Self::StockFull => "stock_full",
        }
    }
}

/// What happened to a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Applied at the posted price; it joins window `window_id`.
    Applied {
        window_id: u64,
        unit_price_milli: i64,
        total_milli: i64,
    },
    /// Already decided within the remembered span: nothing changed.
    Duplicate,
    /// Refused; nothing changed except that the id is remembered (unless malformed).
    Refused(RefuseReason),
}

impl Verdict {
    /// The stable code stored as a transaction record's `verdict`: `applied`, `duplicate` or
    /// `refused:<reason code>`. Readers (the world audit) count `applied` and `duplicate` and
    /// take everything else as refused.
    pub fn code(&self) -> Cow<'static, str> {
        match self {
            Self::Applied { .. } => Cow::Borrowed("applied"),
            Self::Duplicate => Cow::Borrowed("duplicate"),
            Self::Refused(reason) => Cow::Owned(format!("refused:{}", reason.code())),
        }
    }
}

/// The decision on one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// Set when this transaction opened a window: send the timer for
    /// `(station, window_id)` to fire at this time.
    pub schedule_flush_at: Option<u64>,
    /// A due window this call flushed before applying the transaction (the shell handles it
    /// like an `on_window_end` recompute).
    pub flushed: Option<RecomputeOutcome>,
}

/// One good's price change in a recompute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceChange {
    pub good: String,
    pub before_milli: i64,
    pub after_milli: i64,
    pub target_milli: i64,
    pub supply: i64,
    /// Demand the formula used (before decay).
    pub demand: i64,
}

/// A recompute that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecomputeOutcome {
    pub window_id: u64,
    /// Transactions the window held: all of them are reflected in these prices.
    pub transactions: u32,
    pub recomputed_at_ms: u64,
    pub changes: Vec<PriceChange>,
}

/// What a window-end timer did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowEnd {
    /// The pending window was recomputed.
    Recomputed(RecomputeOutcome),
    /// That window was recomputed already: a re-delivered timer; nothing to do.
    AlreadyFlushed { window_id: u64 },
    /// The pending window is not due yet: re-deliver the timer at `flush_at_ms`.
    NotDue { window_id: u64, flush_at_ms: u64 },
    /// No window is pending: nothing to do.
    NothingPending,
}

impl StationMarket {
    /// A station with every good of the rules at its base price, `supply` units in stock and
    /// the baseline demand.
    pub fn open(station: PartitionUid, supply: i64, rules: &MarketRules) -> Result<Self> {
        let market = Self {
            goods: rules
                .goods
                .iter()
                .map(|(key, good)| {
                    let state = GoodMarket {
                        supply,
                        demand: good.baseline_demand,
                        price_milli: good.base_milli,
                    };
                    (key.clone(), state)
                })
                .collect(),
            station,
            pending: None,
            last_window_id: 0,
            last_recompute_at_ms: 0,
            recomputes: 0,
            decided_current: BTreeSet::new(),
            decided_previous: BTreeSet::new(),
        };
        market.validate(rules)?;
        Ok(market)
    }

    /// Checks the stored state: a `region/station` UID, known goods with stock and demand in
    /// `0..=MAX_STOCK`, a pending window numbered after the last one.
    pub fn validate(&self, rules: &MarketRules) -> Result<()> {
        let invalid = |reason: String| {
            Err(PriceError::InvalidMarket {
                station: self.station.to_string(),
                reason,
            })
        };
        if self.station.depth() != STATION_UID_DEPTH {
            return invalid("a station UID is region/station".into());
        }
        for (key, good) in &self.goods {
            if !rules.goods.contains_key(key) {
                return invalid(format!("unknown good {key:?}"));
            }
            if !(0..=MAX_STOCK).contains(&good.supply) || !(0..=MAX_STOCK).contains(&good.demand) {
                return invalid(format!("{key}: supply and demand must be 0..=MAX_STOCK"));
            }
            if good.price_milli <= 0 {
                return invalid(format!("{key}: price must be positive"));
            }
        }
        let pending_out_of_sequence = self
            .pending
            .is_some_and(|pending| pending.window_id != self.last_window_id.saturating_add(1));
        if pending_out_of_sequence {
            return invalid("pending window must follow the last recomputed one".into());
        }
        Ok(())
    }

    /// The pending window's id if it is due at `now_ms` (what a watchdog flushes).
    pub fn due_window(&self, now_ms: u64) -> Option<u64> {
        self.pending
            .filter(|pending| now_ms >= pending.flush_at_ms)
            .map(|pending| pending.window_id)
    }

    /// Decides one transaction at `now_ms`. Never panics; refuses bad transactions in the
    /// verdict. Errors only when the stored state itself is invalid.
    pub fn on_transaction(
        &mut self,
        transaction: &Transaction,
        now_ms: u64,
        rules: &MarketRules,
    ) -> Result<Decision> {
        self.validate(rules)?;
        if validate_identifier("transaction id", &transaction.id).is_err() {
            return Ok(Decision {
                verdict: Verdict::Refused(RefuseReason::MalformedId),
                schedule_flush_at: None,
                flushed: None,
            });
        }
        if self.decided_current.contains(&transaction.id)
            || self.decided_previous.contains(&transaction.id)
        {
            return Ok(Decision {
                verdict: Verdict::Duplicate,
                schedule_flush_at: None,
                flushed: None,
            });
        }
        let flushed = self
            .due_window(now_ms)
            .map(|_| self.recompute(now_ms, rules));
        let refused = |reason| Decision {
            verdict: Verdict::Refused(reason),
            schedule_flush_at: None,
            flushed: None,
        };
        let decision = match self.check(transaction) {
            Err(reason) => refused(reason),
            Ok(()) => self.apply(transaction, now_ms),
        };
        self.decided_current.insert(transaction.id.clone());
        Ok(Decision {
            flushed,
            ..decision
        })
    }

    fn check(&self, transaction: &Transaction) -> std::result::Result<(), RefuseReason> {
        let good = self
            .goods
            .get(&transaction.good)
            .ok_or(RefuseReason::UnknownGood)?;
        if !(1..=MAX_QUANTITY).contains(&transaction.quantity) {
            return Err(RefuseReason::InvalidQuantity);
        }
        match transaction.side {
            Side::Buy if good.supply < transaction.quantity => Err(RefuseReason::InsufficientStock),
            Side::Sell if good.supply + transaction.quantity > MAX_STOCK => {
                Err(RefuseReason::StockFull)
            }
            _ => Ok(()),
        }
    }

    /// Applies a checked transaction and joins (or opens) the window.
    fn apply(&mut self, transaction: &Transaction, now_ms: u64) -> Decision {
        let Some(good) = self.goods.get_mut(&transaction.good) else {
            return Decision {
                verdict: Verdict::Refused(RefuseReason::UnknownGood),
                schedule_flush_at: None,
                flushed: None,
            };
        };
        match transaction.side {
            Side::Buy => {
                good.supply -= transaction.quantity;
                good.demand = (good.demand + transaction.quantity).min(MAX_STOCK);
            }
            Side::Sell => good.supply += transaction.quantity,
        }
        let unit_price_milli = good.price_milli;
        let total_milli = unit_price_milli.saturating_mul(transaction.quantity);
        let (window_id, schedule_flush_at) = match &mut self.pending {
            Some(pending) => {
                pending.transactions = pending.transactions.saturating_add(1);
                (pending.window_id, None)
            }
            None => {
                let window_id = self.last_window_id + 1;
                let flush_at_ms = now_ms.max(self.last_recompute_at_ms) + WINDOW_MS;
                self.pending = Some(PendingWindow {
                    window_id,
                    flush_at_ms,
                    transactions: 1,
                });
                (window_id, Some(flush_at_ms))
            }
        };
        Decision {
            verdict: Verdict::Applied {
                window_id,
                unit_price_milli,
                total_milli,
            },
            schedule_flush_at,
            flushed: None,
        }
    }

    /// Handles the timer of window `window_id` at `now_ms`. Idempotent: a second delivery of
    /// the same timer never recomputes twice.
    pub fn on_window_end(
        &mut self,
        window_id: u64,
        now_ms: u64,
        rules: &MarketRules,
    ) -> Result<WindowEnd> {
        self.validate(rules)?;
        let Some(pending) = self.pending else {
            return Ok(if window_id <= self.last_window_id {
                WindowEnd::AlreadyFlushed { window_id }
            } else {
                WindowEnd::NothingPending
            });
        };
        if now_ms < pending.flush_at_ms {
            return Ok(if window_id <= self.last_window_id {
                WindowEnd::AlreadyFlushed { window_id }
            } else {
                WindowEnd::NotDue {
                    window_id: pending.window_id,
                    flush_at_ms: pending.flush_at_ms,
                }
            });
        }
        // Any timer flushes a due window: a lost timer never strands a pending station.
        Ok(WindowEnd::Recomputed(self.recompute(now_ms, rules)))
    }

    /// Recomputes every good's price and closes the pending window.
    fn recompute(&mut self, now_ms: u64, rules: &MarketRules) -> RecomputeOutcome {
        let pending = self.pending.take().unwrap_or(PendingWindow {
            window_id: self.last_window_id + 1,
            flush_at_ms: now_ms,
            transactions: 0,
        });
        let mut changes = Vec::with_capacity(self.goods.len());
        for (key, good) in &mut self.goods {
            let Some(good_rules) = rules.goods.get(key) else {
                continue;
            };
            let (after, target) = next_price(&FormulaInput {
                supply: good.supply,
                demand: good.demand,
                price_milli: good.price_milli,
                base_milli: good_rules.base_milli,
                elasticity_permille: good_rules.elasticity_permille,
                max_step_permille: good_rules.max_step_permille,
                floor_milli: good_rules.floor_milli,
                ceiling_milli: good_rules.ceiling_milli,
            });
            changes.push(PriceChange {
                good: key.clone(),
                before_milli: good.price_milli,
                after_milli: after,
                target_milli: target,
                supply: good.supply,
                demand: good.demand,
            });
            good.price_milli = after;
            let gap = i128::from(good.demand) - i128::from(good_rules.baseline_demand);
            let decayed = gap * i128::from(1000 - good_rules.demand_decay_permille) / 1000;
            good.demand = (i128::from(good_rules.baseline_demand) + decayed) as i64;
        }
        self.last_window_id = pending.window_id;
        self.last_recompute_at_ms = self.last_recompute_at_ms.max(now_ms);
        self.recomputes += 1;
        self.decided_previous = std::mem::take(&mut self.decided_current);
        RecomputeOutcome {
            window_id: pending.window_id,
            transactions: pending.transactions,
            recomputed_at_ms: now_ms,
            changes,
        }
    }
}

#[cfg(test)]
mod tests;
