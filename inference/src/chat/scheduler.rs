//! The generation queue on the chat model thread. Scheduling is per token (iteration-level,
//! "continuous" batching): every step advances each active conversation by exactly one
//! token, so a long answer never holds up a short one, and new conversations join at the
//! next step rather than after the current ones finish. A conversation joins by running its
//! whole prompt (prefill) in that step; a step's token budget bounds how much prefill work
//! can delay the decoding conversations. Conversations are admitted first come, first
//! served, up to `max_sequences` at once.
//!
//! What this is not: the conversations of one step are computed one after another, each with
//! its own KV cache — candle-transformers' quantised llama keeps a single-sequence cache, so
//! there is no fused multi-sequence matmul. Batching here buys fairness and latency (time to
//! first token stays bounded under load), not arithmetic throughput.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Instant;

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};

use super::llama::{ChatTokenizer, LlamaModel, Sequence};
use super::{ChatLimits, Completion, FinishReason, GenerationJob, GenerationParams};
use crate::error::{InferenceError, Result};
use crate::metrics::Metrics;

/// A conversation being generated.
struct Active {
    job: GenerationJob,
    sequence: Sequence,
    sampler: LogitsProcessor,
    generated: Vec<u32>,
}

/// What one step did to a conversation.
enum Progress {
    Continue,
    Finished(Completion),
}

/// The chat model thread's state.
pub(super) struct Scheduler {
    receiver: Receiver<GenerationJob>,
    model: LlamaModel,
    tokenizer: Arc<ChatTokenizer>,
    limits: ChatLimits,
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    /// Received, not yet started, in arrival order.
    waiting: VecDeque<GenerationJob>,
    active: Vec<Active>,
    queue_closed: bool,
}

impl Scheduler {
    pub(super) fn new(
        receiver: Receiver<GenerationJob>,
        model: LlamaModel,
        tokenizer: Arc<ChatTokenizer>,
        limits: ChatLimits,
        in_flight: Arc<AtomicUsize>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Scheduler {
            receiver,
            model,
            tokenizer,
            limits,
            in_flight,
            metrics,
            waiting: VecDeque::new(),
            active: Vec::new(),
            queue_closed: false,
        }
    }

    pub(super) fn run(mut self) {
        tracing::info!("chat model thread started");
        loop {
            if self.active.is_empty() && self.waiting.is_empty() {
                if self.queue_closed {
                    break;
                }
                let Ok(first) = self.receiver.recv() else {
                    break;
                };
                self.waiting.push_back(first);
                self.gather_while_idle();
            }
            self.receive_queued();
            self.drop_abandoned();
            self.start_waiting();
            self.step();
        }
        tracing::info!("chat model thread stopped: queue closed");
    }

