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

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;
use worldfleet_ports::queue::{
    DEDUP_WINDOW, MAX_BATCH, MAX_BODY_BYTES, MAX_DELAY, MAX_WAIT, is_fifo,
};
use worldfleet_ports::{
    DeleteOutcome, Error, OutgoingMessage, Queue, QueueDepth, QueueSpec, ReceiveRequest,
    ReceivedMessage, Result, SendOutcome,
};

use crate::codec::{self, MessageRecord};
use crate::store::Shared;
use crate::writer::{Space, storage_error, wait};

const QUEUE_META_PREFIX: &[u8] = b"queue/";
/// Longest visibility timeout (SQS: 12 hours).
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// Longest queue name (SQS: 80 characters).
const MAX_QUEUE_NAME: usize = 80;

/// One message's delivery state; its body stays on disk.
struct Message {
    message_id: Arc<str>,
    group: Option<Arc<str>>,
    sent_at_ms: u64,
    /// Visible from this time on (delay end, or end of the current visibility timeout).
    visible_at_ms: u64,
    receive_count: u32,
    /// Bumped at every receive; a receipt handle names the generation it was issued for.
    generation: u64,
    /// Received since the store opened: in flight while `visible_at_ms` is in the future.
    handed_out: bool,
}

/// A FIFO message group: its undeleted messages in send order.
#[derive(Default)]
struct Group {
    sequences: BTreeSet<u64>,
}

/// A queue's in-memory delivery state.
pub(crate) struct QueueState {
    spec: QueueSpec,
    messages: HashMap<u64, Message>,
    /// Standard queues: `(visible_at_ms, sequence)` of every message.
    schedule: BTreeSet<(u64, u64)>,
    /// FIFO queues: groups by id, and the round-robin order in which they are served.
    groups: HashMap<Arc<str>, Group>,
    rotation: VecDeque<Arc<str>>,
    /// FIFO deduplication ids: id → (expires at ms, message id).
    dedup: HashMap<String, (u64, Arc<str>)>,
    next_generation: u64,
    /// Messages that were not yet visible when last looked at: `(visible_at_ms, sequence)` →
    /// whether the message is in flight (else delayed). Entries leave when they are promoted
    /// by [`QueueState::promote`], so `depth` costs O(1) amortised instead of a scan.
    hidden: BTreeMap<(u64, u64), bool>,
    /// How many `hidden` entries are in flight, and how many delayed.
    in_flight: u64,
    delayed: u64,
}

/// A declared queue.
pub(crate) struct QueueHandle {
    prefix: Vec<u8>,
    fifo: bool,
    state: Mutex<QueueState>,
    /// Woken when messages arrive or become visible.
    arrivals: Notify,
}

