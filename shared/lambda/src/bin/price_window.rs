//! The `price-window` Lambda function: the registered stage, built from the environment.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::serve_stage("price-window").await
}
