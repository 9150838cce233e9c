//! The compose Lambda: an SQS batch of compose requests in, a partial-batch response out.

use std::sync::Arc;

use worldfleet_compose::Compose;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::init_tracing();
    let context = worldfleet_lambda::aws_context().await?;
    worldfleet_lambda::serve(Arc::new(Compose::new(context))).await
}