    /// With one request in hand and nothing generating, waits up to `max_wait` for requests
    /// that are admitted but not yet queued, so they start in the same step.
    fn gather_while_idle(&mut self) {
        let deadline = Instant::now() + self.limits.max_wait;
        while self.waiting.len() < self.limits.max_sequences
            && self.in_flight.load(Ordering::Acquire) > self.waiting.len()
        {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match self.receiver.recv_timeout(deadline - now) {
                Ok(job) => self.waiting.push_back(job),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    self.queue_closed = true;
                    break;
                }
            }
        }
    }

    /// Moves everything queued on the channel to the waiting line, without blocking.
    fn receive_queued(&mut self) {
        loop {
            match self.receiver.try_recv() {
                Ok(job) => self.waiting.push_back(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.queue_closed = true;
                    break;
                }
            }
        }
    }

    /// Stops work for callers that went away (timed out, disconnected).
    fn drop_abandoned(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|job| !job.reply.is_closed());
        let dropped_waiting = before - self.waiting.len();
        self.metrics
            .chat_queue_depth
            .fetch_sub(dropped_waiting as i64, Ordering::Relaxed);
        let before = self.active.len();
        self.active.retain(|active| !active.job.reply.is_closed());
        let dropped = dropped_waiting + before - self.active.len();
        if dropped > 0 {
            self.metrics
                .chat_cancelled
                .fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::debug!(dropped, "abandoned completions dropped");
        }
    }

    /// Starts waiting conversations, first come first served, while there is room and the
    /// step's token budget allows; one prompt larger than the budget still starts when it is
    /// the step's only prefill, so nothing waits forever.
    fn start_waiting(&mut self) {
        let mut step_tokens = self.active.len();
        let mut prefills = 0;
        while self.active.len() < self.limits.max_sequences {
            let Some(next) = self.waiting.front() else {
                break;
            };
            let prompt_tokens = next.prompt.len();
            if prefills > 0 && step_tokens + prompt_tokens > self.limits.max_step_tokens {
                break;
            }
            let Some(job) = self.waiting.pop_front() else {
                break;
            };
            self.metrics
                .chat_queue_depth
                .fetch_sub(1, Ordering::Relaxed);
            step_tokens += prompt_tokens;
            prefills += 1;
            self.active.push(Active {
                sampler: sampler(&job.params),
                sequence: self.model.sequence(),
                generated: Vec::with_capacity(job.params.max_tokens),
                job,
            });
        }
        self.metrics
            .chat_active_sequences
            .store(self.active.len() as i64, Ordering::Relaxed);
    }

    /// Advances every active conversation by one token and answers those that finished.
    fn step(&mut self) {
        if self.active.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut step_tokens = 0;
        let active = std::mem::take(&mut self.active);
        self.metrics
            .chat_step_sequences
            .observe(active.len() as f64);
        for mut conversation in active {
            let starting = conversation.sequence.position() == 0;
            step_tokens += if starting {
                conversation.job.prompt.len()
            } else {
                1
            };
            let progress = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                advance(&mut conversation, &self.tokenizer)
            }))
            .unwrap_or_else(|_| Err(InferenceError::Model("forward pass panicked".to_owned())));
            if starting {
                self.metrics
                    .chat_time_to_first_token
                    .observe(conversation.job.received.elapsed().as_secs_f64());
            }
            match progress {
                Ok(Progress::Continue) => self.active.push(conversation),
                Ok(Progress::Finished(completion)) => {
                    self.metrics
                        .chat_prompt_tokens
                        .fetch_add(completion.prompt_tokens as u64, Ordering::Relaxed);
                    self.metrics
                        .chat_completion_tokens
                        .fetch_add(completion.token_ids.len() as u64, Ordering::Relaxed);
                    self.metrics
                        .chat_generation_duration
                        .observe(conversation.job.received.elapsed().as_secs_f64());
                    conversation.job.answer(Ok(completion));
                }
                Err(error) => {
                    tracing::error!(%error, "completion failed");
                    conversation.job.answer(Err(error));
                }
            }
        }
        self.metrics.chat_step_tokens.observe(step_tokens as f64);
        self.metrics
            .chat_active_sequences
            .store(self.active.len() as i64, Ordering::Relaxed);
        tracing::trace!(
            step_tokens,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "chat step done"
        );
    }
}

/// The sampler a request asks for: arg max at temperature 0, else temperature with top-p.
fn sampler(params: &GenerationParams) -> LogitsProcessor {
    let sampling = if params.temperature <= 0.0 {
        Sampling::ArgMax
    } else if params.top_p < 1.0 {
        Sampling::TopP {
            p: params.top_p,
            temperature: params.temperature,
        }
    } else {
        Sampling::All {
            temperature: params.temperature,
        }
    };
    LogitsProcessor::from_sampling(params.seed, sampling)
}

/// Runs one forward pass for `conversation` (its prompt, or its last token), samples the next
/// token and decides whether it is done.
fn advance(conversation: &mut Active, tokenizer: &ChatTokenizer) -> Result<Progress> {
    let logits: Tensor = match conversation.generated.last() {
        None => conversation.sequence.prefill(&conversation.job.prompt)?,
        Some(&last) => conversation.sequence.step(last)?,
    };
    let token = conversation.sampler.sample(&logits)?;
    let params = &conversation.job.params;
    if tokenizer.is_stop_token(token) {
        return finish(conversation, tokenizer, FinishReason::Stop, None);
    }
    conversation.generated.push(token);
    if !params.stop.is_empty() {
        let text = tokenizer.decode(&conversation.generated)?;
        if let Some(cut) = params
            .stop
            .iter()
            .filter_map(|stop| text.find(stop.as_str()))
            .min()
        {
            return finish(conversation, tokenizer, FinishReason::Stop, Some(cut));
        }
    }
    if conversation.generated.len() >= params.max_tokens {
        return finish(conversation, tokenizer, FinishReason::Length, None);
    }
    Ok(Progress::Continue)
}

fn finish(
    conversation: &mut Active,
    tokenizer: &ChatTokenizer,
    finish_reason: FinishReason,
    cut_at: Option<usize>,
) -> Result<Progress> {
    let mut text = tokenizer.decode(&conversation.generated)?;
    if let Some(cut) = cut_at {
        text.truncate(cut);
    }
    Ok(Progress::Finished(Completion {
        text,
        token_ids: std::mem::take(&mut conversation.generated),
        finish_reason,
        prompt_tokens: conversation.job.prompt.len(),
    }))
}
