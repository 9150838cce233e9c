//! `POST /v1/events`: signed envelopes in, FIFO messages on the intake queue out.
//!
//! The body is one envelope (a JSON object) or a JSON array of up to 100. Each envelope is
//! forwarded byte for byte as the gateway sent it, as one message on `intake.fifo` with the
//! partition as the message group and the event id as the deduplication id — what a gateway
//! posting to SQS does. Intake stays the one place that validates envelopes: the door refuses
//! only what it can tell without reading the envelope's meaning (the body is not JSON, too many
//! envelopes, an envelope over 64 KiB or not a JSON object), answers those refusals in the
//! response (they are not rows in the rejections table, which records what intake refused),
//! and queues everything else, however wrong, for intake to refuse with its documented reason.
//!
//! The answer is 202 with one result per envelope, in order, once every envelope is in the
//! queue. If the queue did not take some of them, the answer is 503 with the same results:
//! resending the whole request is safe, because within the queue's five-minute deduplication
//! window a resent event id is dropped as a duplicate.
//!
//! With `?wait=decided` the answer also carries intake's verdict on each queued envelope, read
//! back from intake's own records — the ledger entry this message appended (`accepted`), or the
//! rejection row this message last counted (`refused`, with intake's reason code and sentence) —
//! waiting at most `wait_ms` (default 2,000, at most 10,000) and answering `pending` for what
//! intake has not decided by then. The door judges nothing itself: it only reads.

use axum::Json;
use axum::body::Bytes;
use std::collections::HashMap;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use worldfleet_domain::names::{INTAKE_QUEUE, LEDGER_TABLE, REJECTIONS_TABLE};
use worldfleet_domain::{MAX_ENVELOPE_BYTES, RejectReason};
use worldfleet_intake::rejections::{RejectionRow, locate};
use worldfleet_ports::queue::MAX_BATCH;
use worldfleet_ports::{Key, OutgoingMessage, SendOutcome};

use crate::ServeState;
use crate::error::ApiError;
use crate::feeds::{number_parameter, query_map};

/// How long `?wait=decided` waits unless `wait_ms` says otherwise.
pub const DEFAULT_DECISION_WAIT: Duration = Duration::from_secs(2);
/// The longest `wait_ms` a request may ask for.
pub const MAX_DECISION_WAIT: Duration = Duration::from_secs(10);
/// How often intake's records are read while waiting.
const DECISION_POLL: Duration = Duration::from_millis(20);

/// The message group of envelopes whose partition cannot be one (intake refuses them).
pub const FALLBACK_GROUP: &str = "unpartitioned";
/// Longest FIFO message group or deduplication id SQS accepts.
const MAX_FIFO_ID_CHARS: usize = 128;

/// What happened to one posted envelope.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EnvelopeResult {
    /// On the intake queue; intake decides next (or, with `?wait=decided`, has decided).
    Queued {
        message_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        decision: Option<Decision>,
    },
    /// Refused by the door; not queued. `reason` is one of intake's reason codes.
    Refused {
        reason: &'static str,
        message: String,
    },
    /// The queue did not take it; `retryable` says whether resending may work.
    Failed {
        reason: &'static str,
        message: String,
        retryable: bool,
    },
}

/// Intake's verdict on a queued envelope (`?wait=decided`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Decision {
    /// In the ledger: intake accepted it and routed it on.
    Accepted { accepted_at_ms: u64 },
    /// Refused by intake, with its reason code and sentence (also in the rejections table).
    Refused { reason: String, message: String },
    /// Not decided within the wait; look it up later (`GET /v1/rejections/{event_id}`).
    Pending { message: String },
}

/// The response body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostResponse {
    pub results: Vec<EnvelopeResult>,
}

