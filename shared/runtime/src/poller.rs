//! Drives a stage handler from a queue, as a Lambda SQS event source mapping would.
//!
//! Each worker long-polls for up to ten messages, hands them to the handler as one batch with
//! the visibility timeout as its time budget — through [`worldfleet_kit::handle_in_place`], so
//! a record that failed retryably is re-run in place (twice at most, within half the budget)
//! before it costs a receive — deletes the records the handler did not report
//! failed (one batched delete), and leaves the failed ones to be redelivered — after a backoff
//! that triples with the receive count ([`retry_backoff`]: 0.25 s, 0.75 s, 2.25 s, 6.75 s,
//! 20.25 s) instead of the whole visibility timeout, so a FIFO group is not held longer than
//! needed after one fault, while the five receives of the template's redrive policy span 30 s:
//! a record that waits on another worker's idempotency claim (held at most one lease, or until
//! a restarted process's messages come back) is not dead-lettered meanwhile. Poison messages
//! reach the dead-letter queue through the queue's redrive policy; a record the handler reports failed *permanently* goes
//! there at once ([`worldfleet_kit::dead_letter_permanent`]) instead of burning its receives.
//!
//! With a **batching window** a worker that received a partial batch pauses that long before
//! it receives again, so messages gather into fuller batches when several workers share a quiet
//! queue (an event source mapping's `MaximumBatchingWindowInSeconds`, which FIFO mappings lack).
//!
//! Messages are received on a **lease** shorter than the queue's visibility timeout: five times
//! the stage's slowest recent batch, at least [`MIN_LEASE`] and at most the batch budget, and
//! renewed (a heartbeat every half lease) while the handler is still working. So a worker that
//! dies with messages in hand — SIGKILL, an out-of-memory kill, a lost host — holds its FIFO
//! groups for one lease, not the queue's visibility timeout (180 s on the template's queues),
//! and a slow batch is never handed to a second worker while the first is alive. The heartbeat
//! costs nothing in the common case: it fires only for a batch slower than half a lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use worldfleet_kit::StageHandler;
use worldfleet_ports::{DeleteOutcome, Queue, ReceiveRequest, ReceivedMessage};
use worldfleet_testbed::faults::FaultPlan;

/// How a stage is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollerConfig {
    /// Concurrent pollers (each with at most one batch in flight).
    pub workers: usize,
    /// Long-poll wait per receive.
    pub wait: Duration,
    /// The handler's time budget per batch, and the longest lease a batch is received on
    /// (keep it at or below the queue's visibility timeout).
    pub visibility_timeout: Duration,
    /// After a partial batch, how long a worker pauses before it receives again, so messages
    /// gather into fuller batches (fewer requests per message, up to this much more latency).
    /// Zero: receive again at once.
    pub batching_window: Duration,
}

impl Default for PollerConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            wait: Duration::from_millis(500),
            visibility_timeout: Duration::from_secs(30),
            batching_window: Duration::ZERO,
        }
    }
}

/// What a stage's pollers did.
#[derive(Debug, Default)]
pub struct PollerStats {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// Permanent failures moved to the dead-letter queue at once (and deleted here).
    pub dead_lettered: AtomicU64,
    pub receive_errors: AtomicU64,
    /// Handler time as Lambda bills an invocation: each batch rounded up to the millisecond.
    pub billed_ms: AtomicU64,
}

/// Shortest lease a batch is received on: the longest a dead worker holds its messages when
/// the stage's batches are fast.
pub const MIN_LEASE: Duration = Duration::from_secs(5);

/// How many times the slowest recent batch a lease lasts.
const LEASE_FACTOR: u32 = 5;

/// A stage's lease, from its measured batch times: five times the slowest recent batch
/// (decaying by 1/16 per batch, so one slow outlier does not hold leases long forever),
/// clamped to `[MIN_LEASE, budget]`.
#[derive(Debug)]
pub struct Lease {
    budget: Duration,
    slowest_us: AtomicU64,
}

