#!/usr/bin/env bash
# The main job on embedded defaults: installs what is missing, builds, starts
# a local ukko node and shows what it serves, every 2 s, until Ctrl-C (or
# --seconds N). Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=0
[[ "${1:-}" == "--seconds" ]] && seconds=${2:?--seconds needs a number}

scripts/install-deps.sh
scripts/build.sh build >/dev/null
host=127.0.0.1
port=8558
log=$(mktemp /tmp/ukko-demo-XXXXXX.log)
UKKO_MANAGEMENT_HOSTNAME=$host UKKO_MANAGEMENT_PORT=$port build/ukko run --log-format text 2>"$log" &
node=$!
cleanup() {
  kill -TERM "$node" 2>/dev/null && wait "$node" 2>/dev/null || true
  echo; echo "--- node log"; cat "$log"; rm -f "$log"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

for _ in $(seq 100); do
  curl -fs "http://$host:$port/alive" >/dev/null 2>&1 && break
  kill -0 "$node" 2>/dev/null || { echo "ukko did not start:"; exit 1; }
  sleep 0.05
done
echo "ukko $(build/ukko --version | cut -d' ' -f2) node up, pid $node; management on http://$host:$port"
echo "routes: /alive /ready /startup /metrics   (Ctrl-C stops it)"
start=$(date +%s)
while :; do
  alive=$(curl -s -o /dev/null -w '%{http_code}' "http://$host:$port/alive")
  ready=$(curl -s "http://$host:$port/ready" | tr '\n' ' ')
  rss=$(curl -s "http://$host:$port/metrics" | awk '/^process_resident_memory_bytes /{printf "%.1f MiB", $2/1048576}')
  printf '%s  /alive %s  /ready %s  rss %s\n' "$(date +%T)" "$alive" "$ready" "$rss"
  ((seconds > 0 && $(date +%s) - start >= seconds)) && break
  sleep 2
done
