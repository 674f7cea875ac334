#!/usr/bin/env bash
# The figures behind the StatefulSet's memory request and limit
# (k8s/base/statefulset.yaml): one node of `ukko run --app orders` against
# `ukko dev-kafka` (orders and orders-processed, 12 partitions each), its peak
# RSS (VmHWM) idle, after a steady feed, and after a backlog taken at once.
# A measurement, not a test: it prints figures and asserts nothing.
# Needs kcat and curl. Uses 127.0.0.1 with ports the kernel picks.
# Usage: tests/k8s/measure_rss.sh path/to/ukko [STEADY_RECORDS] [BACKLOG_RECORDS]
#        (defaults 40000 at 2,000/s, then 160000 at once)
set -euo pipefail
ukko=$(realpath "$1")
steady=${2:-40000}
backlog=${3:-160000}
for tool in kcat curl python3; do
  command -v "$tool" > /dev/null || { echo "measure_rss: $tool is needed (apt-get install $tool)"; exit 2; }
done
tmp=$(mktemp -d)
pids=()
cleanup() { # the node first (its orderly stop commits to the broker), then dev-kafka
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2> /dev/null || true
    wait "${pids[i]}" 2> /dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
poll() { # poll SECONDS COMMAND...: until COMMAND succeeds, or fail after SECONDS
  local end=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < end)) || { echo "measure_rss: timed out waiting for: $*"; return 1; }
    sleep 0.2
  done
}

"$ukko" dev-kafka --topic orders:12 --topic orders-processed:12 > "$tmp/dk.out" 2> "$tmp/dk.log" < /dev/null &
pids+=($!)
poll 10 test -s "$tmp/dk.out"
bootstrap=$(head -1 "$tmp/dk.out")
mport=$(free_port)
cport=$(free_port)
env UKKO_CLUSTER_INSECURE=true UKKO_CLUSTER_HOSTNAME=127.0.0.1 UKKO_CLUSTER_PORT="$cport" \
  UKKO_CLUSTER_SEED_NODES="127.0.0.1:$cport" UKKO_MANAGEMENT_HOSTNAME=127.0.0.1 \
  UKKO_MANAGEMENT_PORT="$mport" UKKO_KAFKA_BOOTSTRAP_SERVERS="$bootstrap" \
  "$ukko" run --app orders --log-format text > "$tmp/node.log" 2>&1 &
node=$!
pids+=("$node")
url=http://127.0.0.1:$mport
poll 30 curl -sf "$url/ready" -o /dev/null
hwm() { awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$node/status"; }
processed() { curl -s "$url/metrics" | awk '/^ukko_kafka_records_processed_total/ {s += $2} END {print s + 0}'; }
all_processed() { [[ $(processed) -ge $1 ]]; }
echo "idle (12 shards):              VmHWM $(hwm)"

python3 - "$((steady + backlog))" > "$tmp/orders.txt" << 'EOF'
import random, sys
random.seed(7)
for i in range(int(sys.argv[1])):
    print(f'c{random.randrange(10000)}|{{"order_id": {i}, "amount": {random.randrange(1, 500)}.5}}')
EOF
produce() { kcat -P -b "$bootstrap" -t orders -K'|' -X partitioner=murmur2_random; }
# Steady: 1,000 orders every half second.
for ((at = 0; at < steady; at += 1000)); do
  sed -n "$((at + 1)),$((at + 1000))p" "$tmp/orders.txt" | produce
  sleep 0.5
done
poll 60 all_processed "$steady"
entities=$(curl -s "$url/metrics" | awk '/^ukko_sharding_entities/ {print $2}')
echo "after $steady at 2,000/s:      VmHWM $(hwm) ($entities live entities)"
sed -n "$((steady + 1)),\$p" "$tmp/orders.txt" | produce
poll 300 all_processed "$((steady + backlog))"
echo "after a backlog of $backlog:  VmHWM $(hwm)"
