//! Model budgets, shared by every compose process through the table store.
//!
//! Four budgets guard model spend; each raises an alert (a `warn` log event and the
//! `worldfleet_compose_budget_alerts_total` counter) when it crosses 75 % of its cap, and
//! sends the event to the template when it is spent:
//! - **zone QPS**: model calls per zone (district) per second;
//! - **zone tokens**: model tokens per zone per UTC day;
//! - **player monthly**: model cost per player per calendar month ($0.50 by default);
//! - **daily ceiling**: all model cost per UTC day, $50 per 1,000 active players. Reaching it
//!   trips a breaker: every process sends model tiers to templates for the rest of the day.
//!
//! Counters live in the canon table (the only table compose may write) under `budget#…`
//! partitions, which no partition UID can collide with (`#` is outside the UID charset). Every
//! counter moves by an atomic add that returns the new value, so exactly one process sees a
//! crossing and alerts once per period, fleet-wide. Checks read before the call and charges
//! land after it: concurrent calls may overshoot a cap by at most one call each.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use worldfleet_domain::names::CANON_TABLE;
use worldfleet_ports::{Clock, Condition, Item, Key, TTL_ATTRIBUTE, Table, Update};

use crate::metrics::ComposeMetrics;

const DAY_MS: u64 = 86_400_000;
const MICRO: f64 = 1_000_000.0;

/// The four budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetKind {
    ZoneQps = 0,
    ZoneTokens = 1,
    PlayerMonthly = 2,
    DailyCeiling = 3,
}

impl BudgetKind {
    /// Every budget, in counter order.
    pub const ALL: [BudgetKind; 4] = [
        Self::ZoneQps,
        Self::ZoneTokens,
        Self::PlayerMonthly,
        Self::DailyCeiling,
    ];

    /// The budget's name in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZoneQps => "zone_qps",
            Self::ZoneTokens => "zone_tokens",
            Self::PlayerMonthly => "player_monthly",
            Self::DailyCeiling => "daily_ceiling",
        }
    }
}

/// Caps and prices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Model calls per zone per second.
    pub zone_requests_per_second: u64,
    /// Model tokens (prompt + completion) per zone per UTC day.
    pub zone_tokens_per_day: u64,
    /// Model cost per player per calendar month, USD.
    pub player_monthly_usd: f64,
    /// Daily model cost ceiling per 1,000 active players, USD.
    pub daily_usd_per_thousand_players: f64,
    /// Fraction of a cap at which an alert is raised.
    pub alert_fraction: f64,
    /// Price of prompt tokens, USD per million.
    pub prompt_usd_per_million_tokens: f64,
    /// Price of completion tokens, USD per million.
    pub completion_usd_per_million_tokens: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            zone_requests_per_second: 20,
            zone_tokens_per_day: 2_000_000,
            player_monthly_usd: 0.50,
            daily_usd_per_thousand_players: 50.0,
            alert_fraction: 0.75,
            prompt_usd_per_million_tokens: 0.15,
            completion_usd_per_million_tokens: 0.60,
        }
    }
}

impl BudgetConfig {
    /// Cost of a call, in millionths of a dollar (at least 1 for a billed call with tokens).
    pub fn cost_micro_usd(&self, prompt_tokens: u64, completion_tokens: u64) -> i64 {
        let usd = prompt_tokens as f64 * self.prompt_usd_per_million_tokens / MICRO
            + completion_tokens as f64 * self.completion_usd_per_million_tokens / MICRO;
        let micro = (usd * MICRO).ceil() as i64;
        if prompt_tokens + completion_tokens > 0 {
            micro.max(1)
        } else {
            0
        }
    }

    /// The daily ceiling for `active_players`, in millionths of a dollar.
    pub fn daily_ceiling_micro_usd(&self, active_players: i64) -> i64 {
        (self.daily_usd_per_thousand_players * active_players.max(1) as f64 / 1000.0 * MICRO) as i64
    }
}

/// The answer to "may this event call a model?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied(BudgetKind),
}

/// The budgets of a compose process.
pub struct Budgets {
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    config: BudgetConfig,
    metrics: Arc<ComposeMetrics>,
    /// 1 + the UTC day on which the daily ceiling tripped here; 0 when it has not.
    tripped_day: AtomicU64,
    /// Players this process already counted as active, and the day they were counted on.
    counted: Mutex<(u64, HashSet<String>)>,
}

impl Budgets {
    /// Budgets over `table`, reporting to `metrics`.
    pub fn new(
        table: Arc<dyn Table>,
        clock: Arc<dyn Clock>,
        config: BudgetConfig,
        metrics: Arc<ComposeMetrics>,
    ) -> Self {
        Self {
            table,
            clock,
            config,
            metrics,
            tripped_day: AtomicU64::new(0),
            counted: Mutex::new((0, HashSet::new())),
        }
    }

