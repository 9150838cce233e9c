//! Idempotency records: run a piece of work at most once per key, and replay its result.
//!
//! A record lives in the idempotency table under `pk = key`, `sk = "idempotency"`:
//!
//! | attribute | meaning |
//! |---|---|
//! | `status` | `IN_PROGRESS` or `COMPLETED` |
//! | `claim` | a token unique to the invocation holding the record; only it may complete or release |
//! | `payload_hash` | SHA-256 of the payload the key was first used with |
//! | `in_progress_expiry_ms` | when an IN_PROGRESS record stops blocking (the invocation's deadline) |
//! | `ttl` | when the record expires altogether (Unix seconds; the store's TTL sweep is the janitor) |
//! | `response` | the saved result (JSON), once COMPLETED |
//!
//! The first caller creates an IN_PROGRESS record with a conditional put that also succeeds
//! over an expired record or an IN_PROGRESS record whose holder ran out of time — expiry is
//! checked in the condition, in code, never left to the store's TTL. A second caller with the
//! same key gets the saved result if COMPLETED, [`IdempotencyError::InProgress`] (retry later)
//! while another holder still has time, or [`IdempotencyError::PayloadMismatch`] if the payload
//! differs. When the work fails, the record is deleted so a retry can run it again.
//!
//! A claim whose put failed ambiguously (timed out, or a 5xx, after the store may have
//! applied it) is read back: if the record holds this invocation's claim, the claim stands
//! and the work runs. The completing update (`claim = mine`, `SET status`) may be repeated
//! by the adapter, as it cannot falsify its own condition.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use thiserror::Error;
use worldfleet_ports::{Clock, Comparison, Condition, Item, Key, TTL_ATTRIBUTE, Table, Update};

const SORT_KEY: &str = "idempotency";
/// Makes claim tokens unique within the process (with time and pid, across processes).
static CLAIMS: AtomicU64 = AtomicU64::new(0);
const STATUS_IN_PROGRESS: &str = "IN_PROGRESS";
const STATUS_COMPLETED: &str = "COMPLETED";

/// How long records live and block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyConfig {
    /// How long a COMPLETED record is kept (and replayed) after it is written.
    pub record_lifetime: Duration,
    /// Upper bound on how long an IN_PROGRESS record blocks others; the actual expiry is the
    /// smaller of this and the caller's remaining time.
    pub max_in_progress: Duration,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            record_lifetime: Duration::from_secs(3600),
            max_in_progress: Duration::from_secs(60),
        }
    }
}

/// Whether the work ran now or its earlier result was replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    Executed(T),
    Replayed(T),
}

impl<T> Outcome<T> {
    /// The result, however it was obtained.
    pub fn into_inner(self) -> T {
        match self {
            Self::Executed(value) | Self::Replayed(value) => value,
        }
    }
}

/// Why an idempotent call did not produce a result.
#[derive(Debug, Error)]
pub enum IdempotencyError<E> {
    /// Another invocation holds the key and still has time; retry later.
    #[error("idempotency key {key} is in progress elsewhere")]
    InProgress { key: String },
    /// The key was first used with a different payload; retrying will not help.
    #[error("idempotency key {key} was used with a different payload")]
    PayloadMismatch { key: String },
    /// The saved response could not be decoded.
    #[error("idempotency record {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    /// The table failed.
    #[error("idempotency store: {0}")]
    Store(#[from] worldfleet_ports::Error),
    /// The work itself failed (the record was released).
    #[error("{0}")]
    Work(E),
}

impl<E: std::fmt::Display> crate::batch::Failure for IdempotencyError<E> {
    fn is_retryable(&self) -> bool {
        match self {
            Self::InProgress { .. } => true,
            Self::Store(error) => error.is_worth_a_retry(),
            Self::PayloadMismatch { .. } | Self::Corrupt { .. } | Self::Work(_) => false,
        }
    }
}

/// Idempotency records in one table.
#[derive(Clone)]
pub struct IdempotencyStore {
    table: Arc<dyn Table>,
    table_name: String,
    clock: Arc<dyn Clock>,
    config: IdempotencyConfig,
}

impl IdempotencyStore {
    /// Records in `table_name` of `table`.
    pub fn new(
        table: Arc<dyn Table>,
        table_name: &str,
        clock: Arc<dyn Clock>,
        config: IdempotencyConfig,
    ) -> Self {
        Self {
            table,
            table_name: table_name.to_owned(),
            clock,
            config,
        }
    }

    /// SHA-256 of a payload, as stored in `payload_hash`.
    pub fn hash_payload(payload: &[u8]) -> Vec<u8> {
        Sha256::digest(payload).to_vec()
    }

    /// Whether the work under `key` completed and its record has not expired: a cheap read for
    /// a caller that must not go on before it did (one strongly consistent read, no claim).
    pub async fn is_completed(&self, key: &str) -> Result<bool, worldfleet_ports::Error> {
        let now_secs = self.clock.now_ms() / 1000;
        let Some(record) = self
            .table
            .get(&self.table_name, &Key::new(key, SORT_KEY))
            .await?
        else {
            return Ok(false);
        };
        let live = record
            .i64(TTL_ATTRIBUTE)
            .is_none_or(|ttl| ttl > now_secs as i64);
        Ok(live && record.str("status") == Some(STATUS_COMPLETED))
    }

