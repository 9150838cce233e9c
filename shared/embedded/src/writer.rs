//! The group-commit writer: one thread applies every write, many writes share one fsync.
//!
//! Callers hand the writer a job. The writer thread takes the first waiting job, then every
//! job that queued up behind it (up to [`MAX_GROUP`]), and runs them one after another: each
//! job reads the current state (earlier jobs of the group included, since each commits its
//! batch to fjall's memtable before the next runs), evaluates its conditions and commits its
//! own batch without syncing. Then the whole group is made durable with one journal persist,
//! and only then is each job's completion run, answering its caller. Because only this thread
//! writes, check-and-set is race-free without locks. Readers on other threads may see a
//! committed but not yet synced write; fjall's journal is ordered, so anything they write in
//! response lands after it in the journal and cannot survive a crash that the cause did not.

use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;

use fjall::{Database, PersistMode};
use tokio::sync::oneshot;
use worldfleet_ports::{Error, Result};

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

/// Runs after the group's persist with its outcome; answers the caller.
pub(crate) type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// Runs on the writer thread; applies its writes and returns what to do once they are durable.
pub(crate) type Job = Box<dyn FnOnce(&Database) -> Completion + Send>;

enum Command {
    Job(Job),
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
    /// Starts the writer thread over `database`.
    pub(crate) fn start(database: Database, durability: Durability) -> Result<Self> {
        let (sender, receiver) = channel();
        let thread = std::thread::Builder::new()
            .name("worldfleet-store-writer".into())
            .spawn(move || run(&database, &receiver, durability))
            .map_err(storage_error)?;
        Ok(Self {
            sender,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queues `job`; its completion runs once its group is durable (or failed).
    pub(crate) fn submit(&self, job: Job) -> Result<()> {
        self.sender
            .send(Command::Job(job))
            .map_err(|_| Error::Unavailable("embedded store is closed".into()))
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
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
        A: FnOnce(&Result<T>) + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.submit(Box::new(move |database| {
            let outcome = apply(database);
            Box::new(move |persisted: Result<()>| {
                let result = persisted.and(outcome);
                after(&result);
                let _ = reply.send(result);
            })
        }))?;
        Ok(answer)
    }

    /// Runs `apply` on the writer thread and waits until its writes are durable; the answer
    /// is `apply`'s, or the persist's error.
    pub(crate) async fn execute<T, F>(&self, apply: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
    {
        let answer = self.enqueue(apply, |_| {})?;
        wait(answer).await
    }

    /// Like [`Writer::execute`], for threads outside the async runtime.
    pub(crate) fn execute_blocking<T, F>(&self, apply: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
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

fn run(database: &Database, receiver: &Receiver<Command>, durability: Durability) {
    let mode = match durability {
        Durability::Sync => PersistMode::SyncAll,
        Durability::Buffered => PersistMode::Buffer,
    };
    let mut completions: Vec<Completion> = Vec::with_capacity(256);
    let mut open = true;
    while open {
        match receiver.recv() {
            Ok(Command::Job(job)) => completions.push(job(database)),
            Ok(Command::Shutdown) | Err(_) => open = false,
        }
        while open && completions.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(Command::Job(job)) => completions.push(job(database)),
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => open = false,
                Err(TryRecvError::Empty) => break,
            }
        }
        if completions.is_empty() {
            continue;
        }
        let persisted = database.persist(mode).map_err(storage_error);
        if let Err(error) = &persisted {
            tracing::error!(%error, "embedded store: journal persist failed");
        }
        for completion in completions.drain(..) {
            completion(persisted.clone());
        }
    }
    // Jobs queued after the shutdown are dropped; their callers see the writer stopped.
    if let Err(error) = database.persist(PersistMode::SyncAll) {
        tracing::error!(%error, "embedded store: final persist failed");
    }
}
