//! Lambda glue: an SQS event in, the stage handler run, `batchItemFailures` out.
//!
//! Every stage's Lambda binary (`src/bin/<stage>.rs`) is one line: [`serve_stage`] with the
//! stage's registered name; the stage registry (`worldfleet-stages`) builds it from the
//! environment over [`aws_context`], as every other run mode does. It checks the Lambda
//! environment first, so a binary started outside Lambda says what is missing instead of
//! panicking; a stage that cannot be built is reported to the Runtime API's `/init/error`, as Lambda expects of a custom
//! runtime, before the process exits. The event source mapping must enable
//! `ReportBatchItemFailures`, so the records the handler reports failed — and only those — are
//! retried (on FIFO queues a failure also holds back the rest of its message group, which the
//! handler reports failed too).
//!
//! The watchdog is not fed by a queue but by an EventBridge schedule: [`serve_scheduled`]
//! checks each invocation is a scheduled event ([`ScheduledEvent`]) and runs a job with the
//! invocation's remaining time.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{LambdaEvent, service_fn};
use serde::Deserialize;
use worldfleet_aws::{AwsSettings, DynamoTable, SecretsManagerSecret, SqsQueue};
use worldfleet_intake::{GatewayKeys, KeySource};
use worldfleet_kit::{BatchReport, StageContext, StageHandler};
use worldfleet_ports::{Clock, Queue, ReceivedMessage, SystemClock, Table};
use worldfleet_stages::{BuiltStage, StageSettings, build_stage};

/// Logs on stdout (CloudWatch) as Lambda expects them: JSON unless `AWS_LAMBDA_LOG_FORMAT` is
/// `Text`, filtered by [`worldfleet_kit::log_filter`] (`WORLDFLEET_LOG`, else
/// `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, default `info`). Each record's span (message id,
/// group, event id) is on every line logged while it is handled.
pub fn init_tracing() {
    let env = worldfleet_kit::Env::process();
    let filter = tracing_subscriber::EnvFilter::try_new(worldfleet_kit::log_filter(&env, "info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let text = env
        .text("AWS_LAMBDA_LOG_FORMAT")
        .is_some_and(|format| format.eq_ignore_ascii_case("text"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time();
    let _ = if text {
        builder.try_init()
    } else {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    };
}

/// The ports over SQS and DynamoDB, configured once from the environment
/// (`AWS_REGION`, `WORLDFLEET_STACK`, endpoints via `AWS_ENDPOINT_URL*`).
pub async fn aws_context() -> anyhow::Result<StageContext> {
    let settings = AwsSettings::from_env().context("read AWS settings from the environment")?;
    let config = settings.sdk_config().await;
    let queue: Arc<dyn Queue> = Arc::new(SqsQueue::from_sdk_config(&config, settings.clone()));
    let table: Arc<dyn Table> = Arc::new(DynamoTable::from_sdk_config(&config, settings));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(StageContext::new(queue, table, clock))
}

/// Converts the event's records. A record without a message id cannot be reported failed, so
/// it cannot be retried safely: the conversion refuses the whole event instead (Lambda then
/// retries the batch).
pub fn records_from_event(event: SqsEvent) -> anyhow::Result<Vec<ReceivedMessage>> {
    event.records.into_iter().map(record_from_message).collect()
}

fn record_from_message(message: SqsMessage) -> anyhow::Result<ReceivedMessage> {
    let message_id = message
        .message_id
        .context("an SQS record without messageId")?;
    let attribute = |name: &str| message.attributes.get(name).cloned();
    Ok(ReceivedMessage {
        receipt_handle: message.receipt_handle.unwrap_or_default(),
        body: message.body.unwrap_or_default(),
        group_id: attribute("MessageGroupId"),
        receive_count: attribute("ApproximateReceiveCount")
            .and_then(|count| count.parse().ok())
            .unwrap_or(1),
        sent_at_ms: attribute("SentTimestamp")
            .and_then(|sent| sent.parse().ok())
            .unwrap_or(0),
        message_id,
    })
}

/// The partial-batch response for `report`.
pub fn batch_response(report: &BatchReport) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = report
        .failed_message_ids
        .iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.clone();
            failure
        })
        .collect();
    response
}

/// Handles one invocation: the time budget is the invocation's remaining time.
pub async fn invoke(
    handler: &dyn StageHandler,
    event: LambdaEvent<SqsEvent>,
) -> anyhow::Result<SqsBatchResponse> {
    let remaining = match remaining(&event.context) {
        Duration::ZERO => Duration::from_secs(1),
        left => left,
    };
    let records = records_from_event(event.payload)?;
    let report = worldfleet_kit::handle_in_place(handler, &records, remaining).await;
    tracing::info!(
        stage = handler.name(),
        records = records.len(),
        succeeded = report.succeeded,
        failed = report.failed_message_ids.len(),
        skipped = report.skipped,
        "batch handled"
    );
    Ok(batch_response(&report))
}

/// The variables the Lambda service sets for a custom runtime and `lambda_runtime` requires.
pub const RUNTIME_VARIABLES: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

/// Checks that `lookup` has every [`RUNTIME_VARIABLES`] entry and a numeric memory size
/// (`lambda_runtime` panics on either), and returns the Runtime API's `host:port`.
pub fn check_runtime_environment(
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let missing: Vec<&str> = RUNTIME_VARIABLES
        .into_iter()
        .filter(|name| lookup(name).is_none_or(|value| value.is_empty()))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "not in a Lambda execution environment: {} not set (the Lambda service or a Runtime API emulator sets them)",
            missing.join(", ")
        );
    }
    let memory = lookup("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").unwrap_or_default();
    if memory.parse::<i32>().is_err() {
        anyhow::bail!("AWS_LAMBDA_FUNCTION_MEMORY_SIZE={memory:?} is not a whole number of MB");
    }
    Ok(lookup("AWS_LAMBDA_RUNTIME_API").unwrap_or_default())
}

