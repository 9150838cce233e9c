//! `SqsQueue` against LocalStack: FIFO order and deduplication, visibility, redrive to the
//! dead-letter queue, batch outcomes, error classes and request counting.

mod support;

use std::time::Duration;

use worldfleet_ports::{
    DeleteOutcome, Error, OutgoingMessage, Queue, QueueSpec, ReceiveRequest, SendOutcome,
};

fn fifo(body: &str, group: &str, dedup: &str) -> OutgoingMessage {
    OutgoingMessage::fifo(body.to_owned(), group, dedup)
}

fn receive(max: usize, visibility: Option<u64>) -> ReceiveRequest {
    ReceiveRequest {
        max_messages: max,
        wait: Duration::from_secs(1),
        visibility_timeout: visibility.map(Duration::from_secs),
    }
}

#[tokio::test]
async fn fifo_queue_keeps_group_order_and_drops_duplicates() {
    if !support::local_aws("fifo_queue_keeps_group_order_and_drops_duplicates") {
        return;
    }
    let (queue, _) = support::adapters("sqsfifo").await;
    let spec = QueueSpec::with_dead_letter("work.fifo", "work-dlq.fifo", Duration::from_secs(30));
    queue.ensure_queue(&spec).await.unwrap();
    queue.ensure_queue(&spec).await.unwrap(); // idempotent

    let outcomes = queue
        .send_batch(
            "work.fifo",
            vec![
                fifo("a1", "a", "d-a1"),
                fifo("b1", "b", "d-b1"),
                fifo("a2", "a", "d-a2"),
                fifo("a1 again", "a", "d-a1"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 4);
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, SendOutcome::Sent { .. }))
    );

    let mut bodies = Vec::new();
    for _ in 0..5 {
        let batch = queue
            .receive("work.fifo", receive(10, Some(30)))
            .await
            .unwrap();
        for message in &batch {
            assert_eq!(message.receive_count, 1);
            assert!(message.sent_at_ms > 0);
            bodies.push((message.group_id.clone().unwrap(), message.body.clone()));
        }
        let handles = batch
            .into_iter()
            .map(|message| message.receipt_handle)
            .collect();
        let deleted = queue.delete_batch("work.fifo", handles).await.unwrap();
        assert!(
            deleted
                .iter()
                .all(|outcome| *outcome == DeleteOutcome::Deleted)
        );
        if bodies.len() >= 3 {
            break;
        }
    }
    let group_a: Vec<&str> = bodies
        .iter()
        .filter(|(group, _)| group == "a")
        .map(|(_, body)| body.as_str())
        .collect();
    assert_eq!(
        group_a,
        ["a1", "a2"],
        "the duplicate was dropped, order kept"
    );
    assert_eq!(bodies.len(), 3);
    assert_eq!(queue.depth("work.fifo").await.unwrap().total(), 0);
}

#[tokio::test]
async fn exhausted_messages_move_to_the_dead_letter_queue() {
    if !support::local_aws("exhausted_messages_move_to_the_dead_letter_queue") {
        return;
    }
    let (queue, _) = support::adapters("sqsdlq").await;
    let mut spec =
        QueueSpec::with_dead_letter("poison.fifo", "poison-dlq.fifo", Duration::from_secs(30));
    spec.max_receive_count = 2;
    queue.ensure_queue(&spec).await.unwrap();
    queue
        .send_batch("poison.fifo", vec![fifo("bad", "g", "d1")])
        .await
        .unwrap();
    let mut counts = Vec::new();
    for _ in 0..2 {
        let batch = queue
            .receive("poison.fifo", receive(1, None))
            .await
            .unwrap();
        assert_eq!(batch.len(), 1);
        counts.push(batch[0].receive_count);
        // Fail it: visible again at once.
        queue
            .change_visibility("poison.fifo", &batch[0].receipt_handle, Duration::ZERO)
            .await
            .unwrap();
    }
    assert_eq!(counts, [1, 2]);
    let after = queue
        .receive("poison.fifo", receive(1, None))
        .await
        .unwrap();
    assert!(
        after.is_empty(),
        "a third receive must not hand it out: {after:?}"
    );
    let dead = queue
        .receive("poison-dlq.fifo", receive(10, None))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "bad");
}

