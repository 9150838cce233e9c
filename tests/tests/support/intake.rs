//! Running the real intake stage over a queue by hand (as the poller would), and reading what it
//! routed on.

use std::time::Duration;

use worldfleet_domain::AcceptedEvent;
use worldfleet_domain::names::INTAKE_QUEUE;
use worldfleet_intake::Intake;
use worldfleet_kit::StageHandler;
use worldfleet_ports::{Queue, ReceiveRequest, ReceivedMessage};

/// Receives one batch from `queue_name` and deletes it; empty when nothing came in half a second.
async fn take_batch(
    queue: &dyn Queue,
    queue_name: &str,
    handle: impl AsyncFnOnce(&[ReceivedMessage]),
) -> usize {
    let batch = queue
        .receive(
            queue_name,
            ReceiveRequest::batch(Duration::from_millis(500)),
        )
        .await
        .expect("receive");
    if batch.is_empty() {
        return 0;
    }
    handle(&batch).await;
    let count = batch.len();
    queue
        .delete_batch(
            queue_name,
            batch
                .into_iter()
                .map(|message| message.receipt_handle)
                .collect(),
        )
        .await
        .expect("delete");
    count
}

/// Receives what is on the intake queue for up to `wait` and runs intake over it, deleting
/// what it finished (as the poller does); returns how many messages intake saw.
pub async fn run_intake(intake: &Intake, queue: &dyn Queue, wait: Duration) -> usize {
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        seen += take_batch(queue, INTAKE_QUEUE, async |batch| {
            let report = intake.handle_batch(batch, Duration::from_secs(30)).await;
            assert!(report.all_succeeded(), "{report:?}");
        })
        .await;
    }
    seen
}

/// The event ids of the accepted events waiting on `queue_name` (taken off it), in order.
pub async fn routed_event_ids(queue: &dyn Queue, queue_name: &str) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let taken = take_batch(queue, queue_name, async |batch| {
            for message in batch {
                let event: AcceptedEvent = serde_json::from_str(&message.body).unwrap();
                ids.push(event.event_id);
            }
        })
        .await;
        if taken == 0 {
            return ids;
        }
    }
}
