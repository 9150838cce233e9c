//! Per-record batch processing with partial-failure reports.
//!
//! Records of a standard queue are processed concurrently. Records of a FIFO queue are grouped
//! by message group: groups run concurrently, records within a group run in order, and the
//! first failure in a group marks the rest of that group failed *without running them*, so the
//! queue redelivers them in order. Other groups are unaffected. The report lists failed message
//! ids, which is exactly what SQS's `batchItemFailures` needs.
//!
//! A failure is retryable or permanent ([`RecordError`]); the report names the permanent ones
//! too, and [`dead_letter_permanent`] moves them to their queue's dead-letter queue at once, so
//! a record that can never succeed does not burn its remaining receives — nor hold its FIFO
//! group for them.

use std::fmt;
use std::future::Future;

use futures::future::join_all;
use tracing::Instrument;
use worldfleet_domain::names::dead_letter_queue;
use worldfleet_ports::queue::is_fifo;
use worldfleet_ports::{OutgoingMessage, Queue, ReceivedMessage, SendOutcome};

/// A stage error's verdict on itself: may the same record succeed if it is run again? Every
/// stage error type implements it once, and [`RecordError::classify`] turns any of them into
/// the batch report's class (retried, or dead-lettered at once).
pub trait Failure: fmt::Display {
    /// True when running the record again later may succeed.
    fn is_retryable(&self) -> bool;
}

impl Failure for worldfleet_ports::Error {
    fn is_retryable(&self) -> bool {
        self.is_worth_a_retry()
    }
}

/// Why one record failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// What went wrong, for logs.
    pub reason: String,
    /// False when retrying cannot help (the record will reach the dead-letter queue).
    pub retryable: bool,
}

impl RecordError {
    /// A failure worth retrying (throttling, timeouts, a busy idempotency key).
    pub fn retryable(reason: impl fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
            retryable: true,
        }
    }

    /// A failure that will repeat (a corrupt internal message); it ends in the DLQ.
    pub fn permanent(reason: impl fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
            retryable: false,
        }
    }

    /// A stage error, in the class it gives itself.
    pub fn classify(error: impl Failure) -> Self {
        Self {
            retryable: error.is_retryable(),
            reason: error.to_string(),
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.reason)
    }
}

/// What happened to a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Message ids to report as `batchItemFailures` (to be redelivered).
    pub failed_message_ids: Vec<String>,
    /// Records processed successfully.
    pub succeeded: usize,
    /// Records not run because an earlier record of their FIFO group failed.
    pub skipped: usize,
    /// The failed message ids (also in `failed_message_ids`) whose failure is permanent:
    /// retrying cannot help, so a driver dead-letters them at once.
    pub permanent: Vec<String>,
}

impl BatchReport {
    /// True when every record succeeded.
    pub fn all_succeeded(&self) -> bool {
        self.failed_message_ids.is_empty()
    }

    /// Marks `message_id` failed (idempotent).
    pub fn fail(&mut self, message_id: &str) {
        if !self.failed_message_ids.iter().any(|id| id == message_id) {
            self.failed_message_ids.push(message_id.to_owned());
        }
    }

    /// Marks `message_id` failed for good: it will be dead-lettered, not retried.
    pub fn fail_permanently(&mut self, message_id: &str) {
        self.fail(message_id);
        if !self.permanent.iter().any(|id| id == message_id) {
            self.permanent.push(message_id.to_owned());
        }
    }

    /// Records `error` for `message_id` by its class.
    pub fn fail_with(&mut self, message_id: &str, error: &RecordError) {
        if error.retryable {
            self.fail(message_id);
        } else {
            self.fail_permanently(message_id);
        }
    }

    /// Takes in the report of a re-run of `rerun` (records this report had failed): their
    /// earlier failures give way to what the re-run found; successes add up.
    pub fn merge_rerun(&mut self, rerun: &[ReceivedMessage], outcome: BatchReport) {
        self.failed_message_ids.retain(|id| {
            !rerun.iter().any(|record| &record.message_id == id)
                || outcome.failed_message_ids.contains(id)
        });
        for id in &outcome.failed_message_ids {
            self.fail(id);
        }
        for id in &outcome.permanent {
            self.fail_permanently(id);
        }
        self.succeeded += outcome.succeeded;
        self.skipped = outcome.skipped;
    }

    /// Forgets the failures in `moved` (they were dead-lettered and need no redelivery).
    pub fn forget(&mut self, moved: &[String]) {
        self.failed_message_ids.retain(|id| !moved.contains(id));
        self.permanent.retain(|id| !moved.contains(id));
    }
}

