//! Shared by the tests on the local AWS emulators (`aws_pipeline.rs`, `lambda_runtime.rs`):
//! whether they run, and a fresh stack with the template's queues and tables deployed.
// Each test binary uses part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use worldfleet_aws::{AwsSettings, DynamoTable, SqsQueue, deploy_from_template};

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
