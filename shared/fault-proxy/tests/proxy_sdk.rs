//! The proxy between the real AWS SDK clients and a stand-in upstream, without the emulators:
//! each fault kind reaches the SDK as the service's own error (parsed by the SDK's protocol
//! code, then classified by the adapters' rules), unforwarded faults never reach the upstream,
//! a lost response does, and the DynamoDB adapter finishes a batch the proxy cut in parts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use worldfleet_aws::classify::classify_sdk;
use worldfleet_aws::{AwsSettings, DynamoTable, RetryPolicy};
use worldfleet_fault_proxy::{Fault, FaultProxy, FaultRates, ProxyConfig};
use worldfleet_ports::{BatchWrite, Error, Item, Key, Table};

/// What the stand-in upstream received: each request's `X-Amz-Target` and body.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A stand-in for DynamoDB and SQS on a free port: records every request and answers it with
/// an empty success of the right shape.
async fn upstream() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received: Received = Arc::default();
    let record = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let record = Arc::clone(&record);
                        async move {
                            let target = request
                                .headers()
                                .get("x-amz-target")
                                .and_then(|value| value.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = request.into_body().collect().await?.to_bytes();
                            record.lock().unwrap().push((target.clone(), body));
                            let answer = match target.as_str() {
                                "DynamoDB_20120810.BatchWriteItem" => r#"{"UnprocessedItems":{}}"#,
                                "AmazonSQS.GetQueueUrl" => r#"{"QueueUrl":"http://q/000/q.fifo"}"#,
                                _ => "{}",
                            };
                            Ok::<_, hyper::Error>(
                                Response::builder()
                                    .header("content-type", "application/x-amz-json-1.0")
                                    .body(Full::new(Bytes::from(answer)))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, received)
}

/// Attempt timeout of the clients below; the proxy holds longer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(300);

async fn proxy(upstream: &str, rates: FaultRates) -> FaultProxy {
    FaultProxy::start(ProxyConfig {
        seed: 11,
        hold: ATTEMPT_TIMEOUT * 3,
        ..ProxyConfig::new(upstream, rates)
    })
    .await
    .unwrap()
}

fn dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

fn sqs(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// The DynamoDB adapter through `proxy`, with `attempts` quick attempts per request.
fn adapter(proxy: &FaultProxy, attempts: u32) -> DynamoTable {
    let mut settings = AwsSettings::default().with_stack("");
    settings.retry = RetryPolicy {
        max_attempts: attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    DynamoTable::new(dynamodb(&proxy.url()), settings)
}

async fn put_item(client: &aws_sdk_dynamodb::Client) -> Result<(), Error> {
    client
        .put_item()
        .table_name("ledger")
        .item("pk", AttributeValue::S("p".into()))
        .item("sk", AttributeValue::S("s".into()))
        .send()
        .await
        .map(drop)
        .map_err(|error| classify_sdk(&error))
}

#[tokio::test]
async fn throttles_reach_the_sdk_as_each_service_s_own_error_and_are_never_applied() {
    let (url, received) = upstream().await;
    let proxy = proxy(&url, FaultRates::only(Fault::Throttle, 1.0)).await;
    let client = dynamodb(&proxy.url());
    let mut codes = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let error = client
            .put_item()
            .table_name("ledger")
            .item("pk", AttributeValue::S("p".into()))
            .send()
            .await
            .unwrap_err();
        let SdkError::ServiceError(service) = &error else {
            panic!("not a service error: {error:?}");
        };
        assert_eq!(service.raw().status().as_u16(), 400);
        codes.insert(aws_smithy_code(service.err()).expect("an error code"));
        assert!(matches!(classify_sdk(&error), Error::Throttled(_)));
    }
    assert_eq!(
        codes.into_iter().collect::<Vec<_>>(),
        [
            "ProvisionedThroughputExceededException",
            "ThrottlingException"
        ]
    );
    // The SDK reads DynamoDB's table-level throttling error as the modelled error it is.
    let error = client
        .put_item()
        .table_name("ledger")
        .item("pk", AttributeValue::S("p".into()))
        .send()
        .await
        .unwrap_err();
    let typed = error.into_service_error();
    assert!(
        typed.is_provisioned_throughput_exceeded_exception() || typed.is_throttling_exception(),
        "{typed:?}"
    );

    let queues = sqs(&proxy.url());
    let error = queues
        .send_message()
        .queue_url("http://q/000/q.fifo")
        .message_body("x")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(classify_sdk(&error), Error::Throttled(_)));
    assert!(error.into_service_error().is_request_throttled());

    assert!(
        received.lock().unwrap().is_empty(),
        "a throttled request was forwarded"
    );
    let report = proxy.report();
    assert_eq!(report.total().of(Fault::Throttle), 22);
    assert_eq!(report.total().forwarded, 0);
    assert_eq!(report.by_operation["sqs:SendMessage"].requests, 1);
}

fn aws_smithy_code(error: &impl aws_sdk_dynamodb::error::ProvideErrorMetadata) -> Option<String> {
    error.code().map(str::to_owned)
}

#[tokio::test]
async fn server_errors_are_500s_classified_unavailable_and_never_applied() {
    let (url, received) = upstream().await;
    let proxy = proxy(&url, FaultRates::only(Fault::ServerError, 1.0)).await;
    let client = dynamodb(&proxy.url());
    assert!(matches!(
        put_item(&client).await,
        Err(Error::Unavailable(_))
    ));
    let error = sqs(&proxy.url())
        .get_queue_url()
        .queue_name("q.fifo")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.raw_response().unwrap().status().as_u16(), 500);
    assert!(matches!(classify_sdk(&error), Error::Unavailable(_)));
    assert!(received.lock().unwrap().is_empty());
    assert_eq!(proxy.report().total().of(Fault::ServerError), 2);
}

