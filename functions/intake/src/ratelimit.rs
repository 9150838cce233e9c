//! Per-player token buckets kept in the rate-limits table.
//!
//! The bucket is one item per player (`pk = player#ID`, `sk = bucket`) holding milli-tokens,
//! the time of the last refill and a version. intake takes all the tokens a batch needs from a
//! player's bucket at once ([`take_tokens`]): a read and a write conditional on the version, so
//! buckets are exact across any number of concurrent workers. A write that loses to another
//! worker's is retried after a jittered pause that grows with each round, so workers that
//! collided once do not collide again in lockstep.

use std::hash::BuildHasher;
use std::time::Duration;

use worldfleet_ports::{Condition, Item, Key, TTL_ATTRIBUTE, Table};

use crate::config::RateLimit;
use crate::error::{IntakeError, Result};

const MILLI: i64 = 1000;
/// Rounds of read + conditional write before the take is given up as contended.
const ATTEMPTS: u32 = 8;
/// The longest pause between two rounds; the first is at most 4 ms, each later one doubles.
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// A bucket's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub milli_tokens: i64,
    pub refilled_at_ms: u64,
}

/// The pure rule: refill since `refilled_at_ms`, then take one token if there is one.
/// Returns the new state and whether the token was granted.
pub fn take(bucket: Option<Bucket>, limit: RateLimit, now_ms: u64) -> (Bucket, bool) {
    let (next, granted) = take_up_to(bucket, limit, now_ms, 1);
    (next, granted == 1)
}

/// The pure rule for several tokens: refill since `refilled_at_ms`, then take as many of
/// `wanted` as there are whole tokens. Returns the new state and how many were granted.
pub fn take_up_to(
    bucket: Option<Bucket>,
    limit: RateLimit,
    now_ms: u64,
    wanted: u32,
) -> (Bucket, u32) {
    let capacity = i64::from(limit.burst) * MILLI;
    let current = bucket.unwrap_or(Bucket {
        milli_tokens: capacity,
        refilled_at_ms: now_ms,
    });
    let elapsed_ms = now_ms.saturating_sub(current.refilled_at_ms) as i64;
    let refilled = (current.milli_tokens + elapsed_ms * i64::from(limit.per_second)).min(capacity);
    let refilled_at_ms = now_ms.max(current.refilled_at_ms);
    let granted = (refilled / MILLI).clamp(0, i64::from(wanted));
    (
        Bucket {
            milli_tokens: refilled - granted * MILLI,
            refilled_at_ms,
        },
        granted as u32,
    )
}

/// Takes up to `wanted` tokens from `player`'s bucket in `table_name` in one conditional write;
/// returns how many were granted (0 writes nothing). Fails with `Throttled` only when the
/// bucket stayed contended through every round.
pub async fn take_tokens(
    table: &dyn Table,
    table_name: &str,
    player: &str,
    limit: RateLimit,
    now_ms: u64,
    wanted: u32,
) -> Result<u32> {
    if wanted == 0 {
        return Ok(0);
    }
    let key = Key::new(format!("player#{player}"), "bucket");
    for round in 0..ATTEMPTS {
        if round > 0 {
            tokio::time::sleep(pause_before(round)).await;
        }
        let current = table.get(table_name, &key).await?;
        let version = current.as_ref().and_then(|item| item.i64("version"));
        let bucket = current.as_ref().and_then(|item| {
            Some(Bucket {
                milli_tokens: item.i64("milli_tokens")?,
                refilled_at_ms: item.i64("refilled_at_ms")? as u64,
            })
        });
        let (next, granted) = take_up_to(bucket, limit, now_ms, wanted);
        if granted == 0 {
            return Ok(0);
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
            // The read found nothing: absent, or expired and not yet swept. Conditioned on
            // absence alone, every take of a player idle past the TTL failed until the sweep.
            None => Condition::absent_or_expired(now_ms / 1000),
        };
        match table.put(table_name, item, Some(expected)).await {
            Ok(()) => return Ok(granted),
            Err(error) if error.is_condition_failed() => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(IntakeError::Port(worldfleet_ports::Error::Throttled(
        format!("rate-limit bucket of {player} is contended; retry"),
    )))
}

/// A random pause in `[0, min(4 ms × 2^(round-1), MAX_PAUSE)]` ("full jitter").
fn pause_before(round: u32) -> Duration {
    let ceiling =
        (Duration::from_millis(4) * 2u32.saturating_pow(round.saturating_sub(1))).min(MAX_PAUSE);
    // A randomly keyed hasher per call: enough randomness to spread colliding workers.
    let random = std::collections::hash_map::RandomState::new().hash_one(round);
    ceiling.mul_f64((random % 1_000_001) as f64 / 1_000_000.0)
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
    fn several_tokens_are_granted_up_to_what_the_bucket_holds() {
        let limit = RateLimit {
            burst: 5,
            per_second: 1,
        };
        let (bucket, granted) = take_up_to(None, limit, 1_000, 3);
        assert_eq!((bucket.milli_tokens, granted), (2_000, 3));
        let (bucket, granted) = take_up_to(Some(bucket), limit, 1_500, 4);
        assert_eq!(
            (bucket.milli_tokens, granted),
            (500, 2),
            "2.5 tokens: two whole ones"
        );
        let (bucket, granted) = take_up_to(Some(bucket), limit, 1_500, 0);
        assert_eq!(
            (bucket.milli_tokens, granted),
            (500, 0),
            "nothing wanted, nothing taken"
        );
    }

    #[test]
    fn pauses_grow_with_the_round_and_stay_under_the_cap() {
        for round in 1..ATTEMPTS {
            let ceiling = (Duration::from_millis(4) * 2u32.pow(round - 1)).min(MAX_PAUSE);
            for _ in 0..50 {
                assert!(pause_before(round) <= ceiling, "round {round}");
            }
        }
        let distinct: std::collections::HashSet<Duration> =
            (0..50).map(|_| pause_before(ATTEMPTS - 1)).collect();
        assert!(distinct.len() > 10, "jittered, not fixed: {distinct:?}");
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
