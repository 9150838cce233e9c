//! Sorting AWS SDK failures into the port's [`Error`] classes.
//!
//! Service errors are classified by their AWS error code (with the HTTP status as a fallback);
//! transport failures by what the SDK says about them. A conditional-check failure comes back
//! as [`Error::ConditionFailed`] with empty fields; the caller fills in table and key with
//! [`for_item`].

use std::error::Error as StdError;
use std::future::Future;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use worldfleet_ports::{Error, Key, Result};

use crate::retry::{Repeat, RetryCounters, RetryPolicy};

/// A service error of an SQS or DynamoDB operation, as [`classify_sdk`] reads it.
pub trait ServiceError: ProvideErrorMetadata + StdError + Send + Sync + 'static {}

impl<E: ProvideErrorMetadata + StdError + Send + Sync + 'static> ServiceError for E {}

/// What one attempt of an SDK operation returns (the HTTP response type is the same for SQS
/// and DynamoDB).
pub type SdkResult<T, E> = std::result::Result<T, SdkError<E, HttpResponse>>;

/// One SQS or DynamoDB request under `policy`: `send` issues one attempt, which `count`
/// counts; its failure is classified ([`classify_sdk`]) and retried by the rule for `repeat`,
/// the retries counted in `retries`.
pub(crate) async fn counted_request<T, E, F, Fut>(
    policy: &RetryPolicy,
    operation: &str,
    repeat: Repeat,
    (count, retries): (impl Fn(), &RetryCounters),
    mut send: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = SdkResult<T, E>>,
    E: ServiceError,
{
    policy
        .run_request(operation, repeat, retries, || {
            count();
            let sent = send();
            async move { sent.await.map_err(|error| classify_sdk(&error)) }
        })
        .await
}

/// Classifies any SDK failure of SQS or DynamoDB.
pub fn classify_sdk<E>(error: &SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let inner = service.err();
            classify_code(
                inner.code().unwrap_or(""),
                inner.message().unwrap_or(""),
                Some(status),
            )
        }
        SdkError::TimeoutError(_) => Error::Timeout(describe(error)),
        SdkError::DispatchFailure(dispatch) => {
            if dispatch.is_timeout() {
                Error::Timeout(describe(error))
            } else if dispatch.is_user() {
                Error::Permanent(describe(error))
            } else {
                Error::Unavailable(describe(error))
            }
        }
        SdkError::ResponseError(response) => {
            let status = response.raw().status().as_u16();
            if status == 429 {
                Error::Throttled(describe(error))
            } else {
                Error::Unavailable(describe(error))
            }
        }
        SdkError::ConstructionFailure(_) => Error::InvalidRequest(describe(error)),
        _ => Error::Permanent(describe(error)),
    }
}

