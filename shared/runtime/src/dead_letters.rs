//! The dead-letter queues: what is in them, and moving it back (`worldfleet dlq`).
//!
//! A message reaches a dead-letter queue when its handler failed it permanently or its receives
//! ran out (the queue's redrive policy). Every stage is idempotent, so the remedy once the cause
//! is fixed is to send the message back to its source queue: [`redrive`] receives a batch from
//! the dead-letter queue, sends each message to the source queue (same FIFO group; a
//! deduplication id derived from the dead letter's message id, so a redrive repeated after a
//! crash within the five-minute window sends nothing twice) and deletes from the dead-letter
//! queue only what was sent. A message that cannot be sent stays where it is, counted.
//!
//! Both run over the [`Queue`] port: the embedded store and SQS alike (on AWS the console's
//! "start DLQ redrive" does the same for a standard queue; this works for FIFO queues and
//! LocalStack too).

use std::time::Duration;

use serde::Serialize;
use worldfleet_domain::names::dead_letter_queue;
use worldfleet_ports::queue::{MAX_BATCH, is_fifo};
use worldfleet_ports::{
    DeleteOutcome, OutgoingMessage, Queue, ReceiveRequest, ReceivedMessage, Result, SendOutcome,
};

/// How long a message being looked at or moved stays hidden from another redrive.
const HOLD: Duration = Duration::from_secs(60);

/// One work queue's dead letters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeadLetters {
    /// The work queue.
    pub queue: String,
    /// Its dead-letter queue.
    pub dead_letter_queue: String,
    /// Messages in the dead-letter queue (visible, in flight and delayed).
    pub depth: u64,
    /// The first messages, when asked for: message id, FIFO group and body.
    pub sample: Vec<DeadLetter>,
}

/// One dead letter, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    pub group_id: Option<String>,
    pub body: String,
}

/// What one redrive moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Redriven {
    /// The work queue messages went back to.
    pub queue: String,
    /// Sent back and deleted from the dead-letter queue.
    pub moved: u64,
    /// Received but not sent back (they stay in the dead-letter queue), with the first reason.
    pub failed: u64,
    pub first_failure: Option<String>,
}

/// The dead letters of `queue`, with up to `sample` of them (received and made visible again
/// at once, so looking changes nothing but their receive counts).
pub async fn inspect(queue: &dyn Queue, work_queue: &str, sample: usize) -> Result<DeadLetters> {
    let dead_letter = dead_letter_queue(work_queue);
    let depth = queue.depth(&dead_letter).await?.total();
    let mut shown = Vec::new();
    let mut held = Vec::new();
    while shown.len() < sample {
        let batch = receive(queue, &dead_letter, MAX_BATCH).await?;
        if batch.is_empty() {
            break;
        }
        for message in batch {
            if shown.len() < sample {
                shown.push(DeadLetter {
                    message_id: message.message_id.clone(),
                    group_id: message.group_id.clone(),
                    body: message.body.clone(),
                });
            }
            held.push(message.receipt_handle);
        }
    }
    for handle in held {
        queue
            .change_visibility(&dead_letter, &handle, Duration::ZERO)
            .await?;
    }
    Ok(DeadLetters {
        queue: work_queue.to_owned(),
        dead_letter_queue: dead_letter,
        depth,
        sample: shown,
    })
}

/// Moves every message of `work_queue`'s dead-letter queue back to `work_queue`, at most
/// `limit` of them.
pub async fn redrive(queue: &dyn Queue, work_queue: &str, limit: u64) -> Result<Redriven> {
    let dead_letter = dead_letter_queue(work_queue);
    let mut report = Redriven {
        queue: work_queue.to_owned(),
        ..Redriven::default()
    };
    let fifo = is_fifo(work_queue);
    while report.moved + report.failed < limit {
        let left = usize::try_from(limit - report.moved - report.failed).unwrap_or(usize::MAX);
        // Receive no more than may be moved: what is received stays hidden for [`HOLD`].
        let batch = receive(queue, &dead_letter, left.min(MAX_BATCH)).await?;
        if batch.is_empty() {
            break;
        }
        let outgoing = batch
            .iter()
            .map(|message| redriven_message(message, fifo))
            .collect();
        let outcomes = queue.send_batch(work_queue, outgoing).await?;
        let mut sent = Vec::new();
        for (message, outcome) in batch.iter().zip(outcomes) {
            match outcome {
                SendOutcome::Sent { .. } => sent.push(message.receipt_handle.clone()),
                SendOutcome::Failed { reason, .. } => {
                    report.failed += 1;
                    report.first_failure.get_or_insert(reason);
                }
            }
        }
        if sent.is_empty() {
            // Nothing of this batch went back: stop rather than receive it again and again.
            break;
        }
        for outcome in queue.delete_batch(&dead_letter, sent).await? {
            match outcome {
                DeleteOutcome::Deleted => report.moved += 1,
                DeleteOutcome::Failed { reason } => {
                    // Sent but still in the dead-letter queue: a second redrive within the
                    // deduplication window sends nothing (FIFO), and the stages are idempotent.
                    report.failed += 1;
                    report.first_failure.get_or_insert(reason);
                }
            }
        }
    }
    Ok(report)
}

async fn receive(
    queue: &dyn Queue,
    dead_letter: &str,
    max_messages: usize,
) -> Result<Vec<ReceivedMessage>> {
    queue
        .receive(
            dead_letter,
            ReceiveRequest {
                max_messages,
                wait: Duration::ZERO,
                visibility_timeout: Some(HOLD),
            },
        )
        .await
}

/// The message sent back for `message`: its body, its FIFO group (a FIFO message without one
/// goes to the group `redrive`), and a deduplication id derived from its message id.
fn redriven_message(message: &ReceivedMessage, fifo: bool) -> OutgoingMessage {
    if fifo {
        let group = message.group_id.as_deref().unwrap_or("redrive");
        let dedup: String = format!("redrive-{}", message.message_id)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c))
            .take(128)
            .collect();
        OutgoingMessage::fifo(message.body.clone(), group, &dedup)
    } else {
        OutgoingMessage::delayed(message.body.clone(), Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use worldfleet_embedded::{EmbeddedStore, StoreOptions};
    use worldfleet_ports::{ManualClock, QueueSpec};

    // The full round trip (dead-lettered, shown, moved back in group order) runs on the
    // embedded queue and on SQS in `tests/tests/dead_letters.rs`.

    use super::*;

    const WORK: &str = "compose.fifo";

    async fn store() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(
            dir.path(),
            Arc::new(ManualClock::new(1_763_700_000_000)),
            StoreOptions::default(),
        )
        .unwrap();
        let queue = store.queue();
        let dead_letter = dead_letter_queue(WORK);
        queue
            .ensure_queue(&QueueSpec::dead_letter(&dead_letter))
            .await
            .unwrap();
        let mut spec = QueueSpec::with_dead_letter(WORK, &dead_letter, Duration::from_secs(30));
        spec.max_receive_count = 1;
        queue.ensure_queue(&spec).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn an_empty_dead_letter_queue_moves_nothing() {
        let (_dir, store) = store().await;
        let queue = store.queue();
        let report = redrive(queue.as_ref(), WORK, u64::MAX).await.unwrap();
        assert_eq!((report.moved, report.failed), (0, 0));
        store.close();
    }
}
