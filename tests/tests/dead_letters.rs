//! Dead letters go back where they came from: messages that ran out of receives are counted and
//! shown without being taken, and [`redrive`] sends them back to their work queue, each FIFO
//! group in its order, deleting from the dead-letter queue only what was sent.
//!
//! Runs on the embedded queue always, and on LocalStack's SQS when `WORLDFLEET_LOCAL_AWS=1`
//! (set by `scripts/test-aws.sh`, which starts the emulators).

use std::sync::Arc;
use std::time::Duration;

use worldfleet_domain::names::dead_letter_queue;
use worldfleet_embedded::testing::TempStore;
use worldfleet_ports::queue::MAX_BATCH;
use worldfleet_ports::{OutgoingMessage, Queue, QueueSpec, ReceiveRequest, SystemClock};
use worldfleet_runtime::dead_letters::{inspect, redrive};

const WORK: &str = "redrive-work.fifo";

/// Declares [`WORK`] with one receive before its dead-letter queue, sends `bodies` (groups
/// `g-0`/`g-1` alternating) and fails every receive until all are dead letters.
async fn dead_lettered(queue: &dyn Queue, bodies: &[&str]) {
    let dead_letter = dead_letter_queue(WORK);
    queue
        .ensure_queue(&QueueSpec::dead_letter(&dead_letter))
        .await
        .expect("dead-letter queue");
    let mut spec = QueueSpec::with_dead_letter(WORK, &dead_letter, Duration::from_secs(30));
    spec.max_receive_count = 1;
    queue.ensure_queue(&spec).await.expect("work queue");
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let messages = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| {
            OutgoingMessage::fifo(
                (*body).to_owned(),
                &format!("g-{}", index % 2),
                &format!("d-{run}-{index}"),
            )
        })
        .collect();
    queue.send_batch(WORK, messages).await.expect("send");
    let fail_fast = ReceiveRequest {
        max_messages: MAX_BATCH,
        wait: Duration::ZERO,
        visibility_timeout: Some(Duration::ZERO),
    };
    for _ in 0..100 {
        let batch = queue.receive(WORK, fail_fast).await.expect("receive");
        if batch.is_empty() && queue.depth(&dead_letter).await.unwrap().total() == 5 {
            return;
        }
    }
    panic!("the messages did not reach the dead-letter queue");
}

async fn dead_letters_go_back_in_group_order(queue: Arc<dyn Queue>) {
    let queue = queue.as_ref();
    dead_lettered(queue, &["a", "b", "c", "d", "e"]).await;
    let shown = inspect(queue, WORK, 2).await.expect("inspect");
    assert_eq!(shown.depth, 5);
    assert_eq!(shown.sample.len(), 2);
    assert_eq!(shown.dead_letter_queue, "redrive-work-dlq.fifo");
    assert_eq!(
        inspect(queue, WORK, 0).await.unwrap().depth,
        5,
        "looking takes nothing"
    );

    let first = redrive(queue, WORK, 2).await.expect("redrive");
    assert_eq!((first.moved, first.failed), (2, 0));
    let rest = redrive(queue, WORK, u64::MAX).await.expect("redrive");
    assert_eq!((rest.moved, rest.failed), (3, 0));
    assert_eq!(
        queue.depth(&dead_letter_queue(WORK)).await.unwrap().total(),
        0
    );

    let mut back: Vec<(String, String)> = Vec::new();
    for _ in 0..20 {
        let batch = queue
            .receive(WORK, ReceiveRequest::batch(Duration::from_millis(200)))
            .await
            .expect("receive");
        if batch.is_empty() && back.len() == 5 {
            break;
        }
        let handles: Vec<String> = batch.iter().map(|m| m.receipt_handle.clone()).collect();
        back.extend(
            batch
                .into_iter()
                .map(|m| (m.group_id.unwrap_or_default(), m.body)),
        );
        if !handles.is_empty() {
            queue.delete_batch(WORK, handles).await.expect("delete");
        }
    }
    let group = |name: &str| -> Vec<&str> {
        back.iter()
            .filter(|(group, _)| group == name)
            .map(|(_, body)| body.as_str())
            .collect()
    };
    assert_eq!(group("g-0"), ["a", "c", "e"], "each group keeps its order");
    assert_eq!(group("g-1"), ["b", "d"]);
}

#[tokio::test]
async fn embedded_dead_letters_go_back_in_group_order() {
    let store = TempStore::open(Arc::new(SystemClock));
    dead_letters_go_back_in_group_order(store.queue()).await;
}

#[tokio::test]
async fn sqs_dead_letters_go_back_in_group_order() {
    if std::env::var("WORLDFLEET_LOCAL_AWS").as_deref() != Ok("1") {
        eprintln!(
            "*** SKIPPED: set WORLDFLEET_LOCAL_AWS=1 with the local stack running (scripts/test-aws.sh does both) ***"
        );
        return;
    }
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    let settings = worldfleet_aws::AwsSettings::from_env()
        .expect("settings")
        .with_stack(&format!("redrive-{run}"));
    let config = settings.sdk_config().await;
    dead_letters_go_back_in_group_order(Arc::new(worldfleet_aws::SqsQueue::from_sdk_config(
        &config, settings,
    )))
    .await;
}
