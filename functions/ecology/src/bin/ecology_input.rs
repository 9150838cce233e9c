//! The ecology-input Lambda: captures, breed requests and migrants on `ecology-input.fifo` in, a partial-batch response out.

use worldfleet_ecology::EcologyInputStage;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::run_stage(|| async {
        let context = worldfleet_lambda::aws_context().await?;
        Ok(EcologyInputStage::new(context))
    })
    .await
}
