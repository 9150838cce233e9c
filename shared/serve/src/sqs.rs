//! The SQS JSON protocol for the intake queue, on the same server: `POST /` with
//! `X-Amz-Target: AmazonSQS.<Operation>` and `Content-Type: application/x-amz-json-1.0`.
//!
//! A gateway written against any AWS SDK posts envelopes here exactly as it would to SQS, by
//! pointing `AWS_ENDPOINT_URL_SQS` at the server. Served operations: `GetQueueUrl`,
//! `SendMessage` and `SendMessageBatch`, for the queue `intake.fifo` only (any other name is
//! `QueueDoesNotExist`; any other operation `UnsupportedOperation`). Messages go through the
//! queue port unchanged, so intake sees what it would see from SQS; this door judges nothing
//! about envelopes. A missing `MessageDeduplicationId` is taken as content-based
//! deduplication (the SHA-256 of the body), as on a queue with `ContentBasedDeduplication`.
//!
//! Requests are authenticated with SigV4 ([`crate::sigv4`]): access key id = gateway id,
//! secret access key = the gateway's key in lowercase hex; then the gateway's rate limit
//! applies as on `/v1`. Errors come back the way the SQS JSON protocol sends them: a JSON body
//! with `__type` and `message`, and the `x-amzn-query-error` header the SDKs read the
//! query-compatible code from.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use worldfleet_domain::names::INTAKE_QUEUE;
use worldfleet_ports::queue::MAX_BATCH;
use worldfleet_ports::{OutgoingMessage, SendOutcome};

use crate::ServeState;
use crate::md5;
use crate::sigv4;

/// The header naming the operation.
pub const TARGET_HEADER: &str = "x-amz-target";
/// The account id in the queue URLs this endpoint hands out.
pub const ACCOUNT_ID: &str = "000000000000";

/// An SQS protocol error.
#[derive(Debug, Clone, PartialEq)]
pub struct SqsError {
    status: StatusCode,
    /// The short type for `__type` (`com.amazonaws.sqs#…`).
    kind: &'static str,
    /// The query-compatible code (`AWS.SimpleQueueService.NonExistentQueue`, …).
    query_code: &'static str,
    sender_fault: bool,
    message: String,
}

impl SqsError {
    /// The short error type (`QueueDoesNotExist`, `MissingParameter`, …), as in `__type`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    fn sender(kind: &'static str, query_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind,
            query_code,
            sender_fault: true,
            message: message.into(),
        }
    }

    fn no_such_queue(name: &str) -> Self {
        Self::sender(
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            format!("this endpoint serves only {INTAKE_QUEUE}, not {name:?}"),
        )
    }

    fn missing(name: &str) -> Self {
        Self::sender(
            "MissingParameter",
            "MissingParameter",
            format!("the request must contain the parameter {name}"),
        )
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::sender("InvalidParameterValue", "InvalidParameterValue", message)
    }

    fn from_port(error: &worldfleet_ports::Error) -> Self {
        tracing::warn!(%error, "sqs endpoint: queue send failed");
        match error {
            worldfleet_ports::Error::InvalidRequest(reason) => Self::invalid(reason.clone()),
            error if error.is_retryable() => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                kind: "ServiceUnavailable",
                query_code: "ServiceUnavailable",
                sender_fault: false,
                message: "the intake queue did not answer in time; retry".into(),
            },
            _ => Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                kind: "InternalError",
                query_code: "InternalError",
                sender_fault: false,
                message: "the intake queue refused the request; see the server log".into(),
            },
        }
    }
}

