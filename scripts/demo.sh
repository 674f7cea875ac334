#!/usr/bin/env bash
# README's first command: installs what is missing, builds, and shows the whole
# user story on one machine (scripts/demo.py, docs/demo.md): `ukko dev-kafka`
# with topics orders and orders-processed, the Kubernetes API emulator
# (tests/emulator) running the StatefulSet `ukko` (3 pods, each a real
# `ukko run --app orders` process on 127.0.0.2, .3, .4 ...), orders produced with
# kcat at a steady rate, and a live view of members, shard owners, records/s and
# lag per pod; then it scales to 5, kills one pod with SIGKILL, scales to 2, and
# prints the totals (produced, processed, lost, duplicates). --seconds N ends it
# sooner; Ctrl-C ends it early. Everything it starts is stopped on exit.
# Usage: scripts/demo.sh [--no-build] [--seconds N] [--replicas N] [--rate R] [--ukko BIN]
#                        [--pod-addresses RANGE]     (the rest: scripts/demo.py --help)
set -euo pipefail
cd "$(dirname "$0")/.."
build=1
args=()
for a in "$@"; do
  if [[ $a == --no-build ]]; then build=0; else args+=("$a"); fi
done
if ((build)); then
  scripts/install-deps.sh
  scripts/build.sh build >/dev/null
fi
exec python3 scripts/demo.py "${args[@]}"
