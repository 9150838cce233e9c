//! The queue contract: SQS semantics every [`Queue`] adapter must show.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep};
use worldfleet_ports::queue::{MAX_BATCH, QueueSpec};
use worldfleet_ports::{
    DeleteOutcome, Error, OutgoingMessage, Queue, QueueDepth, ReceiveRequest, ReceivedMessage,
    SendOutcome,
};

/// Runs every queue property against `queue`, creating queues named `{namespace}-…`.
pub async fn queue_contract(queue: Arc<dyn Queue>, namespace: &str) {
    let queue = queue.as_ref();
    batch_limits_are_enforced(queue, namespace).await;
    send_receive_delete_round_trip(queue, namespace).await;
    long_poll_returns_when_a_message_arrives(queue, namespace).await;
    visibility_timeout_redelivers_with_higher_receive_count(queue, namespace).await;
    change_visibility_zero_makes_visible_now(queue, namespace).await;
    delete_with_receipt_removes_for_good(queue, namespace).await;
    fifo_keeps_order_within_a_group(queue, namespace).await;
    fifo_holds_a_group_while_a_batch_is_in_flight(queue, namespace).await;
    fifo_serves_groups_in_parallel(queue, namespace).await;
    fifo_drops_duplicate_within_window_but_reports_sent(queue, namespace).await;
    fifo_refuses_delay_and_missing_group_or_dedup(queue, namespace).await;
    standard_queue_honours_per_message_delay(queue, namespace).await;
    redrive_moves_exhausted_message_to_dead_letter_queue(queue, namespace).await;
    depth_counts_visible_in_flight_and_delayed(queue, namespace).await;
}

/// A standard or FIFO queue (by `name`) without a dead-letter queue.
fn plain_spec(name: String, visibility_timeout: Duration) -> QueueSpec {
    QueueSpec {
        name,
        visibility_timeout,
        max_receive_count: 0,
        dead_letter_queue: None,
        retention: Duration::from_secs(3600),
    }
}

async fn create(queue: &dyn Queue, property: &str, spec: &QueueSpec) -> String {
    if let Err(error) = queue.ensure_queue(spec).await {
        panic!("{property}: ensure_queue({}) failed: {error}", spec.name);
    }
    spec.name.clone()
}

fn standard(body: &str) -> OutgoingMessage {
    OutgoingMessage::delayed(body.to_owned(), Duration::ZERO)
}

async fn send_all(
    queue: &dyn Queue,
    property: &str,
    name: &str,
    messages: Vec<OutgoingMessage>,
) -> Vec<String> {
    let count = messages.len();
    let outcomes = match queue.send_batch(name, messages).await {
        Ok(outcomes) => outcomes,
        Err(error) => panic!("{property}: send_batch to {name} failed: {error}"),
    };
    assert_eq!(
        outcomes.len(),
        count,
        "{property}: send_batch must answer one outcome per entry"
    );
    outcomes
        .into_iter()
        .map(|outcome| match outcome {
            SendOutcome::Sent { message_id } => message_id,
            SendOutcome::Failed { reason, .. } => {
                panic!("{property}: a valid send was refused: {reason}")
            }
        })
        .collect()
}

fn receive_request(max_messages: usize, wait: Duration, visibility: Duration) -> ReceiveRequest {
    ReceiveRequest {
        max_messages,
        wait,
        visibility_timeout: Some(visibility),
    }
}

async fn receive_once(
    queue: &dyn Queue,
    property: &str,
    name: &str,
    request: ReceiveRequest,
) -> Vec<ReceivedMessage> {
    match queue.receive(name, request).await {
        Ok(messages) => {
            assert!(
                messages.len() <= request.max_messages,
                "{property}: receive returned {} messages, more than max_messages {}",
                messages.len(),
                request.max_messages
            );
            messages
        }
        Err(error) => panic!("{property}: receive from {name} failed: {error}"),
    }
}