/// Sends the records `report` marks permanently failed from `source` to its dead-letter queue
/// (same body and FIFO group, deduplicated by the message id, as the queue's redrive would);
/// returns the message ids that were moved, for the driver to delete (or to leave out of
/// `batchItemFailures`). A record whose move fails stays failed and is redelivered as usual.
pub async fn dead_letter_permanent(
    queue: &dyn Queue,
    source: &str,
    records: &[ReceivedMessage],
    report: &BatchReport,
) -> Vec<String> {
    let doomed: Vec<&ReceivedMessage> = records
        .iter()
        .filter(|record| report.permanent.contains(&record.message_id))
        .collect();
    if doomed.is_empty() {
        return Vec::new();
    }
    let target = dead_letter_queue(source);
    let fifo = is_fifo(source);
    let mut moved = Vec::new();
    for chunk in doomed.chunks(worldfleet_ports::queue::MAX_BATCH) {
        let messages = chunk
            .iter()
            .map(|record| match (&record.group_id, fifo) {
                (Some(group), true) => {
                    OutgoingMessage::fifo(record.body.clone(), group, &record.message_id)
                }
                _ => OutgoingMessage::delayed(record.body.clone(), std::time::Duration::ZERO),
            })
            .collect();
        match queue.send_batch(&target, messages).await {
            Ok(outcomes) => {
                for (record, outcome) in chunk.iter().zip(outcomes) {
                    match outcome {
                        SendOutcome::Sent { .. } => {
                            tracing::warn!(
                                message_id = %record.message_id,
                                queue = %target,
                                "permanent failure moved to the dead-letter queue"
                            );
                            moved.push(record.message_id.clone());
                        }
                        SendOutcome::Failed { reason, .. } => tracing::warn!(
                            message_id = %record.message_id,
                            reason,
                            "could not dead-letter a permanent failure; it will be redelivered"
                        ),
                    }
                }
            }
            Err(error) => tracing::warn!(
                %error,
                queue = %target,
                "could not dead-letter permanent failures; they will be redelivered"
            ),
        }
    }
    moved
}

/// The FIFO rule every batch driver keeps: once a record of a message group failed, no later
/// record of that group in the batch runs or is forwarded; they are reported failed (skipped),
/// and their redelivery resumes in order. Records without a group are never held back.
#[derive(Debug, Default)]
pub struct FailedGroups {
    groups: Vec<String>,
}

impl FailedGroups {
    /// True when an earlier record of `record`'s group failed: skip it.
    pub fn holds(&self, record: &ReceivedMessage) -> bool {
        record
            .group_id
            .as_ref()
            .is_some_and(|group| self.groups.contains(group))
    }

    /// Notes that `record` failed, holding back the rest of its group.
    pub fn fail(&mut self, record: &ReceivedMessage) {
        if let Some(group) = &record.group_id
            && !self.groups.contains(group)
        {
            self.groups.push(group.clone());
        }
    }

    /// Reports `record` skipped in `report` when its group failed earlier; true if so.
    pub fn skip(&self, record: &ReceivedMessage, report: &mut BatchReport) -> bool {
        let held = self.holds(record);
        if held {
            report.skipped += 1;
            report.fail(&record.message_id);
        }
        held
    }
}