/// True when `content_type` is JSON (`application/json`, parameters allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Splits the body into the envelopes' raw JSON texts, refusing a body that is not JSON, is
/// neither an object nor an array, is an empty array or holds more than `max` envelopes.
pub fn split_envelopes(body: &[u8], max: usize) -> Result<Vec<Box<RawValue>>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("not_json", "the request body is not UTF-8 JSON"))?;
    let first = text.trim_start().chars().next();
    match first {
        None => Err(ApiError::bad_request(
            "not_json",
            "the request body is empty; send one envelope or a JSON array of envelopes",
        )),
        Some('[') => {
            let envelopes: Vec<Box<RawValue>> = serde_json::from_str(text).map_err(|error| {
                ApiError::bad_request(
                    "not_json",
                    format!("the request body is not a JSON array: {error}"),
                )
            })?;
            if envelopes.is_empty() {
                return Err(ApiError::bad_request(
                    "empty_batch",
                    "the array holds no envelope; send at least one",
                ));
            }
            if envelopes.len() > max {
                return Err(ApiError::bad_request(
                    "too_many_envelopes",
                    format!(
                        "the array holds {} envelopes; at most {max} per request, send the \
                         rest in further requests",
                        envelopes.len()
                    ),
                ));
            }
            Ok(envelopes)
        }
        Some(_) => {
            let envelope: Box<RawValue> = serde_json::from_str(text).map_err(|error| {
                ApiError::bad_request("not_json", format!("the request body is not JSON: {error}"))
            })?;
            if !envelope.get().starts_with('{') {
                return Err(ApiError::bad_request(
                    "not_envelope",
                    "the request body is neither an envelope (a JSON object) nor an array of \
                     envelopes",
                ));
            }
            Ok(vec![envelope])
        }
    }
}

/// A FIFO id from `candidate` if SQS would take it as one, else `None`.
fn fifo_id(candidate: Option<&str>) -> Option<String> {
    candidate
        .filter(|id| {
            !id.is_empty()
                && id.chars().count() <= MAX_FIFO_ID_CHARS
                && id.chars().all(|c| c.is_ascii_graphic())
        })
        .map(str::to_owned)
}

/// The queue message for one envelope, or the door's refusal of it.
pub fn message_for(raw: &RawValue) -> Result<OutgoingMessage, EnvelopeResult> {
    let text = raw.get();
    if text.len() > MAX_ENVELOPE_BYTES {
        return Err(EnvelopeResult::Refused {
            reason: RejectReason::Oversized.code(),
            message: format!(
                "the envelope is {} bytes; the limit is {MAX_ENVELOPE_BYTES} — split the payload",
                text.len()
            ),
        });
    }
    if !text.starts_with('{') {
        return Err(EnvelopeResult::Refused {
            reason: RejectReason::Malformed.code(),
            message: "an envelope is a JSON object".into(),
        });
    }
    // Transport keys only: what intake makes of the fields is intake's business. They are
    // read with intake's own strict reader, so an object intake will refuse as `malformed` (a
    // repeated member name, nesting past its limit) takes no key from an ambiguous member: it
    // is queued under the fallback group and its body's hash, and intake records the refusal.
    let object = worldfleet_domain::json::parse_object(text.as_bytes()).unwrap_or_default();
    let group = fifo_id(object.get("partition").and_then(|value| value.as_str()))
        .unwrap_or_else(|| FALLBACK_GROUP.to_owned());
    let dedup = fifo_id(object.get("event_id").and_then(|value| value.as_str()))
        .unwrap_or_else(|| hex::encode(Sha256::digest(text.as_bytes())));
    Ok(OutgoingMessage::fifo(text.to_owned(), &group, &dedup))
}

