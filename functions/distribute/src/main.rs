//! The distribute Lambda: an SQS batch of canon in, a partial-batch response out.

use worldfleet_distribute::{Distribute, RepublishRules};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::run_stage(|| async {
        let context = worldfleet_lambda::aws_context().await?;
        let rules = RepublishRules::from_env()?;
        Ok(Distribute::new(context, rules))
    })
    .await
}
