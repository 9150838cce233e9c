//! The HTTP edge: routes, request and response shapes, and the one place where
//! [`InferenceError`] becomes an HTTP status with a JSON error body.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::chat::template::{Message, Role};
use crate::chat::{ChatPool, Completion, FinishReason, GenerationParams};
use crate::classify::{self, Classification};
use crate::error::{InferenceError, Result};
use crate::metrics::Metrics;
use crate::pool::Pool;

/// Shared server state. Each pool is set once its model has loaded; until then its endpoints
/// answer 503.
#[derive(Clone)]
pub struct AppState {
    pool: Arc<OnceLock<Pool>>,
    metrics: Arc<Metrics>,
    model_name: Arc<str>,
    /// Whether `/health` waits for the embedding model.
    embeddings_expected: bool,
    chat: Arc<OnceLock<ChatPool>>,
    /// The chat model's name when one is configured; `/health` then waits for it too.
    chat_model_name: Option<Arc<str>>,
}

impl AppState {
    /// State with no model yet: call [`AppState::set_pool`] when it has loaded.
    pub fn loading(model_name: &str, metrics: Arc<Metrics>) -> Self {
        AppState {
            pool: Arc::new(OnceLock::new()),
            metrics,
            model_name: model_name.into(),
            embeddings_expected: true,
            chat: Arc::new(OnceLock::new()),
            chat_model_name: None,
        }
    }

    /// Serves no embedding model: `/health` no longer waits for one.
    pub fn without_embeddings(mut self) -> Self {
        self.embeddings_expected = false;
        self
    }

    /// Expects a chat model named `name`: `/health` answers 503 until it is set.
    pub fn expecting_chat(mut self, name: &str) -> Self {
        self.chat_model_name = Some(name.into());
        self
    }

    /// Makes the chat model available; a second call is ignored (the first pool stays).
    pub fn set_chat(&self, chat: ChatPool) {
        if self.chat.set(chat).is_err() {
            tracing::warn!("chat pool already set; ignoring the second one");
        }
    }

    /// State with a running pool.
    pub fn ready(model_name: &str, metrics: Arc<Metrics>, pool: Pool) -> Self {
        let state = AppState::loading(model_name, metrics);
        state.set_pool(pool);
        state
    }

    /// Makes the model available; a second call is ignored (the first pool stays).
    pub fn set_pool(&self, pool: Pool) {
        if self.pool.set(pool).is_err() {
            tracing::warn!("pool already set; ignoring the second one");
        }
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn pool(&self) -> Result<&Pool> {
        if !self.embeddings_expected {
            return Err(InferenceError::ModelUnavailable(
                "this server has no embedding model".to_owned(),
            ));
        }
        self.pool
            .get()
            .ok_or_else(|| InferenceError::ModelUnavailable("model is still loading".to_owned()))
    }

    fn chat(&self) -> Result<&ChatPool> {
        if self.chat_model_name.is_none() {
            return Err(InferenceError::ModelUnavailable(
                "this server has no chat model (start it with --chat-model)".to_owned(),
            ));
        }
        self.chat.get().ok_or_else(|| {
            InferenceError::ModelUnavailable("chat model is still loading".to_owned())
        })
    }
}

/// The server's routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/classify", post(classify_texts))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// One string or a list of strings, as the OpenAI API accepts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TextInput {
    /// A single text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

impl TextInput {
    fn into_texts(self) -> Vec<String> {
        match self {
            TextInput::One(text) => vec![text],
            TextInput::Many(texts) => texts,
        }
    }
}

/// `POST /v1/embeddings` body (OpenAI-compatible).
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    /// Text or texts to embed.
    pub input: TextInput,
    /// Ignored: the server has one model.
    #[serde(default)]
    pub model: Option<String>,
    /// Only `float` is supported.
    #[serde(default)]
    pub encoding_format: Option<String>,
}

#[derive(Debug, Serialize)]
struct EmbeddingData {
    object: &'static str,
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Debug, Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Debug, Serialize)]
struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<EmbeddingData>,
    model: String,
    usage: Usage,
}

/// `POST /v1/classify` body: texts, and labels each described by prototype sentences.
#[derive(Debug, Deserialize)]
pub struct ClassifyRequest {
    /// Text or texts to classify.
    pub inputs: TextInput,
    /// Label → prototype sentences.
    pub labels: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Serialize)]
struct ClassifyResponse {
    object: &'static str,
    data: Vec<Classification>,
    model: String,
    usage: Usage,
}

/// Parses a JSON body, turning axum's rejection into the crate's error.
fn parse_body<T>(payload: std::result::Result<Json<T>, JsonRejection>) -> Result<T> {
    match payload {
        Ok(Json(body)) => Ok(body),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(InferenceError::BodyTooLarge)
        }
        Err(rejection) => Err(InferenceError::InvalidRequest(rejection.body_text())),
    }
}