#[tokio::test]
async fn a_timeout_and_a_lost_response_look_alike_but_only_the_lost_one_was_applied() {
    let (url, received) = upstream().await;
    let timeouts = proxy(&url, FaultRates::only(Fault::Timeout, 1.0)).await;
    assert!(matches!(
        put_item(&dynamodb(&timeouts.url())).await,
        Err(Error::Timeout(_))
    ));
    assert!(
        received.lock().unwrap().is_empty(),
        "a timed-out request was forwarded"
    );

    let lost = proxy(&url, FaultRates::only(Fault::LostResponse, 1.0)).await;
    assert!(matches!(
        put_item(&dynamodb(&lost.url())).await,
        Err(Error::Timeout(_))
    ));
    let seen = received.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        1,
        "the lost response's request was applied once"
    );
    assert_eq!(seen[0].0, "DynamoDB_20120810.PutItem");
    assert_eq!(lost.report().total().of(Fault::LostResponse), 1);
    assert_eq!(lost.report().total().forwarded, 1);
    assert_eq!(timeouts.report().total().of(Fault::Timeout), 1);
}

#[tokio::test]
async fn without_faults_everything_is_forwarded_unchanged() {
    let (url, received) = upstream().await;
    let proxy = proxy(&url, FaultRates::NONE).await;
    put_item(&dynamodb(&proxy.url())).await.unwrap();
    let url_answer = sqs(&proxy.url())
        .get_queue_url()
        .queue_name("q.fifo")
        .send()
        .await
        .unwrap();
    assert_eq!(url_answer.queue_url(), Some("http://q/000/q.fifo"));
    let seen = received.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let total = proxy.report().total();
    assert_eq!(
        (total.requests, total.forwarded, total.faulted()),
        (2, 2, 0)
    );
}

fn puts(count: usize) -> Vec<WriteRequest> {
    (0..count)
        .map(|index| {
            let put = PutRequest::builder()
                .item("pk", AttributeValue::S(format!("p{index}")))
                .item("sk", AttributeValue::S("s".into()))
                .build()
                .unwrap();
            WriteRequest::builder().put_request(put).build()
        })
        .collect()
}