impl IntoResponse for SqsError {
    fn into_response(self) -> Response {
        let type_name = format!("com.amazonaws.sqs#{}", self.kind);
        let mut response = (
            self.status,
            Json(json!({ "__type": type_name, "message": self.message })),
        )
            .into_response();
        let fault = if self.sender_fault {
            "Sender"
        } else {
            "Receiver"
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        if let Ok(value) = HeaderValue::from_str(&format!("{};{fault}", self.query_code)) {
            headers.insert("x-amzn-query-error", value);
        }
        if let Ok(value) = HeaderValue::from_str(self.kind) {
            headers.insert("x-amzn-errortype", value);
        }
        response
    }
}

fn ok(body: Value) -> Response {
    let mut response = (StatusCode::OK, Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueUrlRequest {
    queue_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageRequest {
    queue_url: Option<String>,
    message_body: Option<String>,
    message_group_id: Option<String>,
    message_deduplication_id: Option<String>,
    delay_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchEntry {
    id: Option<String>,
    message_body: Option<String>,
    message_group_id: Option<String>,
    message_deduplication_id: Option<String>,
    delay_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageBatchRequest {
    queue_url: Option<String>,
    entries: Option<Vec<BatchEntry>>,
}

/// The queue a `QueueUrl` names (its last path segment), if it is the intake queue.
fn queue_of(url: Option<&str>) -> Result<(), SqsError> {
    let url = url.ok_or_else(|| SqsError::missing("QueueUrl"))?;
    let name = url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if name == INTAKE_QUEUE {
        Ok(())
    } else {
        Err(SqsError::no_such_queue(name))
    }
}

fn message(
    body: Option<String>,
    group: Option<String>,
    dedup: Option<String>,
    delay_seconds: Option<i64>,
) -> Result<OutgoingMessage, SqsError> {
    let body = body.ok_or_else(|| SqsError::missing("MessageBody"))?;
    if body.is_empty() {
        return Err(SqsError::invalid("MessageBody must not be empty"));
    }
    let group = group.ok_or_else(|| SqsError::missing("MessageGroupId"))?;
    if delay_seconds.is_some_and(|delay| delay != 0) {
        return Err(SqsError::invalid(
            "DelaySeconds is not supported on FIFO queues at the message level",
        ));
    }
    let dedup = dedup.unwrap_or_else(|| hex::encode(Sha256::digest(body.as_bytes())));
    Ok(OutgoingMessage::fifo(body, &group, &dedup))
}

/// Reads `body` as the operation's JSON. The whole body must be UTF-8: `serde_json` does not
/// check the bytes of a string it skips (an unknown member's value), so that is checked first.
fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, SqsError> {
    let refused = |reason: String| {
        SqsError::sender(
            "SerializationException",
            "SerializationException",
            format!("the request body is not the operation's JSON: {reason}"),
        )
    };
    let text = std::str::from_utf8(body).map_err(|error| refused(error.to_string()))?;
    serde_json::from_str(text).map_err(|error| refused(error.to_string()))
}

/// What a request of one of the served operations asks for, read and checked from its JSON
/// body. Reading needs nothing but the bytes (no queue, no clock), so it is tested and fuzzed
/// on its own; the handler authenticates first, then reads, then acts.
#[derive(Debug, Clone, PartialEq)]
pub enum SqsRequest {
    /// `GetQueueUrl` for the intake queue (any other name is refused while reading).
    GetQueueUrl,
    /// `SendMessage` of one message to the intake queue.
    SendMessage(OutgoingMessage),
    /// `SendMessageBatch` to the intake queue: 1 to [`MAX_BATCH`] entries with distinct ids.
    SendMessageBatch(Vec<BatchEntryRequest>),
}

/// One entry of a `SendMessageBatch`: its id, and its message or why that entry alone is
/// refused (the rest of the batch is still sent).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchEntryRequest {
    pub id: String,
    pub message: Result<OutgoingMessage, SqsError>,
}

/// The operation an `X-Amz-Target` header names (`AmazonSQS.<Operation>`).
pub fn operation_of(target: &str) -> Result<&str, SqsError> {
    target.strip_prefix("AmazonSQS.").ok_or_else(|| {
        SqsError::sender(
            "InvalidAction",
            "InvalidAction",
            "POST / speaks the SQS JSON protocol: send X-Amz-Target: AmazonSQS.<Operation>",
        )
    })
}

/// Reads `body` as a request of `operation`, refusing what SQS refuses before touching the
/// queue: a body that is not the operation's JSON, another queue, a missing or empty
/// parameter, a message-level delay, an empty, oversized or ambiguous batch, and any
/// operation other than the three served.
pub fn parse_request(operation: &str, body: &[u8]) -> Result<SqsRequest, SqsError> {
    match operation {
        "GetQueueUrl" => {
            let request: GetQueueUrlRequest = decode(body)?;
            let name = request
                .queue_name
                .ok_or_else(|| SqsError::missing("QueueName"))?;
            if name != INTAKE_QUEUE {
                return Err(SqsError::no_such_queue(&name));
            }
            Ok(SqsRequest::GetQueueUrl)
        }
        "SendMessage" => {
            let request: SendMessageRequest = decode(body)?;
            queue_of(request.queue_url.as_deref())?;
            message(
                request.message_body,
                request.message_group_id,
                request.message_deduplication_id,
                request.delay_seconds,
            )
            .map(SqsRequest::SendMessage)
        }
        "SendMessageBatch" => {
            let request: SendMessageBatchRequest = decode(body)?;
            queue_of(request.queue_url.as_deref())?;
            let entries = request.entries.unwrap_or_default();
            if entries.is_empty() {
                return Err(SqsError::sender(
                    "EmptyBatchRequest",
                    "AWS.SimpleQueueService.EmptyBatchRequest",
                    "the batch holds no entry",
                ));
            }
            if entries.len() > MAX_BATCH {
                return Err(SqsError::sender(
                    "TooManyEntriesInBatchRequest",
                    "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
                    format!(
                        "the batch holds {} entries; at most {MAX_BATCH}",
                        entries.len()
                    ),
                ));
            }
            let mut ids: Vec<String> = Vec::with_capacity(entries.len());
            for entry in &entries {
                let id = entry.id.clone().ok_or_else(|| SqsError::missing("Id"))?;
                if ids.contains(&id) {
                    return Err(SqsError::sender(
                        "BatchEntryIdsNotDistinct",
                        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                        format!("entry id {id:?} appears twice"),
                    ));
                }
                ids.push(id);
            }
            let entries = ids
                .into_iter()
                .zip(entries)
                .map(|(id, entry)| BatchEntryRequest {
                    id,
                    message: message(
                        entry.message_body,
                        entry.message_group_id,
                        entry.message_deduplication_id,
                        entry.delay_seconds,
                    ),
                })
                .collect();
            Ok(SqsRequest::SendMessageBatch(entries))
        }
        other => Err(SqsError::sender(
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            format!(
                "{other} is not served here; this endpoint answers GetQueueUrl, SendMessage and \
                 SendMessageBatch for {INTAKE_QUEUE}"
            ),
        )),
    }
}

/// The handler for `POST /`.
pub async fn handle(
    State(state): State<ServeState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match dispatch(&state, &method, &uri, &headers, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn dispatch(
    state: &ServeState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, SqsError> {
    let target = headers
        .get(TARGET_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let operation = operation_of(target)?;
    let now_ms = state.inner.clock.now_ms();
    let window_ms = state.inner.config.auth_window.as_millis() as u64;
    let gateway = sigv4::verify(method, uri, headers, body, now_ms, window_ms, |gateway| {
        state
            .inner
            .gateways
            .keys_of(gateway)
            .iter()
            .map(|key| hex::encode(key.as_bytes()))
            .collect()
    })
    .map_err(|error| {
        tracing::info!(code = error.code, "sqs endpoint: request refused");
        SqsError {
            status: StatusCode::FORBIDDEN,
            kind: error.code,
            query_code: error.code,
            sender_fault: true,
            message: error.message,
        }
    })?;
    if let Err(wait_secs) = state.inner.limiter.take(&gateway, now_ms) {
        return Err(SqsError::sender(
            "ThrottlingException",
            "ThrottlingException",
            format!("gateway {gateway:?} is over its request rate; retry in {wait_secs} s"),
        ));
    }
    match parse_request(operation, body)? {
        SqsRequest::GetQueueUrl => {
            let host = headers
                .get(header::HOST)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("localhost");
            Ok(ok(json!({
                "QueueUrl": format!("http://{host}/{ACCOUNT_ID}/{INTAKE_QUEUE}")
            })))
        }
        SqsRequest::SendMessage(outgoing) => {
            let digest = md5::hex_digest(outgoing.body.as_bytes());
            let outcomes = state
                .inner
                .queue
                .send_batch(INTAKE_QUEUE, vec![outgoing])
                .await
                .map_err(|error| SqsError::from_port(&error))?;
            match outcomes.into_iter().next() {
                Some(SendOutcome::Sent { message_id }) => {
                    state.inner.metrics.envelope_queued();
                    Ok(ok(
                        json!({ "MessageId": message_id, "MD5OfMessageBody": digest }),
                    ))
                }
                Some(SendOutcome::Failed { reason, .. }) => {
                    state.inner.metrics.envelope_failed();
                    Err(SqsError::invalid(reason))
                }
                None => Err(SqsError::from_port(&worldfleet_ports::Error::Unavailable(
                    "no outcome".into(),
                ))),
            }
        }
        SqsRequest::SendMessageBatch(entries) => {
            let mut successful = Vec::new();
            let mut failed = Vec::new();
            let mut pending = Vec::new();
            for entry in entries {
                match entry.message {
                    Ok(outgoing) => pending.push((entry.id, outgoing)),
                    Err(error) => failed.push(json!({
                        "Id": entry.id, "SenderFault": true, "Code": error.query_code,
                        "Message": error.message,
                    })),
                }
            }
            if !pending.is_empty() {
                let messages = pending.iter().map(|(_, message)| message.clone()).collect();
                let outcomes = state
                    .inner
                    .queue
                    .send_batch(INTAKE_QUEUE, messages)
                    .await
                    .map_err(|error| SqsError::from_port(&error))?;
                for (index, (id, outgoing)) in pending.iter().enumerate() {
                    match outcomes.get(index) {
                        Some(SendOutcome::Sent { message_id }) => {
                            state.inner.metrics.envelope_queued();
                            successful.push(json!({
                                "Id": id, "MessageId": message_id,
                                "MD5OfMessageBody": md5::hex_digest(outgoing.body.as_bytes()),
                            }));
                        }
                        Some(SendOutcome::Failed { reason, retryable }) => {
                            state.inner.metrics.envelope_failed();
                            failed.push(json!({
                                "Id": id, "SenderFault": !retryable,
                                "Code": if *retryable { "ServiceUnavailable" } else { "InvalidParameterValue" },
                                "Message": reason,
                            }));
                        }
                        None => failed.push(json!({
                            "Id": id, "SenderFault": false, "Code": "ServiceUnavailable",
                            "Message": "the intake queue gave no answer for this entry",
                        })),
                    }
                }
            }
            Ok(ok(json!({ "Successful": successful, "Failed": failed })))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://localhost/000000000000/intake.fifo";

    fn refusal(operation: &str, body: &str) -> &'static str {
        parse_request(operation, body.as_bytes())
            .unwrap_err()
            .kind()
    }

    #[test]
    fn reads_the_three_operations() {
        assert_eq!(
            operation_of("AmazonSQS.SendMessage").unwrap(),
            "SendMessage"
        );
        assert_eq!(
            operation_of("SendMessage").unwrap_err().kind(),
            "InvalidAction"
        );
        assert_eq!(
            parse_request("GetQueueUrl", br#"{"QueueName":"intake.fifo"}"#).unwrap(),
            SqsRequest::GetQueueUrl
        );
        let body = format!(r#"{{"QueueUrl":"{URL}","MessageBody":"b","MessageGroupId":"g"}}"#);
        let SqsRequest::SendMessage(message) =
            parse_request("SendMessage", body.as_bytes()).unwrap()
        else {
            panic!("not a SendMessage");
        };
        assert_eq!(message.group_id.as_deref(), Some("g"));
        // No deduplication id: content-based, the SHA-256 of the body.
        assert_eq!(message.dedup_id, Some(hex::encode(Sha256::digest(b"b"))));
        let body = format!(
            r#"{{"QueueUrl":"{URL}","Entries":[{{"Id":"1","MessageBody":"b","MessageGroupId":"g"}},{{"Id":"2","MessageBody":""}}]}}"#
        );
        let SqsRequest::SendMessageBatch(entries) =
            parse_request("SendMessageBatch", body.as_bytes()).unwrap()
        else {
            panic!("not a SendMessageBatch");
        };
        assert!(entries[0].message.is_ok());
        assert_eq!(
            entries[1].message.as_ref().unwrap_err().kind(),
            "InvalidParameterValue"
        );
    }

    #[test]
    fn refuses_what_sqs_refuses_before_the_queue() {
        assert_eq!(
            refusal("GetQueueUrl", r#"{"QueueName":"other"}"#),
            "QueueDoesNotExist"
        );
        assert_eq!(refusal("GetQueueUrl", "{"), "SerializationException");
        // Invalid UTF-8 in a member the operation ignores is still not JSON.
        let hidden = b"{\"QueueName\":\"intake.fifo\",\"Other\":\"\xff\"}";
        assert!(serde_json::from_slice::<GetQueueUrlRequest>(hidden).is_ok());
        assert_eq!(
            parse_request("GetQueueUrl", hidden).unwrap_err().kind(),
            "SerializationException"
        );
        assert_eq!(
            refusal("SendMessage", r#"{"MessageBody":"b"}"#),
            "MissingParameter"
        );
        let delayed = format!(
            r#"{{"QueueUrl":"{URL}","MessageBody":"b","MessageGroupId":"g","DelaySeconds":5}}"#
        );
        assert_eq!(refusal("SendMessage", &delayed), "InvalidParameterValue");
        let empty = format!(r#"{{"QueueUrl":"{URL}","Entries":[]}}"#);
        assert_eq!(refusal("SendMessageBatch", &empty), "EmptyBatchRequest");
        let twice = format!(r#"{{"QueueUrl":"{URL}","Entries":[{{"Id":"a"}},{{"Id":"a"}}]}}"#);
        assert_eq!(
            refusal("SendMessageBatch", &twice),
            "BatchEntryIdsNotDistinct"
        );
        let eleven = format!(
            r#"{{"QueueUrl":"{URL}","Entries":[{}]}}"#,
            (0..11)
                .map(|id| format!(r#"{{"Id":"{id}"}}"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            refusal("SendMessageBatch", &eleven),
            "TooManyEntriesInBatchRequest"
        );
        assert_eq!(refusal("DeleteQueue", "{}"), "UnsupportedOperation");
    }
}