/// Receives until `count` messages arrived or `within` passed (receives may return fewer
/// messages than are visible, as SQS's do).
async fn receive_at_least(
    queue: &dyn Queue,
    property: &str,
    name: &str,
    count: usize,
    visibility: Duration,
    within: Duration,
) -> Vec<ReceivedMessage> {
    let deadline = Instant::now() + within;
    let mut received = Vec::new();
    while received.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let wait = left.min(Duration::from_secs(1));
        let request = receive_request((count - received.len()).min(MAX_BATCH), wait, visibility);
        received.extend(receive_once(queue, property, name, request).await);
    }
    assert!(
        received.len() >= count,
        "{property}: expected {count} messages from {name} within {within:?}, got {}",
        received.len()
    );
    received
}

async fn assert_nothing_visible(queue: &dyn Queue, property: &str, name: &str, wait: Duration) {
    let request = receive_request(MAX_BATCH, wait, Duration::from_secs(30));
    let received = receive_once(queue, property, name, request).await;
    assert!(
        received.is_empty(),
        "{property}: expected no visible message on {name}, got {:?}",
        received.iter().map(|m| &m.body).collect::<Vec<_>>()
    );
}

async fn delete_all(queue: &dyn Queue, property: &str, name: &str, messages: &[ReceivedMessage]) {
    for chunk in messages.chunks(MAX_BATCH) {
        let handles = chunk.iter().map(|m| m.receipt_handle.clone()).collect();
        let outcomes = match queue.delete_batch(name, handles).await {
            Ok(outcomes) => outcomes,
            Err(error) => panic!("{property}: delete_batch on {name} failed: {error}"),
        };
        assert_eq!(
            outcomes.len(),
            chunk.len(),
            "{property}: delete_batch must answer one outcome per entry"
        );
        for outcome in outcomes {
            assert_eq!(
                outcome,
                DeleteOutcome::Deleted,
                "{property}: deleting with a fresh receipt handle must succeed"
            );
        }
    }
}

async fn depth(queue: &dyn Queue, property: &str, name: &str) -> QueueDepth {
    match queue.depth(name).await {
        Ok(depth) => depth,
        Err(error) => panic!("{property}: depth of {name} failed: {error}"),
    }
}

/// Waits (up to 5 s; SQS's counts are approximate and lag) for the depth to read `expected`.
async fn eventually_depth(queue: &dyn Queue, property: &str, name: &str, expected: QueueDepth) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let current = depth(queue, property, name).await;
        if current == expected {
            return;
        }
        if Instant::now() >= deadline {
            panic!("{property}: depth of {name} is {current:?}, expected {expected:?}");
        }
        sleep(Duration::from_millis(200)).await;
    }
}

fn is_invalid_request<T>(result: &Result<T, Error>) -> bool {
    matches!(result, Err(Error::InvalidRequest(_)))
}

/// Sends, receives and deletes refuse more than ten entries (and receives refuse zero).
pub async fn batch_limits_are_enforced(queue: &dyn Queue, namespace: &str) {
    const P: &str = "batch_limits_are_enforced";
    let name = create(
        queue,
        P,
        &plain_spec(format!("{namespace}-limits"), Duration::from_secs(30)),
    )
    .await;
    let eleven = (0..11).map(|i| standard(&format!("m{i}"))).collect();
    let refused = queue.send_batch(&name, eleven).await;
    assert!(
        is_invalid_request(&refused),
        "{P}: a send of 11 entries must fail with InvalidRequest, got {refused:?}"
    );
    let empty = queue.send_batch(&name, Vec::new()).await;
    assert!(
        is_invalid_request(&empty),
        "{P}: a send of no entries must fail with InvalidRequest, got {empty:?}"
    );
    let too_many = queue
        .receive(
            &name,
            receive_request(11, Duration::ZERO, Duration::from_secs(1)),
        )
        .await;
    assert!(
        is_invalid_request(&too_many),
        "{P}: a receive of 11 must fail with InvalidRequest, got {too_many:?}"
    );
    let zero = queue
        .receive(
            &name,
            receive_request(0, Duration::ZERO, Duration::from_secs(1)),
        )
        .await;
    assert!(
        is_invalid_request(&zero),
        "{P}: a receive of 0 must fail with InvalidRequest, got {zero:?}"
    );
    let handles = (0..11).map(|i| format!("bogus-{i}")).collect();
    let deletes = queue.delete_batch(&name, handles).await;
    assert!(
        is_invalid_request(&deletes),
        "{P}: a delete of 11 entries must fail with InvalidRequest, got {deletes:?}"
    );
    let ten = (0..10).map(|i| standard(&format!("m{i}"))).collect();
    let ids = send_all(queue, P, &name, ten).await;
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        10,
        "{P}: message ids must be distinct"
    );
    let received = receive_at_least(queue, P, &name, 10, Duration::from_secs(30), secs(5)).await;
    delete_all(queue, P, &name, &received).await;
}

