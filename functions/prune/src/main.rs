//! The prune Lambda: an SQS batch of prune requests in, a partial-batch response out.

use worldfleet_prune::{Prune, PruneConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::run_stage(|| async {
        let context = worldfleet_lambda::aws_context().await?;
        Ok(Prune::new(context, PruneConfig::from_env()?))
    })
    .await
}