#[tokio::test]
async fn standard_queue_delays_and_visibility() {
    if !support::local_aws("standard_queue_delays_and_visibility") {
        return;
    }
    let (queue, _) = support::adapters("sqsstd").await;
    queue
        .ensure_queue(&QueueSpec::dead_letter("timers"))
        .await
        .unwrap();
    queue
        .send_batch(
            "timers",
            vec![
                OutgoingMessage::delayed("now".into(), Duration::ZERO),
                OutgoingMessage::delayed("later".into(), Duration::from_secs(60)),
            ],
        )
        .await
        .unwrap();
    let depth = queue.depth("timers").await.unwrap();
    assert_eq!((depth.visible, depth.delayed), (1, 1));
    let batch = queue
        .receive("timers", receive(10, Some(60)))
        .await
        .unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].body, "now");
    assert_eq!(batch[0].group_id, None);
    assert_eq!(queue.depth("timers").await.unwrap().in_flight, 1);
    assert!(
        queue
            .receive("timers", receive(10, None))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bad_requests_and_missing_queues_are_classified() {
    if !support::local_aws("bad_requests_and_missing_queues_are_classified") {
        return;
    }
    let (queue, _) = support::adapters("sqserr").await;
    let missing = queue
        .send_batch("nothing-here.fifo", vec![fifo("x", "g", "d")])
        .await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
    assert!(matches!(
        queue.depth("nothing-here").await,
        Err(Error::NotFound(_))
    ));

    queue
        .ensure_queue(&QueueSpec::dead_letter("checks.fifo"))
        .await
        .unwrap();
    let delayed = OutgoingMessage {
        delay: Duration::from_secs(5),
        ..fifo("x", "g", "d")
    };
    assert!(matches!(
        queue.send_batch("checks.fifo", vec![delayed]).await,
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(
        queue.receive("checks.fifo", receive(11, None)).await,
        Err(Error::InvalidRequest(_))
    ));
    let deleted = queue
        .delete_batch("checks.fifo", vec!["not-a-receipt-handle".into()])
        .await
        .unwrap();
    assert!(
        matches!(deleted[0], DeleteOutcome::Failed { .. }),
        "{deleted:?}"
    );
    let changed = queue
        .change_visibility("checks.fifo", "not-a-receipt-handle", Duration::ZERO)
        .await;
    assert!(
        matches!(
            changed,
            Err(Error::InvalidReceipt(_) | Error::InvalidRequest(_))
        ),
        "{changed:?}"
    );
}

#[tokio::test]
async fn every_request_and_message_is_counted() {
    if !support::local_aws("every_request_and_message_is_counted") {
        return;
    }
    let (queue, _) = support::adapters("sqscount").await;
    queue
        .ensure_queue(&QueueSpec::dead_letter("count.fifo"))
        .await
        .unwrap();
    let before = queue.counters().snapshot();
    let messages = (0..10)
        .map(|index| {
            fifo(
                &format!("m{index}"),
                &format!("g{index}"),
                &format!("d{index}"),
            )
        })
        .collect();
    queue.send_batch("count.fifo", messages).await.unwrap();
    let received = queue
        .receive("count.fifo", receive(10, None))
        .await
        .unwrap();
    let handles: Vec<String> = received
        .iter()
        .map(|message| message.receipt_handle.clone())
        .collect();
    queue
        .delete_batch("count.fifo", handles.clone())
        .await
        .unwrap();
    let usage = queue.counters().snapshot().since(&before);
    assert_eq!(
        usage.queue_requests, 3,
        "URL cached: one request per batch call"
    );
    assert_eq!(usage.queue_messages_sent, 10);
    assert_eq!(usage.queue_messages_received, handles.len() as u64);
    assert_eq!(usage.queue_messages_deleted, handles.len() as u64);
    assert!(!handles.is_empty());
}

#[tokio::test]
async fn batches_over_the_payload_limit_are_split() {
    if !support::local_aws("batches_over_the_payload_limit_are_split") {
        return;
    }
    let (queue, _) = support::adapters("sqsbig").await;
    queue
        .ensure_queue(&QueueSpec::dead_letter("big.fifo"))
        .await
        .unwrap();
    let body = "x".repeat(100 * 1024);
    let messages = (0..4)
        .map(|index| fifo(&body, "g", &format!("d{index}")))
        .collect();
    let before = queue.counters().snapshot();
    let outcomes = queue.send_batch("big.fifo", messages).await.unwrap();
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, SendOutcome::Sent { .. })),
        "{outcomes:?}"
    );
    assert_eq!(queue.counters().snapshot().since(&before).queue_requests, 2);
    assert_eq!(queue.depth("big.fifo").await.unwrap().visible, 4);
}
