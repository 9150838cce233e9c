//! prune against the real embedded store with a controllable clock: each rule's test fails
//! when the rule is taken out.

use std::sync::Arc;
use std::time::Duration;

use worldfleet_domain::names::{
    ALL_TABLES, CANON_TABLE, FEEDS_TABLE, MEMORY_TABLE, PRUNE_QUEUE, PRUNE_TABLE,
};
use worldfleet_domain::{EventKind, FeedEntry, FeedId, FeedPage, PartitionUid, PruneRequest};
use worldfleet_embedded::testing::TempStore;
use worldfleet_kit::StageContext;
use worldfleet_kit::activity::{activity_key, touch_region};
use worldfleet_kit::testing::declared_context;
use worldfleet_ports::{
    BatchWrite, Clock, Condition, Item, Key, ManualClock, Query, QueryPage, ReceiveRequest,
    ReceivedMessage, Result as PortResult, SortKeyRange, Table, TableSpec, TransactWrite, Update,
};
use worldfleet_prune::tombstone::head_key;
use worldfleet_prune::{Prune, PruneConfig};
use worldfleet_tables::feed::{FEED_RETENTION, commit_checkpoint, trimmed_through};
use worldfleet_tables::memory::{self, OBSERVATION_PREFIX};
use worldfleet_tables::plan::{page_item, page_sort_key, plan_key};
use worldfleet_tables::{Error as FeedError, read_feed};

const DAY_MS: u64 = 24 * 3600 * 1000;
const START_MS: u64 = 1_763_700_000_000;

struct Fixture {
    store: TempStore,
    clock: ManualClock,
    context: StageContext,
}

impl Fixture {
    async fn new() -> Self {
        let (store, clock) = TempStore::manual(START_MS);
        let context = declared_context(
            store.queue(),
            store.table(),
            Arc::clone(&store.clock),
            &ALL_TABLES,
            &[PRUNE_QUEUE],
        )
        .await;
        Self {
            store,
            clock,
            context,
        }
    }

    fn table(&self) -> &dyn Table {
        self.context.table.as_ref()
    }

    /// The prune requests waiting on the queue (a batch of them, received now).
    async fn queued_prune_requests(&self) -> Vec<ReceivedMessage> {
        self.context
            .queue
            .receive(PRUNE_QUEUE, ReceiveRequest::batch(Duration::ZERO))
            .await
            .unwrap()
    }

    /// `feed` after `after`, read now.
    async fn read(
        &self,
        feed: &FeedId,
        after: u64,
    ) -> worldfleet_tables::Result<worldfleet_tables::feed::FeedRead> {
        read_feed(
            self.table(),
            FEEDS_TABLE,
            feed,
            after,
            100,
            self.clock.now_ms(),
        )
        .await
    }

    fn prune(&self, config: PruneConfig) -> Prune {
        Prune::new(self.context.clone(), config)
    }

    async fn partition(&self, table: &str, pk: &str, range: SortKeyRange) -> Vec<Item> {
        self.table()
            .query(table, &Query::partition(pk).range(range))
            .await
            .unwrap()
            .items
    }
}

fn entry(seq: u64, text: &str) -> FeedEntry {
    FeedEntry {
        seq,
        event_id: format!("e{seq}"),
        partition: PartitionUid::parse("gm-1/district-1/scene-1").unwrap(),
        kind: EventKind::Dialogue,
        actor: "npc".into(),
        text: text.into(),
        accepted_at_ms: START_MS,
    }
}

// ---------------------------------------------------------------- player memory

async fn observe(fixture: &Fixture, player: &str, first_seq: u64, text_bytes: usize) {
    let page = FeedPage {
        first_seq,
        entries: vec![entry(first_seq, &"x".repeat(text_bytes))],
    };
    let item = memory::observation_item(player, &page, fixture.clock.now_ms()).unwrap();
    let bytes = memory::observation_bytes(&item) as i64;
    fixture.table().put(MEMORY_TABLE, item, None).await.unwrap();
    fixture
        .table()
        .update(
            FEEDS_TABLE,
            &memory::count_key(player),
            worldfleet_ports::Update::new().add(memory::COUNT_ATTRIBUTE, bytes),
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn memory_over_the_cap_loses_its_oldest_and_the_player_is_told_once() {
    let fixture = Fixture::new().await;
    let config = PruneConfig {
        memory_cap_bytes: 10_000,
        ..PruneConfig::default()
    };
    for seq in 1..=15 {
        observe(&fixture, "p-1", seq, 1_000).await;
    }
    let prune = fixture.prune(config.clone());
    let request = PruneRequest::MemoryOverBudget {
        player: "p-1".into(),
    };
    prune.handle(&request).await.unwrap();
    // A duplicate delivery changes nothing.
    prune.handle(&request).await.unwrap();

    let kept = fixture
        .partition(
            MEMORY_TABLE,
            &memory::memory_pk("p-1"),
            SortKeyRange::Prefix(OBSERVATION_PREFIX.into()),
        )
        .await;
    let kept_bytes: u64 = kept.iter().map(memory::observation_bytes).sum();
    assert!(
        kept_bytes <= config.memory_cap_bytes,
        "{kept_bytes} bytes kept"
    );
    assert!(
        kept.len() >= 7,
        "only what was needed went: {} kept",
        kept.len()
    );
    // The newest stay, the oldest went.
    assert_eq!(
        kept.last().unwrap().key.sk,
        memory::observation_sort_key(15)
    );
    assert!(kept.first().unwrap().key.sk > memory::observation_sort_key(1));
    let counted = fixture
        .table()
        .get(FEEDS_TABLE, &memory::count_key("p-1"))
        .await
        .unwrap()
        .unwrap()
        .i64(memory::COUNT_ATTRIBUTE)
        .unwrap();
    assert_eq!(counted as u64, kept_bytes, "the count is corrected");

    let feed = FeedId::Player("p-1".into());
    let read = fixture.read(&feed, 0).await.unwrap();
    assert_eq!(
        read.entries.len(),
        1,
        "exactly one notice: {:?}",
        read.entries
    );
    let notice = &read.entries[0].text;
    assert!(
        notice.contains("oldest memories") && !notice.contains('\n'),
        "{notice}"
    );
}

#[tokio::test]
async fn memory_under_the_cap_is_left_alone() {
    let fixture = Fixture::new().await;
    for seq in 1..=3 {
        observe(&fixture, "p-2", seq, 1_000).await;
    }
    let outcome = fixture
        .prune(PruneConfig::default())
        .handle(&PruneRequest::MemoryOverBudget {
            player: "p-2".into(),
        })
        .await
        .unwrap();
    assert_eq!(outcome.deleted, 0);
    let feed = FeedId::Player("p-2".into());
    let read = fixture.read(&feed, 0).await.unwrap();
    assert!(read.entries.is_empty());
}

/// A table that counts the items it hands out per table, records each query's table and
/// sort-key range, and can fail the next memory batch write.
struct Watched {
    inner: Arc<dyn Table>,
    items_read: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
    queries: std::sync::Mutex<Vec<(String, SortKeyRange)>>,
    fail_next_batch: std::sync::atomic::AtomicBool,
}

impl Watched {
    fn over(inner: Arc<dyn Table>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            items_read: Default::default(),
            queries: Default::default(),
            fail_next_batch: false.into(),
        })
    }

    /// Items read from `table` since the last call.
    fn take_items_read(&self, table: &str) -> usize {
        self.items_read.lock().unwrap().remove(table).unwrap_or(0)
    }

    fn count(&self, table: &str, items: usize) {
        *self
            .items_read
            .lock()
            .unwrap()
            .entry(table.to_owned())
            .or_default() += items;
    }
}