    /// The caps and prices.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// Counts `player` as active today (once per player and day, fleet-wide): the daily
    /// ceiling grows with the players the world actually has.
    pub async fn count_active(&self, player: &str) -> worldfleet_ports::Result<()> {
        let day = self.day();
        {
            let mut counted = self
                .counted
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if counted.0 != day {
                *counted = (day, HashSet::new());
            }
            if counted.1.contains(player) {
                return Ok(());
            }
        }
        let marker = Item::new(Key::new(format!("budget#active#{day}"), player))
            .with(TTL_ATTRIBUTE, self.expiry_secs(2));
        match self
            .table
            .put(CANON_TABLE, marker, Some(Condition::ItemNotExists))
            .await
        {
            Ok(()) => {
                self.table
                    .update(
                        CANON_TABLE,
                        &day_key(day),
                        Update::new()
                            .add("active_players", 1)
                            .set(TTL_ATTRIBUTE, self.expiry_secs(40)),
                        None,
                    )
                    .await?;
            }
            Err(error) if error.is_condition_failed() => {}
            Err(error) => return Err(error),
        }
        let mut counted = self
            .counted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if counted.0 == day {
            counted.1.insert(player.to_owned());
        }
        Ok(())
    }

    /// Whether `player`'s event in `zone` may call a model expected to use `estimated_tokens`.
    /// An allowed call takes one of the zone's requests for this second.
    pub async fn admit(
        &self,
        zone: &str,
        player: &str,
        estimated_tokens: u64,
    ) -> worldfleet_ports::Result<Verdict> {
        let day = self.day();
        if self.tripped_day.load(Ordering::Relaxed) == day + 1 {
            return Ok(Verdict::Denied(BudgetKind::DailyCeiling));
        }
        let keys = [
            zone_tokens_key(zone, day),
            player_cost_key(player, &self.month()),
            day_key(day),
        ];
        let items = self.table.batch_get(CANON_TABLE, &keys).await?;
        let read = |key: &Key, attribute: &str| {
            items
                .iter()
                .find(|item| &item.key == key)
                .and_then(|item| item.i64(attribute))
                .unwrap_or(0)
        };
        let zone_tokens = read(&keys[0], "tokens");
        let player_cost = read(&keys[1], "micro_usd");
        let day_cost = read(&keys[2], "micro_usd");
        let active = read(&keys[2], "active_players");
        if day_cost >= self.config.daily_ceiling_micro_usd(active) {
            self.trip(day, day_cost, active);
            return Ok(Verdict::Denied(BudgetKind::DailyCeiling));
        }
        if player_cost as f64 >= self.config.player_monthly_usd * MICRO {
            return Ok(Verdict::Denied(BudgetKind::PlayerMonthly));
        }
        if zone_tokens as u64 + estimated_tokens > self.config.zone_tokens_per_day {
            return Ok(Verdict::Denied(BudgetKind::ZoneTokens));
        }
        let second = self.clock.now_secs();
        let requests = self
            .table
            .update(
                CANON_TABLE,
                &Key::new(format!("budget#zone#{zone}"), format!("qps#{second}")),
                Update::new()
                    .add("requests", 1)
                    .set(TTL_ATTRIBUTE, (second + 120) as i64),
                None,
            )
            .await?
            .i64("requests")
            .unwrap_or(1);
        let cap = self.config.zone_requests_per_second as i64;
        self.alert_on_crossing(BudgetKind::ZoneQps, zone, requests - 1, requests, cap);
        if requests > cap {
            return Ok(Verdict::Denied(BudgetKind::ZoneQps));
        }
        Ok(Verdict::Allowed)
    }

    /// Charges a finished call: its tokens to the zone, its cost to the player and the day.
    pub async fn charge(
        &self,
        zone: &str,
        player: &str,
        tokens: u64,
        micro_usd: i64,
    ) -> worldfleet_ports::Result<()> {
        let day = self.day();
        let zone_tokens = self
            .add(zone_tokens_key(zone, day), "tokens", tokens as i64, 40)
            .await?;
        self.alert_on_crossing(
            BudgetKind::ZoneTokens,
            zone,
            zone_tokens - tokens as i64,
            zone_tokens,
            self.config.zone_tokens_per_day as i64,
        );
        if micro_usd == 0 {
            return Ok(());
        }
        let player_cost = self
            .add(
                player_cost_key(player, &self.month()),
                "micro_usd",
                micro_usd,
                70,
            )
            .await?;
        self.alert_on_crossing(
            BudgetKind::PlayerMonthly,
            player,
            player_cost - micro_usd,
            player_cost,
            (self.config.player_monthly_usd * MICRO) as i64,
        );
        let day_item = self
            .table
            .update(
                CANON_TABLE,
                &day_key(day),
                Update::new()
                    .add("micro_usd", micro_usd)
                    .set(TTL_ATTRIBUTE, self.expiry_secs(40)),
                None,
            )
            .await?;
        let day_cost = day_item.i64("micro_usd").unwrap_or(micro_usd);
        let active = day_item.i64("active_players").unwrap_or(0);
        let ceiling = self.config.daily_ceiling_micro_usd(active);
        self.alert_on_crossing(
            BudgetKind::DailyCeiling,
            "world",
            day_cost - micro_usd,
            day_cost,
            ceiling,
        );
        if day_cost >= ceiling {
            self.trip(day, day_cost, active);
        }
        Ok(())
    }

