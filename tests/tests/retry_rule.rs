//! The retry rule a gateway is given (README "Signing", `docs/CONTRACT.md` "Retrying"), on a
//! real FIFO queue: an event refused as `rate_limited` and sent again under the same
//! `MessageDeduplicationId` is silently dropped by the queue, while the same envelope under a
//! new deduplication id (`<event id>#2`) reaches intake and is accepted — once.
//!
//! Runs on the embedded queue always, and on LocalStack's SQS when `WORLDFLEET_LOCAL_AWS=1`
//! (set by `scripts/test-aws.sh`, which starts the emulators). Intake's tables are embedded in
//! both: the queue's deduplication is what is under test.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use worldfleet_domain::RejectReason;
use worldfleet_domain::names::{CLASSIFY_QUEUE, INTAKE_QUEUE, LEDGER_TABLE, REJECTIONS_TABLE};
use worldfleet_embedded::testing::TempStore;
use worldfleet_intake::rejections::lookup_event;
use worldfleet_intake::{GatewayKeys, Intake, IntakeConfig, RateLimit};
use worldfleet_kit::StageContext;
use worldfleet_ports::{Clock, Key, OutgoingMessage, Queue, SendOutcome, SystemClock, Table};
use worldfleet_runtime::resources::{QueueSettings, declare};

mod support;

use support::intake::{routed_event_ids, run_intake};

const KEY_HEX: &str = "73616d706c652d676174657761792d6b65792d33322d62797465732d6c6f6e67";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// A fresh ULID-shaped event id (Crockford base32 of the nanosecond clock).
fn event_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut value = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let mut id = vec![b'0'; 26];
    for slot in id.iter_mut().rev() {
        *slot = ALPHABET[(value % 32) as usize];
        value /= 32;
    }
    String::from_utf8(id).unwrap()
}

/// The dialogue sample under a fresh event id, stamped now and signed.
fn envelope() -> (String, String, String) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/samples/dialogue.json"
    );
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let id = event_id();
    value["event_id"] = json!(id);
    value["sent_at_ms"] = json!(now_ms());
    value.as_object_mut().unwrap().remove("signature");
    let canonical = worldfleet_domain::envelope::canonical_bytes(&value).unwrap();
    let key = hex::decode(KEY_HEX).unwrap();
    value["signature"] = worldfleet_domain::envelope::signature_hex(&key, &canonical)
        .unwrap()
        .into();
    let partition = value["partition"].as_str().unwrap().to_owned();
    (value.to_string(), id, partition)
}

async fn send(queue: &dyn Queue, body: &str, partition: &str, dedup_id: &str) {
    let outcomes = queue
        .send_batch(
            INTAKE_QUEUE,
            vec![OutgoingMessage::fifo(body.to_owned(), partition, dedup_id)],
        )
        .await
        .expect("send");
    assert!(
        matches!(outcomes.as_slice(), [SendOutcome::Sent { .. }]),
        "{outcomes:?}"
    );
}

async fn a_rate_limited_event_goes_in_under_a_new_deduplication_id(
    queue: Arc<dyn Queue>,
    table: Arc<dyn Table>,
) {
    declare(queue.as_ref(), table.as_ref(), QueueSettings::default())
        .await
        .expect("declare");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut config =
        IntakeConfig::new(GatewayKeys::parse(&format!("gw-sample={KEY_HEX}")).unwrap());
    // One event at once per player, then one a second.
    config.rate_limit = RateLimit {
        burst: 1,
        per_second: 1,
    };
    let intake = Intake::new(
        StageContext::new(Arc::clone(&queue), Arc::clone(&table), clock),
        config,
    );
    let (first, first_id, partition) = envelope();
    let (second, second_id, _) = envelope();
    send(queue.as_ref(), &first, &partition, &first_id).await;
    send(queue.as_ref(), &second, &partition, &second_id).await;
    assert_eq!(
        run_intake(&intake, queue.as_ref(), Duration::from_secs(3)).await,
        2
    );
    let refused = lookup_event(table.as_ref(), REJECTIONS_TABLE, "gw-sample", &second_id)
        .await
        .unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].reason, Some(RejectReason::RateLimited));
    assert!(
        refused[0].detail.contains(&format!("{second_id}#2")),
        "the refusal names the new deduplication id: {}",
        refused[0].detail
    );
    assert_eq!(
        routed_event_ids(queue.as_ref(), CLASSIFY_QUEUE).await,
        vec![first_id.clone()]
    );

    // The wrong retry: the same deduplication id inside 5 minutes never reaches intake.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    send(queue.as_ref(), &second, &partition, &second_id).await;
    assert_eq!(
        run_intake(&intake, queue.as_ref(), Duration::from_secs(3)).await,
        0,
        "a FIFO queue drops a deduplication id it saw in the last 5 minutes"
    );

    // The documented retry: same envelope, same event id, new deduplication id.
    send(
        queue.as_ref(),
        &second,
        &partition,
        &format!("{second_id}#2"),
    )
    .await;
    assert_eq!(
        run_intake(&intake, queue.as_ref(), Duration::from_secs(3)).await,
        1
    );
    let ledger = table
        .get(
            LEDGER_TABLE,
            &Key::new(partition.as_str(), second_id.as_str()),
        )
        .await
        .unwrap();
    assert!(ledger.is_some(), "the retried event is in the ledger");
    assert_eq!(
        routed_event_ids(queue.as_ref(), CLASSIFY_QUEUE).await,
        vec![second_id.clone()]
    );
    // And a third copy under yet another id is a replay, not a second application.
    send(
        queue.as_ref(),
        &second,
        &partition,
        &format!("{second_id}#3"),
    )
    .await;
    assert_eq!(
        run_intake(&intake, queue.as_ref(), Duration::from_secs(3)).await,
        1
    );
    assert!(
        routed_event_ids(queue.as_ref(), CLASSIFY_QUEUE)
            .await
            .is_empty()
    );
    let rows = lookup_event(table.as_ref(), REJECTIONS_TABLE, "gw-sample", &second_id)
        .await
        .unwrap();
    assert!(
        rows.iter()
            .any(|row| row.reason == Some(RejectReason::Replayed)),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_rate_limited_event_goes_in_under_a_new_deduplication_id() {
    let store = TempStore::open(Arc::new(SystemClock));
    a_rate_limited_event_goes_in_under_a_new_deduplication_id(store.queue(), store.table()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_a_rate_limited_event_goes_in_under_a_new_deduplication_id() {
    if std::env::var("WORLDFLEET_LOCAL_AWS").as_deref() != Ok("1") {
        eprintln!(
            "*** SKIPPED: set WORLDFLEET_LOCAL_AWS=1 with the local stack running (scripts/test-aws.sh does both) ***"
        );
        return;
    }
    let stamp = now_ms() / 1000;
    let settings = worldfleet_aws::AwsSettings::from_env()
        .expect("settings")
        .with_stack(&format!("retry-{stamp}"));
    let config = settings.sdk_config().await;
    let queue: Arc<dyn Queue> =
        Arc::new(worldfleet_aws::SqsQueue::from_sdk_config(&config, settings));
    let store = TempStore::open(Arc::new(SystemClock));
    a_rate_limited_event_goes_in_under_a_new_deduplication_id(queue, store.table()).await;
}
