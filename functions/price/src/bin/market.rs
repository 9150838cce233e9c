//! The market Lambda: trades routed from intake on `market.fifo` in, a partial-batch response out.

use std::sync::Arc;

use worldfleet_price::{MarketStage, PriceConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::init_tracing();
    let context = worldfleet_lambda::aws_context().await?;
    worldfleet_lambda::serve(Arc::new(MarketStage::new(context, PriceConfig::builtin()?))).await
}
