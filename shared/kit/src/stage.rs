//! The contract between a stage and whatever drives it.
//!
//! A stage is a [`StageHandler`]: it takes one batch of queue records and reports which failed.
//! The embedded runtime, the fleet workers (`worldfleet worker`) and the Lambda binaries all
//! drive the same handler; only the source of batches differs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;

use async_trait::async_trait;
use worldfleet_ports::{Clock, OutgoingMessage, Queue, ReceivedMessage, SendOutcome, Table};

use crate::batch::{BatchReport, RecordError};

/// The ports a stage reaches the world through, built once per process.
#[derive(Clone)]
pub struct StageContext {
    pub queue: Arc<dyn Queue>,
    pub table: Arc<dyn Table>,
    pub clock: Arc<dyn Clock>,
}

impl StageContext {
    /// A context over the given ports.
    pub fn new(queue: Arc<dyn Queue>, table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self {
            queue,
            table,
            clock,
        }
    }
}

/// One stage function.
#[async_trait]
pub trait StageHandler: Send + Sync {
    /// The stage's name (`intake`, `classify`, …).
    fn name(&self) -> &'static str;

    /// The queue whose messages trigger the stage.
    fn source_queue(&self) -> &'static str;

    /// What this instance runs, for start-up logs (`classify: embeddings via pool …`): the
    /// settings a studio needs to see to know which classifier, composer or rules a process
    /// picked up. The name alone by default.
    fn describe(&self) -> String {
        self.name().to_owned()
    }

    /// Processes one batch (at most ten records) within `remaining` time.
    async fn handle_batch(&self, records: &[ReceivedMessage], remaining: Duration) -> BatchReport;
}

