//! Periodic expiry, run by the store's maintenance: deduplication ids past their window and
//! messages past their queue's retention leave memory and disk.

use std::sync::{Arc, PoisonError};

use worldfleet_ports::Result;

use super::delivery::QueueHandle;
use super::{dedup_key, millis};
use crate::codec;
use crate::store::Shared;
use crate::writer::{Answer, Space};

/// Deduplication maps smaller than this are never shrunk.
const SHRINK_FLOOR: usize = 4096;

/// Drops expired deduplication ids from memory and disk; returns how many went.
pub(crate) fn sweep_dedup(shared: &Shared, now_ms: u64) -> Result<usize> {
    let handles: Vec<Arc<QueueHandle>> = shared
        .queues
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .filter(|handle| handle.fifo)
        .cloned()
        .collect();
    let mut expired = Vec::new();
    for handle in handles {
        let mut state = handle.lock();
        state.dedup.retain(|digest, (expires, _)| {
            let keep = *expires > now_ms;
            if !keep {
                expired.push(dedup_key(&handle.prefix, *expires, digest));
            }
            keep
        });
        // A burst grows the map; give the memory back once it has passed, leaving room to
        // grow by half again without a rehash.
        let held = state.dedup.len();
        if state.dedup.capacity() > 4 * held.max(SHRINK_FLOOR) {
            state.dedup.shrink_to(held + held / 2);
        }
    }
    if expired.is_empty() {
        return Ok(0);
    }
    let count = expired.len();
    shared
        .writer
        .execute_blocking(Answer::Committed, move |staging| {
            for key in expired {
                staging.remove(Space::Dedup, key);
            }
            Ok(())
        })?;
    Ok(count)
}

/// Drops messages older than their queue's retention from memory and disk; returns how many
/// went. Receives drop them too when they meet them; this catches those nobody receives.
pub(crate) fn sweep_retention(shared: &Shared, now_ms: u64) -> Result<usize> {
    let handles: Vec<Arc<QueueHandle>> = shared
        .queues
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .cloned()
        .collect();
    let mut expired = Vec::new();
    for handle in handles {
        let mut state = handle.lock();
        let retention_ms = millis(state.spec.retention);
        let due: Vec<u64> = state
            .messages
            .iter()
            .filter(|(_, message)| message.sent_at_ms.saturating_add(retention_ms) <= now_ms)
            .map(|(sequence, _)| *sequence)
            .collect();
        for sequence in due {
            state.remove(sequence);
            expired.push(codec::message_key(&handle.prefix, sequence));
        }
    }
    if expired.is_empty() {
        return Ok(0);
    }
    let count = expired.len();
    shared
        .writer
        .execute_blocking(Answer::Committed, move |staging| {
            for key in expired {
                staging.remove(Space::Messages, key.clone());
                staging.remove(Space::Receives, key);
            }
            Ok(())
        })?;
    Ok(count)
}
