//! The dynamic-batching pool. Requests are tokenised on the async side, admitted under an
//! in-flight bound (429 beyond), and queued on a bounded channel. One dedicated OS thread —
//! never the async runtime — takes a request, gathers more until the batch reaches its token
//! budget or the short wait runs out, runs the model once for all of them, and answers each
//! request through its own oneshot channel. While the model runs, new requests pile up in the
//! queue and form the next batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::{InferenceError, Result};
use crate::metrics::Metrics;
use crate::model::{EmbeddingModel, TextTokenizer};

/// Bounds that shape batching and admission.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Token budget of one batch.
    pub max_batch_tokens: usize,
    /// Longest wait for more requests once the batcher holds one.
    pub max_wait: Duration,
    /// Requests admitted at once; beyond that, [`InferenceError::Overloaded`].
    pub max_in_flight: usize,
    /// Texts one request may carry.
    pub max_inputs_per_request: usize,
}

/// Embeddings of one request, in input order, with its token count.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// One L2-normalised vector per input text.
    pub embeddings: Vec<Vec<f32>>,
    /// Tokens processed for the request, special tokens included.
    pub prompt_tokens: usize,
}

/// A unit of admission: counted in `in_flight` from admission until its answer is sent.
struct InFlightPermit {
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Drop for InFlightPermit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request waiting for the model thread.
struct Job {
    sequences: Vec<Vec<u32>>,
    tokens: usize,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
    /// Released only after the reply is sent, so `in_flight` counts queued and running jobs.
    permit: InFlightPermit,
}

impl Job {
    /// Releases the in-flight slot, then answers: a caller that got its answer can always be
    /// admitted again at once.
    fn answer(self, result: Result<Vec<Vec<f32>>>) {
        let Job { reply, permit, .. } = self;
        drop(permit);
        // A caller that went away simply no longer wants the answer.
        let _ = reply.send(result);
    }
}

/// Handle to the pool: cheap to share, used by the HTTP handlers.
pub struct Pool {
    tokenizer: Arc<dyn TextTokenizer>,
    queue: SyncSender<Job>,
    in_flight: Arc<AtomicUsize>,
    limits: PoolLimits,
    metrics: Arc<Metrics>,
}

impl Pool {
    /// Starts the model thread and returns the handle that feeds it.
    pub fn start(
        tokenizer: Arc<dyn TextTokenizer>,
        model: Box<dyn EmbeddingModel>,
        limits: PoolLimits,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        // Admission bounds the queue, so a queue of `max_in_flight` never refuses a send.
        let (queue, receiver) = std::sync::mpsc::sync_channel(limits.max_in_flight);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let batcher = Batcher {
            receiver,
            model,
            limits,
            in_flight: Arc::clone(&in_flight),
            metrics: Arc::clone(&metrics),
            carried_over: None,
        };
        std::thread::Builder::new()
            .name("inference-model".to_owned())
            .spawn(move || batcher.run())
            .map_err(|error| {
                InferenceError::ModelUnavailable(format!("spawning model thread: {error}"))
            })?;
        Ok(Pool {
            tokenizer,
            queue,
            in_flight,
            limits,
            metrics,
        })
    }

    /// The pool's limits.
    pub fn limits(&self) -> PoolLimits {
        self.limits
    }

    /// Tokenises `texts`, checks them against the limits, waits for a batch slot and returns
    /// one embedding per text.
    pub async fn embed(&self, texts: &[String]) -> Result<Embedded> {
        if texts.is_empty() {
            return Err(InferenceError::InvalidRequest(
                "input must not be empty".to_owned(),
            ));
        }
        if texts.len() > self.limits.max_inputs_per_request {
            return Err(InferenceError::TooManyInputs {
                count: texts.len(),
                limit: self.limits.max_inputs_per_request,
            });
        }
        let limit = self.tokenizer.max_sequence_length();
        let mut sequences = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let ids = self.tokenizer.token_ids(text)?;
            if ids.len() > limit {
                return Err(InferenceError::InputTooLong {
                    index,
                    tokens: ids.len(),
                    limit,
                });
            }
            sequences.push(ids);
        }
        let prompt_tokens = sequences.iter().map(Vec::len).sum();
        let permit = self.admit()?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            sequences,
            tokens: prompt_tokens,
            reply,
            permit,
        };
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = self.queue.try_send(job) {
            self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            return Err(match error {
                TrySendError::Full(_) => InferenceError::Overloaded {
                    limit: self.limits.max_in_flight,
                },
                TrySendError::Disconnected(_) => {
                    InferenceError::ModelUnavailable("model thread has stopped".to_owned())
                }
            });
        }
        let embeddings = answer.await.map_err(|_| {
            InferenceError::ModelUnavailable("model thread dropped the request".to_owned())
        })??;
        Ok(Embedded {
            embeddings,
            prompt_tokens,
        })
    }

    /// Takes an in-flight slot, or refuses with [`InferenceError::Overloaded`].
    fn admit(&self) -> Result<InFlightPermit> {
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current < self.limits.max_in_flight).then_some(current + 1)
            })
            .is_ok();
        if !admitted {
            self.metrics
                .rejected_overloaded
                .fetch_add(1, Ordering::Relaxed);
            return Err(InferenceError::Overloaded {
                limit: self.limits.max_in_flight,
            });
        }
        self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(InFlightPermit {
            in_flight: Arc::clone(&self.in_flight),
            metrics: Arc::clone(&self.metrics),
        })
    }
}

