//! What a request is: which service, in which wire protocol, which operation; and the error
//! responses each service sends in that protocol.
//!
//! DynamoDB speaks AWS JSON 1.0 (`X-Amz-Target: DynamoDB_20120810.PutItem`). SQS speaks AWS
//! JSON 1.0 to the SDK versions this workspace uses (`X-Amz-Target: AmazonSQS.SendMessage`,
//! with the `awsQueryCompatible` trait: the SDK takes the error code from the
//! `x-amzn-query-error` header), and the older query protocol (`Action=SendMessage` in a form
//! body, errors as XML) to older clients; both are recognised and answered in kind.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderMap};
use hyper::{Response, StatusCode};

use crate::plan::Fault;

/// The service a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    DynamoDb,
    Sqs,
    /// Anything else (forwarded, faulted with a bare status and no AWS error body).
    Other,
}

/// The wire protocol of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// AWS JSON 1.0 (`X-Amz-Target` names the operation).
    Json,
    /// AWS query (a form body with `Action=`).
    Query,
    /// Not recognised.
    Unknown,
}

/// One recognised request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub service: Service,
    pub protocol: Protocol,
    /// The operation (`PutItem`, `ReceiveMessage`); empty when not recognised.
    pub operation: String,
}

impl Call {
    /// Reads the service, protocol and operation from a request's headers and body.
    pub fn recognise(headers: &HeaderMap, body: &[u8]) -> Call {
        if let Some(target) = headers
            .get("x-amz-target")
            .and_then(|value| value.to_str().ok())
        {
            let (prefix, operation) = target.split_once('.').unwrap_or((target, ""));
            let service = if prefix.starts_with("DynamoDB_") {
                Service::DynamoDb
            } else if prefix == "AmazonSQS" {
                Service::Sqs
            } else {
                Service::Other
            };
            return Call {
                service,
                protocol: Protocol::Json,
                operation: operation.to_owned(),
            };
        }
        let form = headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        if form {
            let action = std::str::from_utf8(body).ok().and_then(|text| {
                text.split('&')
                    .find_map(|pair| pair.strip_prefix("Action="))
                    .map(str::to_owned)
            });
            if let Some(operation) = action {
                return Call {
                    service: Service::Sqs,
                    protocol: Protocol::Query,
                    operation,
                };
            }
        }
        Call {
            service: Service::Other,
            protocol: Protocol::Unknown,
            operation: String::new(),
        }
    }

    /// The name counts are kept under: `dynamodb:PutItem`, `sqs:ReceiveMessage`, `other`.
    pub fn label(&self) -> String {
        match self.service {
            Service::DynamoDb => format!("dynamodb:{}", self.operation),
            Service::Sqs => format!("sqs:{}", self.operation),
            Service::Other => "other".to_owned(),
        }
    }

    /// Whether this is a batch call the proxy can answer with part of it unprocessed.
    pub fn is_partial_batch_candidate(&self) -> bool {
        self.service == Service::DynamoDb
            && self.protocol == Protocol::Json
            && matches!(self.operation.as_str(), "BatchWriteItem" | "BatchGetItem")
    }

