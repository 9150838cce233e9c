//! A queue's in-memory delivery state: which messages are visible, delayed or in flight,
//! their receive counts and generations, the FIFO groups and the order they are served in,
//! and the receipt handles that name one delivery of one message.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use worldfleet_ports::{Error, QueueDepth, QueueSpec, Result};

use super::DedupDigest;
use crate::codec;

/// One message's delivery state; its body stays on disk.
pub(super) struct Message {
    pub(super) message_id: Arc<str>,
    pub(super) group: Option<Arc<str>>,
    pub(super) sent_at_ms: u64,
    /// Visible from this time on (delay end, or end of the current visibility timeout).
    pub(super) visible_at_ms: u64,
    pub(super) receive_count: u32,
    /// Bumped at every receive; a receipt handle names the generation it was issued for.
    pub(super) generation: u64,
    /// Received since the store opened: in flight while `visible_at_ms` is in the future.
    pub(super) handed_out: bool,
}

/// A FIFO message group: its undeleted messages in send order.
#[derive(Default)]
struct Group {
    sequences: BTreeSet<u64>,
}

/// A queue's in-memory delivery state.
pub(crate) struct QueueState {
    pub(super) spec: QueueSpec,
    pub(super) messages: HashMap<u64, Message>,
    /// Standard queues: `(visible_at_ms, sequence)` of every message.
    schedule: BTreeSet<(u64, u64)>,
    /// FIFO queues: groups by id, and the round-robin order in which they are served.
    groups: HashMap<Arc<str>, Group>,
    rotation: VecDeque<Arc<str>>,
    /// FIFO deduplication ids: digest → (expires at ms, sequence of the message sent).
    pub(super) dedup: HashMap<DedupDigest, (u64, u64)>,
    pub(super) next_generation: u64,
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
    pub(super) prefix: Vec<u8>,
    pub(super) fifo: bool,
    state: Mutex<QueueState>,
    /// Woken when messages arrive or become visible.
    pub(super) arrivals: Notify,
}

impl QueueHandle {
    pub(super) fn new(spec: QueueSpec) -> Self {
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

    pub(super) fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Undeleted messages and unexpired deduplication ids this queue holds in memory.
    pub(crate) fn held(&self) -> (usize, usize) {
        let state = self.lock();
        (state.messages.len(), state.dedup.len())
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
    pub(super) fn depth(&mut self, now_ms: u64) -> QueueDepth {
        self.promote(now_ms);
        let hidden = self.in_flight + self.delayed;
        QueueDepth {
            visible: (self.messages.len() as u64).saturating_sub(hidden),
            in_flight: self.in_flight,
            delayed: self.delayed,
        }
    }

    pub(super) fn insert(&mut self, sequence: u64, message: Message, now_ms: u64) {
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

    pub(super) fn remove(&mut self, sequence: u64) -> Option<Message> {
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

    pub(super) fn set_visible_at(&mut self, sequence: u64, visible_at_ms: u64, now_ms: u64) {
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
    pub(super) fn pick(&mut self, max: usize, now_ms: u64) -> Vec<u64> {
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

pub(super) fn receipt_handle(epoch: u64, sequence: u64, generation: u64) -> String {
    format!("{epoch:x}.{sequence:x}.{generation:x}")
}

pub(super) fn parse_receipt(epoch: u64, receipt: &str) -> Result<(u64, u64)> {
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
