//! The intake Lambda: an SQS batch of envelopes in, a partial-batch response out.

use worldfleet_intake::{Intake, IntakeConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::run_stage(|| async {
        let context = worldfleet_lambda::aws_context().await?;
        let config = IntakeConfig::from_env()?;
        Ok(Intake::new(context, config))
    })
    .await
}