    /// The answer to a [`Fault::Throttle`] or [`Fault::ServerError`], as the service would
    /// send it. `alternate` picks DynamoDB's other throttling code
    /// (`ThrottlingException` instead of `ProvisionedThroughputExceededException`).
    pub fn error_response(&self, fault: Fault, alternate: bool) -> Response<Full<Bytes>> {
        let (status, code, message, sender) = match (self.service, fault) {
            (Service::DynamoDb, Fault::Throttle) if alternate => (
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "Rate of requests exceeds the allowed throughput.",
                true,
            ),
            (Service::DynamoDb, Fault::Throttle) => (
                StatusCode::BAD_REQUEST,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded. \
                 Consider increasing your provisioning level with the UpdateTable API.",
                true,
            ),
            (Service::DynamoDb, _) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "Internal server error",
                false,
            ),
            (_, Fault::Throttle) => (
                StatusCode::BAD_REQUEST,
                "RequestThrottled",
                "Rate exceeded",
                true,
            ),
            (_, _) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
                false,
            ),
        };
        let request_id = "00000000-fa17-0000-0000-000000000000";
        let mut builder = Response::builder()
            .status(status)
            .header("x-amzn-requestid", request_id);
        let body = match (self.service, self.protocol) {
            (Service::DynamoDb, _) => {
                builder = builder
                    .header(CONTENT_TYPE, "application/x-amz-json-1.0")
                    .header("x-amzn-errortype", code);
                serde_json::json!({
                    "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
                    "message": message,
                })
                .to_string()
            }
            (Service::Sqs, Protocol::Query) => {
                builder = builder.header(CONTENT_TYPE, "text/xml");
                let kind = if sender { "Sender" } else { "Receiver" };
                format!(
                    "<?xml version=\"1.0\"?><ErrorResponse \
                     xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><Error><Type>{kind}\
                     </Type><Code>{code}</Code><Message>{message}</Message><Detail/></Error>\
                     <RequestId>{request_id}</RequestId></ErrorResponse>"
                )
            }
            (Service::Sqs, _) => {
                let kind = if sender { "Sender" } else { "Receiver" };
                builder = builder
                    .header(CONTENT_TYPE, "application/x-amz-json-1.0")
                    .header("x-amzn-query-error", format!("{code};{kind}"));
                serde_json::json!({
                    "__type": format!("com.amazonaws.sqs#{code}"),
                    "message": message,
                })
                .to_string()
            }
            (Service::Other, _) => String::new(),
        };
        let mut response = builder
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
        if self.service == Service::Other && fault == Fault::Throttle {
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, hyper::header::HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn services_and_operations_are_recognised() {
        let dynamo = Call::recognise(
            &headers(&[("x-amz-target", "DynamoDB_20120810.BatchWriteItem")]),
            b"{}",
        );
        assert_eq!(dynamo.service, Service::DynamoDb);
        assert_eq!(dynamo.operation, "BatchWriteItem");
        assert!(dynamo.is_partial_batch_candidate());
        assert_eq!(dynamo.label(), "dynamodb:BatchWriteItem");

        let sqs = Call::recognise(
            &headers(&[("x-amz-target", "AmazonSQS.ReceiveMessage")]),
            b"{}",
        );
        assert_eq!((sqs.service, sqs.protocol), (Service::Sqs, Protocol::Json));
        assert!(!sqs.is_partial_batch_candidate());

        let query = Call::recognise(
            &headers(&[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )]),
            b"Version=2012-11-05&Action=SendMessage&QueueUrl=x",
        );
        assert_eq!(
            (query.service, query.protocol, query.operation.as_str()),
            (Service::Sqs, Protocol::Query, "SendMessage")
        );

        let other = Call::recognise(&HeaderMap::new(), b"");
        assert_eq!(other.label(), "other");
    }

    async fn body_of(response: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn errors_are_shaped_like_the_service_s_own() {
        let dynamo = Call {
            service: Service::DynamoDb,
            protocol: Protocol::Json,
            operation: "PutItem".into(),
        };
        let throttled = dynamo.error_response(Fault::Throttle, false);
        assert_eq!(throttled.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            throttled.headers()["x-amzn-errortype"],
            "ProvisionedThroughputExceededException"
        );
        assert!(body_of(throttled).await.contains(
            "\"__type\":\"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException\""
        ));
        assert!(
            body_of(dynamo.error_response(Fault::Throttle, true))
                .await
                .contains("#ThrottlingException")
        );
        let failed = dynamo.error_response(Fault::ServerError, false);
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body_of(failed).await.contains("#InternalServerError"));

        let sqs = Call {
            service: Service::Sqs,
            protocol: Protocol::Json,
            operation: "SendMessageBatch".into(),
        };
        let throttled = sqs.error_response(Fault::Throttle, false);
        assert_eq!(
            throttled.headers()["x-amzn-query-error"],
            "RequestThrottled;Sender"
        );
        assert!(
            body_of(throttled)
                .await
                .contains("com.amazonaws.sqs#RequestThrottled")
        );

        let query = Call {
            protocol: Protocol::Query,
            ..sqs
        };
        let failed = query.error_response(Fault::ServerError, false);
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body_of(failed).await.contains("<Code>InternalError</Code>"));
    }
}
