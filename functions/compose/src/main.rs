//! The compose Lambda: an SQS batch of compose requests in, a partial-batch response out.

use std::sync::Arc;

use worldfleet_compose::Compose;
use worldfleet_compose::config::composer_from_env;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::run_stage(|| async {
        let context = worldfleet_lambda::aws_context().await?;
        let composer = composer_from_env(Arc::clone(&context.table), Arc::clone(&context.clock))
            .map_err(anyhow::Error::msg)?;
        tracing::info!(composer = %composer.describe(), "compose starting");
        Ok(Compose::with_composer(context, composer))
    })
    .await
}
