//! The compose Lambda: an SQS batch of compose requests in, a partial-batch response out.

use worldfleet_compose::Compose;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::run_stage(|| async {
        Ok(Compose::new(worldfleet_lambda::aws_context().await?))
    })
    .await
}