async fn embeddings(
    State(state): State<AppState>,
    payload: std::result::Result<Json<EmbeddingsRequest>, JsonRejection>,
) -> Result<Json<EmbeddingsResponse>> {
    let started = Instant::now();
    let result = async {
        let request = parse_body(payload)?;
        if let Some(format) = request.encoding_format.as_deref().filter(|f| *f != "float") {
            return Err(InferenceError::InvalidRequest(format!(
                "encoding_format {format:?} is not supported; use \"float\""
            )));
        }
        let texts = request.input.into_texts();
        let embedded = state.pool()?.embed(&texts).await?;
        Ok(Json(EmbeddingsResponse {
            object: "list",
            data: embedded
                .embeddings
                .into_iter()
                .enumerate()
                .map(|(index, embedding)| EmbeddingData {
                    object: "embedding",
                    index,
                    embedding,
                })
                .collect(),
            model: state.model_name.to_string(),
            usage: Usage {
                prompt_tokens: embedded.prompt_tokens,
                total_tokens: embedded.prompt_tokens,
            },
        }))
    }
    .await;
    state.metrics.observe_request(started.elapsed());
    result
}

async fn classify_texts(
    State(state): State<AppState>,
    payload: std::result::Result<Json<ClassifyRequest>, JsonRejection>,
) -> Result<Json<ClassifyResponse>> {
    let started = Instant::now();
    let result = async {
        let request = parse_body(payload)?;
        let inputs = request.inputs.into_texts();
        if inputs.is_empty() {
            return Err(InferenceError::InvalidRequest(
                "inputs must not be empty".to_owned(),
            ));
        }
        let prototypes = classify::flatten_prototypes(&request.labels)?;
        // Inputs and prototypes go to the pool as one request, so they share one batch.
        let input_count = inputs.len();
        let mut texts = inputs;
        texts.extend(prototypes);
        let embedded = state.pool()?.embed(&texts).await?;
        let (input_embeddings, prototype_embeddings) = embedded.embeddings.split_at(input_count);
        let data = classify::classify(&request.labels, input_embeddings, prototype_embeddings)?;
        Ok(Json(ClassifyResponse {
            object: "list",
            data,
            model: state.model_name.to_string(),
            usage: Usage {
                prompt_tokens: embedded.prompt_tokens,
                total_tokens: embedded.prompt_tokens,
            },
        }))
    }
    .await;
    state.metrics.observe_request(started.elapsed());
    result
}

/// 200 once every model this server is configured with has loaded, 503 before.
async fn health(State(state): State<AppState>) -> Response {
    let embeddings_ready = !state.embeddings_expected || state.pool.get().is_some();
    let chat_ready = state.chat_model_name.is_none() || state.chat.get().is_some();
    let mut body = serde_json::json!({
        "status": if embeddings_ready && chat_ready { "ok" } else { "loading" },
    });
    if state.embeddings_expected {
        body["model"] = serde_json::json!(&*state.model_name);
    }
    if let Some(chat_model) = &state.chat_model_name {
        body["chat_model"] = serde_json::json!(&**chat_model);
    }
    let status = if embeddings_ready && chat_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `POST /v1/chat/completions` body (OpenAI-compatible, non-streaming). Fields the server does
/// not implement are refused when they would change the answer, ignored otherwise (`user`,
/// `logprobs: false`, ...).
#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    /// The conversation, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Ignored: the server has one chat model.
    #[serde(default)]
    pub model: Option<String>,
    /// Most tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Newer name of `max_tokens`; the smaller wins when both are given.
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// 0 to 2; 0 is greedy. Default 1.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, in (0, 1]. Default 1.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Sampler seed; random when absent.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Up to four stop strings.
    #[serde(default)]
    pub stop: Option<StopInput>,
    /// Completions per request: only 1.
    #[serde(default)]
    pub n: Option<u64>,
    /// Streaming is not implemented: only `false`.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Not implemented: only 0.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// Not implemented: only 0.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
}

/// One chat message as the OpenAI API sends it.
#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (`developer` is taken as `system`).
    pub role: RoleInput,
    /// Text, or a list of content parts of which only `text` parts are accepted.
    pub content: MessageContent,
}

/// Message roles the server accepts.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleInput {
    /// Instructions.
    System,
    /// Newer name of `system`.
    Developer,
    /// The caller.
    User,
    /// Earlier answers.
    Assistant,
}

/// Message content: a string or a list of parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts.
    Parts(Vec<ContentPart>),
}

/// One content part; only `{"type": "text", "text": ...}` is supported.
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    /// Part type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopInput {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

#[derive(Debug, Serialize)]
struct ChatCompletionResponse {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    choices: Vec<ChatChoice>,
    usage: ChatUsage,
}

#[derive(Debug, Serialize)]
struct ChatChoice {
    index: usize,
    message: AssistantMessage,
    finish_reason: FinishReason,
}

#[derive(Debug, Serialize)]
struct AssistantMessage {
    role: &'static str,
    content: String,
}

#[derive(Debug, Serialize)]
struct ChatUsage {
    prompt_tokens: usize,
    completion_tokens: usize,
    total_tokens: usize,
}

const MAX_STOP_SEQUENCES: usize = 4;

