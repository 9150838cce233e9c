//! Per-record batch processing with partial-failure reports.
//!
//! Records of a standard queue are processed concurrently. Records of a FIFO queue are grouped
//! by message group: groups run concurrently, records within a group run in order, and the
//! first failure in a group marks the rest of that group failed *without running them*, so the
//! queue redelivers them in order. Other groups are unaffected. The report lists failed message
//! ids, which is exactly what SQS's `batchItemFailures` needs.

use std::fmt;
use std::future::Future;

use futures::future::join_all;
use tracing::Instrument;
use worldfleet_ports::ReceivedMessage;

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
                    report.fail(&record.message_id);
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
            let mut failed = false;
            for record in group {
                if failed {
                    report.skipped += 1;
                    report.fail(&record.message_id);
                    continue;
                }
                match handler(record).instrument(record_span(record)).await {
                    Ok(()) => report.succeeded += 1,
                    Err(error) => {
                        log_failure(record, &error);
                        failed = true;
                        report.fail(&record.message_id);
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

fn log_failure(record: &ReceivedMessage, error: &RecordError) {
    tracing::warn!(
        message_id = %record.message_id,
        group = record.group_id.as_deref().unwrap_or("-"),
        receive_count = record.receive_count,
        retryable = error.retryable,
        reason = %error.reason,
        "record failed; it will be redelivered"
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
}