    /// Runs `work` at most once for `key`, or replays its saved result.
    ///
    /// `remaining` is the invocation's remaining time: the IN_PROGRESS record stops blocking
    /// others when it runs out, so a crashed holder never wedges the key.
    pub async fn run<T, E, F, Fut>(
        &self,
        key: &str,
        payload: &[u8],
        remaining: Duration,
        work: F,
    ) -> Result<Outcome<T>, IdempotencyError<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let payload_hash = Self::hash_payload(payload);
        let record_key = Key::new(key, SORT_KEY);
        let now_ms = self.clock.now_ms();
        let now_secs = now_ms / 1000;
        let in_progress_expiry_ms =
            now_ms + remaining.min(self.config.max_in_progress).as_millis() as u64;
        let claim = format!(
            "{now_ms}-{}-{}",
            std::process::id(),
            CLAIMS.fetch_add(1, Ordering::Relaxed)
        );
        let record = Item::new(record_key.clone())
            .with("status", STATUS_IN_PROGRESS)
            .with("claim", claim.as_str())
            .with("payload_hash", payload_hash.clone())
            .with("in_progress_expiry_ms", in_progress_expiry_ms as i64)
            .with(
                TTL_ATTRIBUTE,
                (now_secs + self.config.record_lifetime.as_secs()) as i64,
            );
        let claimable = Condition::Or(vec![
            Condition::absent_or_expired(now_secs),
            Condition::And(vec![
                Condition::eq("status", STATUS_IN_PROGRESS),
                Condition::compare("in_progress_expiry_ms", Comparison::Lt, now_ms as i64),
            ]),
        ]);
        match self
            .table
            .put(&self.table_name, record, Some(claimable))
            .await
        {
            Ok(()) => {}
            Err(error) if error.is_condition_failed() => {
                return self.existing(key, &record_key, &payload_hash).await;
            }
            // Timed out or a 5xx: the put may have been applied. Unresolved, the record would
            // block every retry of this key as IN_PROGRESS until its expiry, long enough for
            // the message to use up its receives; the record itself says whether it is ours.
            Err(error) if error.is_retryable() => {
                if !self.claimed(&record_key, &claim).await {
                    return Err(error.into());
                }
                tracing::debug!(key, "claim was applied although its answer was lost");
            }
            Err(error) => return Err(error.into()),
        }
        match work().await {
            Ok(value) => {
                let response =
                    serde_json::to_string(&value).map_err(|error| IdempotencyError::Corrupt {
                        key: key.to_owned(),
                        reason: error.to_string(),
                    })?;
                let update = Update::new()
                    .set("status", STATUS_COMPLETED)
                    .set("response", response)
                    .remove("in_progress_expiry_ms");
                // Only our own claim may complete: a holder that outlived its claim must not
                // overwrite the result of the invocation that took over.
                let ours = Condition::eq("claim", claim.as_str());
                match self
                    .table
                    .update(&self.table_name, &record_key, update, Some(ours))
                    .await
                {
                    Ok(_) => {}
                    Err(error) if error.is_condition_failed() => {
                        tracing::warn!(
                            key,
                            "claim expired before the work finished; another invocation's result stands"
                        );
                    }
                    Err(error) => return Err(error.into()),
                }
                Ok(Outcome::Executed(value))
            }
            Err(error) => {
                if let Err(release) = self.table.delete(&self.table_name, &record_key, None).await {
                    tracing::warn!(key, error = %release, "could not release idempotency record; it expires by itself");
                }
                Err(IdempotencyError::Work(error))
            }
        }
    }

    /// Whether the record holds `claim`: a claim whose put failed ambiguously was applied.
    async fn claimed(&self, record_key: &Key, claim: &str) -> bool {
        match self.table.get(&self.table_name, record_key).await {
            Ok(Some(record)) => {
                record.str("claim") == Some(claim)
                    && record.str("status") == Some(STATUS_IN_PROGRESS)
            }
            _ => false,
        }
    }

    async fn existing<T, E>(
        &self,
        key: &str,
        record_key: &Key,
        payload_hash: &[u8],
    ) -> Result<Outcome<T>, IdempotencyError<E>>
    where
        T: DeserializeOwned,
    {
        let Some(existing) = self.table.get(&self.table_name, record_key).await? else {
            // Released or expired between our put and this read: let the caller retry.
            return Err(IdempotencyError::InProgress {
                key: key.to_owned(),
            });
        };
        if existing.bytes("payload_hash") != Some(payload_hash) {
            return Err(IdempotencyError::PayloadMismatch {
                key: key.to_owned(),
            });
        }
        match (existing.str("status"), existing.str("response")) {
            (Some(STATUS_COMPLETED), Some(response)) => serde_json::from_str(response)
                .map(Outcome::Replayed)
                .map_err(|error| IdempotencyError::Corrupt {
                    key: key.to_owned(),
                    reason: error.to_string(),
                }),
            _ => Err(IdempotencyError::InProgress {
                key: key.to_owned(),
            }),
        }
    }
}
