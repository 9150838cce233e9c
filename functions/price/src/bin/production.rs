//! The production Lambda: production-tick timers on the standard queue `production-tick` in, a partial-batch response out.

use worldfleet_price::{PriceConfig, ProductionStage};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::run_stage(|| async {
        let context = worldfleet_lambda::aws_context().await?;
        Ok(ProductionStage::new(context, PriceConfig::builtin()?))
    })
    .await
}