/// Runs the Lambda function of the registered stage `name`: logs set up, the Lambda
/// environment checked, the stage built once by the registry from the environment
/// ([`worldfleet_stages::StageSettings::from_env`]), then invocations served until the
/// environment is shut down. The watchdog is served on its schedule ([`serve_scheduled`]).
/// When the stage cannot be built the error goes to the Runtime API's `/init/error` (Lambda
/// reports `Runtime.InitError` with the message rather than an unexplained exit) and is
/// returned, so the process exits non-zero.
pub async fn serve_stage(name: &'static str) -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let runtime_api = check_runtime_environment(|name| std::env::var(name).ok())?;
    match build_from_env(name).await {
        Ok(BuiltStage::Input(handler) | BuiltStage::Timer(handler)) => {
            tracing::info!(stage = %handler.describe(), "stage starting");
            serve(handler).await
        }
        Ok(BuiltStage::Watchdog(watchdog)) => {
            tracing::info!(stage = name, "scheduled stage starting");
            let watchdog = Arc::new(watchdog);
            serve_scheduled(move |_budget| {
                let watchdog = Arc::clone(&watchdog);
                async move {
                    let pass = worldfleet_watchdog::run(&watchdog.context, &watchdog.prune).await?;
                    if pass.rearmed() > 0 {
                        tracing::warn!(?pass, "watchdog re-armed quiet chains");
                    }
                    Ok(serde_json::to_value(pass)?)
                }
            })
            .await
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "stage initialisation failed");
            if let Err(report) = report_init_error(&runtime_api, &error).await {
                tracing::error!(
                    error = format!("{report:#}"),
                    "could not report the initialisation error to the Runtime API"
                );
            }
            Err(error.into())
        }
    }
}

async fn build_from_env(name: &str) -> anyhow::Result<BuiltStage> {
    let context = aws_context().await?;
    let mut settings = StageSettings::from_vars(&worldfleet_kit::Env::process())?;
    if name == "intake" {
        load_gateway_keys(&mut settings).await?;
    }
    Ok(build_stage(name, &context, &settings)?)
}

/// Intake's keys as a [`KeySource`]: the string value of one Secrets Manager secret.
pub struct SecretKeySource(pub SecretsManagerSecret);

#[async_trait::async_trait]
impl KeySource for SecretKeySource {
    fn describe(&self) -> String {
        format!("Secrets Manager secret {}", self.0.id())
    }

    async fn fetch(&self) -> Result<String, String> {
        self.0.string_value().await
    }
}

/// When intake's keys come from a secret (`WORLDFLEET_GATEWAY_KEYS_SECRET_ARN`), reads it
/// once (start-up fails when it cannot be read or holds no usable keys) and puts in its place
/// keys that read it again every `WORLDFLEET_GATEWAY_KEYS_REFRESH_SECS`. Nothing to do when
/// the keys are given directly or intake's settings are unusable anyway.
pub async fn load_gateway_keys(settings: &mut StageSettings) -> anyhow::Result<()> {
    let Ok(intake) = settings.intake.as_mut() else {
        return Ok(());
    };
    let Some(secret) = intake.key_secret.clone() else {
        return Ok(());
    };
    let aws = AwsSettings::from_env().context("read AWS settings from the environment")?;
    let config = aws.sdk_config().await;
    let source = SecretKeySource(SecretsManagerSecret::from_sdk_config(
        &config,
        &secret.id,
        aws.retry.max_attempts,
    ));
    intake.gateways = GatewayKeys::load(Arc::new(source), secret.refresh)
        .await
        .context("load the gateway keys")?;
    intake.key_secret = None;
    Ok(())
}

