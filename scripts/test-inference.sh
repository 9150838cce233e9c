#!/usr/bin/env bash
# Test entry point for the inference crate, safe to run from a fresh clone:
#   1. fetch all-MiniLM-L6-v2 into models/ (skipped when present),
#   2. create .venv-ref/ with numpy, safetensors and tokenizers (skipped when present),
#   3. write the independent NumPy reference embeddings to models/reference-embeddings.json
#      (rebuilt when the sentence list or the script changed),
#   4. run the inference crate's integration tests (api, chat, reference).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
python="${PYTHON:-python3}"
model_dir="$repo_root/models/all-MiniLM-L6-v2"
venv="$repo_root/.venv-ref"
sentences="$repo_root/inference/tests/fixtures/reference_sentences.txt"
script="$repo_root/scripts/reference_embeddings.py"
fixture="$repo_root/models/reference-embeddings.json"

"$repo_root/scripts/fetch-model.sh"

if ! "$venv/bin/python" -c "import numpy, safetensors, tokenizers" 2>/dev/null; then
    echo "test-inference: creating $venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --no-cache-dir --upgrade pip
    "$venv/bin/python" -m pip install --quiet --no-cache-dir numpy safetensors tokenizers
fi

if [[ ! -f "$fixture" || "$sentences" -nt "$fixture" || "$script" -nt "$fixture" ]]; then
    "$venv/bin/python" "$script" "$model_dir" "$sentences" "$fixture"
fi

# The inference crate's integration tests, from the workspace test build (`-p` alone would
# resolve features differently and compile the crate and its dependencies a second time).
cargo test --workspace --locked --test api --test chat --test reference "$@"
