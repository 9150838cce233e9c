//! Start-up recovery: the declared queues, their undeleted messages (with persisted receive
//! counts) and unexpired FIFO deduplication ids, loaded from disk into delivery state.

use std::sync::{Arc, PoisonError};

use worldfleet_ports::{Error, QueueSpec, Result};

use super::QUEUE_META_PREFIX;
use super::delivery::{Message, QueueHandle};
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
