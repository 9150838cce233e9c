//! Chat completion with a GGUF llama-family model: the handle the HTTP layer calls
//! ([`ChatPool`]), the validated parameters of one completion, and the loading code. The
//! model runs on its own thread ([`scheduler`]), which interleaves all admitted
//! conversations one token at a time.

pub mod llama;
mod scheduler;
pub mod template;
pub mod tiny;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use candle_core::Device;
use tokio::sync::oneshot;

use crate::error::{InferenceError, Result};
use crate::metrics::Metrics;
use llama::{ChatTokenizer, LlamaModel};
use template::{ChatTemplate, Message};

/// Bounds that shape scheduling and admission of completions.
#[derive(Debug, Clone, Copy)]
pub struct ChatLimits {
    /// Conversations generated at once; more wait in the queue.
    pub max_sequences: usize,
    /// Token budget of one scheduler step: one token per decoding conversation plus the
    /// prompts of conversations starting in that step.
    pub max_step_tokens: usize,
    /// Longest the idle scheduler waits for more requests once it holds one.
    pub max_wait: Duration,
    /// Requests admitted at once (queued or generating); beyond that, 429.
    pub max_in_flight: usize,
    /// `max_tokens` of a request that gives none.
    pub default_max_tokens: usize,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens_cap: usize,
}

/// How one completion samples and when it stops, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// 0 is greedy (arg max); otherwise logits are divided by it before sampling.
    pub temperature: f64,
    /// Nucleus sampling: sample from the smallest set of tokens whose probability reaches
    /// `top_p`; 1 samples from all tokens.
    pub top_p: f64,
    /// Seed of the sampler: the same request with the same seed gives the same completion.
    pub seed: u64,
    /// Generation stops before the first occurrence of any of these strings.
    pub stop: Vec<String>,
}

impl GenerationParams {
    /// A seed for requests that give none: different for every call.
    pub fn fresh_seed() -> u64 {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        // SplitMix64 finaliser over time and a counter, so two calls in one tick differ.
        let mut z = nanos
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An end-of-turn token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

/// The answer to one completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Generated text, stop string and special tokens excluded.
    pub text: String,
    /// Generated token ids (the end-of-turn token excluded).
    pub token_ids: Vec<u32>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Tokens of the rendered prompt.
    pub prompt_tokens: usize,
}

/// Everything needed to load a chat model.
#[derive(Debug, Clone)]
pub struct ChatModelSpec<'a> {
    /// The `.gguf` file.
    pub gguf_path: &'a Path,
    /// The model's `tokenizer.json`.
    pub tokenizer_path: &'a Path,
    /// Prompt format; detected from the GGUF and the vocabulary when `None`.
    pub template: Option<ChatTemplate>,
    /// Where the model runs.
    pub device: Device,
}

/// A unit of admission: counted from admission until the answer is sent.
struct InFlightPermit {
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Drop for InFlightPermit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.metrics.chat_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request waiting for, or being served by, the model thread.
struct GenerationJob {
    prompt: Vec<u32>,
    params: GenerationParams,
    received: Instant,
    reply: oneshot::Sender<Result<Completion>>,
    permit: InFlightPermit,
}

impl GenerationJob {
    /// Releases the in-flight slot, then answers.
    fn answer(self, result: Result<Completion>) {
        let GenerationJob { reply, permit, .. } = self;
        drop(permit);
        // A caller that went away simply no longer wants the answer.
        let _ = reply.send(result);
    }
}

/// Handle to the chat model: cheap to share, used by the HTTP handler.
pub struct ChatPool {
    tokenizer: Arc<ChatTokenizer>,
    template: ChatTemplate,
    context_length: usize,
    queue: SyncSender<GenerationJob>,
    in_flight: Arc<AtomicUsize>,
    limits: ChatLimits,
    metrics: Arc<Metrics>,
}

impl ChatPool {
    /// Loads the GGUF model and its tokenizer (offline) and starts the model thread.
    pub fn load(
        spec: &ChatModelSpec<'_>,
        limits: ChatLimits,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let (model, facts) = LlamaModel::load(spec.gguf_path, &spec.device)?;
        // The vocabulary decides the template only through the tokenizer, which needs the
        // template for its stop token: detect with a first load, then load for real.
        let template = match spec.template {
            Some(template) => template,
            None => {
                let probe =
                    tokenizers::Tokenizer::from_file(spec.tokenizer_path).map_err(|error| {
                        InferenceError::ModelUnavailable(format!(
                            "loading {}: {error}",
                            spec.tokenizer_path.display()
                        ))
                    })?;
                ChatTemplate::detect(facts.chat_template.as_deref(), |token| {
                    probe.token_to_id(token).is_some()
                })
            }
        };
        let tokenizer = ChatTokenizer::load(spec.tokenizer_path, &facts, template)?;
        tracing::info!(
            model = ?facts.name,
            ?template,
            context_length = facts.context_length,
            vocab_size = facts.vocab_size,
            "chat model loaded"
        );
        ChatPool::start(model, tokenizer, template, limits, metrics)
    }

