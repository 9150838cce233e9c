//! `sqs`: the SQS-compatible endpoint's request reading (`sqs::operation_of` and
//! `sqs::parse_request`), which sees every byte a gateway's SQS SDK posts.
//!
//! Input: the `X-Amz-Target` header, a newline, then the JSON body. Properties: nothing
//! panics; an accepted `SendMessage` carries a non-empty body, a group and a deduplication id
//! (the body's SHA-256 when none was given); an accepted batch holds 1–10 entries with distinct
//! ids, each entry's message obeying the same rules.

use sha2::{Digest, Sha256};
use worldfleet_ports::OutgoingMessage;
use worldfleet_ports::queue::MAX_BATCH;
use worldfleet_serve::sqs::{SqsRequest, operation_of, parse_request};

fn check_message(message: &OutgoingMessage) {
    assert!(!message.body.is_empty());
    assert!(message.group_id.is_some());
    assert!(message.dedup_id.is_some());
    assert!(message.delay.is_zero());
}

/// Reads `data` as `target\nbody` and checks the properties above.
pub fn sqs(data: &[u8]) {
    let (target, body) = match data.iter().position(|&byte| byte == b'\n') {
        Some(newline) => (&data[..newline], &data[newline + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let Ok(operation) = operation_of(target) else {
        return;
    };
    match parse_request(operation, body) {
        Err(error) => assert!(!error.kind().is_empty()),
        Ok(SqsRequest::GetQueueUrl) => assert_eq!(operation, "GetQueueUrl"),
        Ok(SqsRequest::SendMessage(message)) => {
            assert_eq!(operation, "SendMessage");
            check_message(&message);
            // Without a deduplication id, deduplication is by content: the body's SHA-256.
            // (Read leniently: a member the request ignores may hold what `Value` refuses,
            // such as a number out of range.)
            let request = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
            let content_based = request.as_object().is_some_and(|fields| {
                fields
                    .get("MessageDeduplicationId")
                    .is_none_or(serde_json::Value::is_null)
            });
            if content_based {
                let digest = hex::encode(Sha256::digest(message.body.as_bytes()));
                assert_eq!(message.dedup_id, Some(digest));
            }
        }
        Ok(SqsRequest::SendMessageBatch(entries)) => {
            assert_eq!(operation, "SendMessageBatch");
            assert!((1..=MAX_BATCH).contains(&entries.len()));
            for (index, entry) in entries.iter().enumerate() {
                assert!(entries[..index].iter().all(|other| other.id != entry.id));
                if let Ok(message) = &entry.message {
                    check_message(message);
                }
            }
        }
    }
}