/// The handler.
pub async fn post_events(
    State(state): State<ServeState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Bytes,
) -> Response {
    let wait = match wait_parameter(query) {
        Ok(wait) => wait,
        Err(error) => return error.into_response(),
    };
    if !is_json(&headers) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send envelopes with Content-Type: application/json",
        )
        .into_response();
    }
    let envelopes = match split_envelopes(&body, state.inner.config.max_envelopes) {
        Ok(envelopes) => envelopes,
        Err(error) => return error.into_response(),
    };
    let metrics = &state.inner.metrics;
    let mut results: Vec<Option<EnvelopeResult>> = vec![None; envelopes.len()];
    let mut pending: Vec<(usize, OutgoingMessage)> = Vec::new();
    for (index, raw) in envelopes.iter().enumerate() {
        match message_for(raw) {
            Ok(message) => pending.push((index, message)),
            Err(refusal) => {
                if let EnvelopeResult::Refused { reason, .. } = &refusal {
                    metrics.envelope_refused(reason);
                }
                results[index] = Some(refusal);
            }
        }
    }
    let mut chunks = pending.chunks(MAX_BATCH);
    for chunk in chunks.by_ref() {
        let messages = chunk.iter().map(|(_, message)| message.clone()).collect();
        match state.inner.queue.send_batch(INTAKE_QUEUE, messages).await {
            Ok(outcomes) => {
                for (position, (index, _)) in chunk.iter().enumerate() {
                    results[*index] = Some(match outcomes.get(position) {
                        Some(SendOutcome::Sent { message_id }) => EnvelopeResult::Queued {
                            message_id: message_id.clone(),
                            decision: None,
                        },
                        Some(SendOutcome::Failed { reason, retryable }) => {
                            tracing::warn!(%reason, "intake queue refused an envelope");
                            EnvelopeResult::Failed {
                                reason: "queue_refused",
                                message: format!("the intake queue did not take it: {reason}"),
                                retryable: *retryable,
                            }
                        }
                        None => EnvelopeResult::Failed {
                            reason: "queue_unavailable",
                            message: "the intake queue gave no answer for it; resend".into(),
                            retryable: true,
                        },
                    });
                }
            }
            Err(error) => {
                tracing::warn!(%error, "intake queue send failed");
                for (index, _) in chunk {
                    results[*index] = Some(EnvelopeResult::Failed {
                        reason: "queue_unavailable",
                        message: "the intake queue did not answer; resend the request".into(),
                        retryable: error.is_retryable(),
                    });
                }
                // Nothing after a failed send is sent: queued now, a later envelope of a
                // partition would overtake the earlier one the gateway resends.
                break;
            }
        }
    }
    for (index, _) in chunks.flatten() {
        results[*index] = Some(EnvelopeResult::Failed {
            reason: "queue_unavailable",
            message: "not sent: an earlier envelope of this request could not be queued, and \
                      order within a partition is kept; resend the request"
                .into(),
            retryable: true,
        });
    }
    let mut results: Vec<EnvelopeResult> = results
        .into_iter()
        .map(|result| {
            result.unwrap_or(EnvelopeResult::Failed {
                reason: "queue_unavailable",
                message: "no answer".into(),
                retryable: true,
            })
        })
        .collect();
    if let Some(wait) = wait {
        await_decisions(&state, &envelopes, &mut results, wait).await;
    }
    let mut any_failed = false;
    for result in &results {
        match result {
            EnvelopeResult::Queued { .. } => metrics.envelope_queued(),
            EnvelopeResult::Failed { .. } => {
                metrics.envelope_failed();
                any_failed = true;
            }
            EnvelopeResult::Refused { .. } => {}
        }
    }
    let status = if any_failed {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::ACCEPTED
    };
    let mut response = (status, Json(PostResponse { results })).into_response();
    if any_failed {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// `?wait=decided[&wait_ms=N]`: how long to wait for intake's verdicts, if at all.
fn wait_parameter(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Option<Duration>, ApiError> {
    let parameters = query_map(query)?;
    let wait_ms = number_parameter(&parameters, "wait_ms")?;
    match parameters.get("wait").map(String::as_str) {
        None if wait_ms.is_none() => Ok(None),
        None => Err(ApiError::bad_request(
            "bad_parameter",
            "`wait_ms` goes with `wait=decided`",
        )),
        Some("decided") => {
            let wait = wait_ms.map_or(DEFAULT_DECISION_WAIT, Duration::from_millis);
            if wait.is_zero() || wait > MAX_DECISION_WAIT {
                return Err(ApiError::bad_request(
                    "bad_parameter",
                    format!("`wait_ms` must be 1 to {}", MAX_DECISION_WAIT.as_millis()),
                ));
            }
            Ok(Some(wait))
        }
        Some(other) => Err(ApiError::bad_request(
            "bad_parameter",
            format!("`wait` is {other:?}; the one value is `decided`"),
        )),
    }
}

/// Where intake records its verdict on one queued envelope: the ledger entry it would append
/// (when the envelope names a partition and an event id) and the rejection row of its bytes.
struct VerdictKeys {
    ledger: Option<Key>,
    rejection: Key,
}

impl VerdictKeys {
    fn of(text: &str) -> Self {
        // Intake's strict reader, as for the transport keys: an envelope with a repeated member
        // name has no partition or event id to look up (intake refuses it as `malformed`).
        let object = worldfleet_domain::json::parse_value(text.as_bytes()).ok();
        let field = |name: &str| {
            object
                .as_ref()
                .and_then(|value| value.get(name))
                .and_then(serde_json::Value::as_str)
        };
        Self {
            ledger: field("partition")
                .zip(field("event_id"))
                .map(|(partition, event_id)| Key::new(partition, event_id)),
            rejection: locate(text.as_bytes()),
        }
    }
}

/// Fills in intake's verdict on every queued envelope, reading the ledger and the rejections
/// table until each is decided or `wait` runs out.
async fn await_decisions(
    state: &ServeState,
    envelopes: &[Box<RawValue>],
    results: &mut [EnvelopeResult],
    wait: Duration,
) {
    let deadline = tokio::time::Instant::now() + wait;
    // Each envelope's keys once; then only the undecided ones are read again.
    let mut undecided: Vec<(usize, VerdictKeys)> = results
        .iter()
        .enumerate()
        .filter(|(_, result)| matches!(result, EnvelopeResult::Queued { .. }))
        .map(|(index, _)| (index, VerdictKeys::of(envelopes[index].get())))
        .collect();
    while !undecided.is_empty() {
        let mut still = Vec::with_capacity(undecided.len());
        for (index, keys) in undecided {
            let EnvelopeResult::Queued {
                message_id,
                decision,
            } = &mut results[index]
            else {
                continue;
            };
            match decided(state, &keys, message_id).await {
                Some(verdict) => *decision = Some(verdict),
                None => still.push((index, keys)),
            }
        }
        undecided = still;
        if undecided.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(DECISION_POLL).await;
    }
    for (index, _) in undecided {
        if let EnvelopeResult::Queued { decision, .. } = &mut results[index] {
            *decision = Some(Decision::Pending {
                message: format!(
                    "intake had not decided within {} ms; look the event id up later at \
                     GET /v1/rejections/{{event_id}} (empty once it is accepted)",
                    wait.as_millis()
                ),
            });
        }
    }
}

/// Intake's verdict on the envelope delivered as `message_id`, if it has one yet.
async fn decided(state: &ServeState, keys: &VerdictKeys, message_id: &str) -> Option<Decision> {
    let table = state.inner.table.as_ref();
    if let Some(ledger) = &keys.ledger
        && let Ok(Some(entry)) = table.get(LEDGER_TABLE, ledger).await
        && entry.str("message_id") == Some(message_id)
    {
        return Some(Decision::Accepted {
            accepted_at_ms: entry.i64("accepted_at_ms").unwrap_or(0).max(0) as u64,
        });
    }
    let row = table
        .get(REJECTIONS_TABLE, &keys.rejection)
        .await
        .ok()
        .flatten()
        .map(|item| RejectionRow::from_item(&item))?;
    (row.message_id == message_id).then(|| Decision::Refused {
        reason: row
            .reason
            .map_or_else(|| "unknown".to_owned(), |reason| reason.code().to_owned()),
        message: row.detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_one_envelope_or_an_array_and_keeps_the_bytes() {
        let one = split_envelopes(br#" {"a": 1} "#, 100).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].get(), r#"{"a": 1}"#);
        let many = split_envelopes(br#"[{"a":1}, {"b" : 2}, 3]"#, 100).unwrap();
        assert_eq!(
            many.iter().map(|raw| raw.get()).collect::<Vec<_>>(),
            [r#"{"a":1}"#, r#"{"b" : 2}"#, "3"]
        );
    }

    #[test]
    fn refuses_bodies_it_can_judge_itself() {
        for (body, code) in [
            (&b""[..], "not_json"),
            (b"   ", "not_json"),
            (b"{", "not_json"),
            (b"[{}", "not_json"),
            (b"\xff\xfe", "not_json"),
            (b"[]", "empty_batch"),
            (b"\"text\"", "not_envelope"),
            (b"[{},{},{}]", "too_many_envelopes"),
        ] {
            let error = split_envelopes(body, 2).unwrap_err();
            assert_eq!(error.code, code, "{body:?}");
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn messages_are_grouped_by_partition_and_deduplicated_by_event_id() {
        let raw =
            RawValue::from_string(r#"{"partition":"gm/d/s","event_id":"01J","other":true}"#.into())
                .unwrap();
        let message = message_for(&raw).unwrap();
        assert_eq!(message.group_id.as_deref(), Some("gm/d/s"));
        assert_eq!(message.dedup_id.as_deref(), Some("01J"));
        assert_eq!(message.body, raw.get());
        // No usable partition or event id: still queued, for intake to refuse.
        let raw =
            RawValue::from_string(r#"{"partition":7,"event_id":"with space"}"#.into()).unwrap();
        let message = message_for(&raw).unwrap();
        assert_eq!(message.group_id.as_deref(), Some(FALLBACK_GROUP));
        assert_eq!(message.dedup_id.as_deref().map(str::len), Some(64));
        // A repeated member name: no key is taken from either copy.
        let raw = RawValue::from_string(
            r#"{"partition":"gm/d/s","event_id":"01J","event_id":"01K"}"#.into(),
        )
        .unwrap();
        let message = message_for(&raw).unwrap();
        assert_eq!(message.group_id.as_deref(), Some(FALLBACK_GROUP));
        assert_eq!(message.dedup_id.as_deref().map(str::len), Some(64));
        assert_eq!(message.body, raw.get());
    }

    #[test]
    fn verdicts_are_looked_up_under_keys_read_as_intake_reads_them() {
        let keys = VerdictKeys::of(r#"{"partition":"gm/d/s","event_id":"01J"}"#);
        assert_eq!(keys.ledger, Some(Key::new("gm/d/s", "01J")));
        // A repeated member name: intake refuses it as malformed, so there is no ledger entry
        // to look for under either copy (a last-wins reader would pick "01K").
        let keys = VerdictKeys::of(r#"{"partition":"gm/d/s","event_id":"01J","event_id":"01K"}"#);
        assert_eq!(keys.ledger, None);
    }

    #[test]
    fn refuses_oversized_envelopes_and_non_objects() {
        let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(MAX_ENVELOPE_BYTES));
        let raw = RawValue::from_string(big).unwrap();
        assert!(matches!(
            message_for(&raw),
            Err(EnvelopeResult::Refused {
                reason: "oversized",
                ..
            })
        ));
        let raw = RawValue::from_string("[1]".into()).unwrap();
        assert!(matches!(
            message_for(&raw),
            Err(EnvelopeResult::Refused {
                reason: "malformed",
                ..
            })
        ));
    }
}
