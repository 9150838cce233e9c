//! The crate's one error type. Each variant says what went wrong in domain terms; the HTTP
//! status it maps to is decided only at the edge, in the server's `http` module.

/// Everything that can go wrong between receiving a request and answering it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InferenceError {
    /// The request is malformed: bad JSON, wrong shape, empty input list, empty label set.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request carries more texts than one request may.
    #[error("too many inputs: {count} texts, at most {limit} per request")]
    TooManyInputs {
        /// Texts in the request.
        count: usize,
        /// Configured bound.
        limit: usize,
    },
    /// One input is longer than the model's maximum sequence length.
    #[error("input {index} is too long: {tokens} tokens, at most {limit}")]
    InputTooLong {
        /// Position of the offending text in the request.
        index: usize,
        /// Its length in tokens, special tokens included.
        tokens: usize,
        /// The model's maximum sequence length.
        limit: usize,
    },
    /// A chat prompt plus the tokens asked for do not fit the model's context.
    #[error(
        "prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} exceeds the context \
         length of {limit} tokens"
    )]
    ContextTooLong {
        /// Tokens of the rendered prompt.
        prompt_tokens: usize,
        /// Completion tokens asked for.
        max_tokens: usize,
        /// The model's context length.
        limit: usize,
    },
    /// The request body is larger than the server accepts.
    #[error("request body too large")]
    BodyTooLarge,
    /// The in-flight bound is reached; the caller should back off and retry.
    #[error("overloaded: {limit} requests already in flight")]
    Overloaded {
        /// Configured in-flight bound.
        limit: usize,
    },
    /// The model is still loading, failed to load, or its thread has stopped.
    #[error("model not available: {0}")]
    ModelUnavailable(String),
    /// Tokenisation failed for an input.
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
    /// The forward pass failed.
    #[error("model failed: {0}")]
    Model(String),
}

impl From<candle_core::Error> for InferenceError {
    fn from(error: candle_core::Error) -> Self {
        InferenceError::Model(error.to_string())
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = InferenceError> = std::result::Result<T, E>;
