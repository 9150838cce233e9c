//! The contract between a stage and whatever drives it.
//!
//! A stage is a [`StageHandler`]: it takes one batch of queue records and reports which failed.
//! The embedded runtime, the fleet workers (`worldfleet worker`) and the Lambda binaries all
//! drive the same handler; only the source of batches differs. They drive it through
//! [`handle_in_place`], which re-runs a batch's retryable failures before handing them back to
//! the queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use rand::Rng;

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

/// Extra passes [`handle_in_place`] gives a batch's retryable failures.
pub const IN_PLACE_PASSES: u32 = 2;

/// Ceiling of the wait before the first extra pass; it triples for the next. The wait is drawn
/// uniformly below it, so records contending for one row do not collide again in step.
pub const IN_PLACE_FIRST_WAIT: Duration = Duration::from_millis(100);

/// Runs `records` through `handler`, then re-runs the records that failed *retryably* — and
/// the later records of their FIFO groups, which the handler held back — up to
/// [`IN_PLACE_PASSES`] more times, after a short jittered wait, while the batch has used less
/// than half of `budget`. The report is the merge: what any pass did, and what still failed.
///
/// A retryable failure is most often a fault met once: a request timed out, a conditional
/// write lost a race for a rate-limit bucket, a claim was held by a batch that just finished.
/// Handing it straight back to the queue costs each of those records — and, on a FIFO queue,
/// every later record of its group — one of the receives the redrive policy allows
/// (`maxReceiveCount`), and the queue's backoff in latency. A re-run in place costs neither and
/// is exactly as safe as a redelivery, because every stage is idempotent per record.
///
/// Records are re-run as redeliveries: their receive count is raised by one per pass, since a
/// handler may treat a count above one as "an earlier attempt of mine may have been applied"
/// (intake looks for its own ledger entry before it spends a rate-limit token).
pub async fn handle_in_place(
    handler: &dyn StageHandler,
    records: &[ReceivedMessage],
    budget: Duration,
) -> BatchReport {
    let started = Instant::now();
    let mut report = handler.handle_batch(records, budget).await;
    let mut rerun: Vec<ReceivedMessage> = Vec::new();
    for pass in 0..IN_PLACE_PASSES {
        let source = if pass == 0 { records } else { &rerun[..] };
        let again: Vec<ReceivedMessage> = source
            .iter()
            .filter(|record| {
                report.failed_message_ids.contains(&record.message_id)
                    && !report.permanent.contains(&record.message_id)
            })
            .map(|record| ReceivedMessage {
                receive_count: record.receive_count.saturating_add(1),
                ..record.clone()
            })
            .collect();
        if again.is_empty() {
            break;
        }
        let ceiling = IN_PLACE_FIRST_WAIT * 3_u32.pow(pass);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let wait = Duration::from_millis(rand::rng().random_range(0..=ceiling_ms));
        // Room for the wait and one more pass as slow as everything so far, within half of the
        // budget: the other half stays for the sends, the deletes and the queue's own retry.
        let spent = started.elapsed();
        if spent.saturating_mul(2) + wait > budget / 2 {
            break;
        }
        tokio::time::sleep(wait).await;
        tracing::debug!(
            stage = handler.name(),
            records = again.len(),
            pass = pass + 1,
            "re-running retryable failures in place"
        );
        let left = budget.saturating_sub(started.elapsed());
        let outcome = handler.handle_batch(&again, left).await;
        report.merge_rerun(&again, outcome);
        rerun = again;
    }
    report
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::batch::process_batch;

    /// A FIFO stage whose records fail (retryably, or for good) a set number of times each,
    /// and which notes every run: `(message id, receive count)`.
    struct Flaky {
        failures: Mutex<HashMap<String, u32>>,
        permanent: Vec<String>,
        runs: Mutex<Vec<(String, u32)>>,
    }

    impl Flaky {
        fn new(failures: &[(&str, u32)], permanent: &[&str]) -> Self {
            Self {
                failures: Mutex::new(
                    failures
                        .iter()
                        .map(|(id, times)| ((*id).to_owned(), *times))
                        .collect(),
                ),
                permanent: permanent.iter().map(|id| (*id).to_owned()).collect(),
                runs: Mutex::new(Vec::new()),
            }
        }

        fn runs(&self) -> Vec<(String, u32)> {
            self.runs.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl StageHandler for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }

        fn source_queue(&self) -> &'static str {
            "flaky.fifo"
        }

        async fn handle_batch(&self, records: &[ReceivedMessage], _: Duration) -> BatchReport {
            process_batch(records, true, |record| {
                self.runs
                    .lock()
                    .unwrap()
                    .push((record.message_id.clone(), record.receive_count));
                let outcome = if self.permanent.contains(&record.message_id) {
                    Err(RecordError::permanent("not an event"))
                } else {
                    let mut failures = self.failures.lock().unwrap();
                    match failures.get_mut(&record.message_id) {
                        Some(left) if *left > 0 => {
                            *left -= 1;
                            Err(RecordError::retryable("timed out"))
                        }
                        _ => Ok(()),
                    }
                };
                async move { outcome }
            })
            .await
        }
    }

    fn record(id: &str, group: &str) -> ReceivedMessage {
        ReceivedMessage {
            message_id: id.to_owned(),
            receipt_handle: format!("r-{id}"),
            body: id.to_owned(),
            group_id: Some(group.to_owned()),
            receive_count: 1,
            sent_at_ms: 0,
        }
    }

    fn ids(runs: &[(String, u32)]) -> Vec<&str> {
        runs.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[tokio::test]
    async fn a_fault_met_once_is_absorbed_in_place_in_group_order_as_a_redelivery() {
        let records = [record("a1", "a"), record("a2", "a"), record("b1", "b")];
        let stage = Flaky::new(&[("a1", 1)], &[]);
        let report = handle_in_place(&stage, &records, Duration::from_secs(30)).await;
        assert!(report.all_succeeded(), "{report:?}");
        assert_eq!(report.succeeded, 3);
        assert_eq!(report.skipped, 0);
        let runs = stage.runs();
        // a2 never ran before a1 succeeded, and ran once.
        assert_eq!(ids(&runs), vec!["a1", "b1", "a1", "a2"]);
        assert_eq!(runs[2].1, 2, "the re-run is presented as a redelivery");
    }

    #[tokio::test]
    async fn a_fault_that_outlasts_the_passes_goes_back_to_the_queue_with_its_group() {
        let records = [record("a1", "a"), record("a2", "a"), record("b1", "b")];
        let stage = Flaky::new(&[("a1", IN_PLACE_PASSES + 1)], &[]);
        let report = handle_in_place(&stage, &records, Duration::from_secs(30)).await;
        assert_eq!(report.failed_message_ids, vec!["a1", "a2"]);
        assert_eq!(report.succeeded, 1);
        assert_eq!(report.skipped, 1);
        let runs = stage.runs();
        let a1_runs = runs.iter().filter(|(id, _)| id == "a1").count();
        assert_eq!(a1_runs as u32, IN_PLACE_PASSES + 1);
        assert!(!ids(&runs).contains(&"a2"), "a2 waits behind a1");
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_run_again() {
        let records = [record("a1", "a"), record("b1", "b")];
        let stage = Flaky::new(&[], &["a1"]);
        let report = handle_in_place(&stage, &records, Duration::from_secs(30)).await;
        assert_eq!(report.permanent, vec!["a1"]);
        assert_eq!(report.failed_message_ids, vec!["a1"]);
        assert_eq!(ids(&stage.runs()), vec!["a1", "b1"]);
    }

    #[tokio::test]
    async fn no_pass_runs_when_the_budget_is_spent() {
        let records = [record("a1", "a")];
        let stage = Flaky::new(&[("a1", 1)], &[]);
        let report = handle_in_place(&stage, &records, Duration::ZERO).await;
        assert_eq!(report.failed_message_ids, vec!["a1"]);
        assert_eq!(ids(&stage.runs()), vec!["a1"]);
    }
}
