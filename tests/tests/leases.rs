//! Worker leases: a poller that dies with messages in hand holds their FIFO group for one lease
//! (a few seconds), not the queue's visibility timeout; a batch slower than its lease is renewed
//! by the heartbeat and never handed to a second worker while the first is alive.
//!
//! Each scenario runs on the embedded queue always, and on LocalStack's SQS when
//! `WORLDFLEET_LOCAL_AWS=1` (set by `scripts/test-aws.sh`, which starts the emulators). The
//! queue's visibility timeout is 60 s, so a recovery inside the lease cannot come from it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Notify, watch};
use worldfleet_embedded::testing::TempStore;
use worldfleet_kit::{BatchReport, StageHandler};
use worldfleet_ports::{
    OutgoingMessage, Queue, QueueSpec, ReceiveRequest, ReceivedMessage, SendOutcome, SystemClock,
};
use worldfleet_runtime::poller::MIN_LEASE;
use worldfleet_runtime::{PollerConfig, PollerStats, run_stage};

const WORK: &str = "lease-work.fifo";
const DEAD: &str = "lease-work-dlq.fifo";
const QUEUE_VISIBILITY: Duration = Duration::from_secs(60);

/// A stage whose batches take `took` (forever when `None`), announcing each start.
struct Slow {
    took: Option<Duration>,
    started: Arc<Notify>,
}

#[async_trait]
impl StageHandler for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }

    fn source_queue(&self) -> &'static str {
        WORK
    }

    async fn handle_batch(&self, records: &[ReceivedMessage], _remaining: Duration) -> BatchReport {
        self.started.notify_one();
        match self.took {
            Some(took) => tokio::time::sleep(took).await,
            None => std::future::pending::<()>().await,
        }
        BatchReport {
            succeeded: records.len(),
            ..BatchReport::default()
        }
    }
}

async fn declare(queue: &dyn Queue) {
    queue
        .ensure_queue(&QueueSpec::dead_letter(DEAD))
        .await
        .expect("dead-letter queue");
    queue
        .ensure_queue(&QueueSpec::with_dead_letter(WORK, DEAD, QUEUE_VISIBILITY))
        .await
        .expect("work queue");
    // The body doubles as the deduplication id, so it keeps to SQS's id characters.
    let body = format!("lease-probe-{}", ulid_like());
    let outcomes = queue
        .send_batch(
            WORK,
            vec![OutgoingMessage::fifo(body.clone(), "player-1", &body)],
        )
        .await
        .expect("send");
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, SendOutcome::Sent { .. })),
        "the probe was not sent: {outcomes:?}"
    );
}

fn ulid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos())
}

fn poller() -> PollerConfig {
    PollerConfig {
        workers: 1,
        wait: Duration::from_secs(1),
        visibility_timeout: Duration::from_secs(30),
        batching_window: Duration::ZERO,
    }
}

fn start(
    queue: Arc<dyn Queue>,
    took: Option<Duration>,
) -> (
    tokio::task::JoinHandle<()>,
    Arc<Notify>,
    watch::Sender<bool>,
) {
    let started = Arc::new(Notify::new());
    let handler = Arc::new(Slow {
        took,
        started: Arc::clone(&started),
    });
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run_stage(
        handler,
        queue,
        poller(),
        stopped,
        Arc::new(PollerStats::default()),
        None,
    ));
    (task, started, stop)
}

/// A worker dies mid-batch: its message is back within the lease.
async fn a_dead_worker_holds_its_group_for_one_lease(queue: Arc<dyn Queue>) {
    declare(queue.as_ref()).await;
    let (task, started, _stop) = start(Arc::clone(&queue), None);
    tokio::time::timeout(Duration::from_secs(30), started.notified())
        .await
        .expect("the worker received the message");
    task.abort();
    let died = Instant::now();
    let back = loop {
        let received = queue
            .receive(WORK, ReceiveRequest::batch(Duration::from_secs(1)))
            .await
            .expect("receive");
        if let Some(message) = received.into_iter().next() {
            break message;
        }
        assert!(
            died.elapsed() < QUEUE_VISIBILITY,
            "the message stayed held for the queue's whole visibility timeout"
        );
    };
    let waited = died.elapsed();
    eprintln!("message back {waited:?} after the worker died (lease {MIN_LEASE:?})");
    assert_eq!(back.receive_count, 2);
    assert!(
        waited <= MIN_LEASE + Duration::from_secs(3),
        "recovery took {waited:?}, over one lease ({MIN_LEASE:?}) plus slack"
    );
}

/// A batch that takes 2.5 leases is renewed and never delivered to anyone else.
async fn a_slow_batch_keeps_its_lease(queue: Arc<dyn Queue>) {
    declare(queue.as_ref()).await;
    let took = MIN_LEASE * 5 / 2;
    let (task, started, stop) = start(Arc::clone(&queue), Some(took));
    tokio::time::timeout(Duration::from_secs(30), started.notified())
        .await
        .expect("the worker received the message");
    let began = Instant::now();
    while began.elapsed() < took {
        let rival = queue
            .receive(WORK, ReceiveRequest::batch(Duration::from_millis(500)))
            .await
            .expect("receive");
        assert!(
            rival.is_empty(),
            "a live worker's batch was handed out again after {:?}",
            began.elapsed()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while queue.depth(WORK).await.expect("depth").total() > 0 {
        assert!(Instant::now() < deadline, "the batch was never deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.send(true).expect("stop");
    task.await.expect("poller stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_dead_worker_holds_its_group_for_one_lease() {
    let store = TempStore::open(Arc::new(SystemClock));
    a_dead_worker_holds_its_group_for_one_lease(store.queue()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_slow_batch_keeps_its_lease() {
    let store = TempStore::open(Arc::new(SystemClock));
    a_slow_batch_keeps_its_lease(store.queue()).await;
}

async fn sqs(prefix: &str) -> Option<Arc<dyn Queue>> {
    if std::env::var("WORLDFLEET_LOCAL_AWS").as_deref() != Ok("1") {
        eprintln!(
            "*** SKIPPED: set WORLDFLEET_LOCAL_AWS=1 with the local stack running (scripts/test-aws.sh does both) ***"
        );
        return None;
    }
    let settings = worldfleet_aws::AwsSettings::from_env()
        .expect("settings")
        .with_stack(&format!("{prefix}-{}", ulid_like() / 1_000_000));
    let config = settings.sdk_config().await;
    Some(Arc::new(worldfleet_aws::SqsQueue::from_sdk_config(
        &config, settings,
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_a_dead_worker_holds_its_group_for_one_lease() {
    if let Some(queue) = sqs("lease-dead").await {
        a_dead_worker_holds_its_group_for_one_lease(queue).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_a_slow_batch_keeps_its_lease() {
    if let Some(queue) = sqs("lease-slow").await {
        a_slow_batch_keeps_its_lease(queue).await;
    }
}
