//! The group-commit writer: one thread applies every write, a whole group of callers shares
//! one fjall batch, and groups share fsyncs.
//!
//! Callers hand the writer a job. The writer thread takes the first waiting job, then every
//! job that queued up behind it (up to [`MAX_GROUP`]), and runs them one after another against
//! a [`Staging`]: a job reads the committed state as overlaid by the writes of the earlier jobs
//! of its group (not yet in fjall), evaluates its conditions and stages its own writes. A job
//! that fails leaves nothing behind; a job that succeeds adds its writes to the group's
//! overlay. When the group is complete its overlay (the last write per key) becomes one fjall
//! batch, committed atomically to the journal and memtables, and the group goes to the syncer
//! thread while the writer starts on the next group. The syncer persists the journal once for
//! every group that is waiting, and only then runs their jobs' completions, in commit order,
//! answering the callers. (With [`Durability::Buffered`] the persist is only a write to the
//! OS, cheaper than a thread hop, so the writer does it itself after each group.) Because only the writer thread writes, check-and-set is race-free
//! without locks, and a caller never hears of a write (or of a condition decided by one) that
//! a crash could still lose: a later group's persist covers every earlier group, and after a
//! failed persist nothing more is acknowledged. Readers on other threads see a group's writes
//! once its batch is committed, possibly before the persist; fjall's journal is ordered, so
//! anything they write in response lands after it and cannot survive a crash that it did not.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;

use fjall::{Database, Keyspace, PersistMode, Slice};
use tokio::sync::oneshot;
use worldfleet_ports::{Error, Result};

use crate::store::Spaces;

/// How durable an acknowledged write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync before acknowledging: survives power loss.
    #[default]
    Sync,
    /// Hand the journal to the OS before acknowledging: survives a process crash, not a
    /// power loss. Much faster on disks with slow fsync.
    Buffered,
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

/// A write request on the writer thread: applied in its group, completed after the group's
/// persist.
trait Job: Send {
    /// Reads and stages writes; returns whether they are to be kept.
    fn apply(&mut self, staging: &mut Staging<'_>) -> bool;
    /// Answers the caller with the group's persist outcome.
    fn complete(self: Box<Self>, persisted: Result<()>);
}

/// A job built from closures: `apply` on the writer thread, `after` with the final result just
/// before `reply` carries it to the caller.
struct Call<T, F, A> {
    apply: Option<F>,
    after: A,
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