/// What is sent is received once with receive count 1, and a delete removes it.
pub async fn send_receive_delete_round_trip(queue: &dyn Queue, namespace: &str) {
    const P: &str = "send_receive_delete_round_trip";
    let name = create(
        queue,
        P,
        &plain_spec(format!("{namespace}-roundtrip"), Duration::from_secs(30)),
    )
    .await;
    let bodies = ["alpha", "beta", "gamma \u{1F98A} ünïcode"];
    let ids = send_all(
        queue,
        P,
        &name,
        bodies.iter().map(|b| standard(b)).collect(),
    )
    .await;
    let received = receive_at_least(queue, P, &name, 3, Duration::from_secs(30), secs(5)).await;
    assert_eq!(received.len(), 3, "{P}: received more messages than sent");
    let by_id: BTreeMap<&str, &ReceivedMessage> = received
        .iter()
        .map(|m| (m.message_id.as_str(), m))
        .collect();
    for (id, body) in ids.iter().zip(bodies) {
        let message = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{P}: message id {id} from the send was not received"));
        assert_eq!(message.body, body, "{P}: body changed in transit");
        assert_eq!(message.receive_count, 1, "{P}: first receive must count 1");
        assert_eq!(message.group_id, None, "{P}: standard message has no group");
        assert!(message.sent_at_ms > 0, "{P}: sent_at_ms must be set");
    }
    delete_all(queue, P, &name, &received).await;
    assert_nothing_visible(queue, P, &name, Duration::from_millis(500)).await;
    eventually_depth(queue, P, &name, QueueDepth::default()).await;
}

/// A waiting receive returns as soon as a message arrives, not at the end of its wait.
pub async fn long_poll_returns_when_a_message_arrives(queue: &dyn Queue, namespace: &str) {
    const P: &str = "long_poll_returns_when_a_message_arrives";
    let name = create(
        queue,
        P,
        &plain_spec(format!("{namespace}-longpoll"), Duration::from_secs(30)),
    )
    .await;
    let started = Instant::now();
    let request = receive_request(1, Duration::from_secs(10), Duration::from_secs(30));
    let (received, ()) = tokio::join!(receive_once(queue, P, &name, request), async {
        sleep(Duration::from_millis(500)).await;
        send_all(queue, P, &name, vec![standard("late")]).await;
    });
    let elapsed = started.elapsed();
    assert_eq!(
        received.len(),
        1,
        "{P}: the long poll ended after {elapsed:?} without the message sent during it"
    );
    assert_eq!(received[0].body, "late");
    assert!(
        elapsed < Duration::from_secs(5),
        "{P}: the long poll returned after {elapsed:?}, not when the message arrived"
    );
    delete_all(queue, P, &name, &received).await;
}

