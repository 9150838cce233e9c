//! Lambda glue: an SQS event in, the stage handler run, `batchItemFailures` out.
//!
//! Every stage binary is a few lines: build the stage from the environment with
//! [`aws_context`], then [`serve`] it. The event source mapping must enable
//! `ReportBatchItemFailures`, so the records the handler reports failed — and only those — are
//! retried (on FIFO queues a failure also holds back the rest of its message group, which the
//! handler reports failed too).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{LambdaEvent, service_fn};
use worldfleet_aws::{AwsSettings, DynamoTable, SqsQueue};
use worldfleet_kit::{BatchReport, StageContext, StageHandler};
use worldfleet_ports::{Clock, Queue, ReceivedMessage, SystemClock, Table};

/// JSON logs on stdout (CloudWatch), filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .try_init();
}

/// The ports over SQS and DynamoDB, configured once from the environment
/// (`AWS_REGION`, `WORLDFLEET_STACK`, endpoints via `AWS_ENDPOINT_URL*`).
pub async fn aws_context() -> anyhow::Result<StageContext> {
    let settings = AwsSettings::from_env().context("read AWS settings from the environment")?;
    let config = settings.sdk_config().await;
    let queue: Arc<dyn Queue> = Arc::new(SqsQueue::from_sdk_config(&config, settings.clone()));
    let table: Arc<dyn Table> = Arc::new(DynamoTable::from_sdk_config(&config, settings));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(StageContext::new(queue, table, clock))
}

/// Converts the event's records. A record without a message id cannot be reported failed, so
/// it cannot be retried safely: the conversion refuses the whole event instead (Lambda then
/// retries the batch).
pub fn records_from_event(event: SqsEvent) -> anyhow::Result<Vec<ReceivedMessage>> {
    event.records.into_iter().map(record_from_message).collect()
}

fn record_from_message(message: SqsMessage) -> anyhow::Result<ReceivedMessage> {
    let message_id = message
        .message_id
        .context("an SQS record without messageId")?;
    let attribute = |name: &str| message.attributes.get(name).cloned();
    Ok(ReceivedMessage {
        receipt_handle: message.receipt_handle.unwrap_or_default(),
        body: message.body.unwrap_or_default(),
        group_id: attribute("MessageGroupId"),
        receive_count: attribute("ApproximateReceiveCount")
            .and_then(|count| count.parse().ok())
            .unwrap_or(1),
        sent_at_ms: attribute("SentTimestamp")
            .and_then(|sent| sent.parse().ok())
            .unwrap_or(0),
        message_id,
    })
}

/// The partial-batch response for `report`.
pub fn batch_response(report: &BatchReport) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = report
        .failed_message_ids
        .iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.clone();
            failure
        })
        .collect();
    response
}

/// Handles one invocation: the time budget is the invocation's remaining time.
pub async fn invoke(
    handler: &dyn StageHandler,
    event: LambdaEvent<SqsEvent>,
) -> anyhow::Result<SqsBatchResponse> {
    let remaining = event
        .context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::from_secs(1));
    let records = records_from_event(event.payload)?;
    let report = handler.handle_batch(&records, remaining).await;
    tracing::info!(
        stage = handler.name(),
        records = records.len(),
        succeeded = report.succeeded,
        failed = report.failed_message_ids.len(),
        skipped = report.skipped,
        "batch handled"
    );
    Ok(batch_response(&report))
}

/// Serves `handler` on the Lambda Runtime API until the environment is shut down.
pub async fn serve(handler: Arc<dyn StageHandler>) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = Arc::clone(&handler);
        async move {
            invoke(handler.as_ref(), event)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_records_and_reports_failures_by_message_id() {
        let event: SqsEvent = serde_json::from_value(serde_json::json!({
            "Records": [{
                "messageId": "m-1",
                "receiptHandle": "r-1",
                "body": "{}",
                "attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000000", "MessageGroupId": "g/1/2"},
                "messageAttributes": {},
                "eventSource": "aws:sqs"
            }]
        }))
        .unwrap();
        let records = records_from_event(event).unwrap();
        assert_eq!(records[0].receive_count, 3);
        assert_eq!(records[0].group_id.as_deref(), Some("g/1/2"));
        assert_eq!(records[0].sent_at_ms, 1_700_000_000_000);
        let report = BatchReport {
            failed_message_ids: vec!["m-1".into()],
            succeeded: 0,
            skipped: 0,
        };
        let response = serde_json::to_value(batch_response(&report)).unwrap();
        assert_eq!(
            response,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]})
        );
    }

    #[test]
    fn refuses_records_without_message_id() {
        let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [{"body": "x", "attributes": {}, "messageAttributes": {}}]})).unwrap();
        assert!(records_from_event(event).is_err());
    }
}
