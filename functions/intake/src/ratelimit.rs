//! Per-player token buckets kept in the rate-limits table.
//!
//! The bucket is one item per player (`pk = player#ID`, `sk = bucket`) holding milli-tokens,
//! the time of the last refill and a version. Taking a token is a read and a conditional write
//! on the version, retried a few times under contention, so buckets are exact across any
//! number of concurrent workers.

use worldfleet_ports::{Condition, Item, Key, TTL_ATTRIBUTE, Table};

use crate::config::RateLimit;
use crate::error::{IntakeError, Result};

const MILLI: i64 = 1000;
const ATTEMPTS: usize = 6;

/// A bucket's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub milli_tokens: i64,
    pub refilled_at_ms: u64,
}

/// The pure rule: refill since `refilled_at_ms`, then take one token if there is one.
/// Returns the new state and whether the token was granted.
pub fn take(bucket: Option<Bucket>, limit: RateLimit, now_ms: u64) -> (Bucket, bool) {
    let capacity = i64::from(limit.burst) * MILLI;
    let current = bucket.unwrap_or(Bucket {
        milli_tokens: capacity,
        refilled_at_ms: now_ms,
    });
    let elapsed_ms = now_ms.saturating_sub(current.refilled_at_ms) as i64;
    let refilled = (current.milli_tokens + elapsed_ms * i64::from(limit.per_second)).min(capacity);
    let refilled_at_ms = now_ms.max(current.refilled_at_ms);
    if refilled >= MILLI {
        (
            Bucket {
                milli_tokens: refilled - MILLI,
                refilled_at_ms,
            },
            true,
        )
    } else {
        (
            Bucket {
                milli_tokens: refilled,
                refilled_at_ms,
            },
            false,
        )
    }
}

/// Takes one token from `player`'s bucket in `table_name`; true when granted.
pub async fn take_token(
    table: &dyn Table,
    table_name: &str,
    player: &str,
    limit: RateLimit,
    now_ms: u64,
) -> Result<bool> {
    let key = Key::new(format!("player#{player}"), "bucket");
    for _ in 0..ATTEMPTS {
        let current = table.get(table_name, &key).await?;
        let version = current.as_ref().and_then(|item| item.i64("version"));
        let bucket = current.as_ref().and_then(|item| {
            Some(Bucket {
                milli_tokens: item.i64("milli_tokens")?,
                refilled_at_ms: item.i64("refilled_at_ms")? as u64,
            })
        });
        let (next, granted) = take(bucket, limit, now_ms);
        if !granted {
            return Ok(false);
        }
        // An idle bucket is full again after burst/rate seconds; let it expire a bit later.
        let idle_secs = u64::from(limit.burst) / u64::from(limit.per_second.max(1)) + 60;
        let item = Item::new(key.clone())
            .with("milli_tokens", next.milli_tokens)
            .with("refilled_at_ms", next.refilled_at_ms as i64)
            .with("version", version.unwrap_or(0) + 1)
            .with(TTL_ATTRIBUTE, (now_ms / 1000 + idle_secs) as i64);
        let expected = match version {
            Some(version) => Condition::eq("version", version),
            None => Condition::ItemNotExists,
        };
        match table.put(table_name, item, Some(expected)).await {
            Ok(()) => return Ok(true),
            Err(error) if error.is_condition_failed() => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(IntakeError::Port(worldfleet_ports::Error::Throttled(
        format!("rate-limit bucket of {player} is contended; retry"),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_sustained_rate() {
        let limit = RateLimit {
            burst: 3,
            per_second: 2,
        };
        let mut bucket = None;
        let mut granted = 0;
        for _ in 0..5 {
            let (next, ok) = take(bucket, limit, 1_000);
            bucket = Some(next);
            granted += usize::from(ok);
        }
        assert_eq!(granted, 3, "burst of 3 at one instant");
        let (next, ok) = take(bucket, limit, 1_499);
        assert!(!ok, "0.998 tokens after 499 ms at 2/s");
        let (_, ok) = take(Some(next), limit, 1_500);
        assert!(ok, "a full token after 500 ms");
    }

    #[test]
    fn bucket_never_exceeds_its_burst() {
        let limit = RateLimit {
            burst: 2,
            per_second: 100,
        };
        let (bucket, _) = take(None, limit, 0);
        let (bucket, _) = take(Some(bucket), limit, 1_000_000);
        assert_eq!(bucket.milli_tokens, 1_000);
    }
}