/// Splits `records` into FIFO groups, keeping first-seen group order and record order.
/// Records without a group id form singleton groups.
pub fn fifo_groups(records: &[ReceivedMessage]) -> Vec<Vec<&ReceivedMessage>> {
    let mut groups: Vec<(Option<&str>, Vec<&ReceivedMessage>)> = Vec::new();
    for record in records {
        let group = record.group_id.as_deref();
        match groups
            .iter_mut()
            .find(|(existing, _)| group.is_some() && *existing == group)
        {
            Some((_, members)) => members.push(record),
            None => groups.push((group, vec![record])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// Runs `handler` over every record with the semantics described in the module comment.
pub async fn process_batch<'a, F, Fut>(
    records: &'a [ReceivedMessage],
    fifo: bool,
    handler: F,
) -> BatchReport
where
    F: Fn(&'a ReceivedMessage) -> Fut,
    Fut: Future<Output = Result<(), RecordError>>,
{
    let mut report = BatchReport::default();
    if !fifo {
        let outcomes = join_all(records.iter().map(|record| {
            let outcome = handler(record).instrument(record_span(record));
            async move { (record, outcome.await) }
        }))
        .await;
        for (record, outcome) in outcomes {
            match outcome {
                Ok(()) => report.succeeded += 1,
                Err(error) => {
                    log_failure(record, &error);
                    report.fail_with(&record.message_id, &error);
                }
            }
        }
        return report;
    }
    let groups = fifo_groups(records);
    let group_reports = join_all(groups.into_iter().map(|group| {
        let handler = &handler;
        async move {
            let mut report = BatchReport::default();
            let mut failed = FailedGroups::default();
            for record in group {
                if failed.skip(record, &mut report) {
                    continue;
                }
                match handler(record).instrument(record_span(record)).await {
                    Ok(()) => report.succeeded += 1,
                    Err(error) => {
                        log_failure(record, &error);
                        failed.fail(record);
                        report.fail_with(&record.message_id, &error);
                    }
                }
            }
            report
        }
    }))
    .await;
    for group_report in group_reports {
        report.succeeded += group_report.succeeded;
        report.skipped += group_report.skipped;
        report
            .failed_message_ids
            .extend(group_report.failed_message_ids);
        report.permanent.extend(group_report.permanent);
    }
    report
}

/// The span every line logged while `record` is handled carries: its message id and group,
/// and the event id once the stage has read it ([`record_event_id`]).
pub fn record_span(record: &ReceivedMessage) -> tracing::Span {
    tracing::info_span!(
        "record",
        message_id = %record.message_id,
        group = record.group_id.as_deref().unwrap_or("-"),
        event_id = tracing::field::Empty,
    )
}

/// Adds the event id to the current record's span, so one envelope can be followed through
/// every stage's logs by its event id.
pub fn record_event_id(event_id: &str) {
    tracing::Span::current().record("event_id", event_id);
}

/// Logs a record's failure with its class.
pub fn log_failure(record: &ReceivedMessage, error: &RecordError) {
    tracing::warn!(
        message_id = %record.message_id,
        group = record.group_id.as_deref().unwrap_or("-"),
        receive_count = record.receive_count,
        retryable = error.retryable,
        reason = %error.reason,
        "{}",
        if error.retryable {
            "record failed; it will be redelivered"
        } else {
            "record failed permanently; it goes to the dead-letter queue"
        }
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn record(id: &str, group: Option<&str>) -> ReceivedMessage {
        ReceivedMessage {
            message_id: id.to_owned(),
            receipt_handle: format!("r-{id}"),
            body: id.to_owned(),
            group_id: group.map(str::to_owned),
            receive_count: 1,
            sent_at_ms: 0,
        }
    }

    #[tokio::test]
    async fn fifo_failure_stops_only_its_group_and_keeps_order() {
        let records = vec![
            record("a1", Some("a")),
            record("b1", Some("b")),
            record("a2", Some("a")),
            record("b2", Some("b")),
            record("a3", Some("a")),
        ];
        let seen = Mutex::new(Vec::new());
        let report = process_batch(&records, true, |record| {
            seen.lock().unwrap().push(record.message_id.clone());
            let fails = record.message_id == "a2";
            async move {
                if fails {
                    Err(RecordError::retryable("boom"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(
            report.failed_message_ids,
            vec!["a2".to_string(), "a3".to_string()]
        );
        assert_eq!(report.succeeded, 3);
        assert_eq!(report.skipped, 1);
        let seen = seen.into_inner().unwrap();
        assert!(
            !seen.contains(&"a3".to_string()),
            "a3 must not run after a2 failed"
        );
        let a_order: Vec<_> = seen.iter().filter(|id| id.starts_with('a')).collect();
        assert_eq!(a_order, vec!["a1", "a2"]);
    }

    #[tokio::test]
    async fn standard_queue_failures_are_independent() {
        let records = vec![record("1", None), record("2", None), record("3", None)];
        let report = process_batch(&records, false, |record| {
            let fails = record.message_id == "1";
            async move {
                if fails {
                    Err(RecordError::permanent("bad"))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(report.failed_message_ids, vec!["1".to_string()]);
        assert_eq!(report.succeeded, 2);
    }

    #[test]
    fn groups_keep_first_seen_order() {
        let records = vec![
            record("1", Some("x")),
            record("2", Some("y")),
            record("3", Some("x")),
        ];
        let groups = fifo_groups(&records);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].len(), 2);
    }

    #[tokio::test]
    async fn a_permanent_failure_is_named_and_its_group_still_stops() {
        let records = vec![
            record("a1", Some("a")),
            record("a2", Some("a")),
            record("b1", Some("b")),
        ];
        let report = process_batch(&records, true, |record| {
            let id = record.message_id.clone();
            async move {
                match id.as_str() {
                    "a1" => Err(RecordError::permanent("not an event")),
                    "b1" => Err(RecordError::retryable("throttled")),
                    _ => Ok(()),
                }
            }
        })
        .await;
        assert_eq!(report.permanent, vec!["a1".to_string()]);
        assert_eq!(report.skipped, 1, "a2 waits for a1's group to be released");
        let mut failed = report.failed_message_ids.clone();
        failed.sort();
        assert_eq!(failed, vec!["a1", "a2", "b1"]);
    }

    #[test]
    fn forgetting_moved_records_keeps_the_rest_failed() {
        let mut report = BatchReport::default();
        report.fail_permanently("x");
        report.fail("y");
        report.forget(&["x".to_string()]);
        assert_eq!(report.failed_message_ids, vec!["y".to_string()]);
        assert!(report.permanent.is_empty());
    }
}
