# Exports for clients of the local AWS stack. Source it: `. localstack/env.sh`.
#
# Two layouts:
#   - host mode (default, no Docker): LocalStack serves SQS and Secrets Manager on :4566 and
#     DynamoDB Local serves DynamoDB on :8000, so each service gets its own
#     AWS_ENDPOINT_URL_<SERVICE>;
#   - one endpoint (a LocalStack container serving both): set WORLDFLEET_AWS_LAYOUT=single, or
#     have AWS_ENDPOINT_URL set already, and only AWS_ENDPOINT_URL is used.
# Ports: LOCALSTACK_PORT (4566), DYNAMODB_PORT (8000).

export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-${AWS_REGION}}"
if [ "${WORLDFLEET_AWS_LAYOUT:-}" = "single" ] || [ -n "${AWS_ENDPOINT_URL:-}" ]; then
  export WORLDFLEET_AWS_LAYOUT=single
  export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:${LOCALSTACK_PORT:-4566}}"
  unset AWS_ENDPOINT_URL_SQS AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_SECRETS_MANAGER
else
  export WORLDFLEET_AWS_LAYOUT=split
  export AWS_ENDPOINT_URL_SQS="http://127.0.0.1:${LOCALSTACK_PORT:-4566}"
  export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:${DYNAMODB_PORT:-8000}"
  # Secrets Manager (the gateway keys) is LocalStack's too.
  export AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:${LOCALSTACK_PORT:-4566}"
fi
