#!/bin/bash
# LocalStack container init hook (mounted at /etc/localstack/init/ready.d): runs once SQS and
# DynamoDB are up and checks that both answer. Queues and tables are NOT created here: they
# come from infra/template.yaml through `worldfleet-local-deploy` on the host (one source of
# truth), e.g. `cargo run -p worldfleet-aws --bin worldfleet-local-deploy`.
set -euo pipefail
awslocal sqs list-queues > /dev/null
awslocal dynamodb list-tables > /dev/null
echo "worldfleet: SQS and DynamoDB are ready; run worldfleet-local-deploy on the host"
