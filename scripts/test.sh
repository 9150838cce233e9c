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

step "headless chromium (for the dashboard test)"
WORLDFLEET_BROWSER="$(scripts/install-chromium.sh)"
export WORLDFLEET_BROWSER
# The dashboard test must run here, not skip; its screenshot lands in test-output/.
export WORLDFLEET_REQUIRE_BROWSER=1
export WORLDFLEET_TEST_OUTPUT="${WORLDFLEET_TEST_OUTPUT:-$PWD/test-output}"

step "unit, contract, pipeline, fault and dashboard tests (embedded), fuzz corpus replay"
cargo test --workspace --locked

for extra in scripts/test-inference.sh scripts/test-aws.sh; do
  if [ -x "$extra" ]; then
    step "$extra"
    "$extra"
  fi
done

step "all tests passed"
