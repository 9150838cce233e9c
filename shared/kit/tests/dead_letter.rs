//! A permanent failure moves to its queue's dead-letter queue at once, with its body and group,
//! and the rest of its FIFO group is released for the next receive.

use std::sync::Arc;
use std::time::Duration;

use worldfleet_embedded::testing::TempStore;
use worldfleet_kit::{RecordError, dead_letter_permanent, process_batch};
use worldfleet_ports::{OutgoingMessage, QueueSpec, ReceiveRequest, SystemClock};

#[tokio::test]
async fn permanent_failures_are_dead_lettered_at_once() {
    let store = TempStore::open(Arc::new(SystemClock));
    let queue = store.queue();
    queue
        .ensure_queue(&QueueSpec::dead_letter("work-dlq.fifo"))
        .await
        .expect("dlq");
    queue
        .ensure_queue(&QueueSpec::with_dead_letter(
            "work.fifo",
            "work-dlq.fifo",
            Duration::from_secs(30),
        ))
        .await
        .expect("queue");
    queue
        .send_batch(
            "work.fifo",
            vec![
                OutgoingMessage::fifo("poison".into(), "g", "m1"),
                OutgoingMessage::fifo("fine".into(), "g", "m2"),
            ],
        )
        .await
        .expect("send");
    let records = queue
        .receive("work.fifo", ReceiveRequest::batch(Duration::from_secs(1)))
        .await
        .expect("receive");
    assert_eq!(records.len(), 2);
    let report = process_batch(&records, true, |record| {
        let poison = record.body == "poison";
        async move {
            if poison {
                Err(RecordError::permanent("not a request"))
            } else {
                Ok(())
            }
        }
    })
    .await;
    let moved = dead_letter_permanent(queue.as_ref(), "work.fifo", &records, &report).await;
    assert_eq!(moved, vec![records[0].message_id.clone()]);

    let dead = queue
        .receive(
            "work-dlq.fifo",
            ReceiveRequest::batch(Duration::from_secs(1)),
        )
        .await
        .expect("receive the dead letter");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].group_id.as_deref(), Some("g"));
    assert_eq!(
        dead[0].receive_count, 1,
        "dead-lettered on its first receive"
    );
}
