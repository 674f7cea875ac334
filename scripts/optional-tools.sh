#!/usr/bin/env bash
# Prints which optional tools this machine has and, for each one missing, the
# tests that will say "skipped" and how to get it, so a green run cannot hide
# a suite that did not run. Read-only; always exits 0.
# Usage: scripts/optional-tools.sh
cd "$(dirname "$0")/.."
skipped=0
row() { # row NAME FOUND(0|1) WHAT-SKIPS HOW-TO-GET
  if [[ $2 == 1 ]]; then
    printf '  %-22s found\n' "$1"
  else
    printf '  %-22s MISSING: skipped: %s (%s)\n' "$1" "$3" "$4"
    skipped=$((skipped + 1))
  fi
}
have() { command -v "$1" >/dev/null 2>&1 && echo 1 || echo 0; }

echo "optional tools:"
row kubectl "$(have kubectl)" "ctest emulator_kubectl, k8s_manifests rendering" \
  "scripts/install-kubectl.sh builds it with Go >= 1.24"
netns=0
if [[ $(id -u) -eq 0 ]] && command -v ip >/dev/null && ip netns list >/dev/null 2>&1; then netns=1; fi
row "network namespaces" "$netns" "cluster_netns_split_brain" "run as root with iproute2"
fuzz=0
if command -v clang >/dev/null && compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null; then fuzz=1; fi
row "clang + libFuzzer" "$fuzz" "fuzzing (scripts/fuzz.sh)" "apt-get install clang libclang-rt-14-dev"
java=0
if command -v java >/dev/null && command -v mvn >/dev/null; then java=1; fi
row "Java 17 + Maven" "$java" "ctest -L kafka (the real Apache Kafka broker)" \
  "apt-get install openjdk-17-jre-headless maven; the jars come from Maven Central"
row kcat "$(have kcat)" "tests that use kcat as an independent Kafka client" "apt-get install kcat"
row promtool "$(have promtool)" "the /metrics format check" "apt-get install prometheus"
row shellcheck "$(have shellcheck)" "k8s_manifests' lint of k8s/kind/*.sh and tests/k8s/*.sh" "apt-get install shellcheck"
image=0
if [[ $(id -u) -eq 0 ]] && command -v debootstrap >/dev/null; then image=1; fi
row "debootstrap (as root)" "$image" "ctest -L image (k8s/Dockerfile's runtime stage in a Debian 12 root)" \
  "run as root; apt-get install debootstrap"
fixtures=0
[[ -d ../shared/k8s-fixtures ]] && fixtures=1
row "../shared/k8s-fixtures" "$fixtures" "the recorded API-server responses (podlist, emulator)" \
  "check out ../shared beside the project"
echo "benchmark peers (no test depends on them):"
row "CAF (libcaf-dev)" "$([[ -f /usr/include/caf/all.hpp ]] && echo 1 || echo 0)" "bench-actors' CAF column" \
  "scripts/install-deps.sh --bench"
row "Erlang (erlc)" "$(have erlc)" "bench-actors' Erlang column" "scripts/install-deps.sh --bench"
row "serf" "$(have serf)" "bench_membership.py's serf column" "scripts/install-deps.sh --bench"
echo "optional tools: $skipped missing"
exit 0
