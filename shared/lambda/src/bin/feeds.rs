//! The `feeds` Lambda function: the feed API (`GET /v1/feeds/{feed}`, `GET`/`PUT
//! /v1/feeds/{feed}/readers/{reader}`) on DynamoDB, behind an API Gateway HTTP API with IAM
//! authorization (`infra/template.yaml`). The routes, answers and refusals are
//! `worldfleet serve`'s own (`worldfleet_serve::feeds_api`); API Gateway has authenticated the
//! caller, so no gateway signature is checked here. Live streams are not served by Lambda: run
//! `worldfleet serve --aws` for Server-Sent Events and WebSockets.

use worldfleet_intake::GatewayKeys;
use worldfleet_serve::{ServeConfig, ServeState, feeds_api};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    worldfleet_lambda::init_tracing();
    let config = ServeConfig::from_lookup(|name| std::env::var(name).ok())
        .map_err(|error| format!("feeds: {error}"))?;
    let context = worldfleet_lambda::aws_context()
        .await
        .map_err(|error| format!("feeds: {error:#}"))?;
    let state = ServeState::from_context(&context, GatewayKeys::default(), config);
    lambda_http::run(feeds_api(state)).await
}
