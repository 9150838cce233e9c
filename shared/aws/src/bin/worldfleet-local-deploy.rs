//! `worldfleet-local-deploy [TEMPLATE]`: creates the queues and tables of the SAM template
//! (default `infra/template.yaml`) on the endpoints in the environment — LocalStack and
//! DynamoDB Local in development — under the stack prefix `WORLDFLEET_STACK`.

use anyhow::Context;
use worldfleet_aws::{AwsSettings, DynamoTable, SqsQueue, deploy_from_template};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let template = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "infra/template.yaml".to_owned());
    let settings = AwsSettings::from_env().context("reading settings from the environment")?;
    let config = settings.sdk_config().await;
    let queue = SqsQueue::from_sdk_config(&config, settings.clone());
    let table = DynamoTable::from_sdk_config(&config, settings.clone());
    let report = deploy_from_template(&template, &queue, &table)
        .await
        .with_context(|| format!("deploying {template} under stack {:?}", settings.stack))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
