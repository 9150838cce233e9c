//! One receive: pick visible messages under the queue lock, persist their receive counts (and
//! drop expired ones, redrive those over the limit to the dead-letter queue) in one write,
//! then read their bodies.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use worldfleet_ports::{Error, ReceivedMessage, Result};

use super::delivery::{Message, QueueHandle, receipt_handle};
use super::{EmbeddedQueue, millis};
use crate::codec::{self, MessageRecord};
use crate::writer::{Space, storage_error};

/// What one receive decided under the queue lock.
struct Picked {
    deliveries: Vec<(u64, ReceivedMessage)>,
    counts: Vec<(u64, u32)>,
    redrives: Vec<(u64, Message)>,
    dropped: Vec<u64>,
}

impl EmbeddedQueue {
    fn pick(&self, handle: &QueueHandle, max: usize, visibility: Option<Duration>) -> Picked {
        let now_ms = self.shared.clock.now_ms();
        let epoch = self.shared.epoch;
        let mut state = handle.lock();
        let visibility = visibility.unwrap_or(state.spec.visibility_timeout);
        let retention_ms = millis(state.spec.retention);
        let redrive_after = state
            .spec
            .dead_letter_queue
            .as_ref()
            .map(|_| state.spec.max_receive_count)
            .filter(|count| *count > 0);
        let mut picked = Picked {
            deliveries: Vec::new(),
            counts: Vec::new(),
            redrives: Vec::new(),
            dropped: Vec::new(),
        };
        // Expired or redriven messages free their slots; look again until the batch is full
        // or nothing more is visible.
        loop {
            let wanted = max - picked.deliveries.len();
            let sequences = state.pick(wanted, now_ms);
            if sequences.is_empty() {
                break;
            }
            let mut removed_any = false;
            for sequence in sequences {
                let Some(message) = state.messages.get(&sequence) else {
                    continue;
                };
                if message.sent_at_ms.saturating_add(retention_ms) <= now_ms {
                    state.remove(sequence);
                    picked.dropped.push(sequence);
                    removed_any = true;
                    continue;
                }
                let count = message.receive_count.saturating_add(1);
                if redrive_after.is_some_and(|limit| count > limit) {
                    if let Some(message) = state.remove(sequence) {
                        picked.redrives.push((sequence, message));
                    }
                    removed_any = true;
                    continue;
                }
                let generation = state.next_generation;
                state.next_generation += 1;
                let Some(message) = state.messages.get_mut(&sequence) else {
                    continue;
                };
                message.receive_count = count;
                message.generation = generation;
                message.handed_out = true;
                state.set_visible_at(sequence, now_ms.saturating_add(millis(visibility)), now_ms);
                let Some(message) = state.messages.get(&sequence) else {
                    continue;
                };
                picked.counts.push((sequence, count));
                picked.deliveries.push((
                    sequence,
                    ReceivedMessage {
                        message_id: message.message_id.to_string(),
                        receipt_handle: receipt_handle(epoch, sequence, generation),
                        body: String::new(),
                        group_id: message.group.as_deref().map(str::to_owned),
                        receive_count: count,
                        sent_at_ms: message.sent_at_ms,
                    },
                ));
            }
            if !removed_any || picked.deliveries.len() >= max {
                break;
            }
        }
        picked
    }

    /// One non-waiting receive: picks, persists receive counts and redrives, reads bodies.
    pub(super) async fn receive_now(
        &self,
        handle: &Arc<QueueHandle>,
        max: usize,
        visibility: Option<Duration>,
    ) -> Result<Vec<ReceivedMessage>> {
        let picked = self.pick(handle, max, visibility);
        if picked.counts.is_empty() && picked.redrives.is_empty() && picked.dropped.is_empty() {
            return Ok(Vec::new());
        }
        let dead_letter = if picked.redrives.is_empty() {
            None
        } else {
            let name = handle.lock().spec.dead_letter_queue.clone();
            name.and_then(|name| self.handle(&name).ok())
        };
        let prefix = handle.prefix.clone();
        let counts = picked.counts;
        let dropped = picked.dropped;
        let redrives: Vec<(u64, u64, Message)> = picked
            .redrives
            .into_iter()
            .map(|(sequence, message)| {
                let moved_to = self.shared.sequence.fetch_add(1, Ordering::Relaxed);
                (sequence, moved_to, message)
            })
            .collect();
        let target = dead_letter;
        let moved = self
            .shared
            .writer
            .execute(self.answer, move |staging| {
                for (sequence, count) in &counts {
                    staging.insert(
                        Space::Receives,
                        codec::message_key(&prefix, *sequence),
                        &count.to_be_bytes()[..],
                    );
                }
                for sequence in &dropped {
                    let key = codec::message_key(&prefix, *sequence);
                    staging.remove(Space::Messages, key.clone());
                    staging.remove(Space::Receives, key);
                }
                let mut moved = Vec::new();
                for (sequence, moved_to, message) in redrives {
                    let key = codec::message_key(&prefix, sequence);
                    if let Some(target) = &target
                        && let Some(record) = staging.get(Space::Messages, &key)?
                    {
                        let mut record = MessageRecord::decode(&record)?;
                        record.visible_at_ms = 0;
                        staging.insert(
                            Space::Messages,
                            codec::message_key(&target.prefix, moved_to),
                            record.encode(),
                        );
                        moved.push((moved_to, message));
                    }
                    staging.remove(Space::Messages, key.clone());
                    staging.remove(Space::Receives, key);
                }
                Ok(moved)
            })
            .await?;
        if let Some(target) = self.dead_letter_target(handle, &moved) {
            let mut state = target.lock();
            for (sequence, mut message) in moved {
                message.visible_at_ms = 0;
                message.receive_count = 0;
                message.handed_out = false;
                state.insert(sequence, message, 0);
            }
            drop(state);
            target.arrivals.notify_one();
        }
        let mut deliveries = picked.deliveries;
        self.shared.with_spaces(|spaces| {
            for (sequence, message) in &mut deliveries {
                let key = codec::message_key(&handle.prefix, *sequence);
                let record = spaces
                    .messages
                    .get(&key)
                    .map_err(storage_error)?
                    .ok_or_else(|| Error::Unavailable("message body missing".into()))?;
                message.body = MessageRecord::decode(&record)?.body;
            }
            Ok(())
        })?;
        Ok(deliveries.into_iter().map(|(_, message)| message).collect())
    }

    fn dead_letter_target(
        &self,
        handle: &QueueHandle,
        moved: &[(u64, Message)],
    ) -> Option<Arc<QueueHandle>> {
        if moved.is_empty() {
            return None;
        }
        let name = handle.lock().spec.dead_letter_queue.clone()?;
        self.handle(&name).ok()
    }
}
