//! The [`Queue`] port over the embedded store: declare, send, receive (long polling), delete,
//! change visibility and depth.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use worldfleet_ports::queue::{DEDUP_WINDOW, MAX_BATCH, MAX_WAIT};
use worldfleet_ports::{
    DeleteOutcome, Error, OutgoingMessage, Queue, QueueDepth, QueueSpec, ReceiveRequest,
    ReceivedMessage, Result, SendOutcome,
};

use super::delivery::{Message, QueueHandle, parse_receipt};
use super::validate::{refusal, validate_spec};
use super::{
    DedupDigest, EmbeddedQueue, MAX_VISIBILITY, QUEUE_META_PREFIX, dedup_digest, dedup_key,
    message_id, millis,
};
use crate::codec::{self, MessageRecord};
use crate::writer::{Answer, Space, wait};

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn ensure_queue(&self, spec: &QueueSpec) -> Result<()> {
        validate_spec(spec)?;
        if let Some(dead_letter) = &spec.dead_letter_queue {
            self.handle(dead_letter).map_err(|_| {
                Error::NotFound(format!(
                    "dead-letter queue {dead_letter} of {} must be created first",
                    spec.name
                ))
            })?;
        }
        if let Ok(handle) = self.handle(&spec.name) {
            let mut state = handle.lock();
            if state.spec == *spec {
                return Ok(());
            }
            // A changed declaration updates the queue's attributes, as SetQueueAttributes would.
            state.spec = spec.clone();
        }
        let mut key = QUEUE_META_PREFIX.to_vec();
        key.extend_from_slice(spec.name.as_bytes());
        let value = serde_json::to_vec(spec)
            .map_err(|error| Error::Permanent(format!("queue spec: {error}")))?;
        self.shared
            .writer
            .execute(Answer::Durable, move |staging| {
                staging.insert(Space::Meta, key, value);
                Ok(())
            })
            .await?;
        self.shared
            .queues
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(spec.name.clone())
            .or_insert_with(|| Arc::new(QueueHandle::new(spec.clone())));
        Ok(())
    }

    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<SendOutcome>> {
        self.shared.counters.queue_request();
        if messages.is_empty() || messages.len() > MAX_BATCH {
            return Err(Error::InvalidRequest(format!(
                "send of {} messages; 1 to {MAX_BATCH} allowed",
                messages.len()
            )));
        }
        let handle = self.handle(queue)?;
        let now_ms = self.shared.clock.now_ms();
        let window_ms = millis(DEDUP_WINDOW);
        let mut outcomes = Vec::with_capacity(messages.len());
        let mut records = Vec::with_capacity(messages.len());
        let mut reserved = Vec::new();
        let mut superseded = Vec::new();
        let answer = {
            let mut state = handle.lock();
            for message in messages {
                if let Some(reason) = refusal(handle.fifo, &message) {
                    outcomes.push(SendOutcome::Failed {
                        reason,
                        retryable: false,
                    });
                    continue;
                }
                let digest = match &message.dedup_id {
                    Some(id) if handle.fifo => Some(dedup_digest(id)),
                    _ => None,
                };
                if let Some(digest) = &digest
                    && let Some(&(expires, sent)) = state.dedup.get(digest)
                    && expires > now_ms
                {
                    outcomes.push(SendOutcome::Sent {
                        message_id: message_id(sent),
                    });
                    continue;
                }
                let sequence = self.shared.sequence.fetch_add(1, Ordering::Relaxed);
                if let Some(digest) = digest {
                    let expires = now_ms + window_ms;
                    // An id seen before whose window has passed, not swept yet: its key on
                    // disk (under its old expiry) goes with this write.
                    if let Some((stale, _)) = state.dedup.insert(digest, (expires, sequence)) {
                        superseded.push(dedup_key(&handle.prefix, stale, &digest));
                    }
                    reserved.push((digest, expires, sequence));
                }
                outcomes.push(SendOutcome::Sent {
                    message_id: message_id(sequence),
                });
                records.push((
                    sequence,
                    MessageRecord {
                        message_id: message_id(sequence),
                        sent_at_ms: now_ms,
                        visible_at_ms: now_ms.saturating_add(millis(message.delay)),
                        group_id: message.group_id,
                        body: message.body,
                    },
                ));
            }
            if records.is_empty() {
                None
            } else {
                // Submitted under the queue lock: commit order is sequence order.
                let target = handle.clone();
                let pending: Vec<(u64, Message)> = records
                    .iter()
                    .map(|(sequence, record)| {
                        (
                            *sequence,
                            Message {
                                message_id: record.message_id.as_str().into(),
                                group: record.group_id.as_deref().map(Into::into),
                                sent_at_ms: record.sent_at_ms,
                                visible_at_ms: record.visible_at_ms,
                                receive_count: 0,
                                generation: 0,
                                handed_out: false,
                            },
                        )
                    })
                    .collect();
                let prefix = handle.prefix.clone();
                let reserved_ids = reserved.clone();
                Some(self.shared.writer.enqueue(
                    self.answer,
                    move |staging| {
                        for (sequence, record) in &records {
                            staging.insert(
                                Space::Messages,
                                codec::message_key(&prefix, *sequence),
                                record.encode(),
                            );
                        }
                        for key in superseded {
                            staging.remove(Space::Dedup, key);
                        }
                        for (digest, expires, sequence) in &reserved {
                            let mut value = expires.to_be_bytes().to_vec();
                            value.extend_from_slice(message_id(*sequence).as_bytes());
                            staging.insert(
                                Space::Dedup,
                                dedup_key(&prefix, *expires, digest),
                                value,
                            );
                        }
                        Ok(reserved)
                    },
                    move |result: &Result<Vec<(DedupDigest, u64, u64)>>| {
                        let mut state = target.lock();
                        match result {
                            Ok(_) => {
                                for (sequence, message) in pending {
                                    state.insert(sequence, message, now_ms);
                                }
                                drop(state);
                                // One receiver takes up to a whole batch; if it fills its
                                // batch it wakes the next waiter (see `receive`).
                                target.arrivals.notify_one();
                            }
                            Err(_) => {
                                // Nothing was stored: forget the reservations so a retry works.
                                for (digest, _, sequence) in reserved_ids {
                                    if state
                                        .dedup
                                        .get(&digest)
                                        .is_some_and(|(_, reserved)| *reserved == sequence)
                                    {
                                        state.dedup.remove(&digest);
                                    }
                                }
                            }
                        }
                    },
                )?)
            }
        };
        if let Some(answer) = answer
            && let Err(error) = wait(answer).await
        {
            let retryable = error.is_retryable();
            return Ok(outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    SendOutcome::Sent { .. } => SendOutcome::Failed {
                        reason: error.to_string(),
                        retryable,
                    },
                    failed => failed,
                })
                .collect());
        }
        let sent = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, SendOutcome::Sent { .. }))
            .count();
        self.shared.counters.messages_sent(sent);
        Ok(outcomes)
    }

    async fn receive(&self, queue: &str, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>> {
        self.shared.counters.queue_request();
        if request.max_messages == 0 || request.max_messages > MAX_BATCH {
            return Err(Error::InvalidRequest(format!(
                "receive of {} messages; 1 to {MAX_BATCH} allowed",
                request.max_messages
            )));
        }
        if request.wait > MAX_WAIT {
            return Err(Error::InvalidRequest(format!(
                "wait {:?} is over {MAX_WAIT:?}",
                request.wait
            )));
        }
        if request
            .visibility_timeout
            .is_some_and(|timeout| timeout > MAX_VISIBILITY)
        {
            return Err(Error::InvalidRequest(
                "visibility timeout over 12 hours".into(),
            ));
        }
        let handle = self.handle(queue)?;
        let deadline = Instant::now() + request.wait;
        loop {
            let arrived = handle.arrivals.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let messages = self
                .receive_now(&handle, request.max_messages, request.visibility_timeout)
                .await?;
            if messages.len() == request.max_messages {
                // A full batch: more may be waiting. Pass the wake-up on (a send wakes one
                // waiter, not all of them, so the waiters do not stampede on every send).
                handle.arrivals.notify_one();
            }
            let now = Instant::now();
            if !messages.is_empty() || now >= deadline {
                self.shared.counters.messages_received(messages.len());
                return Ok(messages);
            }
            let tick = (deadline - now).min(self.shared.options.receive_recheck);
            tokio::select! {
                () = &mut arrived => {}
                () = tokio::time::sleep(tick) => {}
            }
        }
    }

    async fn delete_batch(
        &self,
        queue: &str,
        receipt_handles: Vec<String>,
    ) -> Result<Vec<DeleteOutcome>> {
        self.shared.counters.queue_request();
        if receipt_handles.is_empty() || receipt_handles.len() > MAX_BATCH {
            return Err(Error::InvalidRequest(format!(
                "delete of {} receipts; 1 to {MAX_BATCH} allowed",
                receipt_handles.len()
            )));
        }
        let handle = self.handle(queue)?;
        let mut outcomes = Vec::with_capacity(receipt_handles.len());
        let mut removed = Vec::new();
        {
            let mut state = handle.lock();
            for receipt in &receipt_handles {
                let outcome = match parse_receipt(self.shared.epoch, receipt) {
                    Err(error) => DeleteOutcome::Failed {
                        reason: error.to_string(),
                    },
                    Ok((sequence, generation)) => match state.messages.get(&sequence) {
                        Some(message) if message.generation == generation && message.handed_out => {
                            state.remove(sequence);
                            removed.push(sequence);
                            DeleteOutcome::Deleted
                        }
                        Some(_) => DeleteOutcome::Failed {
                            reason: "the message was received again since".into(),
                        },
                        None => DeleteOutcome::Failed {
                            reason: "no such message (already deleted?)".into(),
                        },
                    },
                };
                outcomes.push(outcome);
            }
        }
        if removed.is_empty() {
            return Ok(outcomes);
        }
        if handle.fifo {
            // A deleted message may unblock its group.
            handle.arrivals.notify_one();
        }
        let prefix = handle.prefix.clone();
        let count = removed.len();
        let stored = self
            .shared
            .writer
            .execute(self.answer, move |staging| {
                for sequence in removed {
                    let key = codec::message_key(&prefix, sequence);
                    staging.remove(Space::Messages, key.clone());
                    staging.remove(Space::Receives, key);
                }
                Ok(())
            })
            .await;
        if let Err(error) = stored {
            // The messages are gone from memory but may come back after a restart.
            return Ok(outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    DeleteOutcome::Deleted => DeleteOutcome::Failed {
                        reason: error.to_string(),
                    },
                    failed => failed,
                })
                .collect());
        }
        self.shared.counters.messages_deleted(count);
        Ok(outcomes)
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<()> {
        self.shared.counters.queue_request();
        if timeout > MAX_VISIBILITY {
            return Err(Error::InvalidRequest(
                "visibility timeout over 12 hours".into(),
            ));
        }
        let handle = self.handle(queue)?;
        let (sequence, generation) = parse_receipt(self.shared.epoch, receipt_handle)?;
        let now_ms = self.shared.clock.now_ms();
        {
            let mut state = handle.lock();
            match state.messages.get(&sequence) {
                Some(message) if message.generation == generation && message.handed_out => {
                    if message.visible_at_ms <= now_ms {
                        return Err(Error::InvalidReceipt(
                            "the message is no longer in flight".into(),
                        ));
                    }
                }
                _ => {
                    return Err(Error::InvalidReceipt(format!(
                        "{receipt_handle:?} is no longer valid"
                    )));
                }
            }
            state.set_visible_at(sequence, now_ms.saturating_add(millis(timeout)), now_ms);
        }
        if timeout.is_zero() {
            handle.arrivals.notify_one();
        }
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth> {
        self.shared.counters.queue_request();
        let handle = self.handle(queue)?;
        let now_ms = self.shared.clock.now_ms();
        Ok(handle.lock().depth(now_ms))
    }
}