/// An undeleted message comes back after its visibility timeout with receive count 2.
pub async fn visibility_timeout_redelivers_with_higher_receive_count(
    queue: &dyn Queue,
    namespace: &str,
) {
    const P: &str = "visibility_timeout_redelivers_with_higher_receive_count";
    let name = create(
        queue,
        P,
        &plain_spec(format!("{namespace}-visibility"), Duration::from_secs(30)),
    )
    .await;
    let ids = send_all(queue, P, &name, vec![standard("again")]).await;
    let first = receive_at_least(queue, P, &name, 1, Duration::from_secs(1), secs(5)).await;
    assert_eq!(first[0].message_id, ids[0]);
    assert_eq!(first[0].receive_count, 1, "{P}: first receive must count 1");
    assert_nothing_visible(queue, P, &name, Duration::ZERO).await;
    let second = receive_at_least(queue, P, &name, 1, Duration::from_secs(30), secs(5)).await;
    assert_eq!(
        second[0].message_id, ids[0],
        "{P}: the redelivered message must keep its id"
    );
    assert_eq!(second[0].body, "again");
    assert_eq!(second[0].receive_count, 2, "{P}: a redelivery must count 2");
    assert_ne!(
        first[0].receipt_handle, second[0].receipt_handle,
        "{P}: each receive must hand out a new receipt handle"
    );
    delete_all(queue, P, &name, &second).await;
}

/// `change_visibility(…, 0)` makes an in-flight message visible at once.
pub async fn change_visibility_zero_makes_visible_now(queue: &dyn Queue, namespace: &str) {
    const P: &str = "change_visibility_zero_makes_visible_now";
    let name = create(
        queue,
        P,
        &plain_spec(format!("{namespace}-changevis"), Duration::from_secs(30)),
    )
    .await;
    send_all(queue, P, &name, vec![standard("release me")]).await;
    let first = receive_at_least(queue, P, &name, 1, Duration::from_secs(60), secs(5)).await;
    if let Err(error) = queue
        .change_visibility(&name, &first[0].receipt_handle, Duration::ZERO)
        .await
    {
        panic!("{P}: change_visibility(0) failed: {error}");
    }
    let started = Instant::now();
    let second = receive_at_least(queue, P, &name, 1, Duration::from_secs(30), secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{P}: the message took {:?} to come back",
        started.elapsed()
    );
    assert_eq!(second[0].message_id, first[0].message_id);
    assert_eq!(second[0].receive_count, 2, "{P}: a redelivery must count 2");
    delete_all(queue, P, &name, &second).await;
}

/// A deleted message does not come back after its visibility timeout would have passed.
pub async fn delete_with_receipt_removes_for_good(queue: &dyn Queue, namespace: &str) {
    const P: &str = "delete_with_receipt_removes_for_good";
    let name = create(
        queue,
        P,
        &plain_spec(format!("{namespace}-delete"), Duration::from_secs(30)),
    )
    .await;
    send_all(queue, P, &name, vec![standard("gone"), standard("kept")]).await;
    let received = receive_at_least(queue, P, &name, 2, Duration::from_secs(1), secs(5)).await;
    let (gone, kept): (Vec<_>, Vec<_>) = received.into_iter().partition(|m| m.body == "gone");
    assert_eq!(gone.len(), 1, "{P}: expected the message `gone` once");
    assert_eq!(kept.len(), 1, "{P}: expected the message `kept` once");
    delete_all(queue, P, &name, &gone).await;
    sleep(Duration::from_millis(1500)).await;
    let again = receive_at_least(queue, P, &name, 1, Duration::from_secs(30), secs(5)).await;
    assert!(
        again.iter().all(|m| m.body == "kept"),
        "{P}: a deleted message was delivered again"
    );
    assert_eq!(again[0].receive_count, 2);
    delete_all(queue, P, &name, &again).await;
    assert_nothing_visible(queue, P, &name, Duration::from_millis(1500)).await;
}

fn fifo(body: &str, group: &str) -> OutgoingMessage {
    OutgoingMessage::fifo(body.to_owned(), group, &format!("dedup-{group}-{body}"))
}

