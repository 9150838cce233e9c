//! Idempotency records against the real embedded table, with a controllable clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use worldfleet_embedded::testing::TempStore;
use worldfleet_kit::{Failure, IdempotencyConfig, IdempotencyError, IdempotencyStore, Outcome};
use worldfleet_ports::{ManualClock, TableSpec};

struct Fixture {
    _store: TempStore,
    clock: ManualClock,
    records: IdempotencyStore,
}

async fn fixture() -> Fixture {
    let (store, clock) = TempStore::manual(1_763_700_000_000);
    let table = store.table();
    table
        .ensure_table(&TableSpec {
            name: "idempotency".into(),
        })
        .await
        .unwrap();
    let records = IdempotencyStore::new(
        table,
        "idempotency",
        Arc::clone(&store.clock),
        IdempotencyConfig::default(),
    );
    Fixture {
        _store: store,
        clock,
        records,
    }
}

#[tokio::test]
async fn runs_once_then_replays_the_saved_result() {
    let fixture = fixture().await;
    let runs = AtomicU32::new(0);
    let work = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>(41 + runs.load(Ordering::SeqCst))
    };
    let first = fixture
        .records
        .run("k", b"payload", Duration::from_secs(30), work)
        .await
        .unwrap();
    let second = fixture
        .records
        .run("k", b"payload", Duration::from_secs(30), work)
        .await
        .unwrap();
    assert_eq!(first, Outcome::Executed(42));
    assert_eq!(second, Outcome::Replayed(42));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refuses_a_different_payload_under_the_same_key() {
    let fixture = fixture().await;
    fixture
        .records
        .run("k", b"one", Duration::from_secs(30), || async {
            Ok::<_, String>(1)
        })
        .await
        .unwrap();
    let error = fixture
        .records
        .run("k", b"two", Duration::from_secs(30), || async {
            Ok::<_, String>(2)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, IdempotencyError::PayloadMismatch { .. }),
        "{error}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn in_progress_blocks_until_its_holder_runs_out_of_time() {
    let fixture = fixture().await;
    let (entered_sender, entered) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let records = fixture.records.clone();
    let holder = tokio::spawn(async move {
        records
            .run("k", b"p", Duration::from_secs(5), || async move {
                let _ = entered_sender.send(());
                let _ = released.await;
                Ok::<_, String>(String::from("late"))
            })
            .await
    });
    entered.await.unwrap();
    let blocked = fixture
        .records
        .run("k", b"p", Duration::from_secs(5), || async {
            Ok::<_, String>(String::from("second"))
        })
        .await
        .unwrap_err();
    assert!(matches!(blocked, IdempotencyError::InProgress { .. }));
    assert!(blocked.is_retryable());
    // The holder's time (5 s) runs out: its claim no longer blocks.
    fixture.clock.advance(5_001);
    let taken_over = fixture
        .records
        .run("k", b"p", Duration::from_secs(5), || async {
            Ok::<_, String>(String::from("second"))
        })
        .await
        .unwrap();
    assert_eq!(taken_over, Outcome::Executed(String::from("second")));
    release.send(()).unwrap();
    // The slow holder finishes after losing its claim; its completion must not clobber ours.
    let _ = holder.await.unwrap();
    let replay = fixture
        .records
        .run("k", b"p", Duration::from_secs(5), || async {
            Ok::<_, String>(String::from("third"))
        })
        .await
        .unwrap();
    assert_eq!(
        replay,
        Outcome::Replayed(String::from("second")),
        "the late holder must not overwrite"
    );
}

#[tokio::test]
async fn failed_work_releases_the_key_and_expired_records_run_again() {
    let fixture = fixture().await;
    let failed = fixture
        .records
        .run("k", b"p", Duration::from_secs(5), || async {
            Err::<u8, _>("boom")
        })
        .await
        .unwrap_err();
    assert!(matches!(failed, IdempotencyError::Work("boom")));
    let retried = fixture
        .records
        .run("k", b"p", Duration::from_secs(5), || async {
            Ok::<_, &str>(7)
        })
        .await
        .unwrap();
    assert_eq!(retried, Outcome::Executed(7));
    // After the record's lifetime (1 h by default) the key is fresh again: checked in code.
    fixture.clock.advance(3_600_001);
    let fresh = fixture
        .records
        .run("k", b"other payload", Duration::from_secs(5), || async {
            Ok::<_, &str>(8)
        })
        .await
        .unwrap();
    assert_eq!(fresh, Outcome::Executed(8));
}
