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

use crate::classify::{self, Classification};
use crate::error::{InferenceError, Result};
use crate::metrics::Metrics;
use crate::pool::Pool;

/// Shared server state. The pool is set once the model has loaded; until then the model
/// endpoints answer 503.
#[derive(Clone)]
pub struct AppState {
    pool: Arc<OnceLock<Pool>>,
    metrics: Arc<Metrics>,
    model_name: Arc<str>,
}

impl AppState {
    /// State with no model yet: call [`AppState::set_pool`] when it has loaded.
    pub fn loading(model_name: &str, metrics: Arc<Metrics>) -> Self {
        AppState {
            pool: Arc::new(OnceLock::new()),
            metrics,
            model_name: model_name.into(),
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
        self.pool
            .get()
            .ok_or_else(|| InferenceError::ModelUnavailable("model is still loading".to_owned()))
    }
}

/// The server's routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/classify", post(classify_texts))
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

async fn health(State(state): State<AppState>) -> Response {
    match state.pool() {
        Ok(_) => {
            Json(serde_json::json!({"status": "ok", "model": &*state.model_name})).into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "loading", "model": &*state.model_name})),
        )
            .into_response(),
    }
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
