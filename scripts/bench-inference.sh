#!/usr/bin/env bash
# Runs the pool benchmark (candle, over HTTP) and the sentence-transformers reference on the
# same 2,048 sentences with the same thread count, one after the other, and prints both
# tables. Creates .bench-venv/ with sentence-transformers (pulls PyTorch) on first use.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
threads="${THREADS:-2}"
python="${PYTHON:-python3}"
model_dir="$repo_root/models/all-MiniLM-L6-v2"

"$repo_root/scripts/fetch-model.sh"
if ! .bench-venv/bin/python -c "import sentence_transformers" 2>/dev/null; then
    "$python" -m venv .bench-venv
    .bench-venv/bin/python -m pip install --quiet sentence-transformers
fi
cargo build --release -p worldfleet-inference
binary="${CARGO_TARGET_DIR:-$repo_root/target}/release/worldfleet-inference"
sentences="$(mktemp)"
trap 'rm -f "$sentences"' EXIT
"$binary" bench-sentences --count 2048 > "$sentences"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
RUST_LOG=warn "$binary" --model-dir "$model_dir" --threads "$threads" bench --concurrent "$@"
.bench-venv/bin/python scripts/bench_reference.py "$model_dir" "$sentences" --threads "$threads"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
