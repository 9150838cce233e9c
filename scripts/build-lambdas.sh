#!/usr/bin/env bash
# Builds the Lambda functions for AWS Lambda on Graviton (provided.al2023, arm64) as
# `bootstrap.zip` files with the size-optimised `[profile.lambda]`, then prints each zip's size.
#   scripts/build-lambdas.sh            # all twelve
#   scripts/build-lambdas.sh intake     # some of them
# Needs cargo-lambda (installed into .venv-lambda/ from PyPI if missing; it brings zig for the
# cross link) and the aarch64-unknown-linux-gnu Rust target. Output:
# ${CARGO_TARGET_DIR:-target}/lambda/<bin>/bootstrap.zip. Slow (full LTO cross build); not CI.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

VENV="${ROOT}/.venv-lambda"
if [[ ! -x "${VENV}/bin/cargo-lambda" ]]; then
  echo "== install cargo-lambda into ${VENV}"
  python3 -m venv "${VENV}"
  "${VENV}/bin/pip" install --quiet cargo-lambda
fi
export PATH="${VENV}/bin:${PATH}"

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi

bins=("$@")
if (( ${#bins[@]} == 0 )); then
  bins=(intake classify compose distribute prune market price-window production ecology-input ecology watchdog feeds)
fi

bin_args=()
for bin in "${bins[@]}"; do
  bin_args+=(--bin "${bin}")
done

echo "== cargo lambda build -p worldfleet-lambda --profile lambda --arm64 --output-format zip ${bin_args[*]}"
start=$(date +%s)
cargo lambda build -p worldfleet-lambda --profile lambda --arm64 --output-format zip "${bin_args[@]}"
echo "== built in $(( $(date +%s) - start )) s"

target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
for bin in "${bins[@]}"; do
  zip="${target_dir}/lambda/${bin}/bootstrap.zip"
  if [[ ! -f "${zip}" ]]; then
    echo "missing ${zip}" >&2
    exit 1
  fi
  printf '%-12s %10d bytes  %s\n' "${bin}" "$(stat -c %s "${zip}")" "${zip}"
done
