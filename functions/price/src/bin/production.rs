//! The production Lambda: production-tick timers on the standard queue `production-tick` in, a partial-batch response out.

use std::sync::Arc;

use worldfleet_price::{PriceConfig, ProductionStage};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::init_tracing();
    let context = worldfleet_lambda::aws_context().await?;
    worldfleet_lambda::serve(Arc::new(ProductionStage::new(
        context,
        PriceConfig::builtin()?,
    )))
    .await
}
