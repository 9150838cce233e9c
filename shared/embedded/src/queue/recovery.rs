//! Start-up recovery: the declared queues, their undeleted messages (with persisted receive
//! counts) and unexpired FIFO deduplication ids, loaded from disk into delivery state.

use std::sync::{Arc, PoisonError};

use worldfleet_ports::{Error, QueueSpec, Result};

use super::delivery::{Message, QueueHandle};
use super::{DIGEST_MARK, DedupDigest, EXPIRY_MARK, QUEUE_META_PREFIX, dedup_digest, dedup_key};
use crate::codec::{self, MessageRecord};
use crate::store::Shared;
use crate::writer::storage_error;

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
    // Deduplication ids, keyed by expiry and digest. A store written by an older version keys
    // them by the id itself or by the digest alone: such an entry is rewritten under its
    // current key. Expired entries (of any format) are dropped.
    // Old key → the new key and value, or nothing for an expired id.
    type Rewrite = (Vec<u8>, Option<(Vec<u8>, Vec<u8>)>);
    let mut rewrites: Vec<Rewrite> = Vec::new();
    for entry in spaces.dedup.iter() {
        let (key, value) = entry.into_inner().map_err(storage_error)?;
        let Some((&len, rest)) = key.split_first() else {
            continue;
        };
        let Some((name, id)) = rest.split_at_checked(usize::from(len)) else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let Some(handle) = queues.get(name) else {
            continue;
        };
        let Some((expires, message_id)) = value.split_at_checked(8) else {
            continue;
        };
        let expires = u64::from_be_bytes(expires.try_into().unwrap_or_default());
        let (digest, current): (DedupDigest, bool) = match id.split_first() {
            Some((&EXPIRY_MARK, rest)) => match rest.get(8..).and_then(|d| d.try_into().ok()) {
                Some(digest) => (digest, true),
                None => continue,
            },
            Some((&DIGEST_MARK, digest)) => match digest.try_into() {
                Ok(digest) => (digest, false),
                Err(_) => continue,
            },
            _ => {
                let Ok(id) = std::str::from_utf8(id) else {
                    continue;
                };
                (dedup_digest(id), false)
            }
        };
        let live = expires > now_ms;
        if !current || !live {
            let keep = (live && !current)
                .then(|| (dedup_key(&handle.prefix, expires, &digest), value.to_vec()));
            rewrites.push((key.to_vec(), keep));
        }
        let Some(sequence) = std::str::from_utf8(message_id)
            .ok()
            .and_then(|text| u64::from_str_radix(text, 16).ok())
        else {
            continue;
        };
        if live {
            handle.lock().dedup.insert(digest, (expires, sequence));
        }
    }
    for (old, new) in rewrites {
        if let Some((key, value)) = new {
            spaces.dedup.insert(key, value).map_err(storage_error)?;
        }
        spaces.dedup.remove(old).map_err(storage_error)?;
    }
    Ok(())
}