impl Lease {
    /// A lease for batches with `budget` to run, before any batch was measured.
    pub fn new(budget: Duration) -> Self {
        Self {
            budget,
            slowest_us: AtomicU64::new(0),
        }
    }

    /// The lease the next batch is received on.
    pub fn current(&self) -> Duration {
        let slowest = Duration::from_micros(self.slowest_us.load(Ordering::Relaxed));
        (slowest * LEASE_FACTOR).max(MIN_LEASE).min(self.budget)
    }

    /// Records how long a batch took.
    pub fn observe(&self, took: Duration) {
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .slowest_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |slowest| {
                Some(took.max(slowest - slowest / 16))
            });
    }
}

/// Runs `config.workers` pollers for `handler` until `shutdown` turns true.
pub async fn run_stage(
    handler: Arc<dyn StageHandler>,
    queue: Arc<dyn Queue>,
    config: PollerConfig,
    shutdown: watch::Receiver<bool>,
    stats: Arc<PollerStats>,
    faults: Option<Arc<FaultPlan>>,
) {
    // The workers run inside this future rather than as spawned tasks, so aborting the task
    // that runs it stops every worker at once and releases their handles (a crash).
    let lease = Arc::new(Lease::new(config.visibility_timeout));
    let workers = (0..config.workers.max(1)).map(|_| {
        poll(
            Arc::clone(&handler),
            Arc::clone(&queue),
            config,
            shutdown.clone(),
            Arc::clone(&stats),
            faults.clone(),
            Arc::clone(&lease),
        )
    });
    futures::future::join_all(workers).await;
}

