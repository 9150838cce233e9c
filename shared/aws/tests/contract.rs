//! The port contract suites of `worldfleet-contract`, unchanged, against the AWS adapters:
//! `SqsQueue` on LocalStack and `DynamoTable` on DynamoDB Local.

mod support;

use std::sync::Arc;

use worldfleet_contract::{queue_contract, table_contract, unique_namespace};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_queue_meets_the_queue_contract() {
    if !support::local_aws("sqs_queue_meets_the_queue_contract") {
        return;
    }
    let (queue, _) = support::adapters("cq").await;
    queue_contract(Arc::new(queue), &unique_namespace("q")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamo_table_meets_the_table_contract() {
    if !support::local_aws("dynamo_table_meets_the_table_contract") {
        return;
    }
    let (_, table) = support::adapters("ct").await;
    table_contract(Arc::new(table), &unique_namespace("t")).await;
}