    fn complete(self: Box<Self>, persisted: Result<()>) {
        let Call {
            after,
            outcome,
            reply,
            ..
        } = *self;
        let outcome =
            outcome.unwrap_or_else(|| Err(Error::Unavailable("embedded store job not run".into())));
        let result = persisted.and(outcome);
        after(&result);
        let _ = reply.send(result);
    }
}

enum Command {
    Job(Box<dyn Job>),
    Shutdown,
}

/// The handle through which writes reach the writer thread.
pub(crate) struct Writer {
    sender: Sender<Command>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// Maps a storage error to the port's retryable `Unavailable`.
pub(crate) fn storage_error(error: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("embedded store: {error}"))
}

impl Writer {
    /// Starts the writer thread over `database` and its `spaces`.
    pub(crate) fn start(
        database: Database,
        spaces: Spaces,
        durability: Durability,
    ) -> Result<Self> {
        let (sender, receiver) = channel();
        let (mut finisher, syncer) = match durability {
            Durability::Sync => {
                let (to_syncer, syncer_inbox) = channel();
                let syncer_database = database.clone();
                let persister = Persister::new(durability);
                let syncer = std::thread::Builder::new()
                    .name("worldfleet-store-syncer".into())
                    .spawn(move || sync(&syncer_database, &syncer_inbox, persister))
                    .map_err(storage_error)?;
                (Finisher::Syncer(to_syncer), Some(syncer))
            }
            Durability::Buffered => (Finisher::Inline(Persister::new(durability)), None),
        };
        let thread = std::thread::Builder::new()
            .name("worldfleet-store-writer".into())
            .spawn(move || {
                run(&database, &spaces, &receiver, &mut finisher);
                // Closing the syncer's inbox lets it finish the queued groups and stop.
                drop(finisher);
                if let Some(syncer) = syncer {
                    let _ = syncer.join();
                }
            })
            .map_err(storage_error)?;
        Ok(Self {
            sender,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queues `apply` for the writer thread; the returned receiver answers once its writes
    /// are durable. `after` runs on the writer thread with the final result just before the
    /// answer is sent: in-memory state that must change in commit order changes there.
    pub(crate) fn enqueue<T, F, A>(
        &self,
        apply: F,
        after: A,
    ) -> Result<oneshot::Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Staging<'_>) -> Result<T> + Send + 'static,
        A: FnOnce(&Result<T>) + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Call {
            apply: Some(apply),
            after,
            outcome: None,
            reply,
        });
        self.sender
            .send(Command::Job(job))
            .map_err(|_| Error::Unavailable("embedded store is closed".into()))?;
        Ok(answer)
    }

    /// Runs `apply` on the writer thread and waits until its writes are durable; the answer
    /// is `apply`'s, or the group's commit or persist error.
    pub(crate) async fn execute<T, F>(&self, apply: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Staging<'_>) -> Result<T> + Send + 'static,
    {
        let answer = self.enqueue(apply, |_| {})?;
        wait(answer).await
    }

    /// Like [`Writer::execute`], for threads outside the async runtime.
    pub(crate) fn execute_blocking<T, F>(&self, apply: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Staging<'_>) -> Result<T> + Send + 'static,
    {
        self.enqueue(apply, |_| {})?
            .blocking_recv()
            .map_err(|_| Error::Unavailable("embedded store writer stopped".into()))?
    }

    /// Finishes queued jobs, persists, and stops the thread. Idempotent.
    pub(crate) fn shutdown(&self) {
        let _ = self.sender.send(Command::Shutdown);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// Commits the group's overlay as one batch (to the journal and memtables, not yet durable).
fn commit(database: &Database, spaces: &Spaces, overlay: &mut Overlay) -> Result<()> {
    let writes: usize = overlay.iter().map(HashMap::len).sum();
    if writes == 0 {
        return Ok(());
    }
    let mut batch = fjall::OwnedWriteBatch::with_capacity(database.clone(), writes);
    for (index, writes) in overlay.iter_mut().enumerate() {
        let keyspace = spaces.keyspace(SPACES[index]);
        for (key, value) in writes.drain() {
            match value {
                Some(value) => batch.insert(keyspace, key, value),
                None => batch.remove(keyspace, key),
            }
        }
    }
    batch.commit().map_err(storage_error)
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

/// A group whose batch is committed (or failed to commit), on its way to the syncer.
struct Committed {
    jobs: Vec<Box<dyn Job>>,
    committed: Result<()>,
}

/// Where the writer sends a committed group.
enum Finisher {
    /// To the syncer thread (fsync durability: the next group is applied meanwhile).
    Syncer(Sender<Committed>),
    /// Persisted right here (buffered durability: the persist is cheap, a thread hop is not).
    Inline(Persister),
}

/// The writer thread: applies jobs and commits each group's batch, then finishes the group.
fn run(
    database: &Database,
    spaces: &Spaces,
    receiver: &Receiver<Command>,
    finisher: &mut Finisher,
) {
    let mut overlay: Overlay = Default::default();
    let mut jobs: Vec<Box<dyn Job>> = Vec::new();
    let mut open = true;
    while open {
        match receiver.recv() {
            Ok(Command::Job(mut job)) => {
                apply(job.as_mut(), spaces, &mut overlay);
                jobs.push(job);
            }
            Ok(Command::Shutdown) | Err(_) => open = false,
        }
        while open && jobs.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(Command::Job(mut job)) => {
                    apply(job.as_mut(), spaces, &mut overlay);
                    jobs.push(job);
                }
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => open = false,
                Err(TryRecvError::Empty) => break,
            }
        }
        if jobs.is_empty() {
            continue;
        }
        let committed = commit(database, spaces, &mut overlay);
        if let Err(error) = &committed {
            tracing::error!(%error, "embedded store: group commit failed");
            for writes in &mut overlay {
                writes.clear();
            }
        }
        let group = Committed {
            jobs: std::mem::take(&mut jobs),
            committed,
        };
        match finisher {
            Finisher::Syncer(syncer) => {
                if let Err(unsent) = syncer.send(group) {
                    // The syncer is gone (it panicked): nothing can be made durable any more.
                    for job in unsent.0.jobs {
                        job.complete(Err(Error::Unavailable(
                            "embedded store syncer stopped".into(),
                        )));
                    }
                }
            }
            Finisher::Inline(persister) => persister.finish(database, std::iter::once(group)),
        }
    }
    // Jobs queued after the shutdown are dropped; their callers see the writer stopped.
    if matches!(finisher, Finisher::Inline(_))
        && let Err(error) = database.persist(PersistMode::SyncAll)
    {
        tracing::error!(%error, "embedded store: final persist failed");
    }
}

/// Makes committed groups durable and answers their callers, in commit order.
struct Persister {
    mode: PersistMode,
    /// After a failed persist nothing later can be acknowledged: the journal may have a hole.
    failure: Option<Error>,
}

impl Persister {
    fn new(durability: Durability) -> Self {
        let mode = match durability {
            Durability::Sync => PersistMode::SyncAll,
            Durability::Buffered => PersistMode::Buffer,
        };
        Self {
            mode,
            failure: None,
        }
    }

    /// One persist for all of `groups`, then their answers.
    fn finish(&mut self, database: &Database, groups: impl Iterator<Item = Committed>) {
        let persisted = match &self.failure {
            Some(error) => Err(error.clone()),
            None => database.persist(self.mode).map_err(storage_error),
        };
        if let Err(error) = &persisted
            && self.failure.is_none()
        {
            tracing::error!(%error, "embedded store: journal persist failed");
            self.failure = Some(error.clone());
        }
        for group in groups {
            let result = persisted.clone().and(group.committed);
            for job in group.jobs {
                job.complete(result.clone());
            }
        }
    }
}

/// The syncer thread: persists every group that queued up during the previous persist at
/// once.
fn sync(database: &Database, inbox: &Receiver<Committed>, mut persister: Persister) {
    let mut groups: Vec<Committed> = Vec::new();
    while let Ok(group) = inbox.recv() {
        groups.push(group);
        groups.extend(inbox.try_iter());
        persister.finish(database, groups.drain(..));
    }
    if let Err(error) = database.persist(PersistMode::SyncAll) {
        tracing::error!(%error, "embedded store: final persist failed");
    }
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
}
