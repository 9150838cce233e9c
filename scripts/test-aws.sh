#!/usr/bin/env bash
# The AWS path end to end, from a fresh clone and without Docker:
#   install + start LocalStack (SQS, Secrets Manager) and DynamoDB Local, deploy infra/template.yaml's queues
#   and tables with worldfleet-local-deploy, run the AWS adapters' tests with the
#   emulator tests enabled (WORLDFLEET_LOCAL_AWS=1), run the end-to-end pipeline test (also at
#   10 % faulted requests, through the fault proxy in shared/fault-proxy) and the bad-input
#   corpus on the emulators, lint the template, stop the stack.
# A stack that was already running is left running. Extra arguments go to `cargo test`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

started_here=0
stop_stack() {
  if (( started_here )); then
    "${ROOT}/localstack/stop.sh" || true
  fi
}
trap stop_stack EXIT

if [[ "${WORLDFLEET_AWS_LAYOUT:-}" != "single" && -z "${AWS_ENDPOINT_URL:-}" ]]; then
  echo "== install the local AWS stack (needs python3, npm, java 17, curl)"
  "${ROOT}/localstack/install.sh"
fi

echo "== start it"
if [[ "${WORLDFLEET_AWS_LAYOUT:-}" != "single" && -z "${AWS_ENDPOINT_URL:-}" ]] && ! { [[ -f .localstack/localstack.pid ]] && kill -0 "$(cat .localstack/localstack.pid)" 2>/dev/null; }; then
  started_here=1
fi
"${ROOT}/localstack/start.sh"
# shellcheck source=../localstack/env.sh
. "${ROOT}/localstack/env.sh"
export WORLDFLEET_LOCAL_AWS=1

# Every test below runs from the workspace test build (the one scripts/test.sh runs first), so
# they share its features and nothing is compiled twice (`-p` alone would resolve features
# differently and build the AWS SDK again). That build also puts the binaries in
# ${CARGO_TARGET_DIR:-target}/debug: worldfleet-local-deploy, and the stage binaries that
# tests/tests/lambda_runtime.rs starts.
echo "== build (the workspace test build; nothing new when scripts/test.sh ran first)"
cargo test --workspace --locked --no-run
BIN_DIR="${CARGO_TARGET_DIR:-${ROOT}/target}/debug"

echo "== deploy the template's queues and tables (stack ${WORLDFLEET_STACK:=worldfleet-local})"
export WORLDFLEET_STACK
"${BIN_DIR}/worldfleet-local-deploy" infra/template.yaml

echo "== the AWS adapters on the emulators (contract suites on both adapters, local deploy, template policy)"
cargo test --workspace --locked --test contract --test dynamo_local --test sqs_local \
  --test local_deploy --test template_policy "$@"

echo "== end to end: every stage as fleet workers on SQS and DynamoDB, fault-free and with 10 % of requests faulted (shared/fault-proxy)"
cargo test --workspace --locked --test aws_pipeline "$@" -- --nocapture

echo "== the bad-input corpus (events/bad/) through intake on SQS and DynamoDB: each case a rejection row with its code"
cargo test --workspace --locked --test bad_input "$@" -- --nocapture

echo "== gateway key rotation through Secrets Manager: old key, rotate, new key, retire old → bad_signature; no key or signature in logs or errors"
cargo test --workspace --locked --test key_rotation "$@" -- --nocapture

echo "== worker leases on SQS: a dead worker holds its FIFO group for one lease; slow batches are renewed"
cargo test --workspace --locked --test leases "$@" -- --nocapture

echo "== dead letters on SQS: counted, shown and redriven to their work queue in group order"
cargo test --workspace --locked --test dead_letters "$@" -- --nocapture

echo "== the gateway retry rule on SQS FIFO: a rate_limited event goes in under a new deduplication id, not the old one"
cargo test --workspace --locked --test retry_rule "$@" -- --nocapture

echo "== every Lambda binary through the Lambda Runtime API (narrative stages, prune, world stages, watchdog, feed API)"
cargo test --workspace --locked --test lambda_runtime "$@" -- --nocapture

echo "== the bill: bench --aws audits and bills every narrative stage; cost prices a month from its report"
cargo test --workspace --locked --test bench_aws "$@" -- --nocapture

echo "== lint the template"
"${ROOT}/scripts/lint-template.sh"

echo "== all AWS checks passed"
