//! Set-up and inspection helpers for tests that drive stages over an in-process store.
//!
//! Stage crates' integration tests open an embedded store with a manual clock, declare the
//! queues and tables their stages use, build the events and deliveries they hand to handlers,
//! then run handlers and look at what they left behind. Those parts live here, once; opening
//! the store stays with each test (this crate does not depend on an adapter). Every helper panics on a port error, naming what it
//! was doing: they are for tests only.

use std::sync::Arc;
use std::time::Duration;

use worldfleet_domain::names::dead_letter_queue;
use worldfleet_domain::{AcceptedEvent, EventPayload, PartitionUid};
use worldfleet_ports::{
    Clock, Item, Query, Queue, QueueSpec, ReceiveRequest, ReceivedMessage, SortKeyRange, Table,
    TableSpec,
};

use crate::stage::{StageContext, StageHandler};

/// Visibility timeout of the work queues [`declare`] creates.
pub const TEST_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `tables`, and each of `queues` with its dead-letter queue
/// ([`dead_letter_queue`]), visibility [`TEST_VISIBILITY_TIMEOUT`].
pub async fn declare(context: &StageContext, tables: &[&str], queues: &[&str]) {
    for name in tables {
        context
            .table
            .ensure_table(&TableSpec {
                name: (*name).to_owned(),
            })
            .await
            .unwrap_or_else(|error| panic!("table {name} not created: {error}"));
    }
    for name in queues {
        let dead = dead_letter_queue(name);
        context
            .queue
            .ensure_queue(&QueueSpec::dead_letter(&dead))
            .await
            .unwrap_or_else(|error| panic!("queue {dead} not created: {error}"));
        context
            .queue
            .ensure_queue(&QueueSpec::with_dead_letter(
                name,
                &dead,
                TEST_VISIBILITY_TIMEOUT,
            ))
            .await
            .unwrap_or_else(|error| panic!("queue {name} not created: {error}"));
    }
}

/// A stage context over an opened store's `queue`, `table` and `clock`, with `tables` and
/// `queues` declared ([`declare`]).
pub async fn declared_context(
    queue: Arc<dyn Queue>,
    table: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    tables: &[&str],
    queues: &[&str],
) -> StageContext {
    let context = StageContext::new(queue, table, clock);
    declare(&context, tables, queues).await;
    context
}

/// An event intake accepted (and was sent) at `at_ms` from gateway `gw`: `actor` alone, no
/// faction, its kind that of `payload`.
pub fn accepted_event(
    event_id: impl Into<String>,
    partition: PartitionUid,
    actor: impl Into<String>,
    payload: EventPayload,
    at_ms: u64,
) -> AcceptedEvent {
    AcceptedEvent {
        event_id: event_id.into(),
        gateway: "gw".into(),
        partition,
        kind: payload.kind(),
        actor: actor.into(),
        participants: Vec::new(),
        faction: None,
        payload,
        sent_at_ms: at_ms,
        accepted_at_ms: at_ms,
    }
}

/// The first delivery of `body` as message `id` (receipt handle `receipt-<id>`) in message
/// group `group`, sent at `sent_at_ms`.
pub fn delivery(id: &str, body: String, group: &str, sent_at_ms: u64) -> ReceivedMessage {
    ReceivedMessage {
        message_id: id.to_owned(),
        receipt_handle: format!("receipt-{id}"),
        body,
        group_id: Some(group.to_owned()),
        receive_count: 1,
        sent_at_ms,
    }
}

/// `message` delivered `times` times at once, each copy under its own message id
/// (`<id>-<copy>`), as duplicate deliveries reach a stage.
pub fn copies(message: &ReceivedMessage, times: usize) -> Vec<ReceivedMessage> {
    (0..times)
        .map(|copy| ReceivedMessage {
            message_id: format!("{}-{copy}", message.message_id),
            ..message.clone()
        })
        .collect()
}

/// Hands `records` to `stage` as one batch (30 s remaining) and asserts that every record was
/// handled.
pub async fn handle_all(stage: &dyn StageHandler, records: &[ReceivedMessage]) {
    let report = stage.handle_batch(records, Duration::from_secs(30)).await;
    assert!(
        report.all_succeeded(),
        "{} did not handle every record: {report:?}",
        stage.name()
    );
}

/// Receives and deletes every message visible on `name` now, in the order received.
pub async fn drain(queue: &dyn Queue, name: &str) -> Vec<ReceivedMessage> {
    let mut all = Vec::new();
    loop {
        let batch = queue
            .receive(name, ReceiveRequest::batch(Duration::ZERO))
            .await
            .unwrap_or_else(|error| panic!("receive from {name}: {error}"));
        if batch.is_empty() {
            return all;
        }
        let handles = batch
            .iter()
            .map(|message| message.receipt_handle.clone())
            .collect();
        queue
            .delete_batch(name, handles)
            .await
            .unwrap_or_else(|error| panic!("delete from {name}: {error}"));
        all.extend(batch);
    }
}

/// The items of partition `pk` of `table` whose sort key starts with `prefix` (one page).
pub async fn items_with_prefix(table: &dyn Table, name: &str, pk: &str, prefix: &str) -> Vec<Item> {
    table
        .query(
            name,
            &Query::partition(pk).range(SortKeyRange::Prefix(prefix.into())),
        )
        .await
        .unwrap_or_else(|error| panic!("query {name} {pk} {prefix}: {error}"))
        .items
}