/// FIFO messages of one group arrive in send order, across sends and receives.
pub async fn fifo_keeps_order_within_a_group(queue: &dyn Queue, namespace: &str) {
    const P: &str = "fifo_keeps_order_within_a_group";
    let name = create(
        queue,
        P,
        &plain_spec(format!("{namespace}-order.fifo"), Duration::from_secs(30)),
    )
    .await;
    let bodies: Vec<String> = (0..15).map(|i| format!("m{i:02}")).collect();
    for chunk in bodies.chunks(5) {
        send_all(
            queue,
            P,
            &name,
            chunk.iter().map(|b| fifo(b, "g1")).collect(),
        )
        .await;
    }
    let mut seen = Vec::new();
    let deadline = Instant::now() + secs(10);
    while seen.len() < bodies.len() && Instant::now() < deadline {
        let request = receive_request(4, Duration::from_secs(1), Duration::from_secs(30));
        let batch = receive_once(queue, P, &name, request).await;
        for message in &batch {
            assert_eq!(message.group_id.as_deref(), Some("g1"), "{P}: group lost");
            seen.push(message.body.clone());
        }
        delete_all(queue, P, &name, &batch).await;
    }
    assert_eq!(seen, bodies, "{P}: messages of one group out of order");
}

/// While a batch of a group is in flight no other message of that group is handed out; when
/// its visibility expires the group restarts from its first undeleted message.
pub async fn fifo_holds_a_group_while_a_batch_is_in_flight(queue: &dyn Queue, namespace: &str) {
    const P: &str = "fifo_holds_a_group_while_a_batch_is_in_flight";
    let name = create(
        queue,
        P,
        &plain_spec(
            format!("{namespace}-inflight.fifo"),
            Duration::from_secs(30),
        ),
    )
    .await;
    let bodies = ["a0", "a1", "a2", "a3"];
    send_all(
        queue,
        P,
        &name,
        bodies.iter().map(|b| fifo(b, "ga")).collect(),
    )
    .await;
    let first = receive_once(
        queue,
        P,
        &name,
        receive_request(2, Duration::from_secs(2), Duration::from_secs(2)),
    )
    .await;
    assert!(!first.is_empty(), "{P}: nothing received from a full queue");
    assert_eq!(first[0].body, "a0", "{P}: the group must start at its head");
    assert_nothing_visible(queue, P, &name, Duration::from_millis(500)).await;
    let again = receive_at_least(queue, P, &name, 1, Duration::from_secs(30), secs(6)).await;
    assert_eq!(
        again[0].body, "a0",
        "{P}: after the in-flight batch expired the group must restart at its head"
    );
    assert_eq!(again[0].receive_count, 2, "{P}: a redelivery must count 2");
    let mut seen: Vec<String> = again.iter().map(|m| m.body.clone()).collect();
    delete_all(queue, P, &name, &again).await;
    let deadline = Instant::now() + secs(5);
    while seen.len() < bodies.len() && Instant::now() < deadline {
        let request = receive_request(MAX_BATCH, Duration::from_secs(1), Duration::from_secs(30));
        let batch = receive_once(queue, P, &name, request).await;
        seen.extend(batch.iter().map(|m| m.body.clone()));
        delete_all(queue, P, &name, &batch).await;
    }
    assert_eq!(seen, bodies, "{P}: group order broken after a redelivery");
}

