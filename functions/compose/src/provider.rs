//! Language-model providers: one interface, an OpenAI-compatible HTTP provider and the template
//! provider.
//!
//! [`OpenAiProvider`] speaks `POST /v1/chat/completions`, which the project's inference pool,
//! vLLM, Ollama and the cloud APIs all serve: base URL, model and key come from configuration.
//! Calls carry a deadline, are retried once after a jittered pause when the server sheds load,
//! and go through a circuit breaker; any failure is reported to the caller, which falls back to the template. [`TemplateProvider`] answers every prompt with its
//! deterministic template line at no cost — the floor every budget and failure degrades to.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use worldfleet_kit::CircuitBreaker;
use worldfleet_kit::http::{BaseUrl, HttpError, post_json};

use crate::prompt::Prompt;

/// What a provider wrote, with the tokens it was billed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Why a provider wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The circuit is open; the provider was not called.
    #[error("circuit open")]
    CircuitOpen,
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The answer had no usable text.
    #[error("empty or malformed completion: {0}")]
    Malformed(String),
}

/// A language model that completes prompts.
#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// The name recorded as canon's composer (the model name, or `template`).
    fn name(&self) -> String;

    /// Where it runs, for logs and run summaries.
    fn describe(&self) -> String;

    /// Whether calls cost money and count against budgets (templates do not).
    fn is_billed(&self) -> bool {
        true
    }

    /// Completes `prompt`, writing at most `prompt.max_tokens` tokens.
    async fn complete(&self, prompt: &Prompt) -> Result<Completion, ProviderError>;
}

/// The template provider: the prompt's deterministic line, free.
#[derive(Debug, Clone, Copy, Default)]
pub struct TemplateProvider;

#[async_trait]
impl LlmProvider for TemplateProvider {
    fn name(&self) -> String {
        crate::template::COMPOSER.to_owned()
    }

    fn describe(&self) -> String {
        "templates".to_owned()
    }

    fn is_billed(&self) -> bool {
        false
    }

    async fn complete(&self, prompt: &Prompt) -> Result<Completion, ProviderError> {
        Ok(Completion {
            text: prompt.template_line.clone(),
            prompt_tokens: 0,
            completion_tokens: 0,
        })
    }
}

/// Settings of [`OpenAiProvider`].
#[derive(Clone)]
pub struct OpenAiConfig {
    /// Base URL, with or without the trailing `/v1` (`http://pool:8080/v1`, `http://localhost:11434`).
    pub base_url: String,
    /// The `model` field of requests.
    pub model: String,
    /// Bearer token, when the server wants one.
    pub api_key: Option<String>,
    /// Deadline of one call.
    pub timeout: Duration,
    /// Sampling temperature.
    pub temperature: f32,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("temperature", &self.temperature)
            .finish()
    }
}

/// 100–300 ms, spread by the clock's sub-millisecond digits so that callers that failed together
/// do not retry together.
fn retry_pause() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    Duration::from_millis(100 + u64::from(nanos % 200))
}

/// An OpenAI-compatible chat-completions client.
pub struct OpenAiProvider {
    base: BaseUrl,
    config: OpenAiConfig,
    breaker: CircuitBreaker,
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: [ChatMessage<'a>; 2],
    max_tokens: u32,
    temperature: f32,
    stream: bool,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<ChatChoice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct ChatChoice {
    message: ChatAnswer,
}

#[derive(Deserialize)]
struct ChatAnswer {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl OpenAiProvider {
    /// A provider for `config`, failing over through `breaker`. The base URL may be given with
    /// or without the `/v1` that OpenAI-style clients usually include (`http://host:8000/v1`).
    pub fn new(config: OpenAiConfig, breaker: CircuitBreaker) -> Result<Self, HttpError> {
        let base = config.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        Ok(Self {
            base: BaseUrl::parse(base)?,
            config,
            breaker,
        })
    }
}

#[async_trait]
impl LlmProvider for OpenAiProvider {
    fn name(&self) -> String {
        self.config.model.clone()
    }

    fn describe(&self) -> String {
        format!("{} at {}", self.config.model, self.base.display())
    }

    async fn complete(&self, prompt: &Prompt) -> Result<Completion, ProviderError> {
        if !self.breaker.try_acquire() {
            return Err(ProviderError::CircuitOpen);
        }
        let request = ChatRequest {
            model: &self.config.model,
            messages: [
                ChatMessage {
                    role: "system",
                    content: &prompt.system,
                },
                ChatMessage {
                    role: "user",
                    content: &prompt.user,
                },
            ],
            max_tokens: prompt.max_tokens,
            temperature: self.config.temperature,
            stream: false,
        };
        let call = || {
            post_json::<_, ChatResponse>(
                &self.base,
                "/v1/chat/completions",
                &request,
                self.config.api_key.as_deref(),
                self.config.timeout,
            )
        };
        let mut answer = call().await;
        // One retry after a jittered pause when the server sheds load or hiccups (429, 5xx,
        // refused connection) — not after a timeout, which already spent the deadline.
        if let Err(HttpError::Throttled(_) | HttpError::Unavailable(_)) = &answer {
            tokio::time::sleep(retry_pause()).await;
            answer = call().await;
        }
        let response = match answer {
            Ok(response) => {
                self.breaker.record_success();
                response
            }
            Err(error) => {
                if error.is_service_failure() {
                    self.breaker.record_failure();
                } else {
                    self.breaker.record_success();
                }
                return Err(error.into());
            }
        };
        let text = response
            .choices
            .into_iter()
            .next()
            .and_then(|choice| choice.message.content)
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
            .ok_or_else(|| ProviderError::Malformed("no text in the first choice".to_owned()))?;
        let usage = response.usage.unwrap_or(ChatUsage {
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        // Servers that do not report usage are billed by an estimate, never for free.
        let prompt_tokens = if usage.prompt_tokens > 0 {
            usage.prompt_tokens
        } else {
            crate::prompt::estimate_tokens(&prompt.system)
                + crate::prompt::estimate_tokens(&prompt.user)
        };
        let completion_tokens = if usage.completion_tokens > 0 {
            usage.completion_tokens
        } else {
            crate::prompt::estimate_tokens(&text)
        };
        Ok(Completion {
            text,
            prompt_tokens,
            completion_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use worldfleet_kit::breaker::BreakerConfig;
    use worldfleet_ports::clock::{Clock, SystemClock};

    use super::*;

    fn provider(base_url: &str) -> Result<OpenAiProvider, HttpError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        OpenAiProvider::new(
            OpenAiConfig {
                base_url: base_url.to_owned(),
                model: "m".into(),
                api_key: None,
                timeout: Duration::from_secs(1),
                temperature: 0.0,
            },
            CircuitBreaker::new(BreakerConfig::default(), clock),
        )
    }

    #[test]
    fn base_url_is_accepted_with_or_without_v1() {
        for url in [
            "http://pool:8080",
            "http://pool:8080/",
            "http://pool:8080/v1",
            "http://pool:8080/v1/",
        ] {
            assert_eq!(
                provider(url).unwrap().describe(),
                "m at http://pool:8080",
                "{url}"
            );
        }
        assert_eq!(
            provider("http://gw:80/llm/v1").unwrap().describe(),
            "m at http://gw:80/llm"
        );
        assert!(provider("https://api.example/v1").is_err());
    }
}
