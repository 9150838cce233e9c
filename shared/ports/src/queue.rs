//! The queue port: SQS semantics, batch-first.
//!
//! Contract (checked by `worldfleet-contract` against every adapter):
//! - sends, receives and deletes take at most [`MAX_BATCH`] entries;
//! - delivery is at least once; a received message stays invisible for the visibility timeout,
//!   then is delivered again with a higher receive count, unless deleted first;
//! - after `max_receive_count` receives a message moves to the dead-letter queue;
//! - FIFO queues keep order within a message group, hand out no message of a group while an
//!   earlier one of that group is in flight, run groups in parallel, and drop a send whose
//!   deduplication id was already seen within [`DEDUP_WINDOW`] (reporting it as sent);
//! - per-message delays (0–900 s) are for standard queues; FIFO queues refuse them, as SQS does.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Most entries in one send, receive or delete.
pub const MAX_BATCH: usize = 10;
/// Longest per-message or queue delay.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// How long a FIFO deduplication id is remembered.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(300);
/// Longest long-poll wait.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// Largest message body, in bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How a queue is declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueSpec {
    /// Logical name; FIFO queue names end in `.fifo`.
    pub name: String,
    /// How long a received message stays invisible.
    pub visibility_timeout: Duration,
    /// Receives after which a message moves to `dead_letter_queue`.
    pub max_receive_count: u32,
    /// Where exhausted messages go; `None` keeps retrying forever.
    pub dead_letter_queue: Option<String>,
    /// How long an undeleted message is kept.
    pub retention: Duration,
}

impl QueueSpec {
    /// A queue with worldfleet's defaults: 5 receives then the dead-letter queue, 4 days'
    /// retention, and the given visibility timeout.
    pub fn with_dead_letter(name: &str, dead_letter: &str, visibility_timeout: Duration) -> Self {
        Self {
            name: name.to_owned(),
            visibility_timeout,
            max_receive_count: 5,
            dead_letter_queue: Some(dead_letter.to_owned()),
            retention: Duration::from_secs(4 * 24 * 3600),
        }
    }

    /// A dead-letter queue: no redrive of its own, 14 days' retention.
    pub fn dead_letter(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 0,
            dead_letter_queue: None,
            retention: Duration::from_secs(14 * 24 * 3600),
        }
    }

    /// True for a FIFO queue.
    pub fn is_fifo(&self) -> bool {
        is_fifo(&self.name)
    }
}

/// True when `queue` names a FIFO queue.
pub fn is_fifo(queue: &str) -> bool {
    queue.ends_with(".fifo")
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// The body (UTF-8, at most 256 KiB).
    pub body: String,
    /// FIFO message group; required on FIFO queues, refused on standard ones.
    pub group_id: Option<String>,
    /// FIFO deduplication id; required on FIFO queues.
    pub dedup_id: Option<String>,
    /// Delay before the message becomes visible (standard queues only).
    pub delay: Duration,
}

impl OutgoingMessage {
    /// A FIFO message in `group` deduplicated by `dedup_id`.
    pub fn fifo(body: String, group: &str, dedup_id: &str) -> Self {
        Self {
            body,
            group_id: Some(group.to_owned()),
            dedup_id: Some(dedup_id.to_owned()),
            delay: Duration::ZERO,
        }
    }

    /// A standard-queue message delivered after `delay`.
    pub fn delayed(body: String, delay: Duration) -> Self {
        Self {
            body,
            group_id: None,
            dedup_id: None,
            delay,
        }
    }
}

/// What happened to one entry of a send.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// Accepted (or dropped as a duplicate within the deduplication window, as SQS reports it).
    Sent { message_id: String },
    /// Refused; `retryable` says whether sending again may work.
    Failed { reason: String, retryable: bool },
}

/// Parameters of a receive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReceiveRequest {
    /// 1–10.
    pub max_messages: usize,
    /// Long-poll wait, at most 20 s.
    pub wait: Duration,
    /// Overrides the queue's visibility timeout for these messages.
    pub visibility_timeout: Option<Duration>,
}

impl ReceiveRequest {
    /// Up to ten messages, waiting up to `wait`.
    pub fn batch(wait: Duration) -> Self {
        Self {
            max_messages: MAX_BATCH,
            wait,
            visibility_timeout: None,
        }
    }
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedMessage {
    /// Stable across redeliveries of the same message.
    pub message_id: String,
    /// Valid until the message is received again or deleted.
    pub receipt_handle: String,
    pub body: String,
    /// FIFO message group, if any.
    pub group_id: Option<String>,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    /// When the message was first sent, Unix milliseconds.
    pub sent_at_ms: u64,
}

/// What happened to one entry of a delete.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteOutcome {
    Deleted,
    Failed { reason: String },
}

/// Approximate counts, as SQS reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl QueueDepth {
    /// All messages not yet deleted.
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// A message queue with SQS semantics.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Creates the queue if it does not exist (idempotent for the same spec).
    async fn ensure_queue(&self, spec: &QueueSpec) -> Result<()>;

    /// Sends up to ten messages; one outcome per entry, in order.
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<SendOutcome>>;

    /// Receives up to `max_messages`, long-polling up to `wait` when none is visible.
    async fn receive(&self, queue: &str, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>>;

    /// Deletes up to ten messages by receipt handle; one outcome per entry, in order.
    async fn delete_batch(
        &self,
        queue: &str,
        receipt_handles: Vec<String>,
    ) -> Result<Vec<DeleteOutcome>>;

    /// Makes a received message visible again after `timeout` (zero: now).
    async fn change_visibility(
        &self,
        queue: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<()>;

    /// Approximate message counts.
    async fn depth(&self, queue: &str) -> Result<QueueDepth>;
}