/// A group in flight does not hold back other groups.
pub async fn fifo_serves_groups_in_parallel(queue: &dyn Queue, namespace: &str) {
    const P: &str = "fifo_serves_groups_in_parallel";
    let name = create(
        queue,
        P,
        &plain_spec(format!("{namespace}-groups.fifo"), Duration::from_secs(30)),
    )
    .await;
    let groups = ["g-a", "g-b", "g-c"];
    let mut messages = Vec::new();
    for group in groups {
        for index in 0..2 {
            messages.push(fifo(&format!("{group}-{index}"), group));
        }
    }
    send_all(queue, P, &name, messages).await;
    let mut in_flight = Vec::new();
    let deadline = Instant::now() + secs(6);
    while in_flight.len() < groups.len() && Instant::now() < deadline {
        let request = receive_request(1, Duration::from_secs(1), Duration::from_secs(30));
        in_flight.extend(receive_once(queue, P, &name, request).await);
    }
    let served: BTreeSet<&str> = in_flight
        .iter()
        .filter_map(|m| m.group_id.as_deref())
        .collect();
    assert_eq!(
        in_flight.len(),
        groups.len(),
        "{P}: with one message of each group in flight, the other groups must still be served"
    );
    assert_eq!(
        served.len(),
        groups.len(),
        "{P}: two messages of one group were in flight at once"
    );
    for message in &in_flight {
        let group = message.group_id.as_deref().unwrap_or_default();
        assert_eq!(
            message.body,
            format!("{group}-0"),
            "{P}: each group must be served from its head"
        );
    }
    assert_nothing_visible(queue, P, &name, Duration::from_millis(500)).await;
    delete_all(queue, P, &name, &in_flight).await;
    let rest = receive_at_least(queue, P, &name, 3, Duration::from_secs(30), secs(5)).await;
    delete_all(queue, P, &name, &rest).await;
}

/// A FIFO send repeating a deduplication id inside the window is reported sent but dropped.
pub async fn fifo_drops_duplicate_within_window_but_reports_sent(
    queue: &dyn Queue,
    namespace: &str,
) {
    const P: &str = "fifo_drops_duplicate_within_window_but_reports_sent";
    let name = create(
        queue,
        P,
        &plain_spec(format!("{namespace}-dedup.fifo"), Duration::from_secs(30)),
    )
    .await;
    let original = OutgoingMessage::fifo("original".into(), "gd", "same-id");
    let duplicate = OutgoingMessage::fifo("duplicate".into(), "gd", "same-id");
    let other = OutgoingMessage::fifo("other".into(), "gd", "other-id");
    send_all(queue, P, &name, vec![original]).await;
    send_all(queue, P, &name, vec![duplicate, other]).await;
    let received = receive_at_least(queue, P, &name, 2, Duration::from_secs(30), secs(5)).await;
    let bodies: Vec<&str> = received.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(
        bodies,
        ["original", "other"],
        "{P}: the duplicate must be dropped and the rest kept in order"
    );
    delete_all(queue, P, &name, &received).await;
    assert_nothing_visible(queue, P, &name, Duration::from_millis(500)).await;
}

/// FIFO queues refuse a per-message delay and a missing group or deduplication id.
pub async fn fifo_refuses_delay_and_missing_group_or_dedup(queue: &dyn Queue, namespace: &str) {
    const P: &str = "fifo_refuses_delay_and_missing_group_or_dedup";
    let name = create(
        queue,
        P,
        &plain_spec(format!("{namespace}-refuse.fifo"), Duration::from_secs(30)),
    )
    .await;
    let mut delayed = OutgoingMessage::fifo("delayed".into(), "gr", "d1");
    delayed.delay = Duration::from_secs(1);
    let mut no_group = OutgoingMessage::fifo("no group".into(), "gr", "d2");
    no_group.group_id = None;
    let mut no_dedup = OutgoingMessage::fifo("no dedup".into(), "gr", "d3");
    no_dedup.dedup_id = None;
    for (what, message) in [
        ("a per-message delay", delayed),
        ("a missing group id", no_group),
        ("a missing deduplication id", no_dedup),
    ] {
        match queue.send_batch(&name, vec![message]).await {
            Err(Error::InvalidRequest(_)) => {}
            Ok(outcomes) => assert!(
                matches!(
                    outcomes.as_slice(),
                    [SendOutcome::Failed {
                        retryable: false,
                        ..
                    }]
                ),
                "{P}: a FIFO send with {what} must be refused, got {outcomes:?}"
            ),
            Err(error) => panic!("{P}: a FIFO send with {what} must be InvalidRequest: {error}"),
        }
    }
    assert_nothing_visible(queue, P, &name, Duration::from_millis(1500)).await;
}