async fn poll(
    handler: Arc<dyn StageHandler>,
    queue: Arc<dyn Queue>,
    config: PollerConfig,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<PollerStats>,
    faults: Option<Arc<FaultPlan>>,
    lease: Arc<Lease>,
) {
    let source = handler.source_queue();
    while !*shutdown.borrow() {
        let held_for = lease.current();
        let request = ReceiveRequest {
            visibility_timeout: Some(held_for),
            ..ReceiveRequest::batch(config.wait)
        };
        let received = tokio::select! {
            received = queue.receive(source, request) => received,
            _ = shutdown.changed() => break,
        };
        let records = match received {
            Ok(records) => records,
            Err(error) => {
                stats.receive_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(stage = handler.name(), %error, "receive failed; backing off");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if records.is_empty() {
            continue;
        }
        if faults
            .as_ref()
            .is_some_and(|faults| faults.outlive_visibility())
        {
            // An invocation slower than the visibility timeout: the batch is handed to
            // another worker meanwhile, and both process it.
            tokio::time::sleep(config.visibility_timeout + Duration::from_millis(300)).await;
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let started = Instant::now();
        let mut report = hold_while(
            worldfleet_kit::handle_in_place(handler.as_ref(), &records, config.visibility_timeout),
            queue.as_ref(),
            source,
            &records,
            held_for,
        )
        .await;
        let took = started.elapsed();
        lease.observe(took);
        stats
            .billed_ms
            .fetch_add(took.as_micros().div_ceil(1000) as u64, Ordering::Relaxed);
        let dead_lettered =
            worldfleet_kit::dead_letter_permanent(queue.as_ref(), source, &records, &report).await;
        report.forget(&dead_lettered);
        stats
            .failed
            .fetch_add(report.failed_message_ids.len() as u64, Ordering::Relaxed);
        stats
            .dead_lettered
            .fetch_add(dead_lettered.len() as u64, Ordering::Relaxed);
        let mut done = Vec::new();
        for record in &records {
            if report.failed_message_ids.contains(&record.message_id) {
                let backoff = retry_backoff(record.receive_count, config.visibility_timeout);
                if let Err(error) = queue
                    .change_visibility(source, &record.receipt_handle, backoff)
                    .await
                {
                    tracing::debug!(%error, "could not shorten the visibility of a failed record");
                }
            } else {
                done.push(record.receipt_handle.clone());
            }
        }
        let succeeded = done.len() as u64;
        if faults.as_ref().is_some_and(|faults| faults.lose_delete()) {
            // A crash after the work and before the delete: the batch comes back.
            continue;
        }
        for chunk in done.chunks(worldfleet_ports::queue::MAX_BATCH) {
            match queue.delete_batch(source, chunk.to_vec()).await {
                Ok(outcomes) => {
                    for outcome in outcomes {
                        if let DeleteOutcome::Failed { reason } = outcome {
                            tracing::debug!(
                                reason,
                                "delete refused (the message was received again); it will be redelivered and skipped as a duplicate"
                            );
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(stage = handler.name(), %error, "delete failed; the batch will be redelivered");
                }
            }
        }
        stats.succeeded.fetch_add(succeeded, Ordering::Relaxed);
        if records.len() < worldfleet_ports::queue::MAX_BATCH && !config.batching_window.is_zero() {
            // A partial batch: the queue had no more; let the next batch gather.
            tokio::select! {
                _ = tokio::time::sleep(config.batching_window) => {}
                _ = shutdown.changed() => break,
            }
        }
    }
}

/// Runs `work`, renewing the lease on `records` every half lease until it finishes.
async fn hold_while<T>(
    work: impl std::future::Future<Output = T>,
    queue: &dyn Queue,
    source: &str,
    records: &[ReceivedMessage],
    lease: Duration,
) -> T {
    tokio::pin!(work);
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + lease / 2, lease / 2);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = renew.tick() => {
                for record in records {
                    if let Err(error) = queue
                        .change_visibility(source, &record.receipt_handle, lease)
                        .await
                    {
                        tracing::debug!(%error, "could not renew a lease (the message was received again)");
                    }
                }
            }
        }
    }
}

/// How long a record the handler reported failed stays invisible before its next receive:
/// 250 ms × 3^(receives − 1), at most the visibility timeout.
pub fn retry_backoff(receive_count: u32, visibility_timeout: Duration) -> Duration {
    let exponent = receive_count.clamp(1, 8) - 1;
    Duration::from_millis(250 * 3_u64.pow(exponent)).min(visibility_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failed_receives_span_thirty_seconds_and_the_first_retry_is_quick() {
        let visibility = Duration::from_secs(180);
        assert_eq!(retry_backoff(1, visibility), Duration::from_millis(250));
        let five: Duration = (1..=5).map(|count| retry_backoff(count, visibility)).sum();
        assert_eq!(five, Duration::from_millis(30_250));
        assert_eq!(retry_backoff(0, visibility), Duration::from_millis(250));
        assert_eq!(retry_backoff(u32::MAX, visibility), visibility);
        assert_eq!(
            retry_backoff(4, Duration::from_secs(5)),
            Duration::from_secs(5),
            "never past the visibility timeout"
        );
    }

    #[test]
    fn a_lease_is_five_slowest_batches_within_its_bounds() {
        let lease = Lease::new(Duration::from_secs(30));
        assert_eq!(lease.current(), MIN_LEASE, "before any batch");
        lease.observe(Duration::from_millis(20));
        assert_eq!(
            lease.current(),
            MIN_LEASE,
            "fast batches keep the shortest lease"
        );
        lease.observe(Duration::from_secs(2));
        assert_eq!(lease.current(), Duration::from_secs(10));
        lease.observe(Duration::from_secs(60));
        assert_eq!(
            lease.current(),
            Duration::from_secs(30),
            "never past the budget"
        );
        let short = Lease::new(Duration::from_secs(2));
        assert_eq!(
            short.current(),
            Duration::from_secs(2),
            "a budget under the minimum wins"
        );
    }

    #[test]
    fn a_slow_outlier_decays() {
        let lease = Lease::new(Duration::from_secs(30));
        lease.observe(Duration::from_secs(4));
        assert_eq!(lease.current(), Duration::from_secs(20));
        for _ in 0..40 {
            lease.observe(Duration::from_millis(10));
        }
        assert_eq!(lease.current(), MIN_LEASE);
    }
}
