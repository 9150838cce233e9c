//! Settings shared by both adapters, read from the environment once at start-up.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::imds::region::ImdsRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::region::ProfileFileRegionProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use crate::error::{AwsError, Result};
use crate::retry::RetryPolicy;

/// Region used when neither the environment nor the AWS profile names one.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Stack name used when `WORLDFLEET_STACK` is unset.
pub const DEFAULT_STACK: &str = "worldfleet";

/// Where and how the adapters reach AWS.
///
/// Endpoints are not fields: `aws-config` reads `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SQS` and
/// `AWS_ENDPOINT_URL_DYNAMODB` itself, so LocalStack and DynamoDB Local need no code here.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsSettings {
    /// Region override (`AWS_REGION`); `None` uses the AWS chain, then [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// Stack name (`WORLDFLEET_STACK`): physical names are `<stack>-<logical>`; empty: no prefix.
    pub stack: String,
    /// Attempts per request, the first included (`WORLDFLEET_AWS_MAX_ATTEMPTS`, default 5).
    pub retry: RetryPolicy,
    /// Connection-establishment timeout.
    pub connect_timeout: Duration,
    /// Timeout of one attempt; must exceed the 20 s long-poll of a receive.
    pub attempt_timeout: Duration,
    /// Queue URLs known in advance (`WORLDFLEET_QUEUE_URLS`, `logical=url,logical=url`), so a
    /// function whose role lacks `sqs:GetQueueUrl` never needs to resolve them.
    pub queue_urls: BTreeMap<String, String>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            region: None,
            stack: DEFAULT_STACK.to_owned(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(30),
            queue_urls: BTreeMap::new(),
        }
    }
}

impl AwsSettings {
    /// Settings from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Settings from any variable lookup (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut settings = Self::default();
        if let Some(region) = lookup("AWS_REGION").filter(|region| !region.is_empty()) {
            settings.region = Some(region);
        }
        if let Some(stack) = lookup("WORLDFLEET_STACK") {
            validate_stack(&stack)?;
            settings.stack = stack;
        }
        if let Some(attempts) = lookup("WORLDFLEET_AWS_MAX_ATTEMPTS") {
            settings.retry.max_attempts = attempts
                .parse::<u32>()
                .ok()
                .filter(|attempts| (1..=20).contains(attempts))
                .ok_or_else(|| AwsError::Setting {
                    name: "WORLDFLEET_AWS_MAX_ATTEMPTS".into(),
                    reason: format!("{attempts:?} is not a number from 1 to 20"),
                })?;
        }
        if let Some(urls) = lookup("WORLDFLEET_QUEUE_URLS") {
            settings.queue_urls = parse_queue_urls(&urls)?;
        }
        Ok(settings)
    }

    /// The same settings under another stack name.
    pub fn with_stack(mut self, stack: &str) -> Self {
        self.stack = stack.to_owned();
        self
    }

    /// The physical name of a logical queue or table name.
    pub fn physical_name(&self, logical: &str) -> String {
        if self.stack.is_empty() {
            logical.to_owned()
        } else {
            format!("{}-{logical}", self.stack)
        }
    }

    /// The logical name of a physical name under this stack, if it is one.
    pub fn logical_name<'a>(&self, physical: &'a str) -> Option<&'a str> {
        if self.stack.is_empty() {
            return Some(physical);
        }
        physical
            .strip_prefix(self.stack.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
    }

    /// An adapter configured from the environment: these settings from
    /// [`AwsSettings::from_env`], then `build` with the SDK configuration they select.
    pub(crate) async fn adapter_from_env<A>(
        build: impl FnOnce(&SdkConfig, AwsSettings) -> A,
    ) -> Result<A> {
        let settings = Self::from_env()?;
        let config = settings.sdk_config().await;
        Ok(build(&config, settings))
    }

    /// The AWS SDK configuration: the standard chain (credentials, region, endpoint URLs),
    /// SDK retries off (the adapters retry and count every attempt), these timeouts, and
    /// [`https_client`] for every request (the credential and region providers' included).
    pub async fn sdk_config(&self) -> SdkConfig {
        // The SDK's default region chain (environment, profile, instance metadata) spelled
        // out: its own builder cannot be given an HTTP client, and instance metadata needs one
        // now that the SDK crates bring none.
        let http = https_client();
        let providers = ProviderConfig::without_region().with_http_client(http.clone());
        let region =
            RegionProviderChain::first_try(self.region.clone().map(aws_config::Region::new))
                .or_else(EnvironmentVariableRegionProvider::new())
                .or_else(
                    ProfileFileRegionProvider::builder()
                        .configure(&providers)
                        .build(),
                )
                .or_else(ImdsRegionProvider::builder().configure(&providers).build())
                .or_else(DEFAULT_REGION);
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(region)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.connect_timeout)
                    .operation_attempt_timeout(self.attempt_timeout)
                    .build(),
            )
            .load()
            .await
    }
}