#[async_trait::async_trait]
impl Table for Watched {
    async fn ensure_table(&self, spec: &TableSpec) -> PortResult<()> {
        self.inner.ensure_table(spec).await
    }
    async fn get(&self, table: &str, key: &Key) -> PortResult<Option<Item>> {
        let item = self.inner.get(table, key).await?;
        self.count(table, usize::from(item.is_some()));
        Ok(item)
    }
    async fn batch_get(&self, table: &str, keys: &[Key]) -> PortResult<Vec<Item>> {
        let items = self.inner.batch_get(table, keys).await?;
        self.count(table, items.len());
        Ok(items)
    }
    async fn put(&self, table: &str, item: Item, condition: Option<Condition>) -> PortResult<()> {
        self.inner.put(table, item, condition).await
    }
    async fn update(
        &self,
        table: &str,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> PortResult<Item> {
        self.inner.update(table, key, update, condition).await
    }
    async fn delete(
        &self,
        table: &str,
        key: &Key,
        condition: Option<Condition>,
    ) -> PortResult<Option<Item>> {
        self.inner.delete(table, key, condition).await
    }
    async fn query(&self, table: &str, query: &Query) -> PortResult<QueryPage> {
        self.queries
            .lock()
            .unwrap()
            .push((table.to_owned(), query.range.clone()));
        let page = self.inner.query(table, query).await?;
        self.count(table, page.items.len());
        Ok(page)
    }
    async fn batch_write(&self, table: &str, writes: Vec<BatchWrite>) -> PortResult<()> {
        if table == MEMORY_TABLE
            && self
                .fail_next_batch
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(worldfleet_ports::Error::Unavailable("injected".into()));
        }
        self.inner.batch_write(table, writes).await
    }
    async fn transact(&self, operations: Vec<TransactWrite>) -> PortResult<()> {
        self.inner.transact(operations).await
    }
}

impl Fixture {
    /// prune over `watched` instead of the store's table.
    fn prune_over(&self, watched: &Arc<Watched>, config: PruneConfig) -> Prune {
        let table: Arc<dyn Table> = Arc::clone(watched) as Arc<dyn Table>;
        let context = StageContext::new(
            Arc::clone(&self.context.queue),
            table,
            Arc::clone(&self.context.clock),
        );
        Prune::new(context, config)
    }

    /// The player's stored observations and the bytes they account for.
    async fn memory_of(&self, player: &str) -> (Vec<Item>, u64) {
        let kept = self
            .partition(
                MEMORY_TABLE,
                &memory::memory_pk(player),
                SortKeyRange::Prefix(OBSERVATION_PREFIX.into()),
            )
            .await;
        let bytes = kept.iter().map(memory::observation_bytes).sum();
        (kept, bytes)
    }

    /// A memory cap of `cap` bytes, prune with it over a watched table, and the request that
    /// asks it about `player`'s memory.
    fn watched_memory_prune(
        &self,
        cap: u64,
        player: &str,
    ) -> (PruneConfig, Arc<Watched>, Prune, PruneRequest) {
        let config = PruneConfig {
            memory_cap_bytes: cap,
            ..PruneConfig::default()
        };
        let watched = Watched::over(Arc::clone(&self.context.table));
        let prune = self.prune_over(&watched, config.clone());
        let request = PruneRequest::MemoryOverBudget {
            player: player.into(),
        };
        (config, watched, prune, request)
    }

    async fn counted(&self, player: &str) -> u64 {
        self.table()
            .get(FEEDS_TABLE, &memory::count_key(player))
            .await
            .unwrap()
            .unwrap()
            .i64(memory::COUNT_ATTRIBUTE)
            .unwrap() as u64
    }
}

#[tokio::test]
async fn an_eviction_reads_what_was_observed_since_the_last_and_what_it_evicts_not_the_whole_memory()
 {
    let fixture = Fixture::new().await;
    let (config, watched, prune, request) = fixture.watched_memory_prune(100_000, "p-9");
    for seq in 1..=100 {
        observe(&fixture, "p-9", seq, 1_000).await;
    }
    prune.handle(&request).await.unwrap();
    // The first request counts the whole memory once.
    assert!(watched.take_items_read(MEMORY_TABLE) >= 100);
    let (kept, kept_bytes) = fixture.memory_of("p-9").await;
    assert!(kept_bytes <= config.memory_cap_bytes);
    assert_eq!(fixture.counted("p-9").await, kept_bytes);
    let first_kept = kept.len();

    for seq in 101..=112 {
        observe(&fixture, "p-9", seq, 1_000).await;
    }
    prune.handle(&request).await.unwrap();
    let read = watched.take_items_read(MEMORY_TABLE);
    let (kept, kept_bytes) = fixture.memory_of("p-9").await;
    assert!(
        read <= 12 + 12 + 2,
        "{read} memory items read for 12 new observations over a memory of {first_kept}"
    );
    assert!(kept_bytes <= config.memory_cap_bytes);
    assert!(
        kept_bytes + 1_200 > config.memory_cap_bytes - config.memory_cap_bytes / 10,
        "no more than needed went: {kept_bytes} bytes kept"
    );
    assert_eq!(
        fixture.counted("p-9").await,
        kept_bytes,
        "the count is exact"
    );
    assert_eq!(
        kept.last().unwrap().key.sk,
        memory::observation_sort_key(112)
    );
    let read = fixture
        .read(&FeedId::Player("p-9".into()), 0)
        .await
        .unwrap();
    assert_eq!(read.entries.len(), 2, "one notice per eviction");
}

