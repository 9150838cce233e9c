//! The group-commit writer: one thread applies every write, a whole group of callers shares
//! one fjall batch, and a syncer thread makes groups durable.
//!
//! Callers hand the writer a job. The writer thread takes the first waiting job, then every
//! job that queued up behind it (up to [`MAX_GROUP`]), and runs them one after another against
//! a [`Staging`]: a job reads the committed state as overlaid by the writes of the earlier jobs
//! of its group (not yet in fjall), evaluates its conditions and stages its own writes. A job
//! that fails leaves nothing behind; a job that succeeds adds its writes to the group's
//! overlay. When the group is complete its overlay (the last write per key) becomes one fjall
//! batch, committed atomically to the journal and memtables, and the journal is handed to the
//! OS (a `write`, no fsync). Because only the writer thread writes, check-and-set is race-free
//! without locks.
//!
//! When a caller hears back depends on the store's [`Durability`] and the job's [`Answer`]:
//!
//! * a job that must be durable goes to the syncer thread, which fsyncs the journal once for
//!   every group waiting and only then answers their callers, in commit order, while the
//!   writer already commits the next groups;
//! * any other job is answered as soon as its group is committed and handed to the OS; the
//!   syncer fsyncs it in the background within the store's flush interval.
//!
//! fjall keeps one journal for all keyspaces and recovers it as a prefix: batches in commit
//! order, a torn last batch discarded. So a crash loses at most a *suffix* of committed
//! groups, and a fsync that covers group N covers every group before it; that is what lets
//! most writes be answered on commit (the crate README has the whole argument). The syncer
//! fsyncs the journal file through its own descriptor rather than through fjall, so fjall's
//! journal lock is not held for the length of a fsync and the writer keeps committing
//! meanwhile. After a failed fsync nothing more is acknowledged: the journal may have a hole.
//!
//! Readers on other threads see a group's writes once its batch is committed, before the
//! fsync. Anything they write in response lands later in the journal and cannot survive a
//! crash that the write they read did not. A reader that shows what it read to the outside
//! world waits first until it is durable ([`Writer::wait_durable`]).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::{Database, Keyspace, PersistMode, Slice};
use tokio::sync::oneshot;
use worldfleet_ports::{Error, Result};

use crate::store::Spaces;

/// How durable an acknowledged write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every write is fsynced before it is acknowledged: survives power loss.
    #[default]
    Sync,
    /// Only writes through the store's acknowledging handles
    /// ([`crate::EmbeddedStore::acknowledging_queue`] and
    /// [`crate::EmbeddedStore::acknowledging_table`]) are fsynced before they are acknowledged,
    /// and reads through them wait until what they read is fsynced. Every other write is
    /// acknowledged once committed and handed to the OS, and fsynced in the background within
    /// [`crate::StoreOptions::flush_interval`]. A power loss can lose a suffix of those, never
    /// one that an acknowledging write or read came after.
    Boundary,
    /// Every write is acknowledged once handed to the OS, none is fsynced before the store
    /// closes: survives a process crash, not a power loss.
    Buffered,
}

/// When the caller of one write is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Once its group is committed and handed to the OS (fsynced later, in the background),
    /// unless the store's durability asks for more.
    Committed,
    /// Once its group is fsynced, unless the store is [`Durability::Buffered`].
    Durable,
}

/// Most jobs in one commit group.
pub(crate) const MAX_GROUP: usize = 4096;

/// The keyspaces a job can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Space {
    Items,
    Ttl,
    Messages,
    Receives,
    Dedup,
    Meta,
}

const SPACE_COUNT: usize = 6;

impl Spaces {
    fn keyspace(&self, space: Space) -> &Keyspace {
        match space {
            Space::Items => &self.items,
            Space::Ttl => &self.ttl,
            Space::Messages => &self.messages,
            Space::Receives => &self.receives,
            Space::Dedup => &self.dedup,
            Space::Meta => &self.meta,
        }
    }
}

/// The writes of the current group not yet in fjall, per keyspace: the latest value of each
/// key written, `None` where it was removed.
type Overlay = [HashMap<Slice, Option<Slice>>; SPACE_COUNT];

/// What one job sees and writes: reads go through its own staged writes, then the group's,
/// then fjall; writes stay staged until the job succeeds.
pub(crate) struct Staging<'group> {
    spaces: &'group Spaces,
    group: &'group Overlay,
    own: Vec<(Space, Slice, Option<Slice>)>,
}

