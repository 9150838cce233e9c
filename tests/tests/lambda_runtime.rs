//! The stage Lambda binaries invoked through the Lambda Runtime API on the local emulators.
//!
//! Each built binary (`intake`, `classify`, `compose`, `distribute`, `prune`, `market`,
//! `price-window`, `production`, `ecology-input`, `ecology`, `watchdog`) runs as its own
//! process against a Runtime API served by this test ([`runtime_api`]), exactly as the Lambda
//! service runs a `provided.al2023` function. The test plays the SQS event source mapping: it
//! receives messages from the emulator queue with every system attribute, hands them to the
//! function as the SQS event Lambda delivers (`Records` with `messageId`, `receiptHandle`,
//! `attributes` incl. `MessageGroupId` on FIFO queues, `eventSourceARN` …), and deletes the
//! records the response does not list in `batchItemFailures`. The signed narrative samples in
//! `events/samples` go intake → classify → compose → distribute and must end once in every
//! feed their canon targets; a redelivered batch changes nothing; prune then ends their
//! bookkeeping; malformed events get a clean error and the process keeps serving; a function
//! that cannot start reports `/init/error`.
//!
//! The world: the signed trade, capture and breed samples go through intake to `market`
//! (station row) and `ecology-input` (pending rows); the market's window timer goes to
//! `price-window` (recompute row); the first timers of a seeded region and cell go to
//! `production` and `ecology` (tick 1 stored, inputs consumed, a redelivered tick changes
//! nothing). The watchdog answers a scheduled event with its pass and refuses anything else;
//! started outside Lambda, it and prune name the missing variables instead of panicking.
//!
//! The feed API (`feeds`, `lambda_http`) answers API Gateway HTTP API (payload 2.0) events: a
//! page of a feed written as distribute writes it, a reader checkpoint moved, read and refused
//! backwards, a bad feed id and an unknown route refused, on DynamoDB Local.
//!
//! Runs when `WORLDFLEET_LOCAL_AWS=1`, with the stage binaries built (`scripts/test-aws.sh`
//! does both).

mod local_aws;
mod runtime_api;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use serde_json::{Value, json};
use worldfleet_aws::SqsQueue;
use worldfleet_distribute::RepublishRules;
use worldfleet_domain::PartitionUid;
use worldfleet_domain::names::{
    CANON_TABLE, CLASSIFY_QUEUE, COMPOSE_QUEUE, DISTRIBUTE_QUEUE, ECOLOGY_INPUT_QUEUE,
    ECOLOGY_TABLE, ECOLOGY_TICK_QUEUE, FEEDS_TABLE, INTAKE_QUEUE, LEDGER_TABLE, MARKET_QUEUE,
    MARKET_TABLE, PRICE_WINDOW_QUEUE, PRODUCTION_TICK_QUEUE, PRUNE_QUEUE,
};
use worldfleet_ecology::shell::store::{StoredCell, state_key};
use worldfleet_ecology::sim::Founders;
use worldfleet_ecology::{EcologyConfig, TickInterval, TickTimer, seed_cell};
use worldfleet_kit::StageContext;
use worldfleet_ports::{
    Key, OutgoingMessage, Query, Queue, SendOutcome, SortKeyRange, SystemClock, Table,
};
use worldfleet_price::production::{Planet, Region};
use worldfleet_price::stages::records::{StoredMarket, market_key, recompute_key};
use worldfleet_price::stages::regions::read_region;
use worldfleet_price::{PriceConfig, ProductionTimer, WindowTimer, seed_region};
use worldfleet_tables::read_feed;
use worldfleet_testbed::world::{FOUNDING_SPECIES, TRADED_GOODS};

use local_aws::now_ms;
use runtime_api::{InitError, LambdaFunction, Outcome, lambda_binary};

/// How long a function's init may take before the test fails (debug builds on a loaded
/// machine are far slower than the release figures in infra/README.md).
const INIT_WITHIN: Duration = Duration::from_secs(60);

