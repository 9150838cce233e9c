#!/usr/bin/env bash
# Lints infra/template.yaml with cfn-lint (installed on first use into the git-ignored
# .venv-infra/). Exits non-zero on any error or warning cfn-lint reports.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOT}/.venv-infra"
if [[ ! -x "${VENV}/bin/cfn-lint" ]]; then
  echo "cfn-lint: installing into ${VENV}"
  "${PYTHON:-python3}" -m venv "${VENV}"
  "${VENV}/bin/pip" install --quiet --no-cache-dir --upgrade pip
  "${VENV}/bin/pip" install --quiet --no-cache-dir cfn-lint
fi
echo "cfn-lint $("${VENV}/bin/cfn-lint" --version 2>&1 | awk '{print $NF}') on infra/template.yaml"
"${VENV}/bin/cfn-lint" --regions us-east-1 -- "${ROOT}/infra/template.yaml"
echo "cfn-lint: clean"
