//! The ecology-input Lambda: captures, breed requests and migrants on `ecology-input.fifo` in, a partial-batch response out.

use std::sync::Arc;

use worldfleet_ecology::EcologyInputStage;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::init_tracing();
    let context = worldfleet_lambda::aws_context().await?;
    worldfleet_lambda::serve(Arc::new(EcologyInputStage::new(context))).await
}
