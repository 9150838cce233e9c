//! The distribute Lambda: an SQS batch of canon in, a partial-batch response out.

use std::sync::Arc;

use worldfleet_distribute::{Distribute, RepublishRules};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::init_tracing();
    let context = worldfleet_lambda::aws_context().await?;
    let rules = RepublishRules::from_env()?;
    worldfleet_lambda::serve(Arc::new(Distribute::new(context, rules))).await
}