    /// Whether the daily ceiling has tripped the breaker in this process today.
    pub fn is_tripped(&self) -> bool {
        self.tripped_day.load(Ordering::Relaxed) == self.day() + 1
    }

    fn trip(&self, day: u64, day_cost: i64, active_players: i64) {
        if self.tripped_day.swap(day + 1, Ordering::Relaxed) != day + 1 {
            self.metrics.breaker_trip();
            tracing::error!(
                budget = BudgetKind::DailyCeiling.as_str(),
                day,
                spent_usd = day_cost as f64 / MICRO,
                ceiling_usd = self.config.daily_ceiling_micro_usd(active_players) as f64 / MICRO,
                active_players,
                "daily model cost ceiling reached: breaker tripped, model tiers compose by template until the day ends"
            );
        }
    }

    fn alert_on_crossing(
        &self,
        kind: BudgetKind,
        subject: &str,
        before: i64,
        after: i64,
        cap: i64,
    ) {
        let threshold = (cap as f64 * self.config.alert_fraction).ceil() as i64;
        if cap > 0 && before < threshold && after >= threshold {
            self.metrics.budget_alert(kind);
            tracing::warn!(
                budget = kind.as_str(),
                subject,
                used = after,
                cap,
                percent = (after as f64 / cap as f64 * 100.0).round(),
                "budget alert: past 75 % of its cap"
            );
        }
    }

    async fn add(
        &self,
        key: Key,
        attribute: &str,
        delta: i64,
        keep_days: u64,
    ) -> worldfleet_ports::Result<i64> {
        let item = self
            .table
            .update(
                CANON_TABLE,
                &key,
                Update::new()
                    .add(attribute, delta)
                    .set(TTL_ATTRIBUTE, self.expiry_secs(keep_days)),
                None,
            )
            .await?;
        Ok(item.i64(attribute).unwrap_or(delta))
    }

    fn day(&self) -> u64 {
        self.clock.now_ms() / DAY_MS
    }

    fn month(&self) -> String {
        let (year, month) = year_month(self.day() as i64);
        format!("{year:04}-{month:02}")
    }

    fn expiry_secs(&self, days: u64) -> i64 {
        (self.clock.now_secs() + days * 86_400) as i64
    }
}

fn zone_tokens_key(zone: &str, day: u64) -> Key {
    Key::new(format!("budget#zone#{zone}"), format!("tokens#{day}"))
}

fn player_cost_key(player: &str, month: &str) -> Key {
    Key::new(format!("budget#player#{player}"), format!("cost#{month}"))
}

fn day_key(day: u64) -> Key {
    Key::new("budget#day", day.to_string())
}

/// The calendar year and month (1–12) of a day counted from 1970-01-01.
fn year_month(days_since_epoch: i64) -> (i64, u32) {
    // Shift to a calendar whose years start on 1 March, so the leap day ends a year.
    let shifted = days_since_epoch + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_months() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(30), (1970, 1));
        assert_eq!(year_month(31), (1970, 2));
        assert_eq!(year_month(59), (1970, 3));
        // 2024-02-29 is day 19_782; 2024-03-01 is 19_783.
        assert_eq!(year_month(19_782), (2024, 2));
        assert_eq!(year_month(19_783), (2024, 3));
        // 2026-11-21.
        assert_eq!(year_month(20_778), (2026, 11));
    }

    #[test]
    fn costs_and_ceilings() {
        let config = BudgetConfig::default();
        assert_eq!(config.cost_micro_usd(1_000_000, 0), 150_000);
        assert_eq!(config.cost_micro_usd(1, 1), 1);
        assert_eq!(config.cost_micro_usd(0, 0), 0);
        assert_eq!(config.daily_ceiling_micro_usd(1000), 50_000_000);
        assert_eq!(
            config.daily_ceiling_micro_usd(0),
            50_000,
            "at least one player"
        );
    }
}
