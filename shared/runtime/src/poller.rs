//! Drives a stage handler from a queue, as a Lambda SQS event source mapping would.
//!
//! Each worker long-polls for up to ten messages, hands them to the handler as one batch with
//! the visibility timeout as its time budget, deletes the records the handler did not report
//! failed (one batched delete), and leaves the failed ones to be redelivered — after a short
//! backoff that grows with the receive count, instead of the whole visibility timeout, so a
//! FIFO group is not held longer than needed. Poison messages reach the dead-letter queue
//! through the queue's redrive policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use worldfleet_kit::StageHandler;
use worldfleet_ports::{DeleteOutcome, Queue, ReceiveRequest};

use crate::faults::FaultPlan;

/// How a stage is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollerConfig {
    /// Concurrent pollers (each with at most one batch in flight).
    pub workers: usize,
    /// Long-poll wait per receive.
    pub wait: Duration,
    /// The queue's visibility timeout: the handler's time budget per batch.
    pub visibility_timeout: Duration,
}

impl Default for PollerConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            wait: Duration::from_millis(500),
            visibility_timeout: Duration::from_secs(30),
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
    pub receive_errors: AtomicU64,
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
    let workers = (0..config.workers.max(1)).map(|_| {
        poll(
            Arc::clone(&handler),
            Arc::clone(&queue),
            config,
            shutdown.clone(),
            Arc::clone(&stats),
            faults.clone(),
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
) {
    let source = handler.source_queue();
    let request = ReceiveRequest::batch(config.wait);
    while !*shutdown.borrow() {
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
        let report = handler
            .handle_batch(&records, config.visibility_timeout)
            .await;
        stats
            .failed
            .fetch_add(report.failed_message_ids.len() as u64, Ordering::Relaxed);
        let mut done = Vec::new();
        for record in &records {
            if report.failed_message_ids.contains(&record.message_id) {
                let backoff =
                    Duration::from_millis(100 * u64::from(record.receive_count.min(10)).pow(2))
                        .min(config.visibility_timeout);
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
    }
}
