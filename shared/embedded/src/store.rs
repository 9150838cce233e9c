//! The store: one fjall database, one group-commit writer, the queue and table over them.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::config::PartitioningPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use worldfleet_ports::{Clock, Error, Item, Key, OperationCounters, Result, UsageSnapshot};

use crate::codec;
use crate::queue::{EmbeddedQueue, QueueHandle};
use crate::table::EmbeddedTable;
use crate::writer::{Answer, Durability, JournalProgress, Space, Writer, storage_error};

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Which acknowledged writes have been fsynced: all ([`Durability::Sync`], the default),
    /// those through the acknowledging handles ([`Durability::Boundary`]), or none
    /// ([`Durability::Buffered`]).
    pub durability: Durability,
    /// With [`Durability::Boundary`], the longest a write answered on commit waits for the
    /// background fsync (with [`Durability::Sync`], how often an idle syncer looks).
    pub flush_interval: Duration,
    /// How often the janitor removes expired items, deduplication ids and messages past
    /// their queue's retention; `None` runs no janitor thread (call
    /// [`EmbeddedStore::sweep_expired`] yourself).
    pub janitor_interval: Option<Duration>,
    /// Block cache size in bytes (shared by every keyspace).
    pub cache_bytes: u64,
    /// Largest active memtable of one keyspace, in bytes, before fjall seals it and flushes it
    /// to disk in the background (up to four sealed ones per keyspace can wait for the flush).
    /// Applies to keyspaces this store creates: fjall keeps a keyspace's memtable size from
    /// its creation, so a store created before this option keeps its 64 MiB.
    pub memtable_bytes: u64,
    /// The size compaction cuts a keyspace's tables at ([`keyspace_options`] says why it is
    /// smaller than fjall's 64 MiB). Applies to keyspaces this store creates, like
    /// `memtable_bytes`: a store created before this option keeps 64 MiB tables.
    pub table_bytes: u64,
    /// How often a waiting receive re-checks for messages whose delay or visibility ended
    /// (sends wake waiters at once; this tick notices time passing, or a moved clock).
    pub receive_recheck: Duration,
    /// fjall's background threads, which flush memtables and compact tables
    /// ([`default_background_workers`]: at least 3). Two is a trap in fjall 3.1: the first
    /// worker keeps itself for flushes and hands every compaction request it receives back
    /// to the channel, so while the only other worker runs a long compaction it receives the
    /// same pending request again and again — a busy loop on a core for as long as the
    /// compaction lasts. One worker risks a deadlock (it can block sending a flush request to
    /// its own full channel), so fewer than two are refused.
    pub background_workers: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Sync,
            flush_interval: Duration::from_millis(20),
            janitor_interval: Some(Duration::from_secs(30)),
            cache_bytes: DEFAULT_CACHE_BYTES,
            memtable_bytes: DEFAULT_MEMTABLE_BYTES,
            table_bytes: DEFAULT_TABLE_BYTES,
            receive_recheck: Duration::from_millis(100),
            background_workers: default_background_workers(),
        }
    }
}

/// [`StoreOptions::background_workers`] by default: fjall's own choice (the cores, at most
/// four) but never fewer than three, so that a flush worker and a compaction leave a second
/// compaction worker to take the requests the flush worker hands back.
pub fn default_background_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.clamp(3, 4)
}

/// [`StoreOptions::cache_bytes`] by default.
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// [`StoreOptions::memtable_bytes`] by default.
pub const DEFAULT_MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// [`StoreOptions::table_bytes`] by default.
pub const DEFAULT_TABLE_BYTES: u64 = 16 * 1024 * 1024;

/// Environment variable: the block cache in MiB ([`StoreOptions::cache_bytes`]).
pub const CACHE_MIB_VARIABLE: &str = "WORLDFLEET_STORE_CACHE_MIB";
/// Environment variable: one keyspace's memtable in MiB ([`StoreOptions::memtable_bytes`]).
pub const MEMTABLE_MIB_VARIABLE: &str = "WORLDFLEET_STORE_MEMTABLE_MIB";
/// Environment variable: the size tables are cut at, in MiB ([`StoreOptions::table_bytes`]).
pub const TABLE_MIB_VARIABLE: &str = "WORLDFLEET_STORE_TABLE_MIB";
/// Environment variable: fjall's flush and compaction threads
/// ([`StoreOptions::background_workers`]).
pub const WORKERS_VARIABLE: &str = "WORLDFLEET_STORE_WORKERS";