    /// Starts the model thread for an already loaded model.
    pub fn start(
        model: LlamaModel,
        tokenizer: ChatTokenizer,
        template: ChatTemplate,
        limits: ChatLimits,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let limits = ChatLimits {
            max_sequences: limits.max_sequences.max(1),
            max_step_tokens: limits.max_step_tokens.max(1),
            max_in_flight: limits.max_in_flight.max(1),
            max_tokens_cap: limits.max_tokens_cap.max(1),
            default_max_tokens: limits
                .default_max_tokens
                .clamp(1, limits.max_tokens_cap.max(1)),
            ..limits
        };
        let tokenizer = Arc::new(tokenizer);
        let context_length = model.context_length();
        // Admission bounds the queue, so a queue of `max_in_flight` never refuses a send.
        let (queue, receiver) = std::sync::mpsc::sync_channel(limits.max_in_flight);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let scheduler = scheduler::Scheduler::new(
            receiver,
            model,
            Arc::clone(&tokenizer),
            limits,
            Arc::clone(&in_flight),
            Arc::clone(&metrics),
        );
        std::thread::Builder::new()
            .name("inference-chat".to_owned())
            .spawn(move || scheduler.run())
            .map_err(|error| {
                InferenceError::ModelUnavailable(format!("spawning chat model thread: {error}"))
            })?;
        Ok(ChatPool {
            tokenizer,
            template,
            context_length,
            queue,
            in_flight,
            limits,
            metrics,
        })
    }

    /// The pool's limits.
    pub fn limits(&self) -> ChatLimits {
        self.limits
    }

    /// The prompt format in use.
    pub fn template(&self) -> ChatTemplate {
        self.template
    }

    /// Longest prompt plus completion, in tokens.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Renders and tokenises the conversation without generating: the prompt's token ids.
    pub fn prompt_tokens(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let text = self.template.render(messages)?;
        self.tokenizer.encode_prompt(&text)
    }

    /// Generates the assistant's answer to `messages`.
    pub async fn complete(
        &self,
        messages: &[Message],
        params: GenerationParams,
    ) -> Result<Completion> {
        if params.max_tokens == 0 || params.max_tokens > self.limits.max_tokens_cap {
            return Err(InferenceError::InvalidRequest(format!(
                "max_tokens must be between 1 and {}, got {}",
                self.limits.max_tokens_cap, params.max_tokens
            )));
        }
        let prompt = self.prompt_tokens(messages)?;
        if prompt.len() + params.max_tokens > self.context_length {
            return Err(InferenceError::ContextTooLong {
                prompt_tokens: prompt.len(),
                max_tokens: params.max_tokens,
                limit: self.context_length,
            });
        }
        let permit = self.admit()?;
        let (reply, answer) = oneshot::channel();
        let job = GenerationJob {
            prompt,
            params,
            received: Instant::now(),
            reply,
            permit,
        };
        self.metrics
            .chat_queue_depth
            .fetch_add(1, Ordering::Relaxed);
        if let Err(error) = self.queue.try_send(job) {
            self.metrics
                .chat_queue_depth
                .fetch_sub(1, Ordering::Relaxed);
            return Err(match error {
                TrySendError::Full(_) => InferenceError::Overloaded {
                    limit: self.limits.max_in_flight,
                },
                TrySendError::Disconnected(_) => {
                    InferenceError::ModelUnavailable("chat model thread has stopped".to_owned())
                }
            });
        }
        answer.await.map_err(|_| {
            InferenceError::ModelUnavailable("chat model thread dropped the request".to_owned())
        })?
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
            self.metrics.chat_rejected.fetch_add(1, Ordering::Relaxed);
            return Err(InferenceError::Overloaded {
                limit: self.limits.max_in_flight,
            });
        }
        self.metrics.chat_in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(InFlightPermit {
            in_flight: Arc::clone(&self.in_flight),
            metrics: Arc::clone(&self.metrics),
        })
    }
}
