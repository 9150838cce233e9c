#!/usr/bin/env bash
# Runs `worldfleet bench` (the embedded pipeline, fan-out 8) and NATS JetStream's fan-out
# (file storage, every event published to 8 subjects, asynchronous acks) one after the other
# on this machine, and prints both figures and their ratio, with the load average before and
# after each. Needs nats-server (Debian: apt-get install nats-server) and nats-py (pip install
# nats-py). Arguments after `--` go to `worldfleet bench`.
#
#   scripts/bench-jetstream.sh [EVENTS] [-- BENCH_ARGS...]
#
# JETSTREAM_SYNC=always makes JetStream fsync every write (its default syncs every 2 minutes);
# it needs nats-server 2.10 or later (Debian 12 ships 2.9, which refuses the setting).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
events="${1:-20000}"
shift || true
[[ "${1:-}" == "--" ]] && shift
python="${PYTHON:-python3}"
worldfleet="${WORLDFLEET:-${CARGO_TARGET_DIR:-$repo_root/target}/release/worldfleet}"

command -v nats-server > /dev/null || { echo "nats-server not found (apt-get install nats-server)" >&2; exit 1; }
"$python" -c "import nats" 2> /dev/null || { echo "nats-py not found (pip install nats-py)" >&2; exit 1; }
[[ -x "$worldfleet" ]] || { echo "$worldfleet not built (cargo build --release -p worldfleet)" >&2; exit 1; }

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

echo "worldfleet bench: $events events, fan-out 8 (load before: $(load))"
worldfleet_json="$("$worldfleet" bench --events "$events" --latency-events 1000 --latency-rate 1000 --workers 16 --json "$@" 2> /dev/null | tail -n 1)"
echo "  $worldfleet_json"
echo "  (load after: $(load))"

store="$(mktemp -d)"
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
config="$store/nats.conf"
cat > "$config" << CONF
listen: 127.0.0.1:$port
jetstream {
  store_dir: "$store/js"
  ${JETSTREAM_SYNC:+sync_interval: $JETSTREAM_SYNC}
}
CONF
nats-server -c "$config" > "$store/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2> /dev/null || true; wait "$server" 2> /dev/null || true; rm -rf "$store"' EXIT
for _ in $(seq 50); do
    grep -q "Server is ready" "$store/server.log" && break
    sleep 0.1
done
if ! grep -q "Server is ready" "$store/server.log"; then
    echo "nats-server did not start:" >&2
    cat "$store/server.log" >&2
    exit 1
fi
echo "JetStream: $events events, fan-out 8, file storage, sync ${JETSTREAM_SYNC:-default (every 2 min)} (load before: $(load))"
jetstream_json="$("$python" "$repo_root/scripts/bench_jetstream.py" --url "nats://127.0.0.1:$port" --events "$events" --fan-out 8)"
echo "  $jetstream_json"
echo "  (load after: $(load))"

"$python" - "$worldfleet_json" "$jetstream_json" << 'PY'
import json, sys
worldfleet, jetstream = (json.loads(line) for line in sys.argv[1:3])
ours, theirs = worldfleet["throughput_events_per_s"], jetstream["events_per_s"]
print(f"worldfleet {ours:.0f} events/s ({worldfleet.get('durability', 'fsync')}), "
      f"JetStream {theirs:.0f} events/s: ratio {ours / theirs:.2f}x")
PY
