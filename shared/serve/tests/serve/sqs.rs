//! The SQS-compatible endpoint, driven by the real `aws-sdk-sqs` client against the server on
//! port 0: SigV4 with access key id = gateway id and secret = the gateway's hex key.

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use tokio::net::TcpListener;
use worldfleet_domain::names::INTAKE_QUEUE;
use worldfleet_ports::{Clock, SystemClock};

use crate::common::{Fixture, GATEWAY, SAMPLE_KEY_HEX, fixture, sample};

fn client(address: std::net::SocketAddr, access_key_id: &str, secret: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(format!("http://{address}"))
        .credentials_provider(Credentials::new(access_key_id, secret, None, None, "test"))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// The fixture on a socket; the clock follows the system clock, since the SDK signs with it.
async fn serving() -> (
    Fixture,
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
) {
    let fixture = fixture().await;
    fixture.clock.set(SystemClock.now_ms());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(worldfleet_serve::serve(
        listener,
        fixture.state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    (fixture, address, stop)
}

#[tokio::test]
async fn the_aws_sdk_gets_the_queue_url_and_sends_single_and_batched_messages() {
    let (fixture, address, _stop) = serving().await;
    let sqs = client(address, GATEWAY, SAMPLE_KEY_HEX);
    let url = sqs
        .get_queue_url()
        .queue_name(INTAKE_QUEUE)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    assert!(url.ends_with("/intake.fifo"), "{url}");

    let body = sample("dialogue");
    let envelope: serde_json::Value = serde_json::from_str(&body).unwrap();
    let partition = envelope["partition"].as_str().unwrap();
    let sent = sqs
        .send_message()
        .queue_url(&url)
        .message_body(&body)
        .message_group_id(partition)
        .message_deduplication_id(envelope["event_id"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(sent.message_id.is_some());
    // MD5 of "body" as SQS computes it: the client may check it.
    let md5 = sent.md5_of_message_body.unwrap();
    assert_eq!(md5.len(), 32);

    let kinds = ["action", "combat", "quest"];
    let mut batch = sqs.send_message_batch().queue_url(&url);
    for (index, kind) in kinds.iter().enumerate() {
        let body = sample(kind);
        let envelope: serde_json::Value = serde_json::from_str(&body).unwrap();
        batch = batch.entries(
            SendMessageBatchRequestEntry::builder()
                .id(format!("entry-{index}"))
                .message_body(body)
                .message_group_id(envelope["partition"].as_str().unwrap())
                .message_deduplication_id(envelope["event_id"].as_str().unwrap())
                .build()
                .unwrap(),
        );
    }
    let answer = batch.send().await.unwrap();
    assert_eq!(answer.successful.len(), 3, "{answer:?}");
    assert!(answer.failed.is_empty(), "{answer:?}");

    let messages = fixture.intake_messages().await;
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[0].body, body, "forwarded unchanged");
    assert_eq!(messages[0].group_id.as_deref(), Some(partition));
}

#[tokio::test]
async fn the_sdk_sees_sqs_errors_for_other_queues_and_bad_requests() {
    let (fixture, address, _stop) = serving().await;
    let sqs = client(address, GATEWAY, SAMPLE_KEY_HEX);
    let error = sqs
        .get_queue_url()
        .queue_name("classify.fifo")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_queue_does_not_exist(), "{error:?}");

    let url = format!("http://{address}/000000000000/{INTAKE_QUEUE}");
    // FIFO without a group id.
    let error = sqs
        .send_message()
        .queue_url(&url)
        .message_body("{}")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(error.code(), Some("MissingParameter"), "{error:?}");
    // An empty batch.
    let error = sqs
        .send_message_batch()
        .queue_url(&url)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_empty_batch_request(), "{error:?}");
    // An operation this endpoint does not serve.
    let error = sqs
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        error.code(),
        Some("AWS.SimpleQueueService.UnsupportedOperation"),
        "{error:?}"
    );
    assert!(fixture.intake_messages().await.is_empty());
}

#[tokio::test]
async fn wrong_secrets_and_unknown_gateways_are_refused() {
    let (fixture, address, _stop) = serving().await;
    let url = format!("http://{address}/000000000000/{INTAKE_QUEUE}");
    let wrong_secret = client(address, GATEWAY, "00112233445566778899aabbccddeeff");
    let error = wrong_secret
        .send_message()
        .queue_url(&url)
        .message_body("{}")
        .message_group_id("g")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(error.code(), Some("SignatureDoesNotMatch"), "{error:?}");
    let stranger = client(address, "gw-nobody", SAMPLE_KEY_HEX);
    let error = stranger
        .get_queue_url()
        .queue_name(INTAKE_QUEUE)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(error.code(), Some("InvalidClientTokenId"), "{error:?}");
    assert!(fixture.intake_messages().await.is_empty());
}
