//! The classify Lambda: an SQS batch of accepted events in, a partial-batch response out.

use std::sync::Arc;

use worldfleet_classify::Classify;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::init_tracing();
    let context = worldfleet_lambda::aws_context().await?;
    worldfleet_lambda::serve(Arc::new(Classify::new(context))).await
}