impl StoreOptions {
    /// These options with the store's sizes taken from the process environment where set:
    /// [`CACHE_MIB_VARIABLE`] (1–4096), [`MEMTABLE_MIB_VARIABLE`] (1–256) and
    /// [`TABLE_MIB_VARIABLE`] (1–256), and the background workers from [`WORKERS_VARIABLE`]
    /// (2–16); an unparsable or out-of-range value is an error naming the variable.
    pub fn with_sizes_from_env(self) -> std::result::Result<Self, String> {
        self.with_sizes_from(|name| std::env::var(name).ok())
    }

    /// As [`StoreOptions::with_sizes_from_env`], reading variables through `var`.
    pub fn with_sizes_from(
        mut self,
        var: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, String> {
        let mib = |name: &str, max: u64| -> std::result::Result<Option<u64>, String> {
            let Some(text) = var(name) else {
                return Ok(None);
            };
            match text.trim().parse::<u64>() {
                Ok(value) if (1..=max).contains(&value) => Ok(Some(value * 1024 * 1024)),
                _ => Err(format!(
                    "{name}={text}: give a whole number of MiB from 1 to {max}"
                )),
            }
        };
        if let Some(bytes) = mib(CACHE_MIB_VARIABLE, 4096)? {
            self.cache_bytes = bytes;
        }
        if let Some(bytes) = mib(MEMTABLE_MIB_VARIABLE, 256)? {
            self.memtable_bytes = bytes;
        }
        if let Some(bytes) = mib(TABLE_MIB_VARIABLE, 256)? {
            self.table_bytes = bytes;
        }
        if let Some(text) = var(WORKERS_VARIABLE) {
            self.background_workers = match text.trim().parse::<usize>() {
                Ok(workers) if (2..=16).contains(&workers) => workers,
                _ => {
                    return Err(format!(
                        "{WORKERS_VARIABLE}={text}: give a whole number of threads from 2 to 16 \
                         (one worker can deadlock fjall 3.1)"
                    ));
                }
            };
        }
        Ok(self)
    }
}

/// What an open store holds in memory ([`EmbeddedStore::memory`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreMemory {
    /// Bytes in fjall's memtables, active and sealed, across keyspaces.
    pub write_buffer_bytes: u64,
    /// Bytes in the block cache (at most [`StoreOptions::cache_bytes`]).
    pub cache_bytes: u64,
    /// Tables on disk across keyspaces.
    pub tables: usize,
    /// Sealed memtables waiting for their flush.
    pub sealed_memtables: usize,
    /// Undeleted messages whose delivery state the queues keep in memory.
    pub queued_messages: usize,
    /// Unexpired FIFO deduplication ids the queues keep in memory.
    pub dedup_ids: usize,
}

/// Reads an open store's memory use ([`EmbeddedStore::gauge`]).
#[derive(Clone)]
pub struct StoreGauge(Arc<Shared>);

impl StoreGauge {
    /// What the store holds in memory now: fjall's memtables and block cache, its tables
    /// (each keeps its top-level index in memory), and the queues' delivery state.
    pub fn memory(&self) -> Result<StoreMemory> {
        let handles = self
            .0
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(handles) = handles.as_ref() else {
            return Err(Error::Unavailable("embedded store is closed".into()));
        };
        let spaces = &handles.spaces;
        let all = [
            &spaces.items,
            &spaces.ttl,
            &spaces.messages,
            &spaces.receives,
            &spaces.dedup,
            &spaces.meta,
        ];
        let mut memory = StoreMemory {
            write_buffer_bytes: handles.database.write_buffer_size(),
            cache_bytes: handles.database.cache_size(),
            tables: all.iter().map(|space| space.table_count()).sum(),
            sealed_memtables: all.iter().map(|space| space.sealed_memtable_count()).sum(),
            ..StoreMemory::default()
        };
        for handle in self
            .0
            .queues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            let (messages, dedup_ids) = handle.held();
            memory.queued_messages += messages;
            memory.dedup_ids += dedup_ids;
        }
        Ok(memory)
    }
}

/// The fjall keyspaces the store uses.
#[derive(Clone)]
pub(crate) struct Spaces {
    /// Table items: `codec::item_key` → encoded attributes.
    pub items: Keyspace,
    /// TTL index: expiry seconds (u64 BE) + item key → empty. Entries may be stale; the
    /// janitor re-checks the item before deleting it.
    pub ttl: Keyspace,
    /// Queue messages: `codec::message_key` → `MessageRecord`.
    pub messages: Keyspace,
    /// Durable receive counts: message key → u32 BE.
    pub receives: Keyspace,
    /// FIFO deduplication ids: queue prefix + `0xFE` + expiry ms (u64 BE) + the id's 16-byte
    /// digest (`queue::dedup_digest`) → expiry ms (u64 BE) + message id.
    pub dedup: Keyspace,
    /// Declared queues and tables, and the open epoch.
    pub meta: Keyspace,
}