/// The HTTP client of every AWS client: hyper 1 with rustls on ring and the platform's root
/// certificates. The SDK crates are built without their default client (aws-lc), and the
/// legacy hyper 0.14 stack is not linked at all: the Lambda zips are smaller by both
/// (`infra/README.md`). One per SDK configuration (its requests and its region and credential
/// providers share it), not one per process: a client's pooled connections live on the runtime
/// that opened them, and a process may run several runtimes.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

fn validate_stack(stack: &str) -> Result<()> {
    let valid = stack.len() <= 40
        && stack.chars().all(|character| {
            character.is_ascii_alphanumeric() || character == '-' || character == '_'
        });
    if valid {
        Ok(())
    } else {
        Err(AwsError::Setting {
            name: "WORLDFLEET_STACK".into(),
            reason: format!(
                "{stack:?}: use at most 40 of [A-Za-z0-9_-] (queue names are capped at 80)"
            ),
        })
    }
}

fn parse_queue_urls(text: &str) -> Result<BTreeMap<String, String>> {
    let mut urls = BTreeMap::new();
    for entry in text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let (logical, url) = entry.split_once('=').ok_or_else(|| AwsError::Setting {
            name: "WORLDFLEET_QUEUE_URLS".into(),
            reason: format!("entry {entry:?} is not `logical=url`"),
        })?;
        urls.insert(logical.trim().to_owned(), url.trim().to_owned());
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn names_carry_the_stack_prefix() {
        let settings = AwsSettings::from_lookup(lookup(&[("WORLDFLEET_STACK", "dev")])).unwrap();
        assert_eq!(settings.physical_name("intake.fifo"), "dev-intake.fifo");
        assert_eq!(
            settings.logical_name("dev-intake.fifo"),
            Some("intake.fifo")
        );
        assert_eq!(settings.logical_name("prod-intake.fifo"), None);
        let bare = settings.with_stack("");
        assert_eq!(bare.physical_name("ledger"), "ledger");
    }

    #[test]
    fn bad_settings_are_refused_not_panicked_on() {
        assert!(AwsSettings::from_lookup(lookup(&[("WORLDFLEET_STACK", "a b")])).is_err());
        assert!(AwsSettings::from_lookup(lookup(&[("WORLDFLEET_AWS_MAX_ATTEMPTS", "0")])).is_err());
        assert!(AwsSettings::from_lookup(lookup(&[("WORLDFLEET_QUEUE_URLS", "nourl")])).is_err());
        let settings = AwsSettings::from_lookup(lookup(&[(
            "WORLDFLEET_QUEUE_URLS",
            "intake.fifo=http://q/intake.fifo, classify.fifo=http://q/classify.fifo",
        )]))
        .unwrap();
        assert_eq!(
            settings.queue_urls["classify.fifo"],
            "http://q/classify.fifo"
        );
    }
}
