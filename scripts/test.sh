#!/usr/bin/env bash
# Installs what is missing, builds with warnings as errors, and runs every
# test: unit and integration (build/), the unit tests again under ASan+UBSan
# (build-asan/) and, for tests labelled tsan, under ThreadSanitizer
# (build-tsan/), then each libFuzzer target for a short run (build-fuzz/).
# Usage: scripts/test.sh [--quick]   (--quick: build/ only, no sanitizers, no fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
step() { printf '\n=== %s\n' "$*"; }

step "dependencies"
scripts/install-deps.sh
scripts/install-kubectl.sh
step "optional tools (a missing one makes its tests say skipped)"
scripts/optional-tools.sh

step "build (RelWithDebInfo, -Werror)"
scripts/build.sh build -DUKKO_WERROR=ON
step "unit tests"
ctest --test-dir build -L unit -j2 --output-on-failure
step "integration tests (real processes)"
ctest --test-dir build -LE unit -j1 --output-on-failure
((quick)) && exit 0

step "unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DUKKO_SANITIZE=address,undefined -DUKKO_WERROR=ON
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan -L unit -j2 --output-on-failure

if ctest --test-dir build -N -L tsan | grep -q "Total Tests: [1-9]"; then
  step "tests labelled tsan under ThreadSanitizer"
  scripts/build.sh build-tsan -DCMAKE_BUILD_TYPE=Debug -DUKKO_SANITIZE=thread -DUKKO_WERROR=ON
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir build-tsan -L tsan -j1 --output-on-failure
fi

step "fuzzing (short runs)"
scripts/fuzz.sh "${FUZZ_SECONDS:-15}"
step "all tests passed"
