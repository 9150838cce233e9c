//! The ecology Lambda: ecology-tick timers on the standard queue `ecology-tick` in, a partial-batch response out.

use worldfleet_ecology::{EcologyConfig, EcologyTickStage};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::run_stage(|| async {
        let context = worldfleet_lambda::aws_context().await?;
        Ok(EcologyTickStage::new(context, EcologyConfig::from_env()?))
    })
    .await
}