impl QueueHandle {
    fn new(spec: QueueSpec) -> Self {
        Self {
            prefix: codec::queue_prefix(&spec.name),
            fifo: spec.is_fifo(),
            state: Mutex::new(QueueState {
                spec,
                messages: HashMap::new(),
                schedule: BTreeSet::new(),
                groups: HashMap::new(),
                rotation: VecDeque::new(),
                dedup: HashMap::new(),
                next_generation: 1,
                hidden: BTreeMap::new(),
                in_flight: 0,
                delayed: 0,
            }),
            arrivals: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl QueueState {
    /// Counts the message as hidden (in flight or delayed) if it is not visible at `now_ms`.
    fn hide(&mut self, sequence: u64, visible_at_ms: u64, in_flight: bool, now_ms: u64) {
        if visible_at_ms > now_ms {
            self.hidden.insert((visible_at_ms, sequence), in_flight);
            if in_flight {
                self.in_flight += 1;
            } else {
                self.delayed += 1;
            }
        }
    }

    /// Stops counting the message as hidden, if it was.
    fn unhide(&mut self, sequence: u64, visible_at_ms: u64) {
        match self.hidden.remove(&(visible_at_ms, sequence)) {
            Some(true) => self.in_flight -= 1,
            Some(false) => self.delayed -= 1,
            None => {}
        }
    }

    /// Uncounts every hidden message that is visible at `now_ms`.
    fn promote(&mut self, now_ms: u64) {
        while let Some(entry) = self.hidden.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            if entry.remove() {
                self.in_flight -= 1;
            } else {
                self.delayed -= 1;
            }
        }
    }

    /// Visible, in-flight and delayed messages at `now_ms` (which must not go backwards).
    fn depth(&mut self, now_ms: u64) -> QueueDepth {
        self.promote(now_ms);
        let hidden = self.in_flight + self.delayed;
        QueueDepth {
            visible: (self.messages.len() as u64).saturating_sub(hidden),
            in_flight: self.in_flight,
            delayed: self.delayed,
        }
    }

    fn insert(&mut self, sequence: u64, message: Message, now_ms: u64) {
        self.hide(sequence, message.visible_at_ms, message.handed_out, now_ms);
        match &message.group {
            Some(group) => {
                if !self.groups.contains_key(group) {
                    self.rotation.push_back(group.clone());
                }
                self.groups
                    .entry(group.clone())
                    .or_default()
                    .sequences
                    .insert(sequence);
            }
            None => {
                self.schedule.insert((message.visible_at_ms, sequence));
            }
        }
        self.messages.insert(sequence, message);
    }

    fn remove(&mut self, sequence: u64) -> Option<Message> {
        let message = self.messages.remove(&sequence)?;
        self.unhide(sequence, message.visible_at_ms);
        match &message.group {
            Some(group) => {
                if let Some(group) = self.groups.get_mut(group) {
                    group.sequences.remove(&sequence);
                }
            }
            None => {
                self.schedule.remove(&(message.visible_at_ms, sequence));
            }
        }
        Some(message)
    }

    fn set_visible_at(&mut self, sequence: u64, visible_at_ms: u64, now_ms: u64) {
        let Some(message) = self.messages.get_mut(&sequence) else {
            return;
        };
        let (previous, in_flight) = (message.visible_at_ms, message.handed_out);
        if message.group.is_none() {
            self.schedule.remove(&(previous, sequence));
            self.schedule.insert((visible_at_ms, sequence));
        }
        message.visible_at_ms = visible_at_ms;
        self.unhide(sequence, previous);
        self.hide(sequence, visible_at_ms, in_flight, now_ms);
    }

    /// Sequences to hand out now, in delivery order.
    fn pick(&mut self, max: usize, now_ms: u64) -> Vec<u64> {
        if self.rotation.is_empty() && self.groups.is_empty() {
            return self
                .schedule
                .range(..(now_ms + 1, 0))
                .take(max)
                .map(|&(_, sequence)| sequence)
                .collect();
        }
        let mut picked = Vec::new();
        for _ in 0..self.rotation.len() {
            if picked.len() >= max {
                break;
            }
            let Some(name) = self.rotation.pop_front() else {
                break;
            };
            let Some(group) = self.groups.get(&name) else {
                continue;
            };
            if group.sequences.is_empty() {
                self.groups.remove(&name);
                continue;
            }
            let mut available = true;
            for sequence in &group.sequences {
                let Some(message) = self.messages.get(sequence) else {
                    continue;
                };
                if !message.handed_out {
                    break;
                }
                if message.visible_at_ms > now_ms {
                    available = false;
                    break;
                }
            }
            if available {
                picked.extend(group.sequences.iter().take(max - picked.len()));
            }
            self.rotation.push_back(name);
        }
        picked
    }
}

/// The queue port over the embedded store.
pub struct EmbeddedQueue {
    shared: Arc<Shared>,
}

pub(crate) fn load_queues(shared: &Shared) -> Result<()> {
    shared.with_spaces(|spaces| load_queues_from(shared, spaces))
}

fn load_queues_from(shared: &Shared, spaces: &crate::store::Spaces) -> Result<()> {
    let mut queues = shared
        .queues
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    for entry in spaces.meta.prefix(QUEUE_META_PREFIX) {
        let (_, value) = entry.into_inner().map_err(storage_error)?;
        let spec: QueueSpec = serde_json::from_slice(&value)
            .map_err(|error| Error::Permanent(format!("corrupt queue spec: {error}")))?;
        queues.insert(spec.name.clone(), Arc::new(QueueHandle::new(spec)));
    }
    let now_ms = shared.clock.now_ms();
    for entry in spaces.messages.iter() {
        let (key, value) = entry.into_inner().map_err(storage_error)?;
        let (name, sequence) = codec::split_message_key(&key)?;
        let Some(handle) = queues.get(name) else {
            continue;
        };
        let record = MessageRecord::decode(&value)?;
        let receive_count = match spaces.receives.get(&key).map_err(storage_error)? {
            Some(count) => u32::from_be_bytes(count.as_ref().try_into().unwrap_or_default()),
            None => 0,
        };
        handle.lock().insert(
            sequence,
            Message {
                message_id: record.message_id.into(),
                group: record.group_id.map(Into::into),
                sent_at_ms: record.sent_at_ms,
                visible_at_ms: record.visible_at_ms,
                receive_count,
                generation: 0,
                handed_out: false,
            },
            now_ms,
        );
    }
    for entry in spaces.dedup.iter() {
        let (key, value) = entry.into_inner().map_err(storage_error)?;
        let Some((&len, rest)) = key.split_first() else {
            continue;
        };
        let Some((name, id)) = rest.split_at_checked(usize::from(len)) else {
            continue;
        };
        let (Ok(name), Ok(id)) = (std::str::from_utf8(name), std::str::from_utf8(id)) else {
            continue;
        };
        let Some(handle) = queues.get(name) else {
            continue;
        };
        let Some((expires, message_id)) = value.split_at_checked(8) else {
            continue;
        };
        let expires = u64::from_be_bytes(expires.try_into().unwrap_or_default());
        if expires > now_ms {
            let message_id: Arc<str> = String::from_utf8_lossy(message_id).into();
            handle
                .lock()
                .dedup
                .insert(id.to_owned(), (expires, message_id));
        }
    }
    Ok(())
}

fn dedup_key(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

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
        state.dedup.retain(|id, (expires, _)| {
            let keep = *expires > now_ms;
            if !keep {
                expired.push(dedup_key(&handle.prefix, id));
            }
            keep
        });
    }
    if expired.is_empty() {
        return Ok(0);
    }
    let count = expired.len();
    shared.writer.execute_blocking(move |staging| {
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
    shared.writer.execute_blocking(move |staging| {
        for key in expired {
            staging.remove(Space::Messages, key.clone());
            staging.remove(Space::Receives, key);
        }
        Ok(())
    })?;
    Ok(count)
}

fn receipt_handle(epoch: u64, sequence: u64, generation: u64) -> String {
    format!("{epoch:x}.{sequence:x}.{generation:x}")
}

fn parse_receipt(epoch: u64, receipt: &str) -> Result<(u64, u64)> {
    let invalid =
        || Error::InvalidReceipt(format!("{receipt:?} is not a receipt handle of this store"));
    let mut parts = receipt.split('.');
    let mut next = || {
        parts
            .next()
            .and_then(|part| u64::from_str_radix(part, 16).ok())
            .ok_or_else(invalid)
    };
    let (receipt_epoch, sequence, generation) = (next()?, next()?, next()?);
    if receipt_epoch != epoch {
        return Err(Error::InvalidReceipt(format!(
            "{receipt:?} was issued before the store last opened"
        )));
    }
    Ok((sequence, generation))
}

/// Why a message cannot be sent, if it cannot.
fn refusal(fifo: bool, message: &OutgoingMessage) -> Option<String> {
    if message.body.is_empty() || message.body.len() > MAX_BODY_BYTES {
        return Some(format!(
            "body of {} bytes; 1 to {MAX_BODY_BYTES} allowed",
            message.body.len()
        ));
    }
    if fifo {
        if message.group_id.as_deref().is_none_or(str::is_empty) {
            return Some("a FIFO message needs a group id".into());
        }
        if message.dedup_id.as_deref().is_none_or(str::is_empty) {
            return Some("a FIFO message needs a deduplication id".into());
        }
        if !message.delay.is_zero() {
            return Some("FIFO queues do not support per-message delays".into());
        }
    } else {
        if message.group_id.is_some() {
            return Some("a standard queue does not take a group id".into());
        }
        if message.delay > MAX_DELAY {
            return Some(format!("delay {:?} is over {MAX_DELAY:?}", message.delay));
        }
    }
    None
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn validate_spec(spec: &QueueSpec) -> Result<()> {
    let stem = spec.name.strip_suffix(".fifo").unwrap_or(&spec.name);
    let valid_name = !stem.is_empty()
        && spec.name.len() <= MAX_QUEUE_NAME
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
        return Err(Error::InvalidRequest(format!(
            "queue name {:?} must be 1-80 characters of [a-zA-Z0-9_-], FIFO names ending in .fifo",
            spec.name
        )));
    }
    if spec.visibility_timeout > MAX_VISIBILITY {
        return Err(Error::InvalidRequest(
            "visibility timeout over 12 hours".into(),
        ));
    }
    if spec.retention < Duration::from_secs(60) || spec.retention > Duration::from_secs(14 * 86_400)
    {
        return Err(Error::InvalidRequest(
            "retention must be 60 s to 14 days".into(),
        ));
    }
    if let Some(dead_letter) = &spec.dead_letter_queue {
        if spec.max_receive_count == 0 {
            return Err(Error::InvalidRequest(
                "a dead-letter queue needs max_receive_count of at least 1".into(),
            ));
        }
        if is_fifo(dead_letter) != spec.is_fifo() {
            return Err(Error::InvalidRequest(
                "a queue and its dead-letter queue must both be FIFO or both standard".into(),
            ));
        }
    }
    Ok(())
}

/// What one receive decided under the queue lock.
struct Picked {
    deliveries: Vec<(u64, ReceivedMessage)>,
    counts: Vec<(u64, u32)>,
    redrives: Vec<(u64, Message)>,
    dropped: Vec<u64>,
}

impl EmbeddedQueue {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
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
    async fn receive_now(
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
            .execute(move |staging| {
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
            .execute(move |staging| {
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
                if let Some(id) = &message.dedup_id
                    && handle.fifo
                    && let Some((expires, message_id)) = state.dedup.get(id)
                    && *expires > now_ms
                {
                    outcomes.push(SendOutcome::Sent {
                        message_id: message_id.to_string(),
                    });
                    continue;
                }
                let sequence = self.shared.sequence.fetch_add(1, Ordering::Relaxed);
                let message_id: Arc<str> = format!("{sequence:016x}").into();
                if handle.fifo
                    && let Some(id) = &message.dedup_id
                {
                    let expires = now_ms + window_ms;
                    state
                        .dedup
                        .insert(id.clone(), (expires, message_id.clone()));
                    reserved.push((id.clone(), expires, message_id.clone()));
                }
                outcomes.push(SendOutcome::Sent {
                    message_id: message_id.to_string(),
                });
                records.push((
                    sequence,
                    MessageRecord {
                        message_id: message_id.to_string(),
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
                let reserved_ids: Vec<(String, Arc<str>)> = reserved
                    .iter()
                    .map(|(id, _, message_id)| (id.clone(), message_id.clone()))
                    .collect();
                Some(self.shared.writer.enqueue(
                    move |staging| {
                        for (sequence, record) in &records {
                            staging.insert(
                                Space::Messages,
                                codec::message_key(&prefix, *sequence),
                                record.encode(),
                            );
                        }
                        for (id, expires, message_id) in &reserved {
                            let mut value = expires.to_be_bytes().to_vec();
                            value.extend_from_slice(message_id.as_bytes());
                            staging.insert(Space::Dedup, dedup_key(&prefix, id), value);
                        }
                        Ok(reserved)
                    },
                    move |result: &Result<Vec<(String, u64, Arc<str>)>>| {
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
                                for (id, message_id) in reserved_ids {
                                    if state
                                        .dedup
                                        .get(&id)
                                        .is_some_and(|(_, reserved)| *reserved == message_id)
                                    {
                                        state.dedup.remove(&id);
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
            .execute(move |staging| {
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
