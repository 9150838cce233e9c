//! The price-window Lambda: window-end timers on the standard queue `price-window` in, a partial-batch response out.

use worldfleet_price::{PriceConfig, WindowStage};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::run_stage(|| async {
        let context = worldfleet_lambda::aws_context().await?;
        Ok(WindowStage::new(context, PriceConfig::builtin()?))
    })
    .await
}