#[tokio::test]
async fn an_eviction_reads_from_where_the_last_one_started_not_from_the_first_observation() {
    let fixture = Fixture::new().await;
    let (_, watched, prune, request) = fixture.watched_memory_prune(20_000, "p-7");
    let mut seq = 0;
    let mut observe_next = async |count: u64| {
        for _ in 0..count {
            seq += 1;
            observe(&fixture, "p-7", seq, 1_000).await;
        }
    };
    observe_next(30).await;
    prune.handle(&request).await.unwrap();
    let mut oldest_kept = Vec::new();
    for _ in 0..3 {
        observe_next(10).await;
        let (stored, _) = fixture.memory_of("p-7").await;
        oldest_kept.push(stored[0].key.sk.clone());
        watched.queries.lock().unwrap().clear();
        prune.handle(&request).await.unwrap();
        let (stored, kept_bytes) = fixture.memory_of("p-7").await;
        assert!(
            stored[0].key.sk > *oldest_kept.last().unwrap(),
            "it evicted"
        );
        assert_eq!(fixture.counted("p-7").await, kept_bytes);
    }
    // The deletion markers of the evictions before the last one are not read again: the oldest
    // observations are read from the first the last eviction took.
    let queries = watched.queries.lock().unwrap().clone();
    let from = queries.iter().find_map(|(table, range)| match range {
        SortKeyRange::Between(low, _) if table == MEMORY_TABLE => Some(low.clone()),
        _ => None,
    });
    assert_eq!(
        from.as_ref(),
        Some(&oldest_kept[1]),
        "the last eviction read its oldest observations by {queries:?}"
    );
}

#[tokio::test]
async fn a_crash_between_the_tally_and_the_deletes_neither_over_evicts_nor_counts_twice() {
    let fixture = Fixture::new().await;
    let (config, watched, prune, request) = fixture.watched_memory_prune(20_000, "p-8");
    for seq in 1..=10 {
        observe(&fixture, "p-8", seq, 1_000).await;
    }
    // Tallied under the cap first, so that the eviction below reads the oldest afresh.
    prune.handle(&request).await.unwrap();
    for seq in 11..=24 {
        observe(&fixture, "p-8", seq, 1_000).await;
    }
    watched
        .fail_next_batch
        .store(true, std::sync::atomic::Ordering::SeqCst);
    prune
        .handle(&request)
        .await
        .expect_err("the deletes fail after the tally moved");
    let (stored, _) = fixture.memory_of("p-8").await;
    assert_eq!(stored.len(), 24, "nothing was deleted yet");
    // The redelivery finds the memory already under the cap by the tally: it evicts nothing more.
    prune.handle(&request).await.unwrap();
    let (stored, _) = fixture.memory_of("p-8").await;
    assert_eq!(stored.len(), 24, "no second eviction");
    let tallied = fixture.counted("p-8").await;
    assert!(tallied <= config.memory_cap_bytes);

    // The next eviction deletes the leftovers without counting them again.
    for seq in 25..=30 {
        observe(&fixture, "p-8", seq, 1_000).await;
    }
    prune.handle(&request).await.unwrap();
    let (kept, kept_bytes) = fixture.memory_of("p-8").await;
    assert_eq!(
        fixture.counted("p-8").await,
        kept_bytes,
        "the count is exact"
    );
    assert!(kept_bytes <= config.memory_cap_bytes);
    assert!(
        kept_bytes + 1_200 > config.memory_cap_bytes - config.memory_cap_bytes / 10,
        "no more than needed went: {kept_bytes} bytes kept in {} observations",
        kept.len()
    );
    assert_eq!(
        kept.last().unwrap().key.sk,
        memory::observation_sort_key(30)
    );
    let read = fixture
        .read(&FeedId::Player("p-8".into()), 0)
        .await
        .unwrap();
    assert_eq!(read.entries.len(), 2, "{:?}", read.entries);
}

// ---------------------------------------------------------------- feed retention

async fn write_page(fixture: &Fixture, feed: &FeedId, seq: u64) {
    let page = FeedPage {
        first_seq: seq,
        entries: vec![entry(seq, "line")],
    };
    let item = page_item(&feed.to_string(), &page, fixture.clock.now_ms()).unwrap();
    fixture.table().put(FEEDS_TABLE, item, None).await.unwrap();
}

