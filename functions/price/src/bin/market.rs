//! The market Lambda: trades routed from intake on `market.fifo` in, a partial-batch response out.

use worldfleet_price::{MarketStage, PriceConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::run_stage(|| async {
        let context = worldfleet_lambda::aws_context().await?;
        Ok(MarketStage::new(context, PriceConfig::builtin()?))
    })
    .await
}
