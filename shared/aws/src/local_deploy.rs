//! Local deployment: create exactly the queues and tables `infra/template.yaml` declares.
//!
//! The SAM template is the one source of truth. Locally there is no CloudFormation for
//! DynamoDB, so this reads the template's `AWS::SQS::Queue` and `AWS::DynamoDB::Table`
//! resources and ensures each through the ports: queues with their visibility timeout,
//! retention and redrive policy (dead-letter queues first), tables with pk/sk and TTL.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use tracing::info;
use worldfleet_ports::{Queue, QueueSpec, Table, TableSpec};

use crate::dynamo::DynamoTable;
use crate::error::{AwsError, Result};
use crate::sqs::SqsQueue;
use crate::template::{Template, as_bool, as_u64, logical_name, referenced_resource};

/// SQS's default retention, used when a queue does not set `MessageRetentionPeriod`.
const DEFAULT_RETENTION_SECS: u64 = 4 * 24 * 3600;
/// SQS's default visibility timeout.
const DEFAULT_VISIBILITY_SECS: u64 = 30;

/// The queues and tables a template declares, by logical name.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredResources {
    /// Queues, dead-letter queues before the queues that redrive into them.
    pub queues: Vec<QueueSpec>,
    pub tables: Vec<TableSpec>,
}

/// What a deployment created (or found), by logical name, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeployReport {
    pub queues: Vec<String>,
    pub tables: Vec<String>,
}

fn required<'a>(
    resource: &crate::template::Resource<'a>,
    property: &str,
) -> Result<&'a serde_yaml::Value> {
    resource
        .property(property)
        .ok_or_else(|| AwsError::Template(format!("{} has no {property}", resource.id)))
}

/// Reads the queue and table declarations of a template.
pub fn declared_resources(template: &Template) -> Result<DeclaredResources> {
    let mut names_by_id = BTreeMap::new();
    let queue_resources = template.resources_of("AWS::SQS::Queue");
    for resource in &queue_resources {
        let name = logical_name(required(resource, "QueueName")?).ok_or_else(|| {
            AwsError::Template(format!(
                "{}: QueueName must be !Sub \"${{AWS::StackName}}-<name>\"",
                resource.id
            ))
        })?;
        names_by_id.insert(resource.id.to_owned(), name);
    }
    let mut dead_letters = Vec::new();
    let mut workers = Vec::new();
    for resource in &queue_resources {
        let name = names_by_id
            .get(resource.id)
            .cloned()
            .ok_or_else(|| AwsError::Template(format!("{}: queue without a name", resource.id)))?;
        let fifo = resource
            .property("FifoQueue")
            .and_then(as_bool)
            .unwrap_or(false);
        if fifo != name.ends_with(".fifo") {
            return Err(AwsError::Template(format!(
                "{}: FifoQueue must be true exactly when the name ends in .fifo",
                resource.id
            )));
        }
        let seconds = |property: &str, default: u64| -> Result<u64> {
            match resource.property(property) {
                None => Ok(default),
                Some(value) => as_u64(value).ok_or_else(|| {
                    AwsError::Template(format!("{}: {property} is not a whole number", resource.id))
                }),
            }
        };
        let visibility = seconds("VisibilityTimeout", DEFAULT_VISIBILITY_SECS)?;
        let retention = seconds("MessageRetentionPeriod", DEFAULT_RETENTION_SECS)?;
        let mut spec = QueueSpec {
            name,
            visibility_timeout: Duration::from_secs(visibility),
            max_receive_count: 0,
            dead_letter_queue: None,
            retention: Duration::from_secs(retention),
        };
        match resource.property("RedrivePolicy") {
            None => dead_letters.push(spec),
            Some(policy) => {
                let target = policy
                    .get("deadLetterTargetArn")
                    .and_then(referenced_resource)
                    .and_then(|id| names_by_id.get(&id).cloned())
                    .ok_or_else(|| {
                        AwsError::Template(format!(
                            "{}: deadLetterTargetArn must be !GetAtt <queue in this template>.Arn",
                            resource.id
                        ))
                    })?;
                let count = policy
                    .get("maxReceiveCount")
                    .and_then(as_u64)
                    .and_then(|count| u32::try_from(count).ok())
                    .ok_or_else(|| {
                        AwsError::Template(format!("{}: maxReceiveCount missing", resource.id))
                    })?;
                spec.dead_letter_queue = Some(target);
                spec.max_receive_count = count;
                workers.push(spec);
            }
        }
    }
    let mut tables = Vec::new();
    for resource in template.resources_of("AWS::DynamoDB::Table") {
        let name = logical_name(required(&resource, "TableName")?).ok_or_else(|| {
            AwsError::Template(format!(
                "{}: TableName must be !Sub \"${{AWS::StackName}}-<name>\"",
                resource.id
            ))
        })?;
        tables.push(TableSpec { name });
    }
    dead_letters.extend(workers);
    Ok(DeclaredResources {
        queues: dead_letters,
        tables,
    })
}

/// Ensures every declared queue and table through any pair of adapters.
pub async fn deploy_declared(
    declared: &DeclaredResources,
    queue: &dyn Queue,
    table: &dyn Table,
) -> Result<DeployReport> {
    let mut report = DeployReport::default();
    for spec in &declared.queues {
        queue.ensure_queue(spec).await?;
        info!(queue = %spec.name, dead_letter = ?spec.dead_letter_queue, "queue ready");
        report.queues.push(spec.name.clone());
    }
    for spec in &declared.tables {
        table.ensure_table(spec).await?;
        info!(table = %spec.name, "table ready");
        report.tables.push(spec.name.clone());
    }
    report.queues.sort();
    report.tables.sort();
    Ok(report)
}

/// Creates exactly the queues (with redrive) and tables the template at `path` declares.
pub async fn deploy_from_template(
    path: impl AsRef<Path>,
    queue: &SqsQueue,
    table: &DynamoTable,
) -> Result<DeployReport> {
    let template = Template::from_path(path)?;
    let declared = declared_resources(&template)?;
    deploy_declared(&declared, queue, table).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_queues_come_first_with_their_redrive() {
        let template = Template::parse(
            r#"
Resources:
  Work:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-work.fifo"
      FifoQueue: true
      VisibilityTimeout: 180
      RedrivePolicy: { deadLetterTargetArn: !GetAtt Dead.Arn, maxReceiveCount: 5 }
  Dead:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-work-dlq.fifo"
      FifoQueue: true
      MessageRetentionPeriod: 1209600
  Things:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${AWS::StackName}-things"
"#,
        )
        .unwrap();
        let declared = declared_resources(&template).unwrap();
        assert_eq!(declared.queues[0].name, "work-dlq.fifo");
        assert_eq!(declared.queues[0].retention, Duration::from_secs(1_209_600));
        assert_eq!(
            declared.queues[1].dead_letter_queue.as_deref(),
            Some("work-dlq.fifo")
        );
        assert_eq!(declared.queues[1].max_receive_count, 5);
        assert_eq!(
            declared.queues[1].visibility_timeout,
            Duration::from_secs(180)
        );
        assert_eq!(
            declared.tables,
            vec![TableSpec {
                name: "things".into()
            }]
        );
    }

    #[test]
    fn redrive_to_an_unknown_queue_is_an_error() {
        let template = Template::parse(
            r#"
Resources:
  Work:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-work"
      RedrivePolicy: { deadLetterTargetArn: !GetAtt Missing.Arn, maxReceiveCount: 5 }
"#,
        )
        .unwrap();
        assert!(declared_resources(&template).is_err());
    }
}
