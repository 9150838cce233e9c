//! The intake Lambda: an SQS batch of envelopes in, a partial-batch response out.

use std::sync::Arc;

use worldfleet_intake::{Intake, IntakeConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::init_tracing();
    let context = worldfleet_lambda::aws_context().await?;
    let config = IntakeConfig::from_env()?;
    worldfleet_lambda::serve(Arc::new(Intake::new(context, config))).await
}