/// A standard-queue message sent with a delay stays invisible until the delay passes.
pub async fn standard_queue_honours_per_message_delay(queue: &dyn Queue, namespace: &str) {
    const P: &str = "standard_queue_honours_per_message_delay";
    let name = create(
        queue,
        P,
        &plain_spec(format!("{namespace}-delay"), Duration::from_secs(30)),
    )
    .await;
    let sent_at = Instant::now();
    send_all(
        queue,
        P,
        &name,
        vec![OutgoingMessage::delayed("later".into(), secs(2))],
    )
    .await;
    assert_nothing_visible(queue, P, &name, Duration::ZERO).await;
    let received = receive_at_least(queue, P, &name, 1, Duration::from_secs(30), secs(6)).await;
    let elapsed = sent_at.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500),
        "{P}: a message delayed 2 s arrived after {elapsed:?}"
    );
    assert_eq!(received[0].body, "later");
    delete_all(queue, P, &name, &received).await;
}

/// After `max_receive_count` receives, a message moves to the dead-letter queue.
pub async fn redrive_moves_exhausted_message_to_dead_letter_queue(
    queue: &dyn Queue,
    namespace: &str,
) {
    const P: &str = "redrive_moves_exhausted_message_to_dead_letter_queue";
    let dead_letter = create(
        queue,
        P,
        &plain_spec(format!("{namespace}-redrive-dlq"), Duration::from_secs(30)),
    )
    .await;
    let spec = QueueSpec {
        name: format!("{namespace}-redrive"),
        visibility_timeout: Duration::from_secs(1),
        max_receive_count: 2,
        dead_letter_queue: Some(dead_letter.clone()),
        retention: Duration::from_secs(3600),
    };
    let name = create(queue, P, &spec).await;
    let ids = send_all(queue, P, &name, vec![standard("poison")]).await;
    for attempt in 1..=2 {
        let received = receive_at_least(queue, P, &name, 1, Duration::from_secs(1), secs(5)).await;
        assert_eq!(received[0].message_id, ids[0]);
        assert_eq!(
            received[0].receive_count, attempt,
            "{P}: receive count must grow by one per receive"
        );
    }
    // Visibility of the second receive runs out after ~1 s; the third receive must redrive.
    assert_nothing_visible(queue, P, &name, Duration::from_secs(3)).await;
    let moved = receive_at_least(queue, P, &dead_letter, 1, Duration::from_secs(30), secs(5)).await;
    assert_eq!(
        moved[0].body, "poison",
        "{P}: the dead-letter queue must hold the exhausted message"
    );
    delete_all(queue, P, &dead_letter, &moved).await;
}

/// `depth` counts visible, in-flight and delayed messages.
pub async fn depth_counts_visible_in_flight_and_delayed(queue: &dyn Queue, namespace: &str) {
    const P: &str = "depth_counts_visible_in_flight_and_delayed";
    let name = create(
        queue,
        P,
        &plain_spec(format!("{namespace}-depth"), Duration::from_secs(30)),
    )
    .await;
    eventually_depth(queue, P, &name, QueueDepth::default()).await;
    let mut messages: Vec<OutgoingMessage> = (0..4).map(|i| standard(&format!("d{i}"))).collect();
    messages.push(OutgoingMessage::delayed("delayed".into(), secs(60)));
    send_all(queue, P, &name, messages).await;
    let expected = QueueDepth {
        visible: 4,
        in_flight: 0,
        delayed: 1,
    };
    eventually_depth(queue, P, &name, expected).await;
    let received = receive_at_least(queue, P, &name, 2, Duration::from_secs(60), secs(5)).await;
    let in_flight = received.len() as u64;
    let expected = QueueDepth {
        visible: 4 - in_flight,
        in_flight,
        delayed: 1,
    };
    eventually_depth(queue, P, &name, expected).await;
    delete_all(queue, P, &name, &received).await;
    let expected = QueueDepth {
        visible: 4 - in_flight,
        in_flight: 0,
        delayed: 1,
    };
    eventually_depth(queue, P, &name, expected).await;
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}