/// Classifies an AWS error code (SQS or DynamoDB), falling back on the HTTP status.
pub fn classify_code(code: &str, message: &str, status: Option<u16>) -> Error {
    let text = if message.is_empty() {
        code.to_owned()
    } else {
        format!("{code}: {message}")
    };
    // Codes arrive bare (`ThrottlingException`), namespaced
    // (`com.amazonaws.dynamodb.v20120810#ThrottlingException`) or dotted
    // (`AWS.SimpleQueueService.NonExistentQueue`); compare the last segment.
    let short = code.rsplit(['#', '.']).next().unwrap_or(code);
    match short {
        "ConditionalCheckFailedException" | "ConditionalCheckFailed" => Error::ConditionFailed {
            table: String::new(),
            pk: String::new(),
            sk: String::new(),
        },
        "ProvisionedThroughputExceededException"
        | "RequestLimitExceeded"
        | "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "RequestThrottled"
        | "TooManyRequestsException"
        | "SlowDown"
        | "OverLimit"
        | "KmsThrottled"
        | "LimitExceededException" => Error::Throttled(text),
        "RequestTimeout" | "RequestTimeoutException" => Error::Timeout(text),
        "ResourceNotFoundException"
        | "NonExistentQueue"
        | "QueueDoesNotExist"
        | "TableNotFoundException" => Error::NotFound(text),
        "ReceiptHandleIsInvalid" | "InvalidReceiptHandle" | "MessageNotInflight" => {
            Error::InvalidReceipt(text)
        }
        "ValidationException"
        | "SerializationException"
        | "InvalidParameterValue"
        | "InvalidParameterValueException"
        | "InvalidParameterCombination"
        | "MissingParameter"
        | "InvalidAttributeName"
        | "InvalidAttributeValue"
        | "InvalidMessageContents"
        | "TooManyEntriesInBatchRequest"
        | "EmptyBatchRequest"
        | "BatchEntryIdsNotDistinct"
        | "BatchRequestTooLong"
        | "InvalidBatchEntryId"
        | "UnsupportedOperation"
        | "ValidationError"
        | "IdempotentParameterMismatchException"
        | "QueueNameExists"
        | "QueueAlreadyExists" => {
            if message.contains("exceeded the maximum allowed size")
                || message.contains("Item size has exceeded")
            {
                Error::ItemTooLarge {
                    size: 0,
                    limit: worldfleet_ports::table::MAX_ITEM_BYTES,
                }
            } else if message.contains("receipt handle") && message.contains("invalid") {
                Error::InvalidReceipt(text)
            } else {
                Error::InvalidRequest(text)
            }
        }
        "InternalServerError"
        | "InternalFailure"
        | "InternalError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "TransactionConflictException"
        | "TransactionInProgressException"
        | "QueueDeletedRecently" => Error::Unavailable(text),
        _ => match status {
            Some(429) => Error::Throttled(text),
            Some(408) | Some(504) => Error::Timeout(text),
            Some(status) if status >= 500 => Error::Unavailable(text),
            _ => Error::Permanent(if text.is_empty() {
                format!("unclassified AWS error (HTTP {status:?})")
            } else {
                text
            }),
        },
    }
}

/// Fills in the table and key of a [`Error::ConditionFailed`]; other errors pass unchanged.
pub fn for_item(error: Error, table: &str, key: &Key) -> Error {
    match error {
        Error::ConditionFailed { .. } => Error::ConditionFailed {
            table: table.to_owned(),
            pk: key.pk.clone(),
            sk: key.sk.clone(),
        },
        other => other,
    }
}

/// Names the missing resource in a [`Error::NotFound`]; other errors pass unchanged.
pub fn for_resource(error: Error, kind: &str, logical: &str) -> Error {
    match error {
        Error::NotFound(detail) => Error::NotFound(format!("{kind} {logical} ({detail})")),
        other => other,
    }
}

fn describe<E, R>(error: &SdkError<E, R>) -> String
where
    E: StdError + 'static,
    R: std::fmt::Debug,
{
    DisplayErrorContext(error).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_port_classes() {
        assert!(matches!(
            classify_code("ConditionalCheckFailedException", "", Some(400)),
            Error::ConditionFailed { .. }
        ));
        for throttled in [
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
            "com.amazonaws.dynamodb.v20120810#ThrottlingException",
        ] {
            assert!(matches!(
                classify_code(throttled, "x", Some(400)),
                Error::Throttled(_)
            ));
        }
        assert!(matches!(
            classify_code("AWS.SimpleQueueService.NonExistentQueue", "", Some(400)),
            Error::NotFound(_)
        ));
        assert!(matches!(
            classify_code("ResourceNotFoundException", "", Some(400)),
            Error::NotFound(_)
        ));
        assert!(matches!(
            classify_code("ValidationException", "bad", Some(400)),
            Error::InvalidRequest(_)
        ));
        assert!(matches!(
            classify_code(
                "ValidationException",
                "Item size has exceeded the maximum allowed size",
                Some(400)
            ),
            Error::ItemTooLarge { .. }
        ));
        assert!(matches!(
            classify_code("ReceiptHandleIsInvalid", "", Some(400)),
            Error::InvalidReceipt(_)
        ));
        assert!(matches!(
            classify_code("Weird", "", Some(503)),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            classify_code("Weird", "", Some(429)),
            Error::Throttled(_)
        ));
        assert!(matches!(
            classify_code("Weird", "", Some(403)),
            Error::Permanent(_)
        ));
    }

    #[test]
    fn condition_failures_name_their_item() {
        let error = for_item(
            classify_code("ConditionalCheckFailedException", "", None),
            "ledger",
            &Key::new("p", "s"),
        );
        assert_eq!(
            error,
            Error::ConditionFailed {
                table: "ledger".into(),
                pk: "p".into(),
                sk: "s".into()
            }
        );
    }
}