impl ChatCompletionRequest {
    /// Checks the request and splits it into the conversation and the generation parameters.
    pub fn validate(
        self,
        default_max_tokens: usize,
        max_tokens_cap: usize,
    ) -> Result<(Vec<Message>, GenerationParams)> {
        let invalid = |message: String| Err(InferenceError::InvalidRequest(message));
        if self.stream == Some(true) {
            return invalid("stream: true is not supported; this server answers whole".into());
        }
        if let Some(n) = self.n.filter(|&n| n != 1) {
            return invalid(format!("n must be 1, got {n}"));
        }
        for (name, value) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if let Some(value) = value.filter(|&value| value != 0.0) {
                return invalid(format!(
                    "{name} is not supported (got {value}); send 0 or omit it"
                ));
            }
        }
        let max_tokens = match (self.max_tokens, self.max_completion_tokens) {
            (None, None) => default_max_tokens as u64,
            (Some(one), None) | (None, Some(one)) => one,
            (Some(one), Some(other)) => one.min(other),
        };
        if max_tokens == 0 || max_tokens > max_tokens_cap as u64 {
            return invalid(format!(
                "max_tokens must be between 1 and {max_tokens_cap}, got {max_tokens}"
            ));
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return invalid(format!(
                "temperature must be between 0 and 2, got {temperature}"
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return invalid(format!("top_p must be in (0, 1], got {top_p}"));
        }
        let stop = match self.stop {
            None => Vec::new(),
            Some(StopInput::One(stop)) => vec![stop],
            Some(StopInput::Many(stops)) => stops,
        };
        if stop.len() > MAX_STOP_SEQUENCES {
            return invalid(format!(
                "at most {MAX_STOP_SEQUENCES} stop sequences, got {}",
                stop.len()
            ));
        }
        if stop.iter().any(String::is_empty) {
            return invalid("stop sequences must not be empty".into());
        }
        if self.messages.is_empty() {
            return invalid("messages must not be empty".into());
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (index, message) in self.messages.into_iter().enumerate() {
            let role = match message.role {
                RoleInput::System | RoleInput::Developer => Role::System,
                RoleInput::User => Role::User,
                RoleInput::Assistant => Role::Assistant,
            };
            let content = match message.content {
                MessageContent::Text(text) => text,
                MessageContent::Parts(parts) => {
                    let mut text = String::new();
                    for part in parts {
                        match (part.kind.as_str(), part.text) {
                            ("text", Some(part_text)) => text.push_str(&part_text),
                            (kind, _) => {
                                return invalid(format!(
                                    "messages[{index}]: content part of type {kind:?} is not \
                                     supported; only text parts with a text field"
                                ));
                            }
                        }
                    }
                    text
                }
            };
            messages.push(Message { role, content });
        }
        let params = GenerationParams {
            max_tokens: max_tokens as usize,
            temperature,
            top_p,
            seed: self.seed.unwrap_or_else(GenerationParams::fresh_seed),
            stop,
        };
        Ok((messages, params))
    }
}

/// A unique id for a completion: random bits (the fresh-seed generator) and a counter.
fn completion_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let random = GenerationParams::fresh_seed();
    format!(
        "chatcmpl-{random:016x}{:08x}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

async fn chat_completions(
    State(state): State<AppState>,
    payload: std::result::Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Result<Json<ChatCompletionResponse>> {
    let chat = state.chat()?;
    let limits = chat.limits();
    let request = parse_body(payload)?;
    let (messages, params) = request.validate(limits.default_max_tokens, limits.max_tokens_cap)?;
    let Completion {
        text,
        token_ids,
        finish_reason,
        prompt_tokens,
    } = chat.complete(&messages, params).await?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    Ok(Json(ChatCompletionResponse {
        id: completion_id(),
        object: "chat.completion",
        created,
        model: state
            .chat_model_name
            .as_deref()
            .unwrap_or_default()
            .to_owned(),
        choices: vec![ChatChoice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: text,
            },
            finish_reason,
        }],
        usage: ChatUsage {
            prompt_tokens,
            completion_tokens: token_ids.len(),
            total_tokens: prompt_tokens + token_ids.len(),
        },
    }))
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render_prometheus(),
    )
        .into_response()
}

impl InferenceError {
    /// HTTP status for this error, and the OpenAI-style error `type`.
    pub fn http_status(&self) -> (StatusCode, &'static str) {
        match self {
            InferenceError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            InferenceError::TooManyInputs { .. }
            | InferenceError::InputTooLong { .. }
            | InferenceError::ContextTooLong { .. }
            | InferenceError::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "input_too_large"),
            InferenceError::Overloaded { .. } => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            InferenceError::ModelUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "model_unavailable")
            }
            InferenceError::Tokenizer(_) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            InferenceError::Model(_) => (StatusCode::INTERNAL_SERVER_ERROR, "model_error"),
        }
    }
}

impl IntoResponse for InferenceError {
    fn into_response(self) -> Response {
        let (status, kind) = self.http_status();
        if status.is_server_error() {
            tracing::warn!(error = %self, status = status.as_u16(), "request failed");
        }
        let body = serde_json::json!({
            "error": {"message": self.to_string(), "type": kind, "code": status.as_u16()}
        });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}
