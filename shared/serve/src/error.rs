//! The crate's errors: [`ServeError`] for start-up, [`ApiError`] for what a request is answered.
//!
//! Every refusal a client sees is an [`ApiError`]: an HTTP status, a stable snake_case code and
//! a sentence saying what to do, sent as `{"error": code, "message": sentence}`. Port and
//! distribute errors are mapped here, at the edge, and nowhere else.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use thiserror::Error;
use worldfleet_tables::Error as FeedError;

/// Why the server could not be configured or started.
#[derive(Debug, Error)]
pub enum ServeError {
    /// A setting is missing or does not parse.
    #[error("configuration: {0}")]
    Config(String),
    /// Binding or serving failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result alias for start-up.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;

/// A request refused or failed, as the client is told.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`missing_header`, `bad_signature`, …).
    pub code: &'static str,
    /// A sentence for the person reading the logs of the client.
    pub message: String,
    /// Seconds after which a retry may work (sent as `Retry-After`).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 503 Service Unavailable, retry after `secs`.
    pub fn unavailable(code: &'static str, message: impl Into<String>, secs: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message).retry_after(secs)
    }

    /// Adds a `Retry-After`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// A store failure: 503 when a retry may work, 500 otherwise. The detail is logged, and
    /// the client gets a sentence without internals.
    pub fn from_port(error: &worldfleet_ports::Error) -> Self {
        tracing::warn!(%error, "store request failed");
        if error.is_retryable() {
            Self::unavailable(
                "store_unavailable",
                "the store did not answer in time; retry with backoff",
                1,
            )
        } else {
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                "the store refused the request; this is a server fault, see the server log",
            )
        }
    }

    /// A feed read or checkpoint failure; behind retention is 410 Gone with the feed layer's
    /// own explanation and recovery advice (the same words `worldfleet feed` prints).
    pub fn from_feed(error: &FeedError) -> Self {
        match error {
            FeedError::BehindRetention { .. } => {
                Self::new(StatusCode::GONE, "behind_retention", error.to_string())
            }
            FeedError::Port(port) => Self::from_port(port),
            FeedError::Corrupt { .. } => {
                tracing::error!(%error, "feed read failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "feed_corrupt",
                    "the feed could not be decoded; this is a server fault, see the server log",
                )
            }
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({ "error": self.code, "message": self.message })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs.to_string()).unwrap_or(HeaderValue::from_static("1")),
            );
        }
        response
    }
}
