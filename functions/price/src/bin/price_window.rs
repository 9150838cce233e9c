//! The price-window Lambda: window-end timers on the standard queue `price-window` in, a partial-batch response out.

use std::sync::Arc;

use worldfleet_price::{PriceConfig, WindowStage};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::init_tracing();
    let context = worldfleet_lambda::aws_context().await?;
    worldfleet_lambda::serve(Arc::new(WindowStage::new(context, PriceConfig::builtin()?))).await
}
