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

/// A FIFO deduplication id as the queue keeps it: the first 16 bytes of its SHA-256.
///
/// Ids are chosen by senders (stages, and gateways through the SQS-compatible door), and a
/// queue keeps every id it saw in the last five minutes — a million and more at a few thousand
/// events per second. Kept whole, they cost ~170 bytes each in memory; as digests, ~50. A
/// cryptographic digest keeps the guarantee: two different ids (chosen by anyone) sharing one
/// would need a SHA-256 collision on 128 bits.
pub(crate) type DedupDigest = [u8; 16];

/// The digest of deduplication id `id`.
pub(crate) fn dedup_digest(id: &str) -> DedupDigest {
    use sha2::{Digest as _, Sha256};
    let hash = Sha256::digest(id.as_bytes());
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&hash[..16]);
    digest
}

/// Marks a deduplication key that holds the id's expiry and digest. `0xFE` and `0xFF` never
/// occur in UTF-8, so the mark tells the key apart from the keys of older stores: the id
/// itself (the first format) or `0xFF` + the digest alone (the second).
const EXPIRY_MARK: u8 = 0xFE;

/// Marks the second format's keys: the digest alone after the queue's prefix.
const DIGEST_MARK: u8 = 0xFF;

/// The key of a deduplication id under a queue's key prefix: the mark, the expiry (ms, u64
/// BE), then the digest.
///
/// The expiry leads so that keys are written in time order, as the whole ids (ULIDs and
/// UUIDv7s, mostly) were before them: the store appends instead of writing at random places
/// all over the keyspace, and a sweep deletes one contiguous run of the oldest keys. Keyed by
/// the digest alone, every flush overlapped every table of the keyspace, and compaction
/// rewrote all of it again and again: the hour at 700 events/s ran ~2× slower at its end.
fn dedup_key(prefix: &[u8], expires_ms: u64, digest: &DedupDigest) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 1 + 8 + digest.len());
    key.extend_from_slice(prefix);
    key.push(EXPIRY_MARK);
    key.extend_from_slice(&expires_ms.to_be_bytes());
    key.extend_from_slice(digest);
    key
}

/// The message id of the message with `sequence`.
fn message_id(sequence: u64) -> String {
    format!("{sequence:016x}")
}

/// Whole milliseconds of `duration`, saturating.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