/// The model thread's state: forms batches from the queue and runs the model on them.
struct Batcher {
    receiver: Receiver<Job>,
    model: Box<dyn EmbeddingModel>,
    limits: PoolLimits,
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    /// A job taken from the queue that did not fit the previous batch's token budget.
    carried_over: Option<Job>,
}

impl Batcher {
    fn run(mut self) {
        tracing::info!("model thread started");
        while let Some(batch) = self.next_batch() {
            self.run_batch(batch);
        }
        tracing::info!("model thread stopped: queue closed");
    }

    /// Blocks for the first job, then gathers more while the batch is under its token budget,
    /// the wait has not run out, and more admitted requests are still on their way.
    fn next_batch(&mut self) -> Option<Vec<Job>> {
        let first = match self.carried_over.take() {
            Some(job) => job,
            None => self.receiver.recv().ok()?,
        };
        let mut tokens = first.tokens;
        let mut batch = vec![first];
        let deadline = Instant::now() + self.limits.max_wait;
        while tokens < self.limits.max_batch_tokens {
            let job = match self.receiver.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    // Every admitted request is either in this batch or about to be queued;
                    // waiting only pays off when some are about to be queued.
                    if self.in_flight.load(Ordering::Acquire) <= batch.len() {
                        break;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match self.receiver.recv_timeout(deadline - now) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            if tokens + job.tokens > self.limits.max_batch_tokens {
                self.carried_over = Some(job);
                break;
            }
            tokens += job.tokens;
            batch.push(job);
        }
        Some(batch)
    }

    fn run_batch(&mut self, batch: Vec<Job>) {
        let sequence_count: usize = batch.iter().map(|job| job.sequences.len()).sum();
        let tokens: usize = batch.iter().map(|job| job.tokens).sum();
        self.metrics
            .queue_depth
            .fetch_sub(batch.len() as i64, Ordering::Relaxed);
        self.metrics.batch_requests.observe(batch.len() as f64);
        self.metrics.batch_size.observe(sequence_count as f64);
        self.metrics.batch_tokens.observe(tokens as f64);
        let started = Instant::now();
        let result = self.embed_within_budget(&batch);
        tracing::debug!(
            requests = batch.len(),
            sequences = sequence_count,
            tokens,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "batch done"
        );
        match result {
            Ok(embeddings) => {
                let mut embeddings = embeddings.into_iter();
                for job in batch {
                    let own: Vec<Vec<f32>> =
                        embeddings.by_ref().take(job.sequences.len()).collect();
                    job.answer(Ok(own));
                }
            }
            Err(error) => {
                tracing::error!(%error, requests = batch.len(), "batch failed");
                for job in batch {
                    job.answer(Err(error.clone()));
                }
            }
        }
    }

    /// Runs the model over all sequences of the batch, in chunks of at most the token budget
    /// (a single request larger than the budget still runs, in several chunks).
    fn embed_within_budget(&mut self, batch: &[Job]) -> Result<Vec<Vec<f32>>> {
        let sequences: Vec<&[u32]> = batch
            .iter()
            .flat_map(|job| job.sequences.iter().map(Vec::as_slice))
            .collect();
        let mut embeddings = Vec::with_capacity(sequences.len());
        let mut chunk_start = 0;
        while chunk_start < sequences.len() {
            let mut chunk_end = chunk_start;
            let mut chunk_tokens = 0;
            while chunk_end < sequences.len()
                && (chunk_end == chunk_start
                    || chunk_tokens + sequences[chunk_end].len() <= self.limits.max_batch_tokens)
            {
                chunk_tokens += sequences[chunk_end].len();
                chunk_end += 1;
            }
            let chunk = &sequences[chunk_start..chunk_end];
            let chunk_embeddings =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.model.embed(chunk)))
                    .map_err(|_| InferenceError::Model("forward pass panicked".to_owned()))??;
            if chunk_embeddings.len() != chunk.len() {
                return Err(InferenceError::Model(format!(
                    "model returned {} embeddings for {} sequences",
                    chunk_embeddings.len(),
                    chunk.len()
                )));
            }
            embeddings.extend(chunk_embeddings);
            chunk_start = chunk_end;
        }
        Ok(embeddings)
    }
}