/// The fjall handles. [`EmbeddedStore::close`] takes them out, so that the database (its
/// lock, journal and background threads) is released even while queue or table handles live.
pub(crate) struct Handles {
    pub database: Database,
    pub spaces: Spaces,
}

/// State shared by the store, its queue and its table.
pub(crate) struct Shared {
    handles: RwLock<Option<Handles>>,
    pub clock: Arc<dyn Clock>,
    pub counters: OperationCounters,
    pub writer: Writer,
    pub options: StoreOptions,
    /// Declared tables.
    pub tables: RwLock<HashSet<String>>,
    /// Declared queues and their in-memory delivery state.
    pub queues: RwLock<HashMap<String, Arc<QueueHandle>>>,
    /// Incremented at every open; part of sequence numbers and receipt handles.
    pub epoch: u64,
    /// Next message sequence number (epoch in the high 24 bits).
    pub sequence: AtomicU64,
    janitor: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl Shared {
    /// Runs `read` over the keyspaces; `Unavailable` once the store is closed. `close` waits
    /// for reads in progress.
    pub(crate) fn with_spaces<T>(&self, read: impl FnOnce(&Spaces) -> Result<T>) -> Result<T> {
        let handles = self.handles.read().unwrap_or_else(PoisonError::into_inner);
        match handles.as_ref() {
            Some(handles) => read(&handles.spaces),
            None => Err(Error::Unavailable("embedded store is closed".into())),
        }
    }

    fn stop_background(&self) {
        let janitor = self
            .janitor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((stop, thread)) = janitor {
            drop(stop);
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
        self.writer.shutdown();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop_background();
    }
}

/// A durable embedded store: an SQS-like queue and a DynamoDB-like table in one fjall
/// database, whose writes from every concurrent caller are grouped into few fsyncs.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    queue: Arc<EmbeddedQueue>,
    table: Arc<EmbeddedTable>,
    acknowledging_queue: Arc<EmbeddedQueue>,
    acknowledging_table: Arc<EmbeddedTable>,
}

const EPOCH_KEY: &[u8] = b"epoch";

/// How a keyspace this store creates is laid out (fjall keeps a keyspace's layout from its
/// creation, so a store created earlier keeps the layout it was created with).
///
/// Block indexes and filters are partitioned from level 1 on, not only from level 3 as fjall
/// does by default. A table's whole index or filter is one block otherwise, loaded through the
/// block cache on every point read that reaches the table: for a 64 MiB table that is hundreds
/// of KiB read and checksummed to find one 4 KiB data block, and a small cache, full of data
/// blocks, keeps losing them. Partitioned, a read loads one 4 KiB partition; the small top-level
/// index of each table stays in memory.
///
/// Tables are cut at `table_bytes` ([`DEFAULT_TABLE_BYTES`]: 16 MiB), not fjall's 64 MiB.
/// Leveled compaction sizes level 1 at four tables and every level below at ten times the one
/// above, and merges one table at a time into the tables of the next level its keys overlap. Keys of every
/// partition are written everywhere in the key space, so a level-1 table overlaps about a
/// quarter of level 2: with 64 MiB tables, compactions of ~0.6 GiB once level 2 nears its
/// 2.5 GiB (the kind of burst seen in the 700/s soak at minute 25: store 2.2 → 3.1 → 1.4 GB
/// within three minutes, p99 up to 1.6 s). At 16 MiB the same work comes in pieces a quarter
/// the size (level 1 64 MiB, level 2 640 MiB, level 3 6.4 GiB).
fn keyspace_options(memtable_bytes: u64, table_bytes: u64) -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .max_memtable_size(memtable_bytes)
        .compaction_strategy(Arc::new(
            fjall::compaction::Leveled::default().with_table_target_size(table_bytes),
        ))
        .index_block_partitioning_policy(PartitioningPolicy::new([false, true]))
        .filter_block_partitioning_policy(PartitioningPolicy::new([false, true]))
}

