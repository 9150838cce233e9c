//! The checks SQS makes on a queue declaration and on each message sent, with its limits.

use std::time::Duration;

use worldfleet_ports::queue::{MAX_BODY_BYTES, MAX_DELAY, is_fifo};
use worldfleet_ports::{Error, OutgoingMessage, QueueSpec, Result};

use super::{MAX_QUEUE_NAME, MAX_VISIBILITY};

/// Why a message cannot be sent, if it cannot.
pub(super) fn refusal(fifo: bool, message: &OutgoingMessage) -> Option<String> {
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

pub(super) fn validate_spec(spec: &QueueSpec) -> Result<()> {
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