const SAMPLE_GATEWAY: &str = "gw-sample";
const SAMPLE_KEY_HEX: &str = "73616d706c652d676174657761792d6b65792d33322d62797465732d6c6f6e67";
const SAMPLES: [&str; 4] = ["action", "combat", "dialogue", "quest"];
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

fn enabled() -> bool {
    local_aws::enabled(
        "the local stack running and the stage binaries built (scripts/test-aws.sh does all three)",
    )
}

/// The variables every function gets: its stack, the `local` stage and `info` logs.
fn function_env(stack: &str) -> Vec<(&'static str, String)> {
    vec![
        ("WORLDFLEET_STACK", stack.to_owned()),
        ("WORLDFLEET_STAGE", "local".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
}

/// The error document of an invocation that must have failed cleanly (`what` it was).
fn error_document(outcome: &Outcome, what: &str) -> String {
    let Outcome::Error { document, .. } = outcome else {
        panic!("{what}: {outcome:?}");
    };
    document.to_string()
}

/// Starts the `binary` as `function` with only `WORLDFLEET_STACK` set and `unset` removed,
/// and waits for it to exit, which it must with a failure; returns its `/init/error` report,
/// if it made one, and its log.
async fn start_failing(
    binary: &str,
    function: &str,
    stack: &str,
    unset: &str,
) -> (Option<InitError>, String) {
    let mut process = LambdaFunction::start(
        &lambda_binary(binary),
        function,
        &[("WORLDFLEET_STACK", stack.to_owned())],
        &[unset],
    )
    .await
    .expect("start the function process");
    let (status, report) = process
        .wait_for_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(!status.success(), "{function}: exit status {status}");
    (report, process.log())
}

/// Invokes `function` with `event`; panics when the invocation itself fails.
async fn invoke(function: &mut LambdaFunction, event: &Value) -> Outcome {
    function
        .invoke(event, ANSWER_WITHIN)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

/// One queue seen as Lambda's SQS event source mapping sees it.
struct EventSource {
    client: aws_sdk_sqs::Client,
    url: String,
    arn: String,
    region: String,
    /// FIFO queues give every message its group; standard (timer) queues give none.
    fifo: bool,
}

/// A record handed to the function: what the mapping needs to delete it afterwards.
struct Delivered {
    message_id: String,
    receipt_handle: String,
}

impl EventSource {
    async fn new(stack: &local_aws::Stack, logical: &str) -> Self {
        let (client, settings) = (&stack.sqs_client, &stack.settings);
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
            fifo: logical.ends_with(".fifo"),
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
            assert_eq!(
                attributes.contains_key("MessageGroupId"),
                self.fifo,
                "a message carries a group exactly when its queue is FIFO: {attributes:?}"
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

/// One turn of the mapping: receives a batch of `source` (waiting up to 2 s), hands it to
/// `function`, which must handle every record, and deletes it; returns the event and how many
/// records it held, or `None` when nothing arrived.
async fn handle_one_batch(
    source: &EventSource,
    function: &mut LambdaFunction,
) -> Option<(Value, usize)> {
    let (event, delivered) = source.receive_event(Duration::from_secs(2)).await?;
    let outcome = invoke(function, &event).await;
    let failed = batch_item_failures(&outcome);
    assert!(
        failed.is_empty(),
        "records failed: {failed:?}; log:\n{}",
        function.log()
    );
    source.delete_succeeded(&delivered, &failed).await;
    Some((event, delivered.len()))
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
        let Some((event, records)) = handle_one_batch(source, function).await else {
            continue;
        };
        handled += records;
        last_event = event;
    }
    assert_eq!(handled, expected, "more records than the samples produced");
    last_event
}

/// Runs the mapping for one function until its queue has stayed empty for a receive after at
/// least one record was handled; returns how many records it handled.
async fn drain_until_empty(source: &EventSource, function: &mut LambdaFunction) -> usize {
    let started = Instant::now();
    let mut handled = 0;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the queue did not run dry ({handled} records handled); log:\n{}",
            function.log()
        );
        let Some((_, records)) = handle_one_batch(source, function).await else {
            if handled > 0 {
                return handled;
            }
            continue;
        };
        handled += records;
    }
}

/// The samples re-signed with the current time (intake refuses a stale `sent_at_ms`).
fn signed_samples(names: &[&str], now_ms: u64) -> Vec<Value> {
    let key = hex::decode(SAMPLE_KEY_HEX).expect("the sample key is hex");
    names
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

/// A gateway posts `envelopes` to intake, grouped by partition and deduplicated by event id.
async fn post_to_intake(sqs: &SqsQueue, envelopes: &[Value]) {
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
}

/// The ledger keys of `envelopes` (partition, event id).
fn ledger_keys(envelopes: &[Value]) -> Vec<Key> {
    envelopes
        .iter()
        .map(|envelope| {
            Key::new(
                envelope["partition"].as_str().unwrap(),
                envelope["event_id"].as_str().unwrap(),
            )
        })
        .collect()
}

/// Intake appended every one of `keys` to the ledger.
async fn assert_in_ledger(table: &dyn Table, keys: &[Key]) {
    for key in keys {
        assert!(
            table
                .get(LEDGER_TABLE, key)
                .await
                .expect("ledger")
                .is_some(),
            "intake appended {key:?} to the ledger"
        );
    }
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
        let read = read_feed(table, FEEDS_TABLE, feed, 0, 10_000, u64::MAX)
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
    let deployed = local_aws::deploy("rt").await;
    let (stack, sqs) = (deployed.name.as_str(), deployed.sqs.clone());
    let table: Arc<dyn Table> = deployed.dynamo.clone();

    let sources = [
        INTAKE_QUEUE,
        CLASSIFY_QUEUE,
        COMPOSE_QUEUE,
        DISTRIBUTE_QUEUE,
    ];
    let mut event_sources = Vec::new();
    for queue in sources {
        event_sources.push(EventSource::new(&deployed, queue).await);
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
        let mut env = function_env(stack);
        env.extend([
            (
                "WORLDFLEET_GATEWAY_KEYS",
                format!("{SAMPLE_GATEWAY}={SAMPLE_KEY_HEX}"),
            ),
            ("WORLDFLEET_RATE_BURST", "100".to_owned()),
            ("WORLDFLEET_RATE_PER_SECOND", "100".to_owned()),
        ]);
        if let Some((queue, url)) = sends_to(stage) {
            env.push(("WORLDFLEET_QUEUE_URLS", format!("{queue}={url}")));
        }
        let mut function = LambdaFunction::start(binary, &format!("{stack}-{stage}"), &env, &[])
            .await
            .expect("start the function process");
        // One init at a time, so each is measured alone (infra/README.md's init table).
        function.wait_ready(INIT_WITHIN).await.unwrap();
        functions.push(function);
    }

    // A gateway posts the signed samples.
    let envelopes = signed_samples(&SAMPLES, now_ms());
    post_to_intake(&sqs, &envelopes).await;
    let keys = ledger_keys(&envelopes);

    // intake → classify → compose → distribute, each through its binary.
    let mut last_events = Vec::new();
    for (source, function) in event_sources.iter().zip(functions.iter_mut()) {
        last_events.push(drain_through(source, function, envelopes.len()).await);
    }
    assert_in_ledger(table.as_ref(), &keys).await;
    let rules = RepublishRules::default_rules();
    let mut canon_entries = Vec::new();
    for key in &keys {
        let item = table
            .get(CANON_TABLE, key)
            .await
            .expect("canon")
            .unwrap_or_else(|| panic!("compose wrote canon for {key:?}"));
        canon_entries.push(worldfleet_tables::canon::from_item(&item).expect("a canon item"));
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
    let again = invoke(distribute, last_events.last().expect("a distribute batch")).await;
    assert!(batch_item_failures(&again).is_empty());
    for canon in &canon_entries {
        let (feeds, entries) = feed_occurrences(table.as_ref(), &rules, canon).await;
        assert_eq!(entries, feeds, "a redelivered batch adds no entries");
    }

    // Distribute asked prune to end the published events' bookkeeping: the prune binary
    // deletes the plan record of every sample (each canon item points at its plan).
    let mut plan_keys = Vec::new();
    for key in &keys {
        let canon = table
            .get(CANON_TABLE, key)
            .await
            .expect("canon")
            .expect("canon");
        let plan_id = canon
            .str("dist_plan")
            .unwrap_or_else(|| panic!("distribute planned {key:?}"));
        plan_keys.push(worldfleet_tables::plan::plan_key(plan_id));
    }
    for plan_key in &plan_keys {
        assert!(
            table
                .get(FEEDS_TABLE, plan_key)
                .await
                .expect("plan")
                .is_some(),
            "the plan {plan_key:?} is kept until prune runs"
        );
    }
    let prune_source = EventSource::new(&deployed, PRUNE_QUEUE).await;
    let mut prune = LambdaFunction::start(
        &lambda_binary("prune"),
        &format!("{stack}-prune"),
        &function_env(stack),
        &[],
    )
    .await
    .expect("start the prune function");
    let requests = drain_until_empty(&prune_source, &mut prune).await;
    assert!(requests > 0, "distribute sent prune requests");
    for plan_key in &plan_keys {
        assert!(
            table
                .get(FEEDS_TABLE, plan_key)
                .await
                .expect("plan")
                .is_none(),
            "prune deleted the published plan {plan_key:?}; log:\n{}",
            prune.log()
        );
    }
    assert!(prune.exited().is_none(), "{}", prune.log());

    for queue in sources.into_iter().chain([PRUNE_QUEUE]) {
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
    let no_message_id = invoke(
        classify,
        &json!({"Records": [{"body": "{}", "attributes": {}, "messageAttributes": {}}]}),
    )
    .await;
    let document = error_document(&no_message_id, "a record without messageId");
    assert!(
        document.contains("messageId"),
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
    let answered = invoke(classify, &garbage).await;
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
    let (report, log) = start_failing(
        "intake",
        "init-error-intake",
        "init-error",
        "WORLDFLEET_GATEWAY_KEYS",
    )
    .await;
    let report = report.unwrap_or_else(|| panic!("no /init/error report; log:\n{log}"));
    assert_eq!(report.error_type.as_deref(), Some("Runtime.InitError"));
    assert!(
        report.document["errorMessage"]
            .as_str()
            .is_some_and(|message| message.contains("WORLDFLEET_GATEWAY_KEYS")),
        "{:?}",
        report.document
    );
}

/// The world samples: a trade at `region-07/station-3`, a capture and a breed request in
/// `wild-1/zone-04/cell-09`.
const WORLD_SAMPLES: [&str; 3] = ["trade", "capture", "breed"];
const SAMPLE_STATION: &str = "region-07/station-3";
const SAMPLE_REGION: &str = "region-07";
const SAMPLE_CELL: &str = "wild-1/zone-04/cell-09";

/// Receives one batch of `source` within 30 s and hands it to `function`, which must handle
/// every record; returns the event and its first record's body (a timer).
async fn deliver_one_timer(source: &EventSource, function: &mut LambdaFunction) -> (Value, String) {
    let wait = Duration::from_secs(30);
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < wait,
            "nothing arrived within {wait:?}; log:\n{}",
            function.log()
        );
        let Some((event, _)) = handle_one_batch(source, function).await else {
            continue;
        };
        let body = event["Records"][0]["body"]
            .as_str()
            .expect("a body")
            .to_owned();
        return (event, body);
    }
}

/// How many `pending#` inputs wait under the sample cell.
async fn pending_inputs(table: &dyn Table) -> usize {
    table
        .query(
            ECOLOGY_TABLE,
            &Query::partition(SAMPLE_CELL).range(SortKeyRange::Prefix("pending#".into())),
        )
        .await
        .expect("query the cell's pending inputs")
        .items
        .len()
}

async fn stored_cell(table: &dyn Table) -> StoredCell {
    let item = table
        .get(ECOLOGY_TABLE, &state_key(SAMPLE_CELL))
        .await
        .expect("read the cell")
        .expect("the cell is seeded");
    StoredCell::from_item(&item).expect("a cell item")
}

/// An EventBridge scheduled event, as the watchdog's `rate(1 minute)` rule delivers it.
fn scheduled_event(stack: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("{stack}-tick-1"),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": "2026-11-21T10:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:events:us-east-1:000000000000:rule/{stack}-watchdog")],
        "detail": {}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_world_binary_and_the_watchdog_answer_the_runtime_api() {
    if !enabled() {
        return;
    }
    let names = [
        "intake",
        "market",
        "price-window",
        "production",
        "ecology-input",
        "ecology",
        "watchdog",
    ];
    let binaries: Vec<_> = names
        .into_iter()
        .map(|name| (name, lambda_binary(name)))
        .collect();
    let deployed = local_aws::deploy("rtw").await;
    let (stack, sqs) = (deployed.name.as_str(), deployed.sqs.clone());
    let table: Arc<dyn Table> = deployed.dynamo.clone();
    let context = StageContext::new(sqs.clone(), table.clone(), Arc::new(SystemClock));

    // The world the samples land in: their cell (its first tick 5 s away) and the station's
    // region (its first production tick 1 s away), each with its timer chain registered.
    let mut ecology = EcologyConfig::builtin().expect("ecology rules");
    ecology.interval = TickInterval::from_millis(5_000).expect("a 5 s interval");
    let founders: Vec<Founders> = FOUNDING_SPECIES
        .iter()
        .map(|species| Founders {
            species: (*species).to_owned(),
            count: 5,
        })
        .collect();
    let cell = PartitionUid::parse(SAMPLE_CELL).expect("the sample cell");
    assert!(
        seed_cell(&context, &ecology, cell, 100, Vec::new(), &founders)
            .await
            .expect("seed the sample cell")
    );
    let mut price = PriceConfig::builtin().expect("market rules");
    price.production_interval_ms = 1_000;
    let region = PartitionUid::parse(SAMPLE_REGION).expect("the sample region");
    let planets = ["mining", "agri", "forge", "refinery"]
        .iter()
        .enumerate()
        .map(|(index, kind)| Planet {
            id: format!("planet-{index:04}"),
            kind: (*kind).to_owned(),
            level: 1 + index as u32,
            stock: TRADED_GOODS
                .iter()
                .map(|good| ((*good).to_owned(), 200))
                .collect(),
            last_tick: 0,
        })
        .collect();
    let seeded = Region {
        region: region.clone(),
        tick: 0,
        planets,
    };
    assert!(
        seed_region(&context, &price, &seeded)
            .await
            .expect("seed the sample region")
    );

    let mut sources = std::collections::BTreeMap::new();
    for queue in [
        INTAKE_QUEUE,
        CLASSIFY_QUEUE,
        MARKET_QUEUE,
        PRICE_WINDOW_QUEUE,
        PRODUCTION_TICK_QUEUE,
        ECOLOGY_INPUT_QUEUE,
        ECOLOGY_TICK_QUEUE,
    ] {
        sources.insert(queue, EventSource::new(&deployed, queue).await);
    }
    // The queue URLs each function is given, as the template gives them.
    let urls = |queues: &[&str]| {
        queues
            .iter()
            .map(|queue| format!("{queue}={}", sources[queue].url))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut functions = std::collections::BTreeMap::new();
    for (name, binary) in &binaries {
        let mut env = function_env(stack);
        let sends_to: &[&str] = match *name {
            "intake" => {
                env.push((
                    "WORLDFLEET_GATEWAY_KEYS",
                    format!("{SAMPLE_GATEWAY}={SAMPLE_KEY_HEX}"),
                ));
                &[CLASSIFY_QUEUE, MARKET_QUEUE, ECOLOGY_INPUT_QUEUE]
            }
            "market" | "price-window" => &[PRICE_WINDOW_QUEUE],
            "production" => &[PRODUCTION_TICK_QUEUE],
            "ecology" => &[ECOLOGY_INPUT_QUEUE, ECOLOGY_TICK_QUEUE],
            "watchdog" => &[
                ECOLOGY_TICK_QUEUE,
                PRICE_WINDOW_QUEUE,
                PRODUCTION_TICK_QUEUE,
            ],
            _ => &[],
        };
        if !sends_to.is_empty() {
            env.push(("WORLDFLEET_QUEUE_URLS", urls(sends_to)));
        }
        let mut function = LambdaFunction::start(binary, &format!("{stack}-{name}"), &env, &[])
            .await
            .expect("start the function process");
        function.wait_ready(INIT_WITHIN).await.unwrap();
        functions.insert(*name, function);
    }
    // A gateway posts the signed trade, capture and breed request; intake routes them.
    let envelopes = signed_samples(&WORLD_SAMPLES, now_ms());
    post_to_intake(&sqs, &envelopes).await;
    drain_through(
        &sources[INTAKE_QUEUE],
        functions.get_mut("intake").unwrap(),
        envelopes.len(),
    )
    .await;
    assert_in_ledger(table.as_ref(), &ledger_keys(&envelopes)).await;

    // market.fifo → market: the trade opens the station's market and its first window.
    drain_through(
        &sources[MARKET_QUEUE],
        functions.get_mut("market").unwrap(),
        1,
    )
    .await;
    let market = table
        .get(MARKET_TABLE, &market_key(SAMPLE_STATION))
        .await
        .expect("read the market")
        .unwrap_or_else(|| panic!("market stored {SAMPLE_STATION}"));
    let market = StoredMarket::from_item(&market).expect("a market item");
    assert!(market.version >= 1, "{market:?}");

    // price-window → price-window: the window's end recomputes the station's prices.
    let (_, body) = deliver_one_timer(
        &sources[PRICE_WINDOW_QUEUE],
        functions.get_mut("price-window").unwrap(),
    )
    .await;
    let timer: WindowTimer = serde_json::from_str(&body).expect("a window timer");
    assert_eq!(timer.station.as_str(), SAMPLE_STATION);
    assert!(
        table
            .get(
                MARKET_TABLE,
                &recompute_key(SAMPLE_STATION, timer.window_id)
            )
            .await
            .expect("read the recompute")
            .is_some(),
        "window {} was recomputed; log:\n{}",
        timer.window_id,
        functions["price-window"].log()
    );

    // ecology-input.fifo → ecology-input: the capture and the breed request wait in the cell.
    assert_eq!(pending_inputs(table.as_ref()).await, 0);
    drain_through(
        &sources[ECOLOGY_INPUT_QUEUE],
        functions.get_mut("ecology-input").unwrap(),
        2,
    )
    .await;
    assert_eq!(
        pending_inputs(table.as_ref()).await,
        2,
        "both inputs stored"
    );

    // production-tick → production: the region's first tick.
    let (_, body) = deliver_one_timer(
        &sources[PRODUCTION_TICK_QUEUE],
        functions.get_mut("production").unwrap(),
    )
    .await;
    let timer: ProductionTimer = serde_json::from_str(&body).expect("a production timer");
    assert_eq!((timer.region.as_str(), timer.tick), (SAMPLE_REGION, 1));
    let ticked = read_region(&context, &region)
        .await
        .expect("read the region");
    assert_eq!(ticked.tick, 1, "the region completed tick 1");
    assert!(ticked.planets.iter().all(|planet| planet.last_tick == 1));

    // ecology-tick → ecology: tick 1 consumes the pending inputs; a redelivered timer
    // changes nothing.
    let (tick_event, body) = deliver_one_timer(
        &sources[ECOLOGY_TICK_QUEUE],
        functions.get_mut("ecology").unwrap(),
    )
    .await;
    let timer: TickTimer = serde_json::from_str(&body).expect("a tick timer");
    assert_eq!((timer.cell.as_str(), timer.tick), (SAMPLE_CELL, 1));
    let after_tick = stored_cell(table.as_ref()).await;
    assert_eq!(after_tick.state.tick, 1, "the cell applied tick 1");
    assert_eq!(
        pending_inputs(table.as_ref()).await,
        0,
        "tick 1 consumed them"
    );
    let ecology_function = functions.get_mut("ecology").unwrap();
    let again = invoke(ecology_function, &tick_event).await;
    assert!(batch_item_failures(&again).is_empty());
    assert_eq!(
        stored_cell(table.as_ref()).await,
        after_tick,
        "a redelivered tick changes nothing"
    );

    // The watchdog: a scheduled event gets one pass over every registered chain; anything
    // else is refused with a clean error and the function keeps serving.
    let watchdog = functions.get_mut("watchdog").unwrap();
    let pass = invoke(watchdog, &scheduled_event(stack)).await;
    let Outcome::Response(pass) = pass else {
        panic!(
            "the watchdog answers its pass: {pass:?}; log:\n{}",
            watchdog.log()
        );
    };
    assert_eq!(pass["cells_checked"], json!(1), "{pass}");
    assert_eq!(pass["stations_checked"], json!(1), "{pass}");
    assert_eq!(pass["regions_checked"], json!(1), "{pass}");
    let refused = invoke(
        watchdog,
        &json!({"Records": [{"messageId": "m-1", "body": "{}"}]}),
    )
    .await;
    let document = error_document(&refused, "an SQS event to the watchdog");
    assert!(
        document.contains("scheduled event"),
        "the error says what was expected: {document}"
    );
    for (name, function) in &mut functions {
        assert!(function.exited().is_none(), "{name}: {}", function.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_and_prune_outside_lambda_name_the_missing_variables() {
    if !enabled() {
        return;
    }
    // The watchdog (scheduled glue of its own) and prune check the environment as every
    // `run_stage` binary does, before the runtime would panic on a missing variable.
    for name in ["watchdog", "prune"] {
        let (_, log) = start_failing(
            name,
            &format!("no-env-{name}"),
            "no-env",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        )
        .await;
        assert!(
            log.contains("not in a Lambda execution environment")
                && log.contains("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
                && !log.contains("panicked"),
            "{name} says what is missing, without a panic: {log}"
        );
    }
}

/// An API Gateway HTTP API (payload 2.0) event for `method` `path`?`query` with `body`.
fn http_api_event(method: &str, route: &str, path: &str, query: &str, body: Option<&str>) -> Value {
    let parameters: serde_json::Map<String, Value> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), Value::from(value)))
        .collect();
    json!({
        "version": "2.0",
        "routeKey": format!("{method} {route}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": {
            "host": "feeds.execute-api.us-east-1.amazonaws.com",
            "content-type": "application/json"
        },
        "queryStringParameters": parameters,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "feeds",
            "domainName": "feeds.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "feeds",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "worldfleet-test"
            },
            "requestId": format!("request-{}", now_ms()),
            "routeKey": format!("{method} {route}"),
            "stage": "$default",
            "time": "06/Dec/2026:10:00:00 +0000",
            "timeEpoch": now_ms(),
            "authorizer": {
                "iam": {
                    "accessKey": "AKIATEST",
                    "accountId": "000000000000",
                    "callerId": "AIDATEST",
                    "principalOrgId": null,
                    "userArn": "arn:aws:iam::000000000000:user/gateway",
                    "userId": "AIDATEST"
                }
            }
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// Invokes the feed API and returns (status, JSON body).
async fn call_feeds(function: &mut LambdaFunction, event: &Value) -> (u64, Value) {
    let outcome = function
        .invoke(event, ANSWER_WITHIN)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", function.log()));
    let Outcome::Response(response) = outcome else {
        panic!("the feed API failed: {outcome:?}\n{}", function.log());
    };
    let status = response["statusCode"].as_u64().unwrap_or(0);
    let body = response["body"].as_str().unwrap_or_default();
    let body = serde_json::from_str(body)
        .unwrap_or_else(|error| panic!("body is not JSON ({error}): {response}"));
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_api_binary_answers_http_api_events_on_dynamodb() {
    if !enabled() {
        return;
    }
    let deployed = local_aws::deploy("rt-feeds").await;
    let (stack, dynamo) = (deployed.name.as_str(), deployed.dynamo.as_ref());
    // Three entries of one player's feed, written as distribute writes them.
    let feed = "player:p-api";
    let page = worldfleet_domain::FeedPage {
        first_seq: 1,
        entries: (1..=3)
            .map(|seq| worldfleet_domain::FeedEntry {
                seq,
                event_id: format!("event-{seq}"),
                partition: PartitionUid::parse("gm-1/district-2/scene-3").unwrap(),
                kind: worldfleet_domain::EventKind::Dialogue,
                actor: "p-api".into(),
                text: format!("entry {seq}"),
                accepted_at_ms: now_ms(),
            })
            .collect(),
    };
    dynamo
        .put(
            FEEDS_TABLE,
            worldfleet_tables::plan::page_item(feed, &page, now_ms()).unwrap(),
            None,
        )
        .await
        .unwrap();
    dynamo
        .update(
            FEEDS_TABLE,
            &worldfleet_tables::plan::counter_key(feed),
            worldfleet_ports::Update::new().add(worldfleet_tables::plan::COUNTER_NEXT, 3),
            None,
        )
        .await
        .unwrap();

    let mut feeds = LambdaFunction::start(
        &lambda_binary("feeds"),
        &format!("{stack}-feeds"),
        &function_env(stack),
        &["WORLDFLEET_GATEWAY_KEYS"],
    )
    .await
    .expect("start the feed API function");
    let path = format!("/v1/feeds/{feed}");

    let (status, page) = call_feeds(
        &mut feeds,
        &http_api_event("GET", "/v1/feeds/{feed}", &path, "after=1", None),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let seqs: Vec<u64> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(page["next_after"], 3);

    let reader_path = format!("{path}/readers/mobile");
    let route = "/v1/feeds/{feed}/readers/{reader}";
    let (status, moved) = call_feeds(
        &mut feeds,
        &http_api_event("PUT", route, &reader_path, "", Some(r#"{"after": 3}"#)),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["moved"], true);
    let (status, reader) = call_feeds(
        &mut feeds,
        &http_api_event("GET", route, &reader_path, "", None),
    )
    .await;
    assert_eq!(status, 200, "{reader}");
    assert_eq!(reader["after"], 3);
    let (status, backwards) = call_feeds(
        &mut feeds,
        &http_api_event("PUT", route, &reader_path, "", Some(r#"{"after": 1}"#)),
    )
    .await;
    assert_eq!(status, 409, "{backwards}");
    assert_eq!(backwards["error"], "checkpoint_backwards");

    // Bad input gets the door's own refusals, and the process keeps serving.
    let (status, refused) = call_feeds(
        &mut feeds,
        &http_api_event("GET", "/v1/feeds/{feed}", "/v1/feeds/guild:x", "", None),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"], "bad_feed");
    let (status, missing) = call_feeds(
        &mut feeds,
        &http_api_event("GET", "/v1/events", "/v1/events", "", None),
    )
    .await;
    assert_eq!(status, 404, "{missing}");
    let (status, _) = call_feeds(
        &mut feeds,
        &http_api_event("GET", "/v1/feeds/{feed}", &path, "", None),
    )
    .await;
    assert_eq!(status, 200);
}
