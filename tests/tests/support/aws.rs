//! The local AWS emulators: whether to use them, and a fresh stack deployed from the template.

use std::sync::Arc;

use worldfleet_aws::{AwsSettings, DynamoTable, SqsQueue, deploy_from_template};
use worldfleet_ports::{Queue, Table};

/// True when `WORLDFLEET_LOCAL_AWS=1`; otherwise says the test was skipped.
pub fn enabled() -> bool {
    let on = std::env::var("WORLDFLEET_LOCAL_AWS").is_ok_and(|value| value == "1");
    if !on {
        eprintln!(
            "*** SKIPPED: set WORLDFLEET_LOCAL_AWS=1 with the local stack running (scripts/test-aws.sh does both) ***"
        );
    }
    on
}

/// A fresh stack (`<prefix>-<millis>`) with the template's queues and tables deployed.
pub async fn deploy(prefix: &str) -> (AwsSettings, Arc<dyn Queue>, Arc<dyn Table>) {
    let stack = format!(
        "{prefix}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let settings = AwsSettings::from_env()
        .expect("settings")
        .with_stack(&stack);
    let config = settings.sdk_config().await;
    let sqs = SqsQueue::from_sdk_config(&config, settings.clone());
    let dynamo = DynamoTable::from_sdk_config(&config, settings.clone());
    let template = format!("{}/../infra/template.yaml", env!("CARGO_MANIFEST_DIR"));
    deploy_from_template(&template, &sqs, &dynamo)
        .await
        .expect("deploy the template's queues and tables");
    (settings, Arc::new(sqs), Arc::new(dynamo))
}
