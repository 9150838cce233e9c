//! The classify Lambda: an SQS batch of accepted events in, a partial-batch response out.

use std::sync::Arc;

use worldfleet_classify::Classify;
use worldfleet_classify::config::classifier_from_env;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::run_stage(|| async {
        let context = worldfleet_lambda::aws_context().await?;
        let classifier =
            classifier_from_env(Arc::clone(&context.clock)).map_err(anyhow::Error::msg)?;
        tracing::info!(classifier = %classifier.describe(), "classify starting");
        Ok(Classify::with_classifier(context, classifier))
    })
    .await
}