impl EmbeddedStore {
    /// Opens (or creates) the store in the directory `path`.
    ///
    /// Queues are rebuilt from disk: every undeleted message is visible again after a
    /// restart (in-flight state is not persisted; at-least-once delivery allows this), but
    /// receive counts, delays and deduplication ids are durable.
    pub fn open(path: &Path, clock: Arc<dyn Clock>, options: StoreOptions) -> Result<Self> {
        if options.background_workers < 2 {
            return Err(Error::InvalidRequest(format!(
                "{} background workers: the store needs at least 2 (one can deadlock fjall 3.1)",
                options.background_workers
            )));
        }
        let database = Database::builder(path)
            .cache_size(options.cache_bytes)
            .worker_threads(options.background_workers)
            .manual_journal_persist(true)
            .open()
            .map_err(|error| match error {
                fjall::Error::Locked => Error::Unavailable(format!(
                    "the store in {} is in use by another process (a running `worldfleet serve` \
                     or `run`); stop it first, or ask the running server over HTTP",
                    path.display()
                )),
                other => storage_error(other),
            })?;
        let (memtable_bytes, table_bytes) = (options.memtable_bytes, options.table_bytes);
        let keyspace = |name: &str| {
            database
                .keyspace(name, || keyspace_options(memtable_bytes, table_bytes))
                .map_err(storage_error)
        };
        let spaces = Spaces {
            items: keyspace("items")?,
            ttl: keyspace("ttl")?,
            messages: keyspace("messages")?,
            receives: keyspace("receives")?,
            dedup: keyspace("dedup")?,
            meta: keyspace("meta")?,
        };
        let epoch = match spaces.meta.get(EPOCH_KEY).map_err(storage_error)? {
            Some(bytes) => {
                let bytes: [u8; 8] = bytes.as_ref().try_into().unwrap_or_default();
                u64::from_be_bytes(bytes) + 1
            }
            None => 1,
        };
        spaces
            .meta
            .insert(EPOCH_KEY, epoch.to_be_bytes())
            .map_err(storage_error)?;
        database
            .persist(fjall::PersistMode::SyncAll)
            .map_err(storage_error)?;
        let writer = Writer::start(
            database.clone(),
            path,
            spaces.clone(),
            options.durability,
            options.flush_interval,
        )?;
        let shared = Arc::new(Shared {
            handles: RwLock::new(Some(Handles { database, spaces })),
            clock,
            counters: OperationCounters::default(),
            writer,
            options: options.clone(),
            tables: RwLock::new(HashSet::new()),
            queues: RwLock::new(HashMap::new()),
            epoch,
            sequence: AtomicU64::new(epoch << 40),
            janitor: Mutex::new(None),
        });
        crate::table::load_tables(&shared)?;
        crate::queue::load_queues(&shared)?;
        if let Some(interval) = options.janitor_interval {
            let (stop, stopped) = channel::<()>();
            let weak = Arc::downgrade(&shared);
            let thread = std::thread::Builder::new()
                .name("worldfleet-store-janitor".into())
                .spawn(move || janitor(&weak, &stopped, interval))
                .map_err(storage_error)?;
            *shared
                .janitor
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((stop, thread));
        }
        Ok(Self {
            queue: Arc::new(EmbeddedQueue::new(shared.clone(), Answer::Committed)),
            table: Arc::new(EmbeddedTable::new(shared.clone(), Answer::Committed)),
            acknowledging_queue: Arc::new(EmbeddedQueue::new(shared.clone(), Answer::Durable)),
            acknowledging_table: Arc::new(EmbeddedTable::new(shared.clone(), Answer::Durable)),
            shared,
        })
    }

    /// The queue over this store, for the stages: with [`Durability::Boundary`] its writes are
    /// answered once committed and handed to the OS, and fsynced in the background.
    pub fn queue(&self) -> Arc<EmbeddedQueue> {
        self.queue.clone()
    }

    /// The table over this store, for the stages (answered as [`EmbeddedStore::queue`]).
    pub fn table(&self) -> Arc<EmbeddedTable> {
        self.table.clone()
    }

    /// The queue for whatever answers the outside world (an ingress door, the SQS endpoint):
    /// unless the store is [`Durability::Buffered`], a write through it is answered only once
    /// fsynced, and a receive only once what it returns is fsynced.
    pub fn acknowledging_queue(&self) -> Arc<EmbeddedQueue> {
        self.acknowledging_queue.clone()
    }

    /// The table for whatever answers the outside world (the feed API, push subscriptions):
    /// unless the store is [`Durability::Buffered`], a write through it is answered only once
    /// fsynced, and a read returns only once everything it could have seen is fsynced, so a
    /// reader is never shown what a crash could still take back.
    pub fn acknowledging_table(&self) -> Arc<EmbeddedTable> {
        self.acknowledging_table.clone()
    }