impl Staging<'_> {
    /// The value under `key` as this job would leave it so far.
    pub(crate) fn get(&self, space: Space, key: &[u8]) -> Result<Option<Slice>> {
        if let Some((_, _, value)) = self
            .own
            .iter()
            .rev()
            .find(|(written, written_key, _)| *written == space && &**written_key == key)
        {
            return Ok(value.clone());
        }
        if let Some(value) = self.group[space as usize].get(key) {
            return Ok(value.clone());
        }
        self.spaces.keyspace(space).get(key).map_err(storage_error)
    }

    /// Stages `key = value`.
    pub(crate) fn insert(&mut self, space: Space, key: impl Into<Slice>, value: impl Into<Slice>) {
        self.own.push((space, key.into(), Some(value.into())));
    }

    /// Stages the removal of `key`.
    pub(crate) fn remove(&mut self, space: Space, key: impl Into<Slice>) {
        self.own.push((space, key.into(), None));
    }
}

/// A write request on the writer thread: applied in its group, settled in commit order, and
/// answered once as durable as it asked.
trait Job: Send {
    /// Reads and stages writes; returns whether they are to be kept.
    fn apply(&mut self, staging: &mut Staging<'_>) -> bool;
    /// When its caller is to be answered.
    fn answer(&self) -> Answer;
    /// Runs the job's in-memory follow-up with the group's outcome, in commit order.
    fn settle(&mut self, group: Result<()>);
    /// Answers the caller; `persisted` is the outcome of making the group durable.
    fn reply(self: Box<Self>, persisted: Result<()>);
}

/// A job built from closures: `apply` on the writer thread, `after` with the group's outcome
/// in commit order, then the answer through `reply`.
struct Call<T, F, A> {
    apply: Option<F>,
    after: Option<A>,
    answer: Answer,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F, A> Job for Call<T, F, A>
where
    T: Send + 'static,
    F: FnOnce(&mut Staging<'_>) -> Result<T> + Send + 'static,
    A: FnOnce(&Result<T>) + Send + 'static,
{
    fn apply(&mut self, staging: &mut Staging<'_>) -> bool {
        let Some(apply) = self.apply.take() else {
            return false;
        };
        let outcome = apply(staging);
        let keep = outcome.is_ok();
        self.outcome = Some(outcome);
        keep
    }

    fn answer(&self) -> Answer {
        self.answer
    }

    fn settle(&mut self, group: Result<()>) {
        let outcome = self
            .outcome
            .take()
            .unwrap_or_else(|| Err(Error::Unavailable("embedded store job not run".into())));
        let outcome = group.and(outcome);
        if let Some(after) = self.after.take() {
            after(&outcome);
        }
        self.outcome = Some(outcome);
    }

    fn reply(mut self: Box<Self>, persisted: Result<()>) {
        let outcome = self
            .outcome
            .take()
            .unwrap_or_else(|| Err(Error::Unavailable("embedded store job not settled".into())));
        let _ = self.reply.send(persisted.and(outcome));
    }
}

/// Settles and answers `job` at once.
fn finish(mut job: Box<dyn Job>, group: Result<()>) {
    job.settle(group);
    job.reply(Ok(()));
}

enum Command {
    Job(Box<dyn Job>),
    Shutdown,
}

/// How far the journal is: groups are numbered from 1 in commit order.
#[derive(Default)]
struct Progress {
    /// The last group whose batch may be visible to readers (set just before its commit).
    visible: AtomicU64,
    /// The last group committed and handed to the OS.
    written: AtomicU64,
    /// The last group fsynced.
    durable: AtomicU64,
    /// The first failed fsync or journal write: nothing later is acknowledged.
    failure: Mutex<Option<Error>>,
}

impl Progress {
    fn failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fail(&self, error: &Error) {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if failure.is_none() {
            tracing::error!(%error, "embedded store: journal persist failed");
            *failure = Some(error.clone());
        }
    }
}

/// How far the journal is, counted in commit groups since the store opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalProgress {
    /// Groups committed and handed to the OS.
    pub written: u64,
    /// Groups fsynced (with [`Durability::Buffered`], none until the store closes).
    pub durable: u64,
}

/// What the syncer is handed.
enum ToSyncer {
    /// Jobs of a committed group that answer once it is durable. With `settle`, they are
    /// settled then too (with that outcome of the commit); otherwise the writer settled them.
    Group {
        jobs: Vec<Box<dyn Job>>,
        settle: Option<Result<()>>,
    },
    /// A reader waiting until group `.0` is durable.
    Barrier(u64, oneshot::Sender<Result<()>>),
    /// The writer stopped: sync once more, answer everything, stop.
    Stop,
}

/// The handle through which writes reach the writer thread.
pub(crate) struct Writer {
    sender: Sender<Command>,
    /// The syncer's inbox, for readers' durability barriers; `None` when nothing is fsynced
    /// before the store closes ([`Durability::Buffered`]).
    syncer: Option<Sender<ToSyncer>>,
    progress: Arc<Progress>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Maps a storage error to the port's retryable `Unavailable`.
pub(crate) fn storage_error(error: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("embedded store: {error}"))
}

impl Writer {
    /// Starts the writer thread (and the syncer thread unless `durability` is buffered) over
    /// `database`, whose journal files are in `directory`, and its `spaces`.
    pub(crate) fn start(
        database: Database,
        directory: &Path,
        spaces: Spaces,
        durability: Durability,
        flush_interval: Duration,
    ) -> Result<Self> {
        let (sender, receiver) = channel();
        let progress = Arc::new(Progress::default());
        let (syncer_inbox, syncer) = match durability {
            Durability::Buffered => (None, None),
            Durability::Sync | Durability::Boundary => {
                let (to_syncer, inbox) = channel();
                let syncer_database = database.clone();
                let syncer_progress = Arc::clone(&progress);
                let journal = JournalFile::new(directory);
                let syncer = std::thread::Builder::new()
                    .name("worldfleet-store-syncer".into())
                    .spawn(move || {
                        Syncer {
                            database: syncer_database,
                            journal,
                            progress: syncer_progress,
                            flush_interval,
                        }
                        .run(&inbox);
                    })
                    .map_err(storage_error)?;
                (Some(to_syncer), Some(syncer))
            }
        };
        let thread = {
            let progress = Arc::clone(&progress);
            let to_syncer = syncer_inbox.clone();
            std::thread::Builder::new()
                .name("worldfleet-store-writer".into())
                .spawn(move || {
                    let group_writer = GroupWriter {
                        database: &database,
                        spaces: &spaces,
                        durability,
                        progress: &progress,
                        to_syncer: to_syncer.as_ref(),
                    };
                    group_writer.run(&receiver);
                    match (&to_syncer, syncer) {
                        (Some(to_syncer), Some(syncer)) => {
                            let _ = to_syncer.send(ToSyncer::Stop);
                            let _ = syncer.join();
                        }
                        _ => {
                            if let Err(error) = database.persist(PersistMode::SyncAll) {
                                tracing::error!(%error, "embedded store: final persist failed");
                            }
                        }
                    }
                })
                .map_err(storage_error)?
        };
        Ok(Self {
            sender,
            syncer: syncer_inbox,
            progress,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `apply` for the writer thread; the returned receiver answers as `answer` asks.
    /// `after` runs on the writer or syncer thread with the group's outcome, in commit order,
    /// before the answer is sent: in-memory state that must change in commit order changes
    /// there. (A durable job's `after` may see success and its caller still hear of a failed
    /// fsync.)
    pub(crate) fn enqueue<T, F, A>(
        &self,
        answer: Answer,
        apply: F,
        after: A,
    ) -> Result<oneshot::Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Staging<'_>) -> Result<T> + Send + 'static,
        A: FnOnce(&Result<T>) + Send + 'static,
    {
        let (reply, answered) = oneshot::channel();
        let job = Box::new(Call {
            apply: Some(apply),
            after: Some(after),
            answer,
            outcome: None,
            reply,
        });
        self.sender
            .send(Command::Job(job))
            .map_err(|_| Error::Unavailable("embedded store is closed".into()))?;
        Ok(answered)
    }

    /// Runs `apply` on the writer thread and waits for its answer (see [`Answer`]): `apply`'s,
    /// or the group's commit or persist error.
    pub(crate) async fn execute<T, F>(&self, answer: Answer, apply: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Staging<'_>) -> Result<T> + Send + 'static,
    {
        let answered = self.enqueue(answer, apply, |_| {})?;
        wait(answered).await
    }

    /// Like [`Writer::execute`], for threads outside the async runtime.
    pub(crate) fn execute_blocking<T, F>(&self, answer: Answer, apply: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Staging<'_>) -> Result<T> + Send + 'static,
    {
        self.enqueue(answer, apply, |_| {})?
            .blocking_recv()
            .map_err(|_| Error::Unavailable("embedded store writer stopped".into()))?
    }

    /// Waits until everything a read made before this call could have seen is fsynced. At once
    /// when it already is, or when nothing is fsynced before close ([`Durability::Buffered`]).
    pub(crate) async fn wait_durable(&self) -> Result<()> {
        let Some(syncer) = &self.syncer else {
            return Ok(());
        };
        let target = self.progress.visible.load(Ordering::SeqCst);
        if let Some(error) = self.progress.failure() {
            return Err(error);
        }
        if self.progress.durable.load(Ordering::SeqCst) >= target {
            return Ok(());
        }
        let (reply, answered) = oneshot::channel();
        syncer
            .send(ToSyncer::Barrier(target, reply))
            .map_err(|_| Error::Unavailable("embedded store is closed".into()))?;
        wait(answered).await
    }

    /// How far the journal is written and fsynced.
    pub(crate) fn progress(&self) -> JournalProgress {
        JournalProgress {
            written: self.progress.written.load(Ordering::SeqCst),
            durable: self.progress.durable.load(Ordering::SeqCst),
        }
    }

    /// Finishes queued jobs, persists, and stops the threads. Idempotent.
    pub(crate) fn shutdown(&self) {
        let _ = self.sender.send(Command::Shutdown);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// Waits for an answer from [`Writer::enqueue`].
pub(crate) async fn wait<T>(answer: oneshot::Receiver<Result<T>>) -> Result<T> {
    answer
        .await
        .map_err(|_| Error::Unavailable("embedded store writer stopped".into()))?
}

/// Runs `job` against the group so far; keeps its writes if it succeeded.
fn apply(job: &mut dyn Job, spaces: &Spaces, overlay: &mut Overlay) {
    let mut staging = Staging {
        spaces,
        group: overlay,
        own: Vec::new(),
    };
    if job.apply(&mut staging) {
        for (space, key, value) in staging.own {
            overlay[space as usize].insert(key, value);
        }
    }
}

/// [`Space`]s by their index in an [`Overlay`].
const SPACES: [Space; SPACE_COUNT] = [
    Space::Items,
    Space::Ttl,
    Space::Messages,
    Space::Receives,
    Space::Dedup,
    Space::Meta,
];

/// The writer thread's view of the store.
struct GroupWriter<'thread> {
    database: &'thread Database,
    spaces: &'thread Spaces,
    durability: Durability,
    progress: &'thread Progress,
    to_syncer: Option<&'thread Sender<ToSyncer>>,
}

impl GroupWriter<'_> {
    /// Applies jobs and commits each group's batch until shut down.
    fn run(&self, receiver: &Receiver<Command>) {
        let mut overlay: Overlay = Default::default();
        let mut jobs: Vec<Box<dyn Job>> = Vec::new();
        let mut group_number = 0u64;
        let mut open = true;
        while open {
            match receiver.recv() {
                Ok(Command::Job(mut job)) => {
                    apply(job.as_mut(), self.spaces, &mut overlay);
                    jobs.push(job);
                }
                Ok(Command::Shutdown) | Err(_) => open = false,
            }
            while open && jobs.len() < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(Command::Job(mut job)) => {
                        apply(job.as_mut(), self.spaces, &mut overlay);
                        jobs.push(job);
                    }
                    Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => open = false,
                    Err(TryRecvError::Empty) => break,
                }
            }
            if jobs.is_empty() {
                continue;
            }
            group_number += 1;
            let committed = self.commit(group_number, &mut overlay);
            if let Err(error) = &committed {
                tracing::error!(%error, "embedded store: group commit failed");
                for writes in &mut overlay {
                    writes.clear();
                }
            }
            self.finish(std::mem::take(&mut jobs), committed);
        }
        // Jobs queued after the shutdown are dropped; their callers see the writer stopped.
    }

    /// Commits the group's overlay as one batch and hands the journal to the OS (not yet
    /// durable).
    fn commit(&self, group_number: u64, overlay: &mut Overlay) -> Result<()> {
        if let Some(error) = self.progress.failure() {
            for writes in overlay.iter_mut() {
                writes.clear();
            }
            return Err(error);
        }
        let writes: usize = overlay.iter().map(HashMap::len).sum();
        if writes > 0 {
            let mut batch = fjall::OwnedWriteBatch::with_capacity(self.database.clone(), writes);
            for (index, writes) in overlay.iter_mut().enumerate() {
                let keyspace = self.spaces.keyspace(SPACES[index]);
                for (key, value) in writes.drain() {
                    match value {
                        Some(value) => batch.insert(keyspace, key, value),
                        None => batch.remove(keyspace, key),
                    }
                }
            }
            // Readers may see the batch from here on: a reader's durability barrier taken
            // after its read then covers this group.
            self.progress.visible.store(group_number, Ordering::SeqCst);
            if let Err(error) = batch.commit().map_err(storage_error) {
                // fjall poisons the database when its journal write fails: nothing later can
                // be made durable, and readers waiting on this group must hear so.
                self.progress.fail(&error);
                return Err(error);
            }
            if let Err(error) = self
                .database
                .persist(PersistMode::Buffer)
                .map_err(storage_error)
            {
                self.progress.fail(&error);
                return Err(error);
            }
        } else {
            self.progress.visible.store(group_number, Ordering::SeqCst);
        }
        self.progress.written.store(group_number, Ordering::SeqCst);
        Ok(())
    }

    /// Settles and answers the group's jobs, or hands them to the syncer.
    fn finish(&self, jobs: Vec<Box<dyn Job>>, committed: Result<()>) {
        let Some(to_syncer) = self.to_syncer else {
            for job in jobs {
                finish(job, committed.clone());
            }
            return;
        };
        let group = match self.durability {
            // Every caller waits for the fsync, and so does the in-memory follow-up.
            Durability::Sync => ToSyncer::Group {
                jobs,
                settle: Some(committed),
            },
            Durability::Boundary | Durability::Buffered => {
                let mut durable = Vec::new();
                for mut job in jobs {
                    if committed.is_ok() && job.answer() == Answer::Durable {
                        job.settle(Ok(()));
                        durable.push(job);
                    } else {
                        finish(job, committed.clone());
                    }
                }
                if durable.is_empty() {
                    return;
                }
                ToSyncer::Group {
                    jobs: durable,
                    settle: None,
                }
            }
        };
        if let Err(unsent) = to_syncer.send(group) {
            // The syncer is gone (it panicked): nothing can be made durable any more.
            if let ToSyncer::Group { jobs, settle } = unsent.0 {
                let error = Error::Unavailable("embedded store syncer stopped".into());
                for mut job in jobs {
                    if settle.is_some() {
                        job.settle(Err(error.clone()));
                    }
                    job.reply(Err(error.clone()));
                }
            }
        }
    }
}

/// The syncer thread: fsyncs the journal for every group and barrier that queued up during the
/// previous fsync at once, and in the background at least every `flush_interval` while
/// anything written is not yet durable.
struct Syncer {
    database: Database,
    journal: JournalFile,
    progress: Arc<Progress>,
    flush_interval: Duration,
}

/// How soon a barrier for a group still being committed looks again.
const BARRIER_RECHECK: Duration = Duration::from_millis(1);

impl Syncer {
    fn run(mut self, inbox: &Receiver<ToSyncer>) {
        let mut groups: Vec<SyncGroup> = Vec::new();
        let mut barriers: Vec<Barrier> = Vec::new();
        let mut stopping = false;
        while !stopping {
            let timeout = if barriers.is_empty() {
                self.flush_interval
            } else {
                BARRIER_RECHECK
            };
            let mut take = |message: ToSyncer| match message {
                ToSyncer::Group { jobs, settle } => {
                    groups.push((jobs, settle));
                    false
                }
                ToSyncer::Barrier(target, reply) => {
                    barriers.push((target, reply));
                    false
                }
                ToSyncer::Stop => true,
            };
            let mut stop = match inbox.recv_timeout(timeout) {
                Ok(message) => take(message),
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            for message in inbox.try_iter() {
                stop |= take(message);
            }
            stopping = stop;
            let persisted = self.sync();
            for (jobs, settle) in groups.drain(..) {
                for mut job in jobs {
                    if let Some(committed) = &settle {
                        job.settle(persisted.clone().and(committed.clone()));
                    }
                    job.reply(persisted.clone());
                }
            }
            match &persisted {
                Ok(()) => {
                    let durable = self.progress.durable.load(Ordering::SeqCst);
                    barriers = answer_barriers(std::mem::take(&mut barriers), durable);
                }
                Err(error) => {
                    for (_, reply) in barriers.drain(..) {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
        // Barriers sent after the stop find the inbox gone and fail as a closed store does.
        for (_, reply) in barriers {
            let _ = reply.send(Err(Error::Unavailable("embedded store is closed".into())));
        }
    }

    /// fsyncs what is written but not yet durable; the outcome covers every group up to
    /// `durable`.
    fn sync(&mut self) -> Result<()> {
        if let Some(error) = self.progress.failure() {
            return Err(error);
        }
        let target = self.progress.written.load(Ordering::SeqCst);
        if target <= self.progress.durable.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.journal.sync(&self.database) {
            Ok(()) => {
                self.progress.durable.store(target, Ordering::SeqCst);
                Ok(())
            }
            Err(error) => {
                self.progress.fail(&error);
                Err(error)
            }
        }
    }
}

/// A group's jobs waiting for the fsync, and the commit outcome to settle them with (see
/// [`ToSyncer::Group`]).
type SyncGroup = (Vec<Box<dyn Job>>, Option<Result<()>>);

/// A reader waiting until the group it names is durable.
type Barrier = (u64, oneshot::Sender<Result<()>>);

/// Answers the barriers that `durable` covers; returns the rest.
fn answer_barriers(barriers: Vec<Barrier>, durable: u64) -> Vec<Barrier> {
    let mut waiting = Vec::new();
    for (target, reply) in barriers {
        if target <= durable {
            let _ = reply.send(Ok(()));
        } else {
            waiting.push((target, reply));
        }
    }
    waiting
}

/// The active fjall journal file, fsynced through a descriptor of our own.
///
/// fjall names journals `<id>.jnl` in the database directory and seals the active one with a
/// fsync (under its journal lock) before it starts the next; so after everything up to a group
/// has been handed to the OS, fsyncing the newest journal file makes that group durable. Where
/// no journal file can be found (a fjall whose layout differs), this falls back to fjall's own
/// persist, which holds the journal lock while it fsyncs.
struct JournalFile {
    directory: PathBuf,
    open: Option<(u64, File)>,
}

impl JournalFile {
    fn new(directory: &Path) -> Self {
        Self {
            directory: directory.to_path_buf(),
            open: None,
        }
    }

    fn sync(&mut self, database: &Database) -> Result<()> {
        let newest = newest_journal(&self.directory).map_err(storage_error)?;
        let Some(newest) = newest else {
            return database
                .persist(PersistMode::SyncAll)
                .map_err(storage_error);
        };
        if self.open.as_ref().is_none_or(|(id, _)| *id != newest) {
            let path = self.directory.join(format!("{newest}.jnl"));
            let file = File::open(&path).map_err(storage_error)?;
            self.open = Some((newest, file));
        }
        match &self.open {
            Some((_, file)) => file.sync_data().map_err(storage_error),
            None => Ok(()),
        }
    }
}

/// The highest id of the `<id>.jnl` files in `directory`.
fn newest_journal(directory: &Path) -> std::io::Result<Option<u64>> {
    let mut newest = None;
    for entry in std::fs::read_dir(directory)? {
        let name = entry?.file_name();
        let id = name
            .to_str()
            .and_then(|name| name.strip_suffix(".jnl"))
            .and_then(|id| id.parse::<u64>().ok());
        if let Some(id) = id {
            newest = newest.max(Some(id));
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_table_matches_the_enum() {
        for (index, space) in SPACES.iter().enumerate() {
            assert_eq!(*space as usize, index);
        }
    }

    #[test]
    fn the_newest_journal_is_the_highest_id() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        assert_eq!(newest_journal(directory.path()).expect("listed"), None);
        for name in ["0.jnl", "9.jnl", "10.jnl", "11.txt", "x.jnl", "keyspaces"] {
            std::fs::write(directory.path().join(name), b"").expect("written");
        }
        assert_eq!(newest_journal(directory.path()).expect("listed"), Some(10));
    }
}
