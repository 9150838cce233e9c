//! The classify Lambda: an SQS batch of accepted events in, a partial-batch response out.

use worldfleet_classify::Classify;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::run_stage(|| async {
        Ok(Classify::new(worldfleet_lambda::aws_context().await?))
    })
    .await
}