/// Sends `messages` (each tagged with the index of the record that produced it) in batches of
/// ten per queue, keeping their order, and returns the indexes whose send failed with why.
/// Batching keeps SQS at one request per ten messages.
pub async fn send_all(
    context: &StageContext,
    messages: Vec<(usize, &'static str, OutgoingMessage)>,
) -> Vec<(usize, String)> {
    let mut failures = Vec::new();
    let mut by_queue: Vec<(&'static str, Vec<(usize, OutgoingMessage)>)> = Vec::new();
    for (index, queue, message) in messages {
        match by_queue.iter_mut().find(|(name, _)| *name == queue) {
            Some((_, list)) => list.push((index, message)),
            None => by_queue.push((queue, vec![(index, message)])),
        }
    }
    for (queue, list) in by_queue {
        for chunk in list.chunks(worldfleet_ports::queue::MAX_BATCH) {
            let indexes: Vec<usize> = chunk.iter().map(|(index, _)| *index).collect();
            let batch = chunk.iter().map(|(_, message)| message.clone()).collect();
            match context.queue.send_batch(queue, batch).await {
                Ok(outcomes) => {
                    for (index, outcome) in indexes.iter().zip(outcomes) {
                        if let SendOutcome::Failed { reason, .. } = outcome {
                            failures.push((*index, reason));
                        }
                    }
                }
                Err(error) => {
                    failures.extend(indexes.iter().map(|index| (*index, error.to_string())));
                }
            }
        }
    }
    failures
}

/// Runs `produce` over every record of the batch *concurrently*, then sends what the records
/// produced — `(queue, message)`, or nothing — with [`send_all`], in record order.
///
/// Concurrency is safe because every stage is idempotent per record and the only order that
/// matters downstream is the order of the messages sent, which is the records' order. FIFO
/// semantics are kept where they are observable: once a record of a message group fails, no
/// later record of that group is forwarded — they are reported failed, and their redelivery
/// resumes idempotently. Records of one batch therefore share their store round trips (one
/// group commit instead of one per record), which is what makes a batch of one busy scene cheap.
///
/// A stage whose records can share an idempotency key within one batch uses
/// [`forward_batch_keyed`] instead.
pub async fn forward_batch<'a, F, Fut>(
    context: &StageContext,
    records: &'a [ReceivedMessage],
    produce: F,
) -> BatchReport
where
    F: Fn(&'a ReceivedMessage) -> Fut,
    Fut: std::future::Future<Output = Result<Option<(&'static str, OutgoingMessage)>, RecordError>>,
{
    forward_batch_keyed(context, records, |_| None, produce).await
}

/// [`forward_batch`] for records that may share an idempotency key within one batch (an
/// envelope and its replay, both in one FIFO group): records with the same `key` run one after
/// another, in record order, and the others concurrently; a record whose predecessor with its
/// key failed is not run at all, but failed too (retryable). Otherwise the later record could
/// claim the key first (intake's ledger entry) — run concurrently, or run after the earlier
/// one crashed — take the earlier one's place in the group's order and leave the earlier one
/// refused in its stead. Records whose key is `None` (unreadable ones) run concurrently with
/// everything.
pub async fn forward_batch_keyed<'a, K, F, Fut>(
    context: &StageContext,
    records: &'a [ReceivedMessage],
    key: K,
    produce: F,
) -> BatchReport
where
    K: Fn(&ReceivedMessage) -> Option<String>,
    F: Fn(&'a ReceivedMessage) -> Fut,
    Fut: std::future::Future<Output = Result<Option<(&'static str, OutgoingMessage)>, RecordError>>,
{
    let (waits, signals) = key_chains(records, key);
    let produce = &produce;
    let outcomes = futures::future::join_all(records.iter().zip(waits).zip(signals).map(
        |((record, wait), signal)| {
            let work = async move {
                let predecessor_failed = match wait {
                    Some(wait) => wait.await != Ok(true),
                    None => false,
                };
                let outcome = if predecessor_failed {
                    // Not run (as a later record of a failed FIFO group): it waits for its
                    // redelivery, behind the earlier one.
                    Err(RecordError::retryable(
                        "an earlier record of the batch with the same key failed",
                    ))
                } else {
                    produce(record).await
                };
                if let Some(signal) = signal {
                    let _ = signal.send(outcome.is_ok());
                }
                outcome
            };
            tracing::Instrument::instrument(work, crate::batch::record_span(record))
        },
    ))
    .await;
    let mut report = BatchReport::default();
    let mut failed = crate::batch::FailedGroups::default();
    let mut produced = Vec::new();
    for (index, (record, outcome)) in records.iter().zip(outcomes).enumerate() {
        if failed.skip(record, &mut report) {
            continue;
        }
        match outcome {
            Ok(Some((queue, message))) => produced.push((index, queue, message)),
            Ok(None) => report.succeeded += 1,
            Err(error) => {
                crate::batch::log_failure(record, &error);
                report.fail_with(&record.message_id, &error);
                failed.fail(record);
            }
        }
    }
    let to_send = produced.len();
    let failures = send_all(context, produced).await;
    report.succeeded += to_send - failures.len();
    for (index, reason) in failures {
        if let Some(record) = records.get(index) {
            tracing::warn!(message_id = %record.message_id, reason, "forwarding failed; the record will be redelivered");
            report.fail(&record.message_id);
        }
    }
    report
}

/// For each record, what it waits for (the end of the previous record with its key: whether it
/// succeeded) and what it signals when done (to the next record with its key).
#[allow(clippy::type_complexity)]
fn key_chains(
    records: &[ReceivedMessage],
    key: impl Fn(&ReceivedMessage) -> Option<String>,
) -> (
    Vec<Option<oneshot::Receiver<bool>>>,
    Vec<Option<oneshot::Sender<bool>>>,
) {
    let mut waits: Vec<Option<oneshot::Receiver<bool>>> = records.iter().map(|_| None).collect();
    let mut signals: Vec<Option<oneshot::Sender<bool>>> = records.iter().map(|_| None).collect();
    let mut last: HashMap<String, usize> = HashMap::new();
    for (index, record) in records.iter().enumerate() {
        let Some(key) = key(record) else {
            continue;
        };
        if let Some(previous) = last.insert(key, index) {
            let (signal, wait) = oneshot::channel();
            signals[previous] = Some(signal);
            waits[index] = Some(wait);
        }
    }
    (waits, signals)
}
