#!/usr/bin/env bash
# Installs the Debian 12 packages ukko needs that are not installed yet, and
# nothing else. Usage: scripts/install-deps.sh [--bench]
#   (no flag) build and test: compilers, libraries, test tools
#   --bench   also the peers the benchmarks compare against
set -euo pipefail

build_pkgs=(
  cmake ninja-build gcc g++ clang pkg-config make
  libev-dev libcurl4-openssl-dev libcjson-dev librdkafka-dev libssl-dev libhttp-parser-dev
  libcriterion-dev
)
test_pkgs=(
  curl openssl python3 iproute2 procps psmisc
  prometheus        # promtool checks /metrics
  libclang-rt-14-dev  # libFuzzer and the sanitizer runtimes for clang
  kcat
  openjdk-17-jre-headless maven  # the real Kafka broker (tests/kafka/): jars from Maven on first use
)
bench_pkgs=(libcaf-dev erlang-base serf hyperfine)

want=("${build_pkgs[@]}" "${test_pkgs[@]}")
[[ "${1:-}" == "--bench" ]] && want+=("${bench_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: everything is installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root (or install sudo): apt-get needs it" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's prometheus package starts its own service (port 9090, all
# addresses); tests/prom runs the binary itself with its own config, so the
# service only holds a port: stopped and disabled where systemd runs.
if [[ " ${missing[*]} " == *" prometheus "* && -d /run/systemd/system ]]; then
  $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  echo "install-deps: stopped and disabled prometheus.service (tests run prometheus themselves)"
fi
echo "install-deps: done"