#[tokio::test]
async fn feeds_trim_past_retention_once_every_reader_passed_and_laggards_get_an_error() {
    let fixture = Fixture::new().await;
    let feed = FeedId::Player("p-3".into());
    for seq in 1..=10 {
        write_page(&fixture, &feed, seq).await;
        fixture.clock.advance(DAY_MS);
    }
    let now = fixture.clock.now_ms();
    commit_checkpoint(fixture.table(), FEEDS_TABLE, &feed, "fast", 9, now)
        .await
        .unwrap();
    commit_checkpoint(fixture.table(), FEEDS_TABLE, &feed, "slow", 2, now)
        .await
        .unwrap();
    let prune = fixture.prune(PruneConfig::default());
    let request = PruneRequest::FeedPastRetention {
        feed: feed.to_string(),
    };
    // Pages 1-4 are past 7 days' retention, but the slow reader has only passed 1 and 2.
    prune.handle(&request).await.unwrap();
    assert_eq!(
        trimmed_through(fixture.table(), FEEDS_TABLE, &feed)
            .await
            .unwrap(),
        2
    );
    let left = fixture.read(&feed, 2).await.unwrap();
    assert_eq!(left.entries.first().map(|entry| entry.seq), Some(3));
    assert_eq!(left.entries.len(), 8);

    // Once the slow reader moves on, what it passed goes too.
    commit_checkpoint(fixture.table(), FEEDS_TABLE, &feed, "slow", 9, now)
        .await
        .unwrap();
    prune.handle(&request).await.unwrap();
    assert_eq!(
        trimmed_through(fixture.table(), FEEDS_TABLE, &feed)
            .await
            .unwrap(),
        4
    );

    // A reader behind the trim is told so, never handed a silent gap.
    let error = fixture.read(&feed, 1).await.unwrap_err();
    assert!(
        matches!(
            error,
            FeedError::BehindRetention {
                trimmed_through: 4,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("--after 4"), "{error}");
}

#[tokio::test]
async fn a_feed_check_reads_its_pages_no_further_than_the_first_that_stays() {
    let fixture = Fixture::new().await;
    let feed = FeedId::Player("p-long".into());
    for seq in 1..=100 {
        write_page(&fixture, &feed, seq).await;
    }
    fixture
        .clock
        .advance(FEED_RETENTION.as_millis() as u64 + DAY_MS);
    for seq in 101..=200 {
        write_page(&fixture, &feed, seq).await;
    }
    let watched = Watched::over(Arc::clone(&fixture.context.table));
    let prune = fixture.prune_over(&watched, PruneConfig::default());
    let request = PruneRequest::FeedPastRetention {
        feed: feed.to_string(),
    };
    let outcome = prune.handle(&request).await.unwrap();
    assert_eq!(outcome.deleted, 100, "every page past retention went");
    let first = watched.take_items_read(FEEDS_TABLE);
    assert!(
        first < 100 + 64,
        "{first} feed items read to trim 100 pages"
    );
    let outcome = prune.handle(&request).await.unwrap();
    assert_eq!(outcome.deleted, 0);
    let again = watched.take_items_read(FEEDS_TABLE);
    // One page of 32 items, and the trim row (where the last trim started).
    assert!(
        again <= 32 + 1,
        "{again} feed items read to find nothing to trim in a feed of 100 pages"
    );
    assert_eq!(
        fixture
            .read(&feed, 100)
            .await
            .unwrap()
            .entries
            .first()
            .map(|entry| entry.seq),
        Some(101)
    );

    // Later checks read from the oldest page the last trim deleted, not from the feed's first
    // page: the deletion markers of earlier trims are not walked again.
    for (written, trimmed_from) in [(201..=300, 1), (301..=400, 101)] {
        fixture
            .clock
            .advance(FEED_RETENTION.as_millis() as u64 + DAY_MS);
        for seq in written {
            write_page(&fixture, &feed, seq).await;
        }
        watched.queries.lock().unwrap().clear();
        let outcome = prune.handle(&request).await.unwrap();
        assert_eq!(outcome.deleted, 100);
        let queries = watched.queries.lock().unwrap().clone();
        let page_query = queries
            .iter()
            .find(|(table, range)| {
                table == FEEDS_TABLE && !matches!(range, SortKeyRange::Prefix(p) if p == "reader#")
            })
            .map(|(_, range)| range.clone());
        assert!(
            matches!(&page_query, Some(SortKeyRange::Between(low, _)) if *low == page_sort_key(trimmed_from)),
            "pages read by {page_query:?}, expected from page {trimmed_from}"
        );
    }
}

#[tokio::test]
async fn past_the_hard_retention_pages_go_and_dead_checkpoints_hold_nothing_back() {
    let fixture = Fixture::new().await;
    let feed = FeedId::Faction("red".into());
    write_page(&fixture, &feed, 1).await;
    write_page(&fixture, &feed, 2).await;
    commit_checkpoint(
        fixture.table(),
        FEEDS_TABLE,
        &feed,
        "gone",
        0,
        fixture.clock.now_ms(),
    )
    .await
    .unwrap();
    let config = PruneConfig::default();
    fixture
        .clock
        .advance(config.feed_retention.as_millis() as u64 + DAY_MS);
    let request = PruneRequest::FeedPastRetention {
        feed: feed.to_string(),
    };
    let prune = fixture.prune(config.clone());
    prune.handle(&request).await.unwrap();
    assert_eq!(
        trimmed_through(fixture.table(), FEEDS_TABLE, &feed)
            .await
            .unwrap(),
        0,
        "a live reader at 0 holds retention back"
    );
    fixture
        .clock
        .advance(config.feed_hard_retention.as_millis() as u64);
    prune.handle(&request).await.unwrap();
    assert_eq!(
        trimmed_through(fixture.table(), FEEDS_TABLE, &feed)
            .await
            .unwrap(),
        2
    );
    assert!(FEED_RETENTION < config.feed_hard_retention);
}

// ---------------------------------------------------------------- event bookkeeping

#[tokio::test]
async fn published_events_take_their_bookkeeping_with_them() {
    let fixture = Fixture::new().await;
    let partition = PartitionUid::parse("gm-1/district-1/scene-1").unwrap();
    // "done" as this version writes it (no completion mark: distribute asks prune only once
    // every page is written), "old" as earlier versions marked it.
    for (plan_id, completed) in [("done", None), ("old", Some(true)), ("other", None)] {
        let mut record = Item::new(plan_key(plan_id)).with("plan", "{}");
        if let Some(completed) = completed {
            record = record.with("completed", completed);
        }
        fixture
            .table()
            .put(FEEDS_TABLE, record, None)
            .await
            .unwrap();
    }
    let prune = fixture.prune(PruneConfig::default());
    for plan_id in ["done", "old"] {
        let published = PruneRequest::EventsPublished {
            plan_id: plan_id.into(),
            events: vec![
                (partition.clone(), format!("{plan_id}-1")),
                (partition.clone(), format!("{plan_id}-2")),
            ],
        };
        prune.handle(&published).await.unwrap();
        // A duplicate finds nothing left.
        prune.handle(&published).await.unwrap();
    }

    let table = fixture.table();
    for plan_id in ["done", "old"] {
        assert!(
            table
                .get(FEEDS_TABLE, &plan_key(plan_id))
                .await
                .unwrap()
                .is_none(),
            "{plan_id}"
        );
    }
    // A plan nobody said was published is kept.
    assert!(
        table
            .get(FEEDS_TABLE, &plan_key("other"))
            .await
            .unwrap()
            .is_some()
    );
}

// ---------------------------------------------------------------- region tombstones

#[tokio::test]
async fn idle_regions_are_tombstoned_and_come_back_on_activity() {
    let fixture = Fixture::new().await;
    let region = PartitionUid::parse("gm-1/district-9").unwrap();
    let scenes = ["gm-1/district-9/scene-1", "gm-1/district-9/scene-2"];
    let mut canon = Vec::new();
    for (index, scene) in scenes.iter().enumerate() {
        for event in 0..20 {
            let item = Item::new(Key::new(*scene, format!("e{index}-{event:03}"))).with(
                "text",
                format!("the tale of scene {index}, told for the {event}th time"),
            );
            fixture
                .table()
                .put(CANON_TABLE, item.clone(), None)
                .await
                .unwrap();
            canon.push(item);
        }
    }
    let tombstoned = touch_region(
        fixture.table(),
        PRUNE_TABLE,
        region.as_str(),
        &scenes,
        fixture.clock.now_ms(),
    )
    .await
    .unwrap();
    assert!(!tombstoned);
    let prune = fixture.prune(PruneConfig::default());
    let idle = PruneRequest::RegionIdle {
        region: region.clone(),
    };

    // Five months on, it stays.
    fixture.clock.advance(150 * DAY_MS);
    prune.handle(&idle).await.unwrap();
    assert_eq!(
        fixture
            .partition(CANON_TABLE, scenes[0], SortKeyRange::All)
            .await
            .len(),
        20
    );

    // The sweep finds it at six months; prune tombstones it.
    fixture.clock.advance(40 * DAY_MS);
    let report = worldfleet_prune::sweep::sweep(&fixture.context, prune.config())
        .await
        .unwrap();
    assert_eq!(report.regions_idle, 1);
    let queued = fixture.queued_prune_requests().await;
    let requests: Vec<PruneRequest> = queued
        .iter()
        .map(|message| serde_json::from_str(&message.body).unwrap())
        .collect();
    assert_eq!(requests, vec![idle.clone()]);
    prune.handle(&idle).await.unwrap();
    prune.handle(&idle).await.unwrap();
    for scene in scenes {
        assert!(
            fixture
                .partition(CANON_TABLE, scene, SortKeyRange::All)
                .await
                .is_empty()
        );
    }
    let head = fixture
        .table()
        .get(PRUNE_TABLE, &head_key(&region))
        .await
        .unwrap()
        .expect("an archive head");
    assert_eq!(head.i64("rows"), Some(42), "40 canon rows and 2 part rows");
    assert!(head.i64("compressed_bytes").unwrap() < head.i64("raw_bytes").unwrap() / 2);

    // The next activity finds the tombstone and asks for the region back.
    let tombstoned = touch_region(
        fixture.table(),
        PRUNE_TABLE,
        region.as_str(),
        &scenes[..1],
        fixture.clock.now_ms(),
    )
    .await
    .unwrap();
    assert!(tombstoned);
    let active = PruneRequest::RegionActive {
        region: region.clone(),
    };
    prune.handle(&active).await.unwrap();
    prune.handle(&active).await.unwrap();
    let mut restored = Vec::new();
    for scene in scenes {
        restored.extend(
            fixture
                .partition(CANON_TABLE, scene, SortKeyRange::All)
                .await,
        );
    }
    assert_eq!(restored, canon, "every row back, byte for byte");
    assert!(
        fixture
            .table()
            .get(PRUNE_TABLE, &head_key(&region))
            .await
            .unwrap()
            .is_none()
    );
    let activity = fixture
        .table()
        .get(PRUNE_TABLE, &activity_key(region.as_str()))
        .await
        .unwrap()
        .unwrap();
    assert!(!activity.attributes.contains_key("tombstoned"));
}

#[tokio::test]
async fn activity_is_written_at_most_hourly_and_a_tombstone_is_always_reported() {
    use worldfleet_kit::activity::{ACTIVITY_RESOLUTION_MS, parts_pk};
    let fixture = Fixture::new().await;
    let region = "gm-5/district-1";
    let (scene_a, scene_b) = ("gm-5/district-1/scene-a", "gm-5/district-1/scene-b");
    let read = |key: Key| {
        let table = fixture.context.table.clone();
        async move {
            table
                .get(PRUNE_TABLE, &key)
                .await
                .unwrap()
                .and_then(|item| item.i64("last_active_ms"))
        }
    };
    let touch = |partitions: Vec<&'static str>, now_ms: u64| {
        let table = fixture.context.table.clone();
        async move {
            touch_region(table.as_ref(), PRUNE_TABLE, region, &partitions, now_ms)
                .await
                .unwrap()
        }
    };
    assert!(!touch(vec![scene_a], START_MS).await);
    // A minute later: the region and scene a keep their hour; scene b is new, so written.
    assert!(!touch(vec![scene_a, scene_b], START_MS + 60_000).await);
    assert_eq!(read(activity_key(region)).await, Some(START_MS as i64));
    assert_eq!(
        read(Key::new(parts_pk(region), scene_a)).await,
        Some(START_MS as i64)
    );
    assert_eq!(
        read(Key::new(parts_pk(region), scene_b)).await,
        Some((START_MS + 60_000) as i64)
    );
    // Past the resolution everything touched is written again.
    let later = START_MS + ACTIVITY_RESOLUTION_MS;
    touch(vec![scene_a], later).await;
    assert_eq!(read(activity_key(region)).await, Some(later as i64));
    assert_eq!(
        read(Key::new(parts_pk(region), scene_a)).await,
        Some(later as i64)
    );
    // A tombstoned region is reported even within the hour.
    fixture
        .table()
        .update(
            PRUNE_TABLE,
            &activity_key(region),
            worldfleet_ports::Update::new().set("tombstoned", true),
            None,
        )
        .await
        .unwrap();
    assert!(touch(vec![scene_a], later + 1).await);
}

#[tokio::test]
async fn a_region_active_while_being_tombstoned_is_not_lost() {
    let fixture = Fixture::new().await;
    let region = PartitionUid::parse("gm-2/district-1").unwrap();
    let scene = "gm-2/district-1/scene-1";
    let item = Item::new(Key::new(scene, "e1")).with("text", "kept");
    fixture
        .table()
        .put(CANON_TABLE, item.clone(), None)
        .await
        .unwrap();
    touch_region(
        fixture.table(),
        PRUNE_TABLE,
        region.as_str(),
        &[scene],
        START_MS,
    )
    .await
    .unwrap();
    fixture.clock.advance(200 * DAY_MS);
    let prune = fixture.prune(PruneConfig::default());
    prune
        .handle(&PruneRequest::RegionIdle {
            region: region.clone(),
        })
        .await
        .unwrap();
    // Buried, then an interrupted resurrection (rows back, flag not cleared) is repeated.
    worldfleet_prune::tombstone::resurrect(&fixture.context, &region)
        .await
        .unwrap();
    worldfleet_prune::tombstone::resurrect(&fixture.context, &region)
        .await
        .unwrap();
    assert_eq!(
        fixture
            .partition(CANON_TABLE, scene, SortKeyRange::All)
            .await,
        vec![item]
    );
}

// ---------------------------------------------------------------- distribute → prune

/// A plan owns the events whose canon points at it, a prefix of each partition: here an
/// earlier attempt planned three events and crashed after claiming the first, and meanwhile
/// another plan took the second. The redelivery finishes the first plan with its one event and
/// plans the third again, later in the feed, so each event is in the feed once, in order.
#[tokio::test]
async fn a_plan_keeps_the_prefix_it_claimed_and_the_rest_is_planned_again_in_order() {
    use worldfleet_distribute::{Distribute, RepublishRules};
    use worldfleet_domain::{CanonEntry, DistributeRequest, Intent, Tier};
    use worldfleet_kit::StageHandler;
    use worldfleet_tables::plan::{Plan, PlannedPage, counter_key, plan_item};

    let fixture = Fixture::new().await;
    let scene = PartitionUid::parse("gm-6/district-1/scene-1").unwrap();
    let mut records = Vec::new();
    let ids: Vec<String> = (0..3).map(|index| format!("ev-{index}")).collect();
    for (index, event_id) in ids.iter().enumerate() {
        let entry = CanonEntry {
            event_id: event_id.clone(),
            partition: scene.clone(),
            kind: EventKind::Dialogue,
            actor: "p-a".into(),
            audience: vec!["p-a".into()],
            faction: None,
            intent: Intent::Social,
            salience: 50,
            tier: Tier::Template,
            text: format!("line {index}"),
            composer: "template".into(),
            accepted_at_ms: START_MS,
            composed_at_ms: START_MS,
        };
        fixture
            .table()
            .put(
                CANON_TABLE,
                worldfleet_tables::canon::to_item(&entry).unwrap(),
                None,
            )
            .await
            .unwrap();
        records.push(ReceivedMessage {
            message_id: format!("m{index}"),
            receipt_handle: format!("r{index}"),
            body: serde_json::to_string(&DistributeRequest { canon: entry }).unwrap(),
            group_id: Some(scene.to_string()),
            receive_count: 2,
            sent_at_ms: START_MS,
        });
    }
    // The crashed attempt: numbers 1..=3 of player:p-a allocated, its plan put, ev-0 claimed.
    let crashed = Plan {
        id: "plan-crashed".into(),
        events: ids
            .iter()
            .map(|id| (scene.to_string(), id.clone()))
            .collect(),
        pages: vec![PlannedPage {
            feed: "player:p-a".into(),
            first_seq: 1,
            event_ids: ids.clone(),
        }],
        over_budget: Vec::new(),
    };
    let table = fixture.table();
    table
        .update(
            FEEDS_TABLE,
            &counter_key("player:p-a"),
            Update::new().add(worldfleet_tables::plan::COUNTER_NEXT, 3),
            None,
        )
        .await
        .unwrap();
    table
        .put(FEEDS_TABLE, plan_item(&crashed, START_MS).unwrap(), None)
        .await
        .unwrap();
    // Another plan, already completed, holds ev-1.
    table
        .put(
            FEEDS_TABLE,
            Item::new(plan_key("plan-other"))
                .with("plan", r#"{"id":"plan-other","e":[],"p":[]}"#)
                .with("completed", true),
            None,
        )
        .await
        .unwrap();
    for (event_id, plan_id) in [("ev-0", "plan-crashed"), ("ev-1", "plan-other")] {
        table
            .update(
                CANON_TABLE,
                &worldfleet_tables::canon::key(scene.as_str(), event_id),
                Update::new().set("dist_plan", plan_id),
                None,
            )
            .await
            .unwrap();
    }

    let distribute = Distribute::new(fixture.context.clone(), RepublishRules::default_rules());
    let report = distribute
        .handle_batch(&records, Duration::from_secs(30))
        .await;
    assert!(report.failed_message_ids.is_empty(), "{report:?}");
    // Once more, as a duplicate delivery: nothing changes.
    let report = distribute
        .handle_batch(&records, Duration::from_secs(30))
        .await;
    assert!(report.failed_message_ids.is_empty(), "{report:?}");

    fixture.clock.advance(5 * 60 * 1000);
    let read = fixture
        .read(&FeedId::Player("p-a".into()), 0)
        .await
        .unwrap();
    let seen: Vec<(u64, &str)> = read
        .entries
        .iter()
        .map(|entry| (entry.seq, entry.event_id.as_str()))
        .collect();
    assert_eq!(seen, vec![(1, "ev-0"), (4, "ev-2")]);
    let third = table
        .get(
            CANON_TABLE,
            &worldfleet_tables::canon::key(scene.as_str(), "ev-2"),
        )
        .await
        .unwrap()
        .unwrap();
    let third_plan = third.str("dist_plan").unwrap();
    assert!(third_plan != "plan-crashed" && third_plan != "plan-other");
    // The crashed plan was finished, and prune is told it published ev-0 only (ev-1 and ev-2
    // went to other plans); the record stays until prune deletes it.
    assert!(
        table
            .get(FEEDS_TABLE, &plan_key("plan-crashed"))
            .await
            .unwrap()
            .is_some()
    );
    let queued = fixture.queued_prune_requests().await;
    let published: Vec<Vec<String>> = queued
        .iter()
        .filter_map(
            |message| match serde_json::from_str::<PruneRequest>(&message.body).unwrap() {
                PruneRequest::EventsPublished { plan_id, events } if plan_id == "plan-crashed" => {
                    Some(events.into_iter().map(|(_, event_id)| event_id).collect())
                }
                _ => None,
            },
        )
        .collect();
    assert!(!published.is_empty(), "{queued:?}");
    assert!(
        published
            .iter()
            .all(|events| events == &["ev-0".to_owned()]),
        "{published:?}"
    );
}

/// distribute counts a player's memory in the update that allocates the page's numbers, and
/// the plan record remembers who passed the cap (so a redelivery that publishes the plan asks
/// too): publishing it asks prune about them, after their observations are written.
#[tokio::test]
async fn players_past_the_memory_cap_are_reported_once_their_observations_are_written() {
    use worldfleet_distribute::{Distribute, RepublishRules};
    use worldfleet_domain::{CanonEntry, DistributeRequest, Intent, Tier};
    use worldfleet_kit::StageHandler;

    let fixture = Fixture::new().await;
    let scene = PartitionUid::parse("gm-4/district-1/scene-1").unwrap();
    let mut records = Vec::new();
    for index in 0..3 {
        let entry = CanonEntry {
            event_id: format!("ev-{index}"),
            partition: scene.clone(),
            kind: EventKind::Dialogue,
            actor: "p-big".into(),
            audience: vec!["p-big".into()],
            faction: None,
            intent: Intent::Social,
            salience: 50,
            tier: Tier::Template,
            text: "x".repeat(300),
            composer: "template".into(),
            accepted_at_ms: START_MS,
            composed_at_ms: START_MS,
        };
        fixture
            .table()
            .put(
                CANON_TABLE,
                worldfleet_tables::canon::to_item(&entry).unwrap(),
                None,
            )
            .await
            .unwrap();
        records.push(ReceivedMessage {
            message_id: format!("m{index}"),
            receipt_handle: format!("r{index}"),
            body: serde_json::to_string(&DistributeRequest { canon: entry }).unwrap(),
            group_id: Some(scene.to_string()),
            receive_count: 1,
            sent_at_ms: START_MS,
        });
    }
    let over_budget = |queued: &[ReceivedMessage]| -> Vec<String> {
        queued
            .iter()
            .filter_map(
                |message| match serde_json::from_str(&message.body).unwrap() {
                    PruneRequest::MemoryOverBudget { player } => Some(player),
                    _ => None,
                },
            )
            .collect()
    };
    // Under a cap the batch stays below: nobody is reported.
    let roomy = Distribute::new(fixture.context.clone(), RepublishRules::default_rules())
        .with_memory_cap(10_000);
    let report = roomy
        .handle_batch(&records[..1], Duration::from_secs(30))
        .await;
    assert!(report.failed_message_ids.is_empty());
    let queued = fixture.queued_prune_requests().await;
    assert!(over_budget(&queued).is_empty());
    // Past a small cap, the next batch's plan names the player.
    let tight = Distribute::new(fixture.context.clone(), RepublishRules::default_rules())
        .with_memory_cap(600);
    let report = tight
        .handle_batch(&records[1..], Duration::from_secs(30))
        .await;
    assert!(report.failed_message_ids.is_empty());
    let queued = fixture.queued_prune_requests().await;
    assert_eq!(over_budget(&queued), vec!["p-big".to_owned()]);
    let written: u64 = fixture
        .partition(
            MEMORY_TABLE,
            &memory::memory_pk("p-big"),
            SortKeyRange::Prefix(OBSERVATION_PREFIX.into()),
        )
        .await
        .iter()
        .map(memory::observation_bytes)
        .sum();
    let counted = fixture
        .table()
        .get(FEEDS_TABLE, &memory::count_key("p-big"))
        .await
        .unwrap()
        .and_then(|counter| counter.i64(memory::COUNT_ATTRIBUTE))
        .unwrap_or(0);
    assert!(
        written > 600 && counted as u64 >= written,
        "{counted} counted, {written} written"
    );
    // prune evicts down to the cap and corrects the count on the same row.
    let prune = fixture.prune(PruneConfig {
        memory_cap_bytes: 600,
        ..PruneConfig::default()
    });
    let report = prune.handle_batch(&queued, Duration::from_secs(30)).await;
    assert!(report.failed_message_ids.is_empty());
    let kept: u64 = fixture
        .partition(
            MEMORY_TABLE,
            &memory::memory_pk("p-big"),
            SortKeyRange::Prefix(OBSERVATION_PREFIX.into()),
        )
        .await
        .iter()
        .map(memory::observation_bytes)
        .sum();
    let recounted = fixture
        .table()
        .get(FEEDS_TABLE, &memory::count_key("p-big"))
        .await
        .unwrap()
        .and_then(|counter| counter.i64(memory::COUNT_ATTRIBUTE))
        .unwrap_or(0);
    assert!(kept <= 600);
    assert_eq!(recounted as u64, kept, "the count is corrected");
}

#[tokio::test]
async fn distribute_records_what_prune_needs_and_prune_ends_the_bookkeeping() {
    use worldfleet_distribute::{Distribute, RepublishRules};
    use worldfleet_domain::{CanonEntry, DistributeRequest, Intent, Tier};
    use worldfleet_kit::StageHandler;
    use worldfleet_kit::activity::feed_index_key;

    let fixture = Fixture::new().await;
    let scene = PartitionUid::parse("gm-3/district-1/scene-1").unwrap();
    let mut records = Vec::new();
    for index in 0..4 {
        let entry = CanonEntry {
            event_id: format!("ev-{index}"),
            partition: scene.clone(),
            kind: EventKind::Dialogue,
            actor: "p-a".into(),
            audience: vec!["p-a".into(), "p-b".into()],
            faction: None,
            intent: Intent::Social,
            salience: 50,
            tier: Tier::Template,
            text: format!("line {index}"),
            composer: "template".into(),
            accepted_at_ms: START_MS,
            composed_at_ms: START_MS,
        };
        fixture
            .table()
            .put(
                CANON_TABLE,
                worldfleet_tables::canon::to_item(&entry).unwrap(),
                None,
            )
            .await
            .unwrap();
        records.push(ReceivedMessage {
            message_id: format!("m{index}"),
            receipt_handle: format!("r{index}"),
            body: serde_json::to_string(&DistributeRequest { canon: entry }).unwrap(),
            group_id: Some(scene.to_string()),
            receive_count: 1,
            sent_at_ms: START_MS,
        });
    }
    // An earlier plan that failed after reserving p-a's first numbers: the feed starts past 1
    // and must be indexed all the same.
    let counter_a = worldfleet_tables::plan::counter_key("player:p-a");
    fixture
        .table()
        .update(
            FEEDS_TABLE,
            &counter_a,
            worldfleet_ports::Update::new().add(worldfleet_tables::plan::COUNTER_NEXT, 7),
            None,
        )
        .await
        .unwrap();
    let distribute = Distribute::new(fixture.context.clone(), RepublishRules::default_rules());
    let report = distribute
        .handle_batch(&records, Duration::from_secs(30))
        .await;
    assert!(report.failed_message_ids.is_empty());
    for feed in ["player:p-a", "player:p-b"] {
        assert!(
            fixture
                .table()
                .get(PRUNE_TABLE, &feed_index_key(feed))
                .await
                .unwrap()
                .is_some(),
            "{feed} is in the feed index"
        );
    }
    let counter = fixture
        .table()
        .get(FEEDS_TABLE, &counter_a)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        counter
            .attributes
            .get(worldfleet_tables::plan::COUNTER_INDEXED),
        Some(&worldfleet_ports::Value::Bool(true)),
        "the counter remembers the feed is indexed"
    );

    // Observations with their size, the region's activity, the feed index.
    let observations = fixture
        .partition(
            MEMORY_TABLE,
            &memory::memory_pk("p-b"),
            SortKeyRange::Prefix(OBSERVATION_PREFIX.into()),
        )
        .await;
    assert_eq!(observations.len(), 1);
    assert_eq!(
        memory::observation_entries(&observations[0]).unwrap().len(),
        4
    );
    // The player's byte count rides on the feed's counter row, never below what was written.
    let counted = fixture
        .table()
        .get(FEEDS_TABLE, &memory::count_key("p-b"))
        .await
        .unwrap()
        .and_then(|counter| counter.i64(memory::COUNT_ATTRIBUTE))
        .unwrap_or(0);
    assert!(counted as u64 >= memory::observation_bytes(&observations[0]));
    let region = scene.prefix(2);
    assert!(
        fixture
            .table()
            .get(PRUNE_TABLE, &activity_key(region.as_str()))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        fixture
            .table()
            .get(PRUNE_TABLE, &feed_index_key("player:p-a"))
            .await
            .unwrap()
            .is_some()
    );

    // prune handles what distribute asked; the plan goes, the feeds stay readable.
    let queued = fixture.queued_prune_requests().await;
    let requests: Vec<PruneRequest> = queued
        .iter()
        .map(|message| serde_json::from_str(&message.body).unwrap())
        .collect();
    let plan_id = requests
        .iter()
        .find_map(|request| match request {
            PruneRequest::EventsPublished { plan_id, .. } => Some(plan_id.clone()),
            _ => None,
        })
        .expect("distribute asked prune to end the plan's bookkeeping");
    assert!(
        fixture
            .table()
            .get(FEEDS_TABLE, &plan_key(&plan_id))
            .await
            .unwrap()
            .is_some()
    );
    let prune = fixture.prune(PruneConfig::default());
    let report = prune.handle_batch(&queued, Duration::from_secs(30)).await;
    assert!(report.failed_message_ids.is_empty());
    assert!(
        fixture
            .table()
            .get(FEEDS_TABLE, &plan_key(&plan_id))
            .await
            .unwrap()
            .is_none()
    );

    // A duplicate delivery of the batch after the plan is gone publishes nothing twice.
    let report = distribute
        .handle_batch(&records, Duration::from_secs(30))
        .await;
    assert!(report.failed_message_ids.is_empty());
    let feed = FeedId::Player("p-b".into());
    let read = fixture.read(&feed, 0).await.unwrap();
    assert_eq!(read.entries.len(), 4);
}

/// The watchdog calls the sweep every minute; it runs once per interval however often (and by
/// however many watchdogs) it is called.
#[tokio::test]
async fn the_scheduled_sweep_runs_once_per_interval() {
    use worldfleet_prune::sweep::{SWEEP_INTERVAL, sweep_if_due};
    let fixture = Fixture::new().await;
    let config = PruneConfig::default();
    let first = sweep_if_due(&fixture.context, &config, SWEEP_INTERVAL)
        .await
        .unwrap();
    assert!(first.is_some(), "the first call sweeps");
    for _ in 0..3 {
        fixture.clock.advance(3600 * 1000);
        let again = sweep_if_due(&fixture.context, &config, SWEEP_INTERVAL)
            .await
            .unwrap();
        assert!(again.is_none(), "not due again within the interval");
    }
    fixture.clock.advance(DAY_MS);
    let next = sweep_if_due(&fixture.context, &config, SWEEP_INTERVAL)
        .await
        .unwrap();
    assert!(next.is_some(), "due again after the interval");
}

/// Distribute reports events published; once they are older than intake's clock window, prune
/// moves the partition's ledger checkpoint over them (the ledger entries stay: compaction is
/// off by default). Without the rule the checkpoint never moves.
#[tokio::test]
async fn published_events_past_the_clock_window_are_checkpointed() {
    use worldfleet_domain::names::LEDGER_TABLE;
    use worldfleet_prune::checkpoint::{
        CheckpointOptions, checkpoint_partition, is_event_entry, read_checkpoint,
    };
    let fixture = Fixture::new().await;
    let partition = "gm-1/district-1/scene-1";
    for (offset, event_id) in ["01AAA", "01AAB", "01AAC"].iter().enumerate() {
        fixture
            .table()
            .put(
                LEDGER_TABLE,
                Item::new(Key::new(partition, *event_id))
                    .with("kind", "dialogue")
                    .with("accepted_at_ms", (START_MS + offset as u64) as i64),
                None,
            )
            .await
            .unwrap();
        fixture
            .table()
            .put(
                CANON_TABLE,
                Item::new(Key::new(partition, *event_id))
                    .with("canon", format!("{{\"line\":{offset}}}"))
                    .with("dist_plan", "plan-1"),
                None,
            )
            .await
            .unwrap();
    }
    let request = PruneRequest::EventsPublished {
        plan_id: "plan-1".into(),
        events: vec![(PartitionUid::parse(partition).unwrap(), "01AAC".into())],
    };
    let prune = fixture.prune(PruneConfig::default());
    prune.handle(&request).await.unwrap();
    assert_eq!(
        read_checkpoint(fixture.table(), partition).await.unwrap(),
        None,
        "nothing is older than the clock window yet"
    );
    // Such a call reads one ledger entry before it stops, not a page of them.
    let before = fixture.store.store.counters();
    let options = CheckpointOptions {
        accepted_before_ms: START_MS - 1,
        compact: false,
        taken_at_ms: START_MS,
    };
    let outcome = checkpoint_partition(fixture.table(), partition, options)
        .await
        .unwrap();
    assert_eq!(outcome.covered, 0);
    let read = fixture.store.store.counters().since(&before);
    // The head (a miss) and one entry; a page would be every entry of the partition.
    assert!(read.table_items_read <= 2, "{read:?}");

    fixture.clock.advance(301_000);
    prune.handle(&request).await.unwrap();
    assert_eq!(
        read_checkpoint(fixture.table(), partition).await.unwrap(),
        Some(("01AAC".to_owned(), 3))
    );
    let ledger = fixture
        .partition(LEDGER_TABLE, partition, SortKeyRange::All)
        .await;
    assert_eq!(ledger.iter().filter(|item| is_event_entry(item)).count(), 3);

    // A duplicate request finds nothing new to cover.
    prune.handle(&request).await.unwrap();
    assert_eq!(
        read_checkpoint(fixture.table(), partition).await.unwrap(),
        Some(("01AAC".to_owned(), 3))
    );
}
