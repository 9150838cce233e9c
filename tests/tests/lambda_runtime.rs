//! The stage Lambda binaries invoked through the Lambda Runtime API on the local emulators.
//!
//! Each built binary (`intake`, `classify`, `compose`, `distribute`) runs as its own process
//! against a Runtime API served by this test ([`runtime_api`]), exactly as the Lambda service
//! runs a `provided.al2023` function. The test plays the SQS event source mapping: it receives
//! messages from the emulator queue with every system attribute, hands them to the function as
//! the SQS event Lambda delivers (`Records` with `messageId`, `receiptHandle`, `attributes`
//! incl. `MessageGroupId`, `eventSourceARN` …), and deletes the records the response does not
//! list in `batchItemFailures`. The signed samples in `events/samples` go intake → classify →
//! compose → distribute and must end once in every feed their canon targets; a redelivered
//! batch changes nothing; malformed events get a clean error and the process keeps serving; a
//! function that cannot start reports `/init/error`.
//!
//! Runs when `WORLDFLEET_LOCAL_AWS=1`, with the stage binaries built (`scripts/test-aws.sh`
//! does both).

mod runtime_api;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use serde_json::{Value, json};
use worldfleet_aws::{AwsSettings, DynamoTable, SqsQueue, deploy_from_template};
use worldfleet_distribute::{RepublishRules, read_feed};
use worldfleet_domain::names::{
    CANON_TABLE, CLASSIFY_QUEUE, COMPOSE_QUEUE, DISTRIBUTE_QUEUE, FEEDS_TABLE, INTAKE_QUEUE,
    LEDGER_TABLE,
};
use worldfleet_ports::{Key, OutgoingMessage, Queue, SendOutcome, Table};

use runtime_api::{LambdaFunction, Outcome, lambda_binary};

const SAMPLE_GATEWAY: &str = "gw-sample";
const SAMPLE_KEY_HEX: &str = "73616d706c652d676174657761792d6b65792d33322d62797465732d6c6f6e67";
const SAMPLES: [&str; 4] = ["action", "combat", "dialogue", "quest"];
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

fn enabled() -> bool {
    let on = std::env::var("WORLDFLEET_LOCAL_AWS").is_ok_and(|value| value == "1");
    if !on {
        eprintln!(
            "*** SKIPPED: set WORLDFLEET_LOCAL_AWS=1 with the local stack running and the stage binaries built (scripts/test-aws.sh does all three) ***"
        );
    }
    on
}

/// One queue seen as Lambda's SQS event source mapping sees it.
struct EventSource {
    client: aws_sdk_sqs::Client,
    url: String,
    arn: String,
    region: String,
}

/// A record handed to the function: what the mapping needs to delete it afterwards.
struct Delivered {
    message_id: String,
    receipt_handle: String,
}

