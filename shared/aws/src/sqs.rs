//! [`SqsQueue`]: the queue port over Amazon SQS (or LocalStack).
//!
//! Logical queue names map to physical ones with the stack prefix; URLs are resolved once
//! (or given up front in [`AwsSettings::queue_urls`]) and cached. Request shape is checked
//! here before anything is sent, so a malformed batch fails the same way on every adapter.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use tracing::{debug, warn};
use worldfleet_ports::queue::{MAX_BATCH, MAX_BODY_BYTES, MAX_DELAY, MAX_WAIT, is_fifo};
use worldfleet_ports::{
    DeleteOutcome, Error, OperationCounters, OutgoingMessage, Queue, QueueDepth, QueueSpec,
    ReceiveRequest, ReceivedMessage, Result, SendOutcome,
};

use crate::classify::{SdkResult, ServiceError, classify_code, counted_request, for_resource};
use crate::retry::{Repeat, RetryCounters, RetrySnapshot};
use crate::settings::AwsSettings;

/// Largest total payload of one SendMessageBatch request; larger batches are split.
pub const MAX_BATCH_PAYLOAD_BYTES: usize = 256 * 1024;
/// Longest visibility timeout SQS accepts.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// The queue port over SQS. Clones share the client, URL cache and counters.
#[derive(Clone)]
pub struct SqsQueue {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    settings: AwsSettings,
    counters: Arc<OperationCounters>,
    retries: RetryCounters,
    urls: RwLock<HashMap<String, String>>,
}

impl SqsQueue {
    /// An adapter over an SQS client.
    pub fn new(client: Client, settings: AwsSettings) -> Self {
        Self::with_counters(client, settings, Arc::new(OperationCounters::default()))
    }

    /// An adapter that counts into `counters` (share one between adapters to count a run).
    pub fn with_counters(
        client: Client,
        settings: AwsSettings,
        counters: Arc<OperationCounters>,
    ) -> Self {
        let urls = settings.queue_urls.clone().into_iter().collect();
        Self {
            inner: Arc::new(Inner {
                client,
                settings,
                counters,
                retries: RetryCounters::default(),
                urls: RwLock::new(urls),
            }),
        }
    }

    /// An adapter from an SDK configuration.
    pub fn from_sdk_config(config: &SdkConfig, settings: AwsSettings) -> Self {
        Self::new(Client::new(config), settings)
    }

    /// An adapter configured from the environment ([`AwsSettings::from_env`]).
    pub async fn from_env() -> crate::Result<Self> {
        AwsSettings::adapter_from_env(Self::from_sdk_config).await
    }

    /// Requests and messages counted so far.
    pub fn counters(&self) -> &Arc<OperationCounters> {
        &self.inner.counters
    }

    /// What this adapter's retries did so far.
    pub fn retries(&self) -> RetrySnapshot {
        self.inner.retries.snapshot()
    }

    /// The settings (stack prefix, retry policy) this adapter uses.
    pub fn settings(&self) -> &AwsSettings {
        &self.inner.settings
    }

