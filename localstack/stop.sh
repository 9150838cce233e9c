#!/usr/bin/env bash
# Stops what localstack/start.sh started (by the pids it recorded under .localstack/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${ROOT}/.localstack"

for name in localstack dynamodb; do
  pid_file="${STATE}/${name}.pid"
  [[ -f "${pid_file}" ]] || continue
  pid="$(cat "${pid_file}")"
  if kill -0 "${pid}" 2>/dev/null; then
    # start.sh runs each under setsid, so the pid is also its process group.
    kill -TERM -- "-${pid}" 2>/dev/null || kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 1 20); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-${pid}" 2>/dev/null || true
    echo "${name}: stopped"
  fi
  rm -f "${pid_file}"
done