impl EventSource {
    async fn new(client: &aws_sdk_sqs::Client, settings: &AwsSettings, logical: &str) -> Self {
        let url = client
            .get_queue_url()
            .queue_name(settings.physical_name(logical))
            .send()
            .await
            .expect("the queue exists")
            .queue_url
            .expect("a queue URL");
        let attributes = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes");
        let arn = attributes
            .attributes()
            .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn))
            .expect("the queue's ARN")
            .clone();
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        Self {
            client: client.clone(),
            url,
            arn,
            region,
        }
    }

    /// Up to 10 messages received with every system attribute, as the SQS event Lambda builds
    /// from them; `None` when the queue had nothing within `wait`.
    async fn receive_event(&self, wait: Duration) -> Option<(Value, Vec<Delivered>)> {
        let received = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait.as_secs() as i32)
            .visibility_timeout(120)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive from the emulator queue");
        let messages = received.messages();
        if messages.is_empty() {
            return None;
        }
        let mut records = Vec::new();
        let mut delivered = Vec::new();
        for message in messages {
            let message_id = message.message_id().expect("a message id").to_owned();
            let receipt_handle = message
                .receipt_handle()
                .expect("a receipt handle")
                .to_owned();
            let attributes: serde_json::Map<String, Value> = message
                .attributes()
                .into_iter()
                .flatten()
                .map(|(name, value)| (name.as_str().to_owned(), Value::from(value.as_str())))
                .collect();
            assert!(
                attributes.contains_key("MessageGroupId"),
                "a FIFO message carries its group: {attributes:?}"
            );
            records.push(json!({
                "messageId": message_id,
                "receiptHandle": receipt_handle,
                "body": message.body().unwrap_or_default(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": message.md5_of_body().unwrap_or_default(),
                "eventSource": "aws:sqs",
                "eventSourceARN": self.arn,
                "awsRegion": self.region,
            }));
            delivered.push(Delivered {
                message_id,
                receipt_handle,
            });
        }
        Some((json!({ "Records": records }), delivered))
    }

    /// Deletes the delivered records the response did not report failed, as the mapping does
    /// with `ReportBatchItemFailures`.
    async fn delete_succeeded(&self, delivered: &[Delivered], failed: &[String]) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = delivered
            .iter()
            .filter(|record| !failed.contains(&record.message_id))
            .enumerate()
            .map(|(index, record)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(&record.receipt_handle)
                    .build()
                    .expect("a delete entry")
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        let deleted = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("delete the handled records");
        assert!(
            deleted.failed().is_empty(),
            "deletes refused: {:?}",
            deleted.failed()
        );
    }
}

/// The message ids a response reports failed; panics on anything but a partial-batch response.
fn batch_item_failures(outcome: &Outcome) -> Vec<String> {
    let Outcome::Response(response) = outcome else {
        panic!("expected a partial-batch response, got {outcome:?}");
    };
    response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("no batchItemFailures array in {response}"))
        .iter()
        .map(|failure| {
            failure["itemIdentifier"]
                .as_str()
                .expect("itemIdentifier")
                .to_owned()
        })
        .collect()
}

/// Runs the mapping for one function until `expected` records were handled without failure;
/// returns the last event delivered (for the redelivery check).
async fn drain_through(
    source: &EventSource,
    function: &mut LambdaFunction,
    expected: usize,
) -> Value {
    let started = Instant::now();
    let mut handled = 0;
    let mut last_event = Value::Null;
    while handled < expected {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "only {handled} of {expected} records reached the function; its log:\n{}",
            function.log()
        );
        let Some((event, delivered)) = source.receive_event(Duration::from_secs(2)).await else {
            continue;
        };
        let outcome = function
            .invoke(&event, ANSWER_WITHIN)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let failed = batch_item_failures(&outcome);
        assert!(
            failed.is_empty(),
            "records failed: {failed:?}; log:\n{}",
            function.log()
        );
        source.delete_succeeded(&delivered, &failed).await;
        handled += delivered.len();
        last_event = event;
    }
    assert_eq!(handled, expected, "more records than the samples produced");
    last_event
}

/// The samples re-signed with the current time (intake refuses a stale `sent_at_ms`).
fn signed_samples(now_ms: u64) -> Vec<Value> {
    let key = hex::decode(SAMPLE_KEY_HEX).expect("the sample key is hex");
    SAMPLES
        .iter()
        .map(|name| {
            let path = format!(
                "{}/../events/samples/{name}.json",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).expect("read a sample envelope");
            let mut envelope: Value = serde_json::from_str(&text).expect("a JSON sample");
            let object = envelope.as_object_mut().expect("an envelope object");
            object.remove("signature");
            object.insert("sent_at_ms".into(), Value::from(now_ms));
            let canonical =
                worldfleet_domain::envelope::canonical_bytes(&envelope).expect("canonical form");
            envelope["signature"] = Value::from(
                worldfleet_domain::envelope::signature_hex(&key, &canonical).expect("sign"),
            );
            envelope
        })
        .collect()
}

