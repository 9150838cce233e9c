//! The embedded queue: SQS semantics with messages, receive counts and deduplication ids
//! durable in fjall, and delivery state (visibility, in-flight groups) in memory.
//!
//! What survives a restart: every undeleted message, its delay (as a visible-at time), its
//! receive count (persisted at each receive, before the message is handed out, so a message
//! that keeps crashing the process still reaches its dead-letter queue) and FIFO deduplication
//! ids. What does not: visibility timeouts — after a restart every undeleted message is visible
//! again at once, which at-least-once delivery allows — and receipt handles, which carry the
//! store's open epoch and fail with `InvalidReceipt` after a restart.
//!
//! Messages enter the in-memory state only after their send is durable, in commit order, on
//! the writer thread; so a FIFO group's messages are seen in sequence order and a receiver can
//! never act on a message a crash would lose.
//!
//! The module is split along the queue's seams: `delivery` holds the in-memory delivery
//! state (receive counts, visibility, in-flight FIFO groups, receipt handles), `receive` a
//! receive's pick-persist-read cycle with redrive to the dead-letter queue, `recovery` the
//! start-up load from disk, `sweep` the periodic expiry of deduplication ids and old
//! messages, `validate` the checks on declarations and sends, and `port` the `Queue`
//! port itself.

mod delivery;
mod port;
mod receive;
mod recovery;
mod sweep;
mod validate;

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use worldfleet_ports::{Error, Result};

use crate::store::Shared;
use crate::writer::Answer;

pub(crate) use delivery::QueueHandle;
pub(crate) use recovery::load_queues;
pub(crate) use sweep::{sweep_dedup, sweep_retention};

const QUEUE_META_PREFIX: &[u8] = b"queue/";
/// Longest visibility timeout (SQS: 12 hours).
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// Longest queue name (SQS: 80 characters).
const MAX_QUEUE_NAME: usize = 80;

/// The queue port over the embedded store.
pub struct EmbeddedQueue {
    shared: Arc<Shared>,
    /// When sends, receives and deletes are answered (see [`Answer`]).
    answer: Answer,
}

impl EmbeddedQueue {
    pub(crate) fn new(shared: Arc<Shared>, answer: Answer) -> Self {
        Self { shared, answer }
    }

    fn handle(&self, queue: &str) -> Result<Arc<QueueHandle>> {
        self.shared
            .queues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(queue)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("queue {queue}")))
    }
}

/// The key of deduplication id `id` under a queue's key prefix.
fn dedup_key(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

/// Whole milliseconds of `duration`, saturating.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
