//! `worldfleet dlq` on an embedded store: it counts and shows what a dead-letter queue holds,
//! `--redrive` sends it back to its work queue, and a queue name that is not a work queue is
//! refused with the list of those that are.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use worldfleet_domain::names::{COMPOSE_QUEUE, dead_letter_queue};
use worldfleet_embedded::{EmbeddedStore, StoreOptions};
use worldfleet_ports::{OutgoingMessage, Queue, ReceiveRequest, SystemClock};
use worldfleet_runtime::resources::{QueueSettings, declare};

fn dlq(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_worldfleet"))
        .arg("dlq")
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .output()
        .expect("run worldfleet dlq")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A store with the declared queues where three compose requests ran out of receives.
async fn store_with_dead_letters(dir: &Path) {
    let store = EmbeddedStore::open(dir, Arc::new(SystemClock), StoreOptions::default()).unwrap();
    let queue = store.queue();
    let settings = QueueSettings {
        max_receive_count: 1,
        ..QueueSettings::default()
    };
    declare(queue.as_ref(), store.table().as_ref(), settings)
        .await
        .unwrap();
    let messages = ["one", "two", "three"]
        .iter()
        .enumerate()
        .map(|(index, body)| {
            OutgoingMessage::fifo(
                format!("{{\"n\":\"{body}\"}}"),
                "realm/zone-1",
                &index.to_string(),
            )
        })
        .collect();
    queue.send_batch(COMPOSE_QUEUE, messages).await.unwrap();
    let fail_fast = ReceiveRequest {
        visibility_timeout: Some(Duration::ZERO),
        ..ReceiveRequest::batch(Duration::ZERO)
    };
    while !queue
        .receive(COMPOSE_QUEUE, fail_fast)
        .await
        .unwrap()
        .is_empty()
    {}
    let dead = queue
        .depth(&dead_letter_queue(COMPOSE_QUEUE))
        .await
        .unwrap();
    assert_eq!(dead.total(), 3);
    drop(queue);
    store.close();
}

#[tokio::test]
async fn dead_letters_are_counted_shown_and_redriven() {
    let dir = tempfile::tempdir().unwrap();
    store_with_dead_letters(dir.path()).await;

    let shown = dlq(dir.path(), &["--queue", COMPOSE_QUEUE, "--show", "2"]);
    assert!(shown.status.success(), "{shown:?}");
    let text = stdout(&shown);
    assert!(
        text.contains("compose.fifo") && text.contains("3 in compose-dlq.fifo"),
        "{text}"
    );
    assert!(
        text.contains("group realm/zone-1  {\"n\":\"one\"}"),
        "{text}"
    );
    assert!(!text.contains("three"), "--show 2 shows two: {text}");

    let moved = dlq(dir.path(), &["--redrive", "--json"]);
    assert!(moved.status.success(), "{moved:?}");
    let text = stdout(&moved);
    assert!(
        text.contains("\"queue\":\"compose.fifo\",\"moved\":3,\"failed\":0"),
        "{text}"
    );

    let after = dlq(dir.path(), &["--json"]);
    assert!(
        stdout(&after).contains("\"dead_letter_queue\":\"compose-dlq.fifo\",\"depth\":0"),
        "{}",
        stdout(&after)
    );
    let store =
        EmbeddedStore::open(dir.path(), Arc::new(SystemClock), StoreOptions::default()).unwrap();
    let queue = store.queue();
    let back = queue
        .receive(COMPOSE_QUEUE, ReceiveRequest::batch(Duration::ZERO))
        .await
        .unwrap();
    let bodies: Vec<&str> = back.iter().map(|message| message.body.as_str()).collect();
    assert_eq!(
        bodies,
        ["{\"n\":\"one\"}", "{\"n\":\"two\"}", "{\"n\":\"three\"}"],
        "back in the work queue, in order"
    );
    drop(queue);
    store.close();
}

#[test]
fn a_queue_that_is_not_a_work_queue_is_refused_with_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let refused = dlq(dir.path(), &["--queue", "compose-dlq.fifo"]);
    assert!(!refused.status.success());
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        text.contains("not a work queue") && text.contains("intake.fifo"),
        "{text}"
    );
}
