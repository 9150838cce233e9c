//! Secrets Manager: the string value of one secret (the gateway keys intake verifies with).
//!
//! The client reads exactly one secret, named by ARN or name, with `GetSecretValue` — the one
//! action the template grants intake's role, on that one secret. Endpoints come from the
//! standard chain (`AWS_ENDPOINT_URL`, or `AWS_ENDPOINT_URL_SECRETS_MANAGER` for LocalStack).
//! Errors name the secret and what failed, never its value; unlike the queue and table
//! adapters, whose retries are their own, this client keeps the SDK's standard retries (a read
//! at start-up and one per refresh interval).

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;

/// One secret's string value, read on demand.
#[derive(Clone)]
pub struct SecretsManagerSecret {
    client: aws_sdk_secretsmanager::Client,
    id: String,
}

impl std::fmt::Debug for SecretsManagerSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SecretsManagerSecret")
            .field("id", &self.id)
            .finish()
    }
}

impl SecretsManagerSecret {
    /// The secret `id` (ARN or name) over `config`, with up to `max_attempts` attempts per
    /// read (the SDK's standard retry mode).
    pub fn from_sdk_config(config: &SdkConfig, id: impl Into<String>, max_attempts: u32) -> Self {
        let config = aws_sdk_secretsmanager::config::Builder::from(config)
            .retry_config(RetryConfig::standard().with_max_attempts(max_attempts.max(1)))
            .build();
        Self {
            client: aws_sdk_secretsmanager::Client::from_conf(config),
            id: id.into(),
        }
    }

    /// The secret's ARN or name, as given.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The current version's string value (`AWSCURRENT`). The error says which secret and
    /// why (the service's error code and message, or the transport's), without any part of the value.
    pub async fn string_value(&self) -> Result<String, String> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.id)
            .send()
            .await
            .map_err(|error| {
                format!(
                    "GetSecretValue on {}: {}",
                    self.id,
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&error)
                )
            })?;
        output.secret_string().map(str::to_owned).ok_or_else(|| {
            format!(
                "secret {} has no string value (a binary secret is not read)",
                self.id
            )
        })
    }
}
