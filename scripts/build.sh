#!/usr/bin/env bash
# Configures and builds one preset-like tree. Usage: scripts/build.sh [DIR] [cmake args...]
# Default: build/ (RelWithDebInfo), which holds build/ukko.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if [[ ! -f "$dir/CMakeCache.txt" ]]; then
  cmake -S . -B "$dir" "${gen[@]}" "$@" >/dev/null
else
  cmake -S . -B "$dir" "$@" >/dev/null
fi
cmake --build "$dir" -j2