/// The stage the Lambda binary `name` runs over `context`, with the settings in `env`.
pub fn lambda_stage(
    name: &str,
    context: &StageContext,
    env: &worldfleet_kit::Env,
) -> anyhow::Result<BuiltStage> {
    let settings = StageSettings::from_vars(env)?;
    Ok(build_stage(name, context, &settings)?)
}

/// The `/init/error` body: the Runtime API's error document.
pub fn init_error_body(error: &anyhow::Error) -> serde_json::Value {
    serde_json::json!({
        "errorType": "Runtime.InitError",
        "errorMessage": format!("{error:#}"),
    })
}

async fn report_init_error(runtime_api: &str, error: &anyhow::Error) -> anyhow::Result<()> {
    let base: http::Uri = format!("http://{runtime_api}")
        .parse()
        .with_context(|| format!("AWS_LAMBDA_RUNTIME_API={runtime_api:?} is not host:port"))?;
    let client = lambda_runtime_api_client::Client::builder()
        .with_endpoint(base)
        .build()
        .map_err(|error| anyhow::anyhow!("Runtime API client: {error}"))?;
    let body = serde_json::to_vec(&init_error_body(error))?;
    let request = lambda_runtime_api_client::build_request()
        .method(http::Method::POST)
        .uri("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", "Runtime.InitError")
        .body(lambda_runtime_api_client::body::Body::from(body))
        .context("build the /init/error request")?;
    let response = client
        .call(request)
        .await
        .map_err(|error| anyhow::anyhow!("POST /init/error: {error}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "POST /init/error answered {}",
        response.status()
    );
    Ok(())
}

/// Time left in an invocation (at least nothing: a passed deadline gives zero).
fn remaining(context: &lambda_runtime::Context) -> Duration {
    context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// An EventBridge scheduled event (a `rate(...)` or `cron(...)` rule's invocation). Only the
/// fields the glue checks are read; the rest of the event is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ScheduledEvent {
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    /// When the rule fired (RFC 3339).
    pub time: String,
    /// The rules that fired it.
    #[serde(default)]
    pub resources: Vec<String>,
}

impl ScheduledEvent {
    /// Reads an invocation payload, refusing anything that is not a scheduled event from
    /// EventBridge (a test invocation, an SQS batch wired to the wrong function).
    pub fn from_payload(payload: serde_json::Value) -> anyhow::Result<Self> {
        let event: Self = serde_json::from_value(payload)
            .context("not an EventBridge scheduled event (id, detail-type, source, time)")?;
        if event.source != "aws.events" || event.detail_type != "Scheduled Event" {
            anyhow::bail!(
                "expected a scheduled event from aws.events, got {:?} from {:?}",
                event.detail_type,
                event.source
            );
        }
        Ok(event)
    }
}

/// Handles one scheduled invocation: checks the event, then runs `job` with the time left.
/// The job's summary is the function's result (it shows in the logs and in test invokes).
pub async fn invoke_scheduled<F, Fut>(
    job: &F,
    payload: serde_json::Value,
    remaining: Duration,
) -> anyhow::Result<serde_json::Value>
where
    F: Fn(Duration) -> Fut,
    Fut: Future<Output = anyhow::Result<serde_json::Value>>,
{
    let event = ScheduledEvent::from_payload(payload)?;
    let summary = job(remaining).await?;
    tracing::info!(event = %event.id, fired_at = %event.time, %summary, "scheduled run done");
    Ok(summary)
}

/// Serves a scheduled `job` on the Lambda Runtime API until the environment is shut down. A
/// failed run returns an error, which Lambda records; the next scheduled run retries.
pub async fn serve_scheduled<F, Fut>(job: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(Duration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<serde_json::Value>> + Send,
{
    let job = Arc::new(job);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let job = Arc::clone(&job);
        async move {
            invoke_scheduled(job.as_ref(), event.payload, remaining(&event.context))
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}

/// Serves `handler` on the Lambda Runtime API until the environment is shut down.
pub async fn serve(handler: Arc<dyn StageHandler>) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = Arc::clone(&handler);
        async move {
            invoke(handler.as_ref(), event)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_records_and_reports_failures_by_message_id() {
        let event: SqsEvent = serde_json::from_value(serde_json::json!({
            "Records": [{
                "messageId": "m-1",
                "receiptHandle": "r-1",
                "body": "{}",
                "attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000000", "MessageGroupId": "g/1/2"},
                "messageAttributes": {},
                "eventSource": "aws:sqs"
            }]
        }))
        .unwrap();
        let records = records_from_event(event).unwrap();
        assert_eq!(records[0].receive_count, 3);
        assert_eq!(records[0].group_id.as_deref(), Some("g/1/2"));
        assert_eq!(records[0].sent_at_ms, 1_700_000_000_000);
        let report = BatchReport {
            failed_message_ids: vec!["m-1".into()],
            succeeded: 0,
            ..BatchReport::default()
        };
        let response = serde_json::to_value(batch_response(&report)).unwrap();
        assert_eq!(
            response,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]})
        );
    }

    fn scheduled_payload() -> serde_json::Value {
        serde_json::json!({
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2026-11-21T10:00:00Z",
            "region": "eu-west-1",
            "resources": ["arn:aws:events:eu-west-1:123456789012:rule/worldfleet-watchdog"],
            "detail": {}
        })
    }

    #[test]
    fn reads_a_scheduled_event() {
        let event = ScheduledEvent::from_payload(scheduled_payload()).unwrap();
        assert_eq!(event.time, "2026-11-21T10:00:00Z");
        assert_eq!(event.resources.len(), 1);
    }

    #[test]
    fn refuses_events_that_are_not_schedules() {
        let mut wrong_source = scheduled_payload();
        wrong_source["source"] = "aws.s3".into();
        assert!(ScheduledEvent::from_payload(wrong_source).is_err());
        let mut wrong_kind = scheduled_payload();
        wrong_kind["detail-type"] = "Object Created".into();
        assert!(ScheduledEvent::from_payload(wrong_kind).is_err());
        let sqs = serde_json::json!({"Records": [{"messageId": "m-1", "body": "{}"}]});
        assert!(ScheduledEvent::from_payload(sqs).is_err());
    }

    #[tokio::test]
    async fn runs_the_job_only_for_a_scheduled_event() {
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let job = |budget: Duration| {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok(serde_json::json!({"budget_ms": budget.as_millis() as u64})) }
        };
        let summary = invoke_scheduled(&job, scheduled_payload(), Duration::from_secs(7))
            .await
            .unwrap();
        assert_eq!(summary, serde_json::json!({"budget_ms": 7000}));
        assert!(
            invoke_scheduled(&job, serde_json::json!({}), Duration::from_secs(7))
                .await
                .is_err()
        );
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        let failing = |_budget: Duration| async { anyhow::bail!("table unavailable") };
        assert!(
            invoke_scheduled(&failing, scheduled_payload(), Duration::from_secs(1))
                .await
                .is_err()
        );
    }

    #[test]
    fn names_every_missing_runtime_variable_and_a_bad_memory_size() {
        let empty = check_runtime_environment(|_| None).unwrap_err().to_string();
        for name in RUNTIME_VARIABLES {
            assert!(empty.contains(name), "{empty}");
        }
        let lambda = |memory: &'static str| {
            move |name: &str| {
                Some(match name {
                    "AWS_LAMBDA_RUNTIME_API" => "127.0.0.1:9001".to_owned(),
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" => memory.to_owned(),
                    _ => "x".to_owned(),
                })
            }
        };
        assert_eq!(
            check_runtime_environment(lambda("256")).unwrap(),
            "127.0.0.1:9001"
        );
        let bad = check_runtime_environment(lambda("lots")).unwrap_err();
        assert!(bad.to_string().contains("lots"), "{bad}");
    }

    #[test]
    fn init_error_body_carries_the_whole_cause_chain() {
        let error = anyhow::anyhow!("WORLDFLEET_GATEWAY_KEYS is not set").context("intake config");
        assert_eq!(
            init_error_body(&error),
            serde_json::json!({
                "errorType": "Runtime.InitError",
                "errorMessage": "intake config: WORLDFLEET_GATEWAY_KEYS is not set"
            })
        );
    }

    #[test]
    fn refuses_records_without_message_id() {
        let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [{"body": "x", "attributes": {}, "messageAttributes": {}}]})).unwrap();
        assert!(records_from_event(event).is_err());
    }
}
