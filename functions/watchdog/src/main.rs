//! The watchdog Lambda: an EventBridge scheduled event in (once a minute), one pass out.

use worldfleet_prune::PruneConfig;
use worldfleet_watchdog::run;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    worldfleet_lambda::init_tracing();
    // As `run_stage` does: outside Lambda, say which variables are missing instead of letting
    // the runtime panic on the first one.
    worldfleet_lambda::check_runtime_environment(|name| std::env::var(name).ok())?;
    let context = worldfleet_lambda::aws_context().await?;
    // Configuration is read once, at start-up, not on every scheduled run.
    let prune = std::sync::Arc::new(PruneConfig::from_env()?);
    worldfleet_lambda::serve_scheduled(move |_budget| {
        let context = context.clone();
        let prune = std::sync::Arc::clone(&prune);
        async move {
            let pass = run(&context, &prune).await?;
            if pass.rearmed() > 0 {
                tracing::warn!(?pass, "watchdog re-armed quiet chains");
            }
            Ok(serde_json::to_value(pass)?)
        }
    })
    .await
}