/// The partition keys of every item the upstream received in BatchWriteItem requests.
fn written_keys(received: &Received) -> Vec<String> {
    let mut keys = Vec::new();
    for (target, body) in received.lock().unwrap().iter() {
        if target != "DynamoDB_20120810.BatchWriteItem" {
            continue;
        }
        let request: serde_json::Value = serde_json::from_slice(body).unwrap();
        for entries in request["RequestItems"].as_object().unwrap().values() {
            for entry in entries.as_array().unwrap() {
                keys.push(
                    entry["PutRequest"]["Item"]["pk"]["S"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
        }
    }
    keys.sort();
    keys
}

#[tokio::test]
async fn a_cut_batch_comes_back_as_unprocessed_items_the_sdk_reads() {
    let (url, received) = upstream().await;
    let proxy = proxy(&url, FaultRates::only(Fault::Unprocessed, 1.0)).await;
    let client = dynamodb(&proxy.url());
    let mut held_back = 0;
    for _ in 0..10 {
        let output = client
            .batch_write_item()
            .request_items("ledger", puts(25))
            .send()
            .await
            .unwrap();
        let left = output
            .unprocessed_items()
            .and_then(|items| items.get("ledger"))
            .map_or(0, Vec::len);
        assert!((1..=25).contains(&left), "{left} unprocessed");
        held_back += left;
    }
    let forwarded = written_keys(&received).len();
    assert_eq!(
        forwarded + held_back,
        250,
        "every entry either forwarded or handed back"
    );
    let total = proxy.report().total();
    assert_eq!(total.of(Fault::Unprocessed), 10);
    assert_eq!(total.entries_held_back, held_back as u64);
}

#[tokio::test]
async fn the_dynamodb_adapter_finishes_a_cut_batch_writing_each_item_once() {
    let (url, received) = upstream().await;
    let proxy = proxy(&url, FaultRates::only(Fault::Unprocessed, 0.5)).await;
    let table = adapter(&proxy, 20);
    let writes: Vec<BatchWrite> = (0..25)
        .map(|index| BatchWrite::Put(Item::new(Key::new(format!("p{index}"), "s"))))
        .collect();
    table.batch_write("ledger", writes).await.unwrap();
    let mut expected: Vec<String> = (0..25).map(|index| format!("p{index}")).collect();
    expected.sort();
    assert_eq!(
        written_keys(&received),
        expected,
        "each item written exactly once"
    );
    let cut = proxy.report().total().of(Fault::Unprocessed);
    assert!(cut > 0, "the proxy cut no batch (seeded: it must)");
    assert_eq!(table.retries().unprocessed_rounds, cut);
}

#[tokio::test]
async fn the_dynamodb_adapter_retries_throttles_and_hands_back_what_it_must_not_repeat() {
    let (url, received) = upstream().await;
    let throttled = proxy(&url, FaultRates::only(Fault::Throttle, 1.0)).await;
    let table = adapter(&throttled, 4);
    let item = Item::new(Key::new("p", "s"));
    let error = table.put("ledger", item.clone(), None).await.unwrap_err();
    assert!(matches!(error, Error::Throttled(_)), "{error:?}");
    assert_eq!(throttled.report().total().of(Fault::Throttle), 4);
    let retries = table.retries();
    assert_eq!((retries.throttled, retries.handed_back), (3, 1));

    // A conditional write whose response was lost may have been applied: it goes back to the
    // caller at once instead of being sent again (a second attempt could fail its own
    // condition), while an unconditional put is repeated until it gets through.
    let lost = proxy(&url, FaultRates::only(Fault::LostResponse, 1.0)).await;
    let table = adapter(&lost, 4);
    let error = table
        .put(
            "ledger",
            item.clone(),
            Some(worldfleet_ports::Condition::ItemNotExists),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");
    assert_eq!(lost.report().total().of(Fault::LostResponse), 1);
    assert_eq!(received.lock().unwrap().len(), 1);
    let retries = table.retries();
    assert_eq!((retries.timed_out, retries.handed_back), (0, 1));

    let error = table.put("ledger", item, None).await.unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");
    assert_eq!(lost.report().total().of(Fault::LostResponse), 5);
    let retries = table.retries();
    assert_eq!((retries.timed_out, retries.handed_back), (3, 2));
}
