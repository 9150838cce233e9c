//! The ecology Lambda: ecology-tick timers on the standard queue `ecology-tick` in, a partial-batch response out.

use std::sync::Arc;

use worldfleet_ecology::{EcologyConfig, EcologyTickStage};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::init_tracing();
    let context = worldfleet_lambda::aws_context().await?;
    worldfleet_lambda::serve(Arc::new(EcologyTickStage::new(
        context,
        EcologyConfig::from_env()?,
    )))
    .await
}
