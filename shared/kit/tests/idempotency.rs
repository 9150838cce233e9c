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

/// A table whose first put is applied and then answered with a timeout, as when the store's
/// answer is lost on the way back.
struct LosesFirstPutAnswer {
    inner: Arc<dyn worldfleet_ports::Table>,
    lost: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl worldfleet_ports::Table for LosesFirstPutAnswer {
    async fn ensure_table(&self, spec: &TableSpec) -> worldfleet_ports::Result<()> {
        self.inner.ensure_table(spec).await
    }
    async fn get(
        &self,
        table: &str,
        key: &worldfleet_ports::Key,
    ) -> worldfleet_ports::Result<Option<worldfleet_ports::Item>> {
        self.inner.get(table, key).await
    }
    async fn batch_get(
        &self,
        table: &str,
        keys: &[worldfleet_ports::Key],
    ) -> worldfleet_ports::Result<Vec<worldfleet_ports::Item>> {
        self.inner.batch_get(table, keys).await
    }
    async fn put(
        &self,
        table: &str,
        item: worldfleet_ports::Item,
        condition: Option<worldfleet_ports::Condition>,
    ) -> worldfleet_ports::Result<()> {
        self.inner.put(table, item, condition).await?;
        if !self.lost.swap(true, Ordering::SeqCst) {
            return Err(worldfleet_ports::Error::Timeout("answer lost".into()));
        }
        Ok(())
    }
    async fn update(
        &self,
        table: &str,
        key: &worldfleet_ports::Key,
        update: worldfleet_ports::Update,
        condition: Option<worldfleet_ports::Condition>,
    ) -> worldfleet_ports::Result<worldfleet_ports::Item> {
        self.inner.update(table, key, update, condition).await
    }
    async fn delete(
        &self,
        table: &str,
        key: &worldfleet_ports::Key,
        condition: Option<worldfleet_ports::Condition>,
    ) -> worldfleet_ports::Result<Option<worldfleet_ports::Item>> {
        self.inner.delete(table, key, condition).await
    }
    async fn query(
        &self,
        table: &str,
        query: &worldfleet_ports::Query,
    ) -> worldfleet_ports::Result<worldfleet_ports::QueryPage> {
        self.inner.query(table, query).await
    }
    async fn batch_write(
        &self,
        table: &str,
        writes: Vec<worldfleet_ports::BatchWrite>,
    ) -> worldfleet_ports::Result<()> {
        self.inner.batch_write(table, writes).await
    }
    async fn transact(
        &self,
        operations: Vec<worldfleet_ports::TransactWrite>,
    ) -> worldfleet_ports::Result<()> {
        self.inner.transact(operations).await
    }
}

#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_recognised_as_ours_and_does_not_block_the_key() {
    let (store, _clock) = TempStore::manual(1_763_700_000_000);
    let table = store.table();
    table
        .ensure_table(&TableSpec {
            name: "idempotency".into(),
        })
        .await
        .unwrap();
    let lossy = Arc::new(LosesFirstPutAnswer {
        inner: table,
        lost: Default::default(),
    });
    let records = IdempotencyStore::new(
        lossy,
        "idempotency",
        Arc::clone(&store.clock),
        IdempotencyConfig::default(),
    );
    let runs = AtomicU32::new(0);
    let work = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>(7)
    };
    // The claim was applied though its answer was lost: the work runs now, once, instead of
    // the key reading IN_PROGRESS to every retry until the claim expires.
    let first = records
        .run("k", b"payload", Duration::from_secs(30), work)
        .await
        .unwrap();
    assert_eq!(first, Outcome::Executed(7));
    let again = records
        .run("k", b"payload", Duration::from_secs(30), work)
        .await
        .unwrap();
    assert_eq!(again, Outcome::Replayed(7));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
