//! Timer chains: periodic work carried by delayed standard-queue messages.
//!
//! A chain is one partition's sequence of ticks (an ecology cell, a station's price window, a
//! region's production). Each tick's message carries `(partition, tick)`; the handler applies
//! tick N with a conditional write on the partition's last tick, and only the invocation that
//! finishes tick N's side effects (under an idempotency record keyed by `(chain, partition,
//! N)`) sends tick N+1 — so a duplicate delivery never forks a chain. Chains are listed in a
//! registry that the watchdog reads once a minute to re-arm any chain whose last tick is older
//! than three intervals. Nothing depends on a timer firing exactly once.
//!
//! Standard queues take whole-second delays of at most 900 s (SQS `DelaySeconds`); FIFO
//! queues take none, so every timer queue is a standard queue.

use std::time::Duration;

use worldfleet_ports::queue::MAX_DELAY;
use worldfleet_ports::{Item, Key, SortKeyRange, Table, query_all};

/// A chain whose last tick is older than this many intervals is re-armed by the watchdog.
pub const WATCHDOG_INTERVALS: u64 = 3;

/// The delay that makes a message sent at `now_ms` visible no earlier than `due_ms`: whole
/// seconds, rounded up, at least `minimum`, at most 900 s.
pub fn delay_until(now_ms: u64, due_ms: u64, minimum: Duration) -> Duration {
    let seconds = due_ms.saturating_sub(now_ms).div_ceil(1000);
    Duration::from_secs(seconds).max(minimum).min(MAX_DELAY)
}

/// True when a chain that last ticked at `last_tick_at_ms` with `interval_ms` between ticks has
/// gone quiet for more than [`WATCHDOG_INTERVALS`] intervals at `now_ms`.
pub fn is_stale(last_tick_at_ms: u64, interval_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(last_tick_at_ms) > interval_ms.saturating_mul(WATCHDOG_INTERVALS)
}

/// The registry key of `partition` in `chain` (`pk = chain#KIND`, `sk = partition`).
pub fn registry_key(chain: &str, partition: &str) -> Key {
    Key::new(format!("chain#{chain}"), partition)
}

/// Registers `partition` in `chain` with its interval (idempotent: a plain put of the same
/// item).
pub async fn register(
    table: &dyn Table,
    table_name: &str,
    chain: &str,
    partition: &str,
    interval_ms: u64,
) -> worldfleet_ports::Result<()> {
    let item = Item::new(registry_key(chain, partition)).with("interval_ms", interval_ms as i64);
    table.put(table_name, item, None).await
}

/// Every registered partition of `chain` with its interval, in partition order.
pub async fn registered(
    table: &dyn Table,
    table_name: &str,
    chain: &str,
) -> worldfleet_ports::Result<Vec<(String, u64)>> {
    let items = query_all(
        table,
        table_name,
        &format!("chain#{chain}"),
        SortKeyRange::All,
    )
    .await?;
    Ok(items
        .into_iter()
        .map(|item| {
            let interval = item.i64("interval_ms").unwrap_or(0).max(0) as u64;
            (item.key.sk, interval)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_to_whole_seconds_within_limits() {
        assert_eq!(
            delay_until(1_000, 2_001, Duration::from_secs(1)),
            Duration::from_secs(2)
        );
        assert_eq!(
            delay_until(5_000, 1_000, Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(delay_until(0, u64::MAX, Duration::ZERO), MAX_DELAY);
    }

    #[test]
    fn a_chain_is_stale_after_three_intervals() {
        assert!(!is_stale(10_000, 5_000, 25_000));
        assert!(is_stale(10_000, 5_000, 25_001));
        assert!(!is_stale(10_000, 5_000, 0));
    }
}
