//! worldfleet's AWS adapters: SQS behind the [`Queue`](worldfleet_ports::Queue) port and
//! DynamoDB behind the [`Table`](worldfleet_ports::Table) port, plus local deployment of the
//! queues and tables that `infra/template.yaml` declares.
//!
//! Both adapters map logical names (`intake.fifo`, `ledger`) to physical ones with the stack
//! prefix from [`AwsSettings`], retry throttling and transient faults themselves (exponential
//! backoff with full jitter; the SDK's own retries are switched off so that every attempt is
//! counted), classify every failure into the port's [`Error`](worldfleet_ports::Error), and
//! count requests and capacity units in an [`OperationCounters`](worldfleet_ports::OperationCounters).
//! [`SecretsManagerSecret`] reads the one secret that holds the gateway keys.
//! Endpoints come from the standard AWS configuration chain, which honours `AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_SQS` and `AWS_ENDPOINT_URL_DYNAMODB` (LocalStack, DynamoDB Local).

pub mod classify;
pub mod cost;
pub mod dynamo;
pub mod error;
pub mod local_deploy;
pub mod retry;
pub mod secrets;
pub mod settings;
pub mod sqs;
pub mod template;

pub use dynamo::DynamoTable;
pub use error::{AwsError, Result};
pub use local_deploy::{DeployReport, deploy_from_template};
pub use retry::{RetryCounters, RetryPolicy, RetrySnapshot};
pub use secrets::SecretsManagerSecret;
pub use settings::AwsSettings;
pub use sqs::SqsQueue;
