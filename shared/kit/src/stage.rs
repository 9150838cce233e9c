//! The contract between a stage and whatever drives it.
//!
//! A stage is a [`StageHandler`]: it takes one batch of queue records and reports which failed.
//! The embedded runtime, the fleet workers (`worldfleet worker`) and the Lambda binaries all
//! drive the same handler; only the source of batches differs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use worldfleet_ports::{Clock, OutgoingMessage, Queue, ReceivedMessage, SendOutcome, Table};

use crate::batch::{BatchReport, RecordError, process_batch};

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

/// Runs `produce` over every record with FIFO batch semantics ([`process_batch`]), then sends
/// what the records produced — `(queue, message)`, or nothing — with [`send_all`], in record
/// order. A record whose send fails is reported failed, so the queue redelivers it; the stages
/// downstream are idempotent, so a re-send is harmless.
pub async fn forward_batch<'a, F, Fut>(
    context: &StageContext,
    records: &'a [ReceivedMessage],
    produce: F,
) -> BatchReport
where
    F: Fn(&'a ReceivedMessage) -> Fut,
    Fut: std::future::Future<Output = Result<Option<(&'static str, OutgoingMessage)>, RecordError>>,
{
    let produced = std::sync::Mutex::new(Vec::new());
    let mut report = process_batch(records, true, |record| {
        let produced = &produced;
        let outcome = produce(record);
        async move {
            if let Some((queue, message)) = outcome.await? {
                let index = records
                    .iter()
                    .position(|candidate| candidate.message_id == record.message_id)
                    .unwrap_or(usize::MAX);
                if let Ok(mut produced) = produced.lock() {
                    produced.push((index, queue, message));
                }
            }
            Ok(())
        }
    })
    .await;
    let mut produced = produced.into_inner().unwrap_or_default();
    produced.sort_by_key(|(index, _, _)| *index);
    for (index, reason) in send_all(context, produced).await {
        if let Some(record) = records.get(index) {
            tracing::warn!(message_id = %record.message_id, reason, "forwarding failed; the record will be redelivered");
            report.fail(&record.message_id);
            report.succeeded = report.succeeded.saturating_sub(1);
        }
    }
    report
}
