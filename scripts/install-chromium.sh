#!/usr/bin/env bash
# Installs headless Chromium for the dashboard test (shared/cli/tests/dashboard.rs) from
# Debian's `chromium` package when it is not on the path yet, then prints its path. Needs
# root or sudo and the Debian package mirror; does nothing when a browser is already there.
set -euo pipefail

for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    exit 0
  fi
done

as_root=()
if [[ "$(id -u)" != 0 ]]; then
  as_root=(sudo)
fi
echo "== installing Debian's chromium for the dashboard test" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium >&2
command -v chromium
