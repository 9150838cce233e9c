//! The prune Lambda: an SQS batch of prune requests in, a partial-batch response out.

use std::sync::Arc;

use worldfleet_prune::{Prune, PruneConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::init_tracing();
    let context = worldfleet_lambda::aws_context().await?;
    let config = PruneConfig::from_env()?;
    worldfleet_lambda::serve(Arc::new(Prune::new(context, config))).await
}
