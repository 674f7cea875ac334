#!/usr/bin/env bash
# README's first command: installs what is missing, builds, and shows ukko as it
# runs on Kubernetes, locally: the Kubernetes API emulator (tests/emulator) with
# its StatefulSet controller runs the StatefulSet `ukko` (3 pods, one real ukko
# process each on 127.0.0.2, .3, .4, finding the API server as a pod does) and
# a table of the pods, their probes and the cluster's members is printed every
# second until Ctrl-C (or --seconds N). Everything it starts is stopped on exit.
# Usage: scripts/demo.sh [--no-build] [--seconds N] [--replicas N] [--ukko BIN]
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