/// Every occurrence of `event_id` in the feeds its canon targets: (feeds, entries).
async fn feed_occurrences(
    table: &dyn Table,
    rules: &RepublishRules,
    canon: &worldfleet_domain::CanonEntry,
) -> (usize, usize) {
    let feeds = rules.targets(canon);
    let mut entries = 0;
    for feed in &feeds {
        let read = read_feed(table, FEEDS_TABLE, feed, 0, 10_000)
            .await
            .expect("read a feed");
        entries += read
            .entries
            .iter()
            .filter(|entry| entry.event_id == canon.event_id)
            .count();
    }
    (feeds.len(), entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_binary_answers_the_runtime_api_and_the_samples_reach_their_feeds() {
    if !enabled() {
        return;
    }
    let binaries: Vec<_> = ["intake", "classify", "compose", "distribute"]
        .into_iter()
        .map(|stage| (stage, lambda_binary(stage)))
        .collect();
    let stack = format!(
        "rt-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let settings = AwsSettings::from_env()
        .expect("settings")
        .with_stack(&stack);
    let config = settings.sdk_config().await;
    let sqs = SqsQueue::from_sdk_config(&config, settings.clone());
    let dynamo = DynamoTable::from_sdk_config(&config, settings.clone());
    let template = format!("{}/../infra/template.yaml", env!("CARGO_MANIFEST_DIR"));
    deploy_from_template(&template, &sqs, &dynamo)
        .await
        .expect("deploy the template's queues and tables");
    let table: Arc<dyn Table> = Arc::new(dynamo);
    let sqs_client = aws_sdk_sqs::Client::new(&config);

    let sources = [
        INTAKE_QUEUE,
        CLASSIFY_QUEUE,
        COMPOSE_QUEUE,
        DISTRIBUTE_QUEUE,
    ];
    let mut event_sources = Vec::new();
    for queue in sources {
        event_sources.push(EventSource::new(&sqs_client, &settings, queue).await);
    }
    // As the template does: each function gets the URL of the queue it sends to, so its role
    // needs no sqs:GetQueueUrl.
    let sends_to = |stage: &str| match stage {
        "intake" => Some((CLASSIFY_QUEUE, &event_sources[1].url)),
        "classify" => Some((COMPOSE_QUEUE, &event_sources[2].url)),
        "compose" => Some((DISTRIBUTE_QUEUE, &event_sources[3].url)),
        _ => None,
    };
    let mut functions = Vec::new();
    for (stage, binary) in &binaries {
        let mut env = vec![
            ("WORLDFLEET_STACK", stack.clone()),
            ("WORLDFLEET_STAGE", "local".to_owned()),
            ("RUST_LOG", "info".to_owned()),
            (
                "WORLDFLEET_GATEWAY_KEYS",
                format!("{SAMPLE_GATEWAY}={SAMPLE_KEY_HEX}"),
            ),
            ("WORLDFLEET_RATE_BURST", "100".to_owned()),
            ("WORLDFLEET_RATE_PER_SECOND", "100".to_owned()),
        ];
        if let Some((queue, url)) = sends_to(stage) {
            env.push(("WORLDFLEET_QUEUE_URLS", format!("{queue}={url}")));
        }
        let function = LambdaFunction::start(binary, &format!("{stack}-{stage}"), &env, &[])
            .await
            .expect("start the function process");
        functions.push(function);
    }

    // A gateway posts the signed samples, grouped by partition and deduplicated by event id.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let envelopes = signed_samples(now_ms);
    let messages: Vec<OutgoingMessage> = envelopes
        .iter()
        .map(|envelope| {
            OutgoingMessage::fifo(
                envelope.to_string(),
                envelope["partition"].as_str().expect("partition"),
                envelope["event_id"].as_str().expect("event id"),
            )
        })
        .collect();
    for outcome in sqs
        .send_batch(INTAKE_QUEUE, messages)
        .await
        .expect("post to intake")
    {
        assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    }
    let keys: Vec<Key> = envelopes
        .iter()
        .map(|envelope| {
            Key::new(
                envelope["partition"].as_str().unwrap(),
                envelope["event_id"].as_str().unwrap(),
            )
        })
        .collect();

    // intake → classify → compose → distribute, each through its binary.
    let mut last_events = Vec::new();
    for (source, function) in event_sources.iter().zip(functions.iter_mut()) {
        last_events.push(drain_through(source, function, envelopes.len()).await);
    }
    for key in &keys {
        assert!(
            table
                .get(LEDGER_TABLE, key)
                .await
                .expect("ledger")
                .is_some(),
            "intake appended {key:?} to the ledger"
        );
    }
    let rules = RepublishRules::default_rules();
    let mut canon_entries = Vec::new();
    for key in &keys {
        let item = table
            .get(CANON_TABLE, key)
            .await
            .expect("canon")
            .unwrap_or_else(|| panic!("compose wrote canon for {key:?}"));
        canon_entries.push(worldfleet_compose::canon::from_item(&item).expect("a canon item"));
    }
    let mut targeted_feeds = 0;
    for canon in &canon_entries {
        let (feeds, entries) = feed_occurrences(table.as_ref(), &rules, canon).await;
        assert_eq!(
            entries, feeds,
            "{} is once in each of its {feeds} feeds",
            canon.event_id
        );
        targeted_feeds += feeds;
    }
    assert!(targeted_feeds > 0, "the samples reach at least one feed");

    // Lambda may deliver a batch twice: the distribute binary gets its last batch again.
    let distribute = functions.last_mut().expect("distribute");
    let again = distribute
        .invoke(
            last_events.last().expect("a distribute batch"),
            ANSWER_WITHIN,
        )
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(batch_item_failures(&again).is_empty());
    for canon in &canon_entries {
        let (feeds, entries) = feed_occurrences(table.as_ref(), &rules, canon).await;
        assert_eq!(entries, feeds, "a redelivered batch adds no entries");
    }
    for queue in sources {
        let depth = sqs.depth(queue).await.expect("depth");
        assert_eq!(depth.total(), 0, "{queue} holds nothing more: {depth:?}");
    }

    // Malformed events: a clean error or a per-record failure, never a crash.
    let classify = &mut functions[1];
    let not_json = classify
        .invoke_raw("this is not an event".into(), ANSWER_WITHIN)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        matches!(not_json, Outcome::Error { .. }),
        "not JSON: {not_json:?}"
    );
    let no_message_id = classify
        .invoke(
            &json!({"Records": [{"body": "{}", "attributes": {}, "messageAttributes": {}}]}),
            ANSWER_WITHIN,
        )
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let Outcome::Error { document, .. } = &no_message_id else {
        panic!("a record without messageId: {no_message_id:?}");
    };
    assert!(
        document.to_string().contains("messageId"),
        "the error names the problem: {document}"
    );
    let garbage = json!({"Records": [{
        "messageId": "garbage-1",
        "receiptHandle": "garbage-1",
        "body": "not an accepted event",
        "attributes": {"MessageGroupId": "gm-0001/district-001/scene-001", "ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": event_sources[1].arn,
    }]});
    let answered = classify
        .invoke(&garbage, ANSWER_WITHIN)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        batch_item_failures(&answered),
        vec!["garbage-1".to_owned()],
        "an undecodable body fails its record only"
    );
    assert!(
        classify.exited().is_none(),
        "classify still serves after malformed events; log:\n{}",
        classify.log()
    );
    for function in &mut functions {
        assert!(function.exited().is_none(), "{}", function.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_binary_that_cannot_start_reports_init_error_and_exits() {
    if !enabled() {
        return;
    }
    let binary = lambda_binary("intake");
    let mut intake = LambdaFunction::start(
        &binary,
        "init-error-intake",
        &[("WORLDFLEET_STACK", "init-error".to_owned())],
        &["WORLDFLEET_GATEWAY_KEYS"],
    )
    .await
    .expect("start the function process");
    let (status, report) = intake
        .wait_for_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(!status.success(), "exit status {status}");
    let report = report.unwrap_or_else(|| panic!("no /init/error report; log:\n{}", intake.log()));
    assert_eq!(report.error_type.as_deref(), Some("Runtime.InitError"));
    assert!(
        report.document["errorMessage"]
            .as_str()
            .is_some_and(|message| message.contains("WORLDFLEET_GATEWAY_KEYS")),
        "{:?}",
        report.document
    );
}
