#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, `fuzz` preset) and runs each for a
# short time on a scratch copy of its seed corpus. Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
scripts/build.sh build-fuzz -DCMAKE_C_COMPILER=clang -DUKKO_FUZZ=ON -DUKKO_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=Debug -DUKKO_WERROR=ON
work=$(mktemp -d /tmp/ukko-fuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT
status=0
for bin in build-fuzz/fuzz/fuzz_*; do
  name=$(basename "$bin")
  mkdir -p "$work/$name"
  seeds=tests/fuzz/corpus/$name
  echo "fuzz: $name for ${secs}s"
  # Crash files go to the scratch dir too; a failure prints the input.
  if ! "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
       -artifact_prefix="$work/$name/" -print_final_stats=1 "$work/$name" \
       $( [[ -d $seeds ]] && echo "$seeds" ) > "$work/$name.log" 2>&1; then
    echo "fuzz: $name FAILED:"; tail -40 "$work/$name.log"; status=1
    # Keep the input that failed, and print it: CI logs are all we get.
    mkdir -p build-fuzz/artifacts
    for f in "$work/$name"/crash-* "$work/$name"/leak-* "$work/$name"/timeout-* "$work/$name"/oom-*; do
      [[ -e $f ]] || continue
      cp "$f" build-fuzz/artifacts/
      echo "fuzz: failing input $(basename "$f") (base64; replay: base64 -d > in && $bin in):"
      head -c 65536 "$f" | base64 -w 0; echo
    done
  else
    grep -E "stat::number_of_executed_units|Done" "$work/$name.log" | tail -2 || true
  fi
done
exit $status
