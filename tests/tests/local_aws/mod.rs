//! Shared by the tests on the local AWS emulators (`aws_pipeline.rs`, `lambda_runtime.rs`):
//! whether they run, a fresh stack with the template's queues and tables deployed, and
//! adapters on that stack whose every request crosses a fault proxy.
// Each test binary uses part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use worldfleet_aws::{AwsSettings, DynamoTable, RetrySnapshot, SqsQueue, deploy_from_template};
use worldfleet_fault_proxy::{FaultProxy, FaultRates, FaultReport, ProxyConfig};

/// Whether the emulators are up (`WORLDFLEET_LOCAL_AWS=1`); otherwise says, on stderr, that
/// the test was skipped and what it needs (`needs`, then what `scripts/test-aws.sh` does).
pub fn enabled(needs: &str) -> bool {
    let on = std::env::var("WORLDFLEET_LOCAL_AWS").is_ok_and(|value| value == "1");
    if !on {
        eprintln!("*** SKIPPED: set WORLDFLEET_LOCAL_AWS=1 with {needs} ***");
    }
    on
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A freshly deployed stack.
pub struct Stack {
    /// `<prefix>-<millis>`.
    pub name: String,
    pub settings: AwsSettings,
    pub sqs: Arc<SqsQueue>,
    pub dynamo: Arc<DynamoTable>,
    /// An SQS client on the same configuration, for what the port does not do.
    pub sqs_client: aws_sdk_sqs::Client,
}

/// A fresh stack (`<prefix>-<millis>`) with the template's queues and tables deployed.
pub async fn deploy(prefix: &str) -> Stack {
    let name = format!("{prefix}-{}", now_ms());
    let settings = AwsSettings::from_env().expect("settings").with_stack(&name);
    let config = settings.sdk_config().await;
    let sqs = SqsQueue::from_sdk_config(&config, settings.clone());
    let dynamo = DynamoTable::from_sdk_config(&config, settings.clone());
    let template = format!("{}/../infra/template.yaml", env!("CARGO_MANIFEST_DIR"));
    deploy_from_template(&template, &sqs, &dynamo)
        .await
        .expect("deploy the template's queues and tables");
    Stack {
        name,
        settings,
        sqs: Arc::new(sqs),
        dynamo: Arc::new(dynamo),
        sqs_client: aws_sdk_sqs::Client::new(&config),
    }
}

/// Attempt timeout of the faulted adapters: above the pollers' one-second long poll with room
/// for a loaded emulator, and short enough that held requests cost seconds, not minutes.
pub const FAULTED_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// SQS and DynamoDB adapters on a deployed stack whose every request crosses a
/// [`FaultProxy`] in front of its emulator (one proxy per distinct endpoint).
pub struct Faulted {
    pub sqs: Arc<SqsQueue>,
    pub dynamo: Arc<DynamoTable>,
    proxies: Vec<FaultProxy>,
}

impl Faulted {
    /// Proxies in front of the emulators `AWS_ENDPOINT_URL_SQS` / `_DYNAMODB` (or
    /// `AWS_ENDPOINT_URL`) name, faulting at `rates` from `seed`, and adapters through them
    /// under `settings` with [`FAULTED_ATTEMPT_TIMEOUT`].
    pub async fn start(settings: &AwsSettings, rates: FaultRates, seed: u64) -> Faulted {
        let endpoint = |service: &str| {
            std::env::var(format!("AWS_ENDPOINT_URL_{service}"))
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .expect("the emulators' endpoint URLs (. localstack/env.sh)")
        };
        let (sqs_upstream, dynamo_upstream) = (endpoint("SQS"), endpoint("DYNAMODB"));
        let hold = FAULTED_ATTEMPT_TIMEOUT + Duration::from_secs(2);
        let start = |upstream: &str, seed: u64| {
            FaultProxy::start(ProxyConfig {
                seed,
                hold,
                ..ProxyConfig::new(upstream, rates)
            })
        };
        let mut proxies = vec![
            start(&sqs_upstream, seed)
                .await
                .expect("start the SQS proxy"),
        ];
        if dynamo_upstream != sqs_upstream {
            proxies.push(
                start(&dynamo_upstream, seed ^ 0x5eed)
                    .await
                    .expect("start the DynamoDB proxy"),
            );
        }
        let (sqs_url, dynamo_url) = (proxies[0].url(), proxies[proxies.len() - 1].url());

        let mut settings = settings.clone();
        settings.attempt_timeout = FAULTED_ATTEMPT_TIMEOUT;
        let config = settings.sdk_config().await;
        let sqs_client = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&config)
                .endpoint_url(sqs_url)
                .build(),
        );
        let dynamo_client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&config)
                .endpoint_url(dynamo_url)
                .build(),
        );
        Faulted {
            sqs: Arc::new(SqsQueue::new(sqs_client, settings.clone())),
            dynamo: Arc::new(DynamoTable::new(dynamo_client, settings)),
            proxies,
        }
    }

    /// What the proxies injected, per operation.
    pub fn report(&self) -> FaultReport {
        self.proxies
            .iter()
            .fold(FaultReport::default(), |report, proxy| {
                report.merged(&proxy.report())
            })
    }

    /// What the adapters' retries did: SQS's, then DynamoDB's.
    pub fn retries(&self) -> (RetrySnapshot, RetrySnapshot) {
        (self.sqs.retries(), self.dynamo.retries())
    }
}
