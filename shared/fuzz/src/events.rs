//! `events`: the body of `POST /v1/events` (`events::split_envelopes` and
//! `events::message_for`), read before anything is queued.
//!
//! Properties: nothing panics; an accepted body holds 1–100 envelopes; each envelope the door
//! queues goes out byte for byte, with a FIFO group and deduplication id SQS would take; each it
//! refuses is refused as `oversized` or `malformed`.

use worldfleet_domain::MAX_ENVELOPE_BYTES;
use worldfleet_serve::events::{EnvelopeResult, message_for, split_envelopes};

/// The server's default of envelopes per request.
const MAX_ENVELOPES: usize = 100;

fn is_fifo_id(id: Option<&str>) -> bool {
    id.is_some_and(|id| {
        !id.is_empty() && id.chars().count() <= 128 && id.chars().all(|c| c.is_ascii_graphic())
    })
}

/// Reads `data` as a request body and checks the properties above.
pub fn events(data: &[u8]) {
    let envelopes = match split_envelopes(data, MAX_ENVELOPES) {
        Ok(envelopes) => envelopes,
        Err(error) => {
            assert!(
                [
                    "not_json",
                    "empty_batch",
                    "too_many_envelopes",
                    "not_envelope"
                ]
                .contains(&error.code),
                "{error:?}"
            );
            return;
        }
    };
    assert!((1..=MAX_ENVELOPES).contains(&envelopes.len()));
    for raw in &envelopes {
        match message_for(raw) {
            Ok(message) => {
                assert_eq!(message.body, raw.get());
                assert!(message.body.len() <= MAX_ENVELOPE_BYTES);
                assert!(is_fifo_id(message.group_id.as_deref()));
                assert!(is_fifo_id(message.dedup_id.as_deref()));
            }
            Err(EnvelopeResult::Refused { reason, .. }) => {
                assert!(["oversized", "malformed"].contains(&reason), "{reason}");
            }
            Err(other) => panic!("the door refuses only as `Refused`: {other:?}"),
        }
    }
}
