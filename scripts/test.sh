#!/usr/bin/env bash
# The whole test suite, from a fresh clone: formatting, lints, every crate's tests (the
# embedded pipeline and its fault test included), then the parts that need local services or
# downloads, each of which installs and starts what it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Each step names the free disk space too: a full disk is the usual way a fresh machine fails.
step() {
  printf '\n=== %s (disk free: %s)\n' "$*" "$(df -h --output=avail . 2>/dev/null | tail -n 1 | tr -d ' ')"
}

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit, contract, pipeline and fault tests (embedded)"
cargo test --workspace --locked

for extra in scripts/test-inference.sh scripts/test-aws.sh; do
  if [ -x "$extra" ]; then
    step "$extra"
    "$extra"
  fi
done

step "all tests passed"