    /// Requests and units so far, counted as SQS and DynamoDB would bill them.
    pub fn counters(&self) -> UsageSnapshot {
        self.shared.counters.snapshot()
    }

    /// How many commit groups are written and how many fsynced: a write answered on commit
    /// is durable once `durable` reaches the `written` seen when it was answered.
    pub fn journal_progress(&self) -> JournalProgress {
        self.shared.writer.progress()
    }

    /// Bytes the database occupies on disk (tables, queues and journal).
    pub fn disk_bytes(&self) -> Result<u64> {
        let handles = self
            .shared
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match handles.as_ref() {
            Some(handles) => handles.database.disk_space().map_err(storage_error),
            None => Err(Error::Unavailable("embedded store is closed".into())),
        }
    }

    /// Counts what the store holds, table by table and keyspace by keyspace
    /// ([`crate::census`]). It scans every key: a blocking call of seconds per gigabyte, for a
    /// command or a blocking thread, not for a stage's hot path.
    pub fn census(&self) -> Result<crate::StoreCensus> {
        self.shared.with_spaces(crate::census::census)
    }

    /// What the store holds in memory now ([`StoreGauge::memory`]).
    pub fn memory(&self) -> Result<StoreMemory> {
        self.gauge().memory()
    }

    /// A handle that reads [`EmbeddedStore::memory`] while something else owns the store
    /// (a metrics endpoint); it fails with `Unavailable` once the store is closed.
    pub fn gauge(&self) -> StoreGauge {
        StoreGauge(Arc::clone(&self.shared))
    }

    /// Removes expired items, deduplication ids and messages past their queue's retention
    /// now; returns how many records went.
    /// Safe to call from async code: the sweep runs on a blocking thread.
    pub async fn sweep_expired(&self) -> Result<usize> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || sweep(&shared))
            .await
            .map_err(|error| {
                worldfleet_ports::Error::Unavailable(format!("sweep stopped: {error}"))
            })?
    }

    /// Finishes queued writes, syncs, and stops the writer and janitor; later operations on
    /// this store's queue and table fail with `Unavailable`.
    ///
    /// Then it releases the database: its lock, journal and background threads are gone when
    /// `close` returns, even if queue or table handles are still alive, so the directory can be
    /// reopened or deleted at once.
    pub fn close(self) {
        self.shared.stop_background();
        let handles = self
            .shared
            .handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // The writer and syncer threads have exited with their clones; dropping the last
        // handle waits for fjall's background workers.
        drop(handles);
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // The queue and table handed out may outlive the store; they keep it open until the
        // last of them is dropped (then `Shared::drop` stops the threads).
    }
}

fn janitor(shared: &Weak<Shared>, stopped: &std::sync::mpsc::Receiver<()>, interval: Duration) {
    loop {
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match sweep(&shared) {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "embedded store: janitor swept"),
            Err(error) => tracing::warn!(%error, "embedded store: janitor sweep failed"),
        }
    }
}

/// Most index entries one janitor job handles, so foreground writes are never held up long.
const SWEEP_CHUNK: usize = 512;

fn sweep(shared: &Shared) -> Result<usize> {
    let now_secs = shared.clock.now_secs();
    let now_ms = shared.clock.now_ms();
    let mut removed = 0;
    loop {
        let upper = (now_secs + 1).to_be_bytes();
        let due = shared.with_spaces(|spaces| {
            let mut due: Vec<Vec<u8>> = Vec::new();
            for entry in spaces.ttl.range(..upper.as_slice()).take(SWEEP_CHUNK) {
                due.push(entry.key().map_err(storage_error)?.to_vec());
            }
            Ok(due)
        })?;
        if due.is_empty() {
            break;
        }
        removed += shared
            .writer
            .execute_blocking(Answer::Committed, move |staging| {
                let mut removed = 0;
                for index_key in due {
                    let item_key = &index_key[8..];
                    if let Some(value) = staging.get(Space::Items, item_key)? {
                        let (_, pk, sk) = codec::split_item_key(item_key)?;
                        let item = Item {
                            key: Key::new(pk, sk),
                            attributes: codec::decode_attributes(&value)?,
                        };
                        if item.is_expired(now_secs) {
                            staging.remove(Space::Items, item_key);
                            removed += 1;
                        }
                    }
                    staging.remove(Space::Ttl, index_key);
                }
                Ok(removed)
            })?;
    }
    removed += crate::queue::sweep_dedup(shared, now_ms)?;
    removed += crate::queue::sweep_retention(shared, now_ms)?;
    Ok(removed)
}