    /// The logical names of every queue under this adapter's stack prefix.
    pub async fn list_queues(&self) -> Result<Vec<String>> {
        let prefix = self.inner.settings.physical_name("");
        let mut names = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let token = next_token.clone();
            let output = self
                .request("ListQueues", Repeat::Safe, || {
                    self.inner
                        .client
                        .list_queues()
                        .queue_name_prefix(prefix.clone())
                        .set_next_token(token.clone())
                        .max_results(1000)
                        .send()
                })
                .await?;
            for url in output.queue_urls() {
                let physical = url.rsplit('/').next().unwrap_or(url);
                if let Some(logical) = self.inner.settings.logical_name(physical) {
                    names.push(logical.to_owned());
                }
            }
            match output.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => break,
            }
        }
        names.sort();
        Ok(names)
    }

    /// Deletes a queue (tests and teardown); a missing queue is not an error.
    pub async fn delete_queue(&self, queue: &str) -> Result<()> {
        let url = match self.url(queue).await {
            Ok(url) => url,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error),
        };
        let result = self
            .request("DeleteQueue", Repeat::Safe, || {
                self.inner
                    .client
                    .delete_queue()
                    .queue_url(url.clone())
                    .send()
            })
            .await;
        self.forget(queue);
        match result {
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// One SQS request, counted as a queue request ([`counted_request`]).
    async fn request<T, E, F, Fut>(&self, operation: &str, repeat: Repeat, call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = SdkResult<T, E>>,
        E: ServiceError,
    {
        let inner = &self.inner;
        let count = || inner.counters.queue_request();
        let counting = (count, &inner.retries);
        counted_request(&inner.settings.retry, operation, repeat, counting, call).await
    }

    /// The queue URL of a logical name, resolved once.
    async fn url(&self, queue: &str) -> Result<String> {
        if let Some(url) = self.cached(queue) {
            return Ok(url);
        }
        let physical = self.inner.settings.physical_name(queue);
        let output = self
            .request("GetQueueUrl", Repeat::Safe, || {
                self.inner
                    .client
                    .get_queue_url()
                    .queue_name(physical.clone())
                    .send()
            })
            .await
            .map_err(|error| for_resource(error, "queue", queue))?;
        let url = output
            .queue_url()
            .ok_or_else(|| Error::Permanent(format!("GetQueueUrl for {queue} returned no URL")))?
            .to_owned();
        self.remember(queue, &url);
        Ok(url)
    }

    fn cached(&self, queue: &str) -> Option<String> {
        self.inner
            .urls
            .read()
            .ok()
            .and_then(|urls| urls.get(queue).cloned())
    }

    fn remember(&self, queue: &str, url: &str) {
        if let Ok(mut urls) = self.inner.urls.write() {
            urls.insert(queue.to_owned(), url.to_owned());
        }
    }

    fn forget(&self, queue: &str) {
        if let Ok(mut urls) = self.inner.urls.write() {
            urls.remove(queue);
        }
    }

    /// Drops a cached URL when SQS says the queue is gone, so a re-created queue is found.
    fn note_missing(&self, queue: &str, error: Error) -> Error {
        if matches!(error, Error::NotFound(_)) {
            self.forget(queue);
        }
        for_resource(error, "queue", queue)
    }

    async fn queue_arn(&self, url: &str) -> Result<String> {
        let output = self
            .request("GetQueueAttributes", Repeat::Safe, || {
                self.inner
                    .client
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .send()
            })
            .await?;
        output
            .attributes()
            .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| Error::Permanent(format!("queue {url} reported no ARN")))
    }

    /// Creates a queue with `attributes` or, when it exists with others, updates them.
    async fn create_or_update(
        &self,
        spec: &QueueSpec,
        attributes: HashMap<QueueAttributeName, String>,
    ) -> Result<()> {
        let physical = self.inner.settings.physical_name(&spec.name);
        let created = self
            .request("CreateQueue", Repeat::Safe, || {
                self.inner
                    .client
                    .create_queue()
                    .queue_name(physical.clone())
                    .set_attributes(Some(attributes.clone()))
                    .send()
            })
            .await;
        match created {
            Ok(output) => {
                if let Some(url) = output.queue_url() {
                    self.remember(&spec.name, url);
                }
                debug!(queue = %spec.name, %physical, "queue ensured");
                Ok(())
            }
            // The queue exists with other attributes: bring them in line (FIFO-ness cannot
            // change, so it is left out; a mismatch there fails in SetQueueAttributes).
            Err(Error::InvalidRequest(reason))
                if reason.contains("QueueAlreadyExists") || reason.contains("QueueNameExists") =>
            {
                let url = self.url(&spec.name).await?;
                let mutable: HashMap<_, _> = attributes
                    .into_iter()
                    .filter(|(name, _)| !matches!(name, QueueAttributeName::FifoQueue))
                    .collect();
                self.request("SetQueueAttributes", Repeat::Safe, || {
                    self.inner
                        .client
                        .set_queue_attributes()
                        .queue_url(url.clone())
                        .set_attributes(Some(mutable.clone()))
                        .send()
                })
                .await?;
                debug!(queue = %spec.name, "queue existed: attributes updated");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

fn queue_attributes(spec: &QueueSpec) -> HashMap<QueueAttributeName, String> {
    let mut attributes = HashMap::from([
        (
            QueueAttributeName::VisibilityTimeout,
            spec.visibility_timeout.as_secs().to_string(),
        ),
        (
            QueueAttributeName::MessageRetentionPeriod,
            spec.retention.as_secs().to_string(),
        ),
    ]);
    if spec.is_fifo() {
        attributes.insert(QueueAttributeName::FifoQueue, "true".into());
        attributes.insert(
            QueueAttributeName::ContentBasedDeduplication,
            "false".into(),
        );
    }
    attributes
}

fn validate_spec(spec: &QueueSpec) -> Result<()> {
    if spec.visibility_timeout > MAX_VISIBILITY {
        return Err(Error::InvalidRequest(format!(
            "visibility timeout of {} is over 12 hours",
            spec.name
        )));
    }
    let retention = spec.retention.as_secs();
    if !(60..=14 * 24 * 3600).contains(&retention) {
        return Err(Error::InvalidRequest(format!(
            "retention of {} must be 60 s to 14 days",
            spec.name
        )));
    }
    if let Some(dead_letter) = &spec.dead_letter_queue {
        if !(1..=1000).contains(&spec.max_receive_count) {
            return Err(Error::InvalidRequest(format!(
                "max receive count of {} must be 1 to 1000",
                spec.name
            )));
        }
        if is_fifo(dead_letter) != spec.is_fifo() {
            return Err(Error::InvalidRequest(format!(
                "{} and its dead-letter queue {dead_letter} must both be FIFO or both standard",
                spec.name
            )));
        }
    }
    Ok(())
}

/// Checks the shape of a send against SQS's rules; the whole call is refused on a breach.
fn validate_send(queue: &str, messages: &[OutgoingMessage]) -> Result<()> {
    if messages.is_empty() || messages.len() > MAX_BATCH {
        return Err(Error::InvalidRequest(format!(
            "{} messages in one send; it takes 1 to {MAX_BATCH}",
            messages.len()
        )));
    }
    let fifo = is_fifo(queue);
    for message in messages {
        if message.body.is_empty() || message.body.len() > MAX_BODY_BYTES {
            return Err(Error::InvalidRequest(format!(
                "message body of {} bytes; it must be 1 to {MAX_BODY_BYTES}",
                message.body.len()
            )));
        }
        if message.delay > MAX_DELAY {
            return Err(Error::InvalidRequest("delay over 900 s".into()));
        }
        if fifo {
            if message.group_id.as_deref().is_none_or(str::is_empty) {
                return Err(Error::InvalidRequest(format!(
                    "{queue}: FIFO sends need a group id"
                )));
            }
            if message.dedup_id.as_deref().is_none_or(str::is_empty) {
                return Err(Error::InvalidRequest(format!(
                    "{queue}: FIFO sends need a deduplication id (content-based deduplication is off)"
                )));
            }
            if !message.delay.is_zero() {
                return Err(Error::InvalidRequest(format!(
                    "{queue}: FIFO queues refuse per-message delays"
                )));
            }
        } else if message.group_id.is_some() || message.dedup_id.is_some() {
            return Err(Error::InvalidRequest(format!(
                "{queue}: group and deduplication ids are for FIFO queues"
            )));
        }
    }
    Ok(())
}

/// Splits a batch into runs whose bodies fit one request's payload limit.
fn payload_chunks(messages: &[OutgoingMessage]) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, message) in messages.iter().enumerate() {
        if index > start && bytes + message.body.len() > MAX_BATCH_PAYLOAD_BYTES {
            chunks.push(start..index);
            start = index;
            bytes = 0;
        }
        bytes += message.body.len();
    }
    if start < messages.len() {
        chunks.push(start..messages.len());
    }
    chunks
}

fn batch_failure(code: &str, message: Option<&str>, sender_fault: bool) -> (String, bool) {
    let reason = match message {
        Some(message) if !message.is_empty() => format!("{code}: {message}"),
        _ => code.to_owned(),
    };
    let retryable = !sender_fault || classify_code(code, "", None).is_retryable();
    (reason, retryable)
}

#[async_trait]
impl Queue for SqsQueue {
    async fn ensure_queue(&self, spec: &QueueSpec) -> Result<()> {
        validate_spec(spec)?;
        let mut attributes = queue_attributes(spec);
        if let Some(dead_letter) = &spec.dead_letter_queue {
            // A redrive target must exist first; one not declared yet gets the defaults.
            let dead_letter_url = match self.url(dead_letter).await {
                Ok(url) => url,
                Err(Error::NotFound(_)) => {
                    let dead_spec = QueueSpec::dead_letter(dead_letter);
                    self.create_or_update(&dead_spec, queue_attributes(&dead_spec))
                        .await?;
                    self.url(dead_letter).await?
                }
                Err(error) => return Err(error),
            };
            let arn = self.queue_arn(&dead_letter_url).await?;
            let redrive = serde_json::json!({
                "deadLetterTargetArn": arn,
                "maxReceiveCount": spec.max_receive_count,
            });
            attributes.insert(QueueAttributeName::RedrivePolicy, redrive.to_string());
        }
        self.create_or_update(spec, attributes).await?;
        self.url(&spec.name).await.map(drop)
    }

    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<SendOutcome>> {
        validate_send(queue, &messages)?;
        let url = self.url(queue).await?;
        let fifo = is_fifo(queue);
        let mut outcomes = Vec::with_capacity(messages.len());
        for chunk in payload_chunks(&messages) {
            let mut entries = Vec::with_capacity(chunk.len());
            for index in chunk.clone() {
                let message = &messages[index];
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(message.body.clone());
                if fifo {
                    entry = entry
                        .set_message_group_id(message.group_id.clone())
                        .set_message_deduplication_id(message.dedup_id.clone());
                } else if !message.delay.is_zero() {
                    entry = entry.delay_seconds(message.delay.as_secs() as i32);
                }
                entries.push(entry.build().map_err(|error| {
                    Error::InvalidRequest(format!("send entry {index}: {error}"))
                })?);
            }
            // FIFO sends are deduplicated by id, so repeating one is harmless; a standard send
            // repeated after a lost reply is a duplicate, which at-least-once delivery allows.
            let output = self
                .request("SendMessageBatch", Repeat::Safe, || {
                    self.inner
                        .client
                        .send_message_batch()
                        .queue_url(url.clone())
                        .set_entries(Some(entries.clone()))
                        .send()
                })
                .await
                .map_err(|error| self.note_missing(queue, error))?;
            let mut by_id: HashMap<&str, SendOutcome> = HashMap::new();
            for sent in output.successful() {
                by_id.insert(
                    sent.id(),
                    SendOutcome::Sent {
                        message_id: sent.message_id().to_owned(),
                    },
                );
            }
            for failed in output.failed() {
                let (reason, retryable) =
                    batch_failure(failed.code(), failed.message(), failed.sender_fault());
                by_id.insert(failed.id(), SendOutcome::Failed { reason, retryable });
            }
            let sent = output.successful().len();
            self.inner.counters.messages_sent(sent);
            for index in chunk {
                let outcome = by_id.remove(index.to_string().as_str()).unwrap_or_else(|| {
                    SendOutcome::Failed {
                        reason: "SQS reported no outcome for this entry".into(),
                        retryable: true,
                    }
                });
                outcomes.push(outcome);
            }
        }
        Ok(outcomes)
    }

    async fn receive(&self, queue: &str, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>> {
        if !(1..=MAX_BATCH).contains(&request.max_messages) {
            return Err(Error::InvalidRequest(format!(
                "receive of {} messages; it must be 1 to {MAX_BATCH}",
                request.max_messages
            )));
        }
        if request.wait > MAX_WAIT {
            return Err(Error::InvalidRequest("long-poll wait over 20 s".into()));
        }
        if request
            .visibility_timeout
            .is_some_and(|timeout| timeout > MAX_VISIBILITY)
        {
            return Err(Error::InvalidRequest(
                "visibility timeout over 12 hours".into(),
            ));
        }
        let url = self.url(queue).await?;
        let output = self
            .request("ReceiveMessage", Repeat::Safe, || {
                self.inner
                    .client
                    .receive_message()
                    .queue_url(url.clone())
                    .max_number_of_messages(request.max_messages as i32)
                    .wait_time_seconds(request.wait.as_secs() as i32)
                    .set_visibility_timeout(
                        request
                            .visibility_timeout
                            .map(|timeout| timeout.as_secs() as i32),
                    )
                    .message_system_attribute_names(
                        MessageSystemAttributeName::ApproximateReceiveCount,
                    )
                    .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                    .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                    .send()
            })
            .await
            .map_err(|error| self.note_missing(queue, error))?;
        let mut received = Vec::with_capacity(output.messages().len());
        for message in output.messages() {
            let (Some(message_id), Some(receipt_handle)) =
                (message.message_id(), message.receipt_handle())
            else {
                warn!(
                    queue,
                    "received a message without id or receipt handle; left to redeliver"
                );
                continue;
            };
            let attribute = |name: MessageSystemAttributeName| {
                message
                    .attributes()
                    .and_then(|attributes| attributes.get(&name))
                    .cloned()
            };
            received.push(ReceivedMessage {
                message_id: message_id.to_owned(),
                receipt_handle: receipt_handle.to_owned(),
                body: message.body().unwrap_or_default().to_owned(),
                group_id: attribute(MessageSystemAttributeName::MessageGroupId),
                receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                    .and_then(|count| count.parse().ok())
                    .unwrap_or(1),
                sent_at_ms: attribute(MessageSystemAttributeName::SentTimestamp)
                    .and_then(|sent| sent.parse().ok())
                    .unwrap_or(0),
            });
        }
        self.inner.counters.messages_received(received.len());
        Ok(received)
    }

    async fn delete_batch(
        &self,
        queue: &str,
        receipt_handles: Vec<String>,
    ) -> Result<Vec<DeleteOutcome>> {
        // SQS refuses empty batches (EmptyBatchRequest) as well as oversized ones.
        if receipt_handles.is_empty() || receipt_handles.len() > MAX_BATCH {
            return Err(Error::InvalidRequest(format!(
                "{} deletes in one batch; it takes 1 to {MAX_BATCH}",
                receipt_handles.len()
            )));
        }
        let url = self.url(queue).await?;
        let mut entries = Vec::with_capacity(receipt_handles.len());
        for (index, handle) in receipt_handles.iter().enumerate() {
            entries.push(
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(handle.clone())
                    .build()
                    .map_err(|error| {
                        Error::InvalidRequest(format!("delete entry {index}: {error}"))
                    })?,
            );
        }
        let output = self
            .request("DeleteMessageBatch", Repeat::Safe, || {
                self.inner
                    .client
                    .delete_message_batch()
                    .queue_url(url.clone())
                    .set_entries(Some(entries.clone()))
                    .send()
            })
            .await
            .map_err(|error| self.note_missing(queue, error))?;
        let mut by_id: HashMap<&str, DeleteOutcome> = HashMap::new();
        for deleted in output.successful() {
            by_id.insert(deleted.id(), DeleteOutcome::Deleted);
        }
        for failed in output.failed() {
            let (reason, _) = batch_failure(failed.code(), failed.message(), failed.sender_fault());
            by_id.insert(failed.id(), DeleteOutcome::Failed { reason });
        }
        self.inner
            .counters
            .messages_deleted(output.successful().len());
        Ok((0..receipt_handles.len())
            .map(|index| {
                by_id
                    .remove(index.to_string().as_str())
                    .unwrap_or_else(|| DeleteOutcome::Failed {
                        reason: "SQS reported no outcome for this entry".into(),
                    })
            })
            .collect())
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<()> {
        if timeout > MAX_VISIBILITY {
            return Err(Error::InvalidRequest(
                "visibility timeout over 12 hours".into(),
            ));
        }
        let url = self.url(queue).await?;
        self.request("ChangeMessageVisibility", Repeat::Safe, || {
            self.inner
                .client
                .change_message_visibility()
                .queue_url(url.clone())
                .receipt_handle(receipt_handle)
                .visibility_timeout(timeout.as_secs() as i32)
                .send()
        })
        .await
        .map_err(|error| self.note_missing(queue, error))?;
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth> {
        let url = self.url(queue).await?;
        let output = self
            .request("GetQueueAttributes", Repeat::Safe, || {
                self.inner
                    .client
                    .get_queue_attributes()
                    .queue_url(url.clone())
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                    .send()
            })
            .await
            .map_err(|error| self.note_missing(queue, error))?;
        let count = |name: QueueAttributeName| {
            output
                .attributes()
                .and_then(|attributes| attributes.get(&name))
                .and_then(|count| count.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: count(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_sends_need_group_and_dedup_and_no_delay() {
        let good = OutgoingMessage::fifo("{}".into(), "g", "d");
        assert!(validate_send("q.fifo", std::slice::from_ref(&good)).is_ok());
        let mut no_group = good.clone();
        no_group.group_id = None;
        assert!(validate_send("q.fifo", &[no_group]).is_err());
        let mut delayed = good.clone();
        delayed.delay = Duration::from_secs(1);
        assert!(validate_send("q.fifo", &[delayed]).is_err());
        assert!(validate_send("q", std::slice::from_ref(&good)).is_err());
        assert!(validate_send("q.fifo", &vec![good; 11]).is_err());
        assert!(validate_send("q.fifo", &[]).is_err());
        let too_late = OutgoingMessage::delayed("x".into(), Duration::from_secs(901));
        assert!(validate_send("q", &[too_late]).is_err());
    }

    #[test]
    fn large_batches_split_by_payload() {
        let big = OutgoingMessage::delayed("x".repeat(100 * 1024), Duration::ZERO);
        let chunks = payload_chunks(&vec![big; 5]);
        assert_eq!(chunks, vec![0..2, 2..4, 4..5]);
        let small = OutgoingMessage::delayed("x".into(), Duration::ZERO);
        assert_eq!(payload_chunks(&vec![small; 10]), vec![0..10]);
    }

    #[test]
    fn dead_letter_specs_are_checked() {
        let mut spec = QueueSpec::with_dead_letter("a.fifo", "a-dlq", Duration::from_secs(30));
        assert!(validate_spec(&spec).is_err());
        spec.dead_letter_queue = Some("a-dlq.fifo".into());
        assert!(validate_spec(&spec).is_ok());
        spec.max_receive_count = 0;
        assert!(validate_spec(&spec).is_err());
        let attributes = queue_attributes(&spec);
        assert_eq!(attributes[&QueueAttributeName::FifoQueue], "true");
        assert_eq!(
            attributes[&QueueAttributeName::ContentBasedDeduplication],
            "false"
        );
    }
}
