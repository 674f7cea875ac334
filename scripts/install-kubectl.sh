#!/usr/bin/env bash
# Puts a kubectl on PATH for the tests that drive the real kubectl (the
# emulator's, the manifests' rendering), where none is installed: Debian 12's
# package sources have none, so it is built with Go from the k8s.io/kubectl
# library at the release pinned in tests/k8s/kubectl/go.mod, cached under
# ${XDG_CACHE_HOME:-~/.cache}/ukko, and linked into /usr/local/bin (root) or
# ~/.local/bin. Without Go >= 1.26 it says why and exits 0: those tests skip.
# Usage: scripts/install-kubectl.sh [--force]   (--force: build even if one is on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
src=tests/k8s/kubectl
if [[ ${1:-} != --force ]] && command -v kubectl >/dev/null; then
  echo "install-kubectl: kubectl is installed ($(command -v kubectl))"
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "install-kubectl: skipped: no Go on this machine (install Go >= 1.26); the kubectl tests will skip"
  exit 0
fi
want=$(awk '/^go /{print $2; exit}' "$src/go.mod")
have=$(go env GOVERSION | sed 's/^go//')
if [[ $(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1) != "$want" ]]; then
  echo "install-kubectl: skipped: Go $have is older than $want (tests/k8s/kubectl/go.mod); the kubectl tests will skip"
  exit 0
fi
release=$(awk '$1 == "k8s.io/kubectl" {print $2; exit}' "$src/go.mod")
cache=${XDG_CACHE_HOME:-$HOME/.cache}/ukko/kubectl-$release
if [[ ! -x $cache/kubectl ]]; then
  echo "install-kubectl: building kubectl $release from the Go module proxy (a few minutes, once)"
  mkdir -p "$cache"
  gitv=v1${release#v0}
  (cd "$src" && go build -trimpath -o "$cache/kubectl.tmp" \
     -ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$gitv -X k8s.io/component-base/version.gitVersion=$gitv" .) \
    || { echo "install-kubectl: skipped: the build failed (see above); the kubectl tests will skip"; exit 0; }
  mv "$cache/kubectl.tmp" "$cache/kubectl"
fi
if [[ $(id -u) -eq 0 ]]; then
  bin=/usr/local/bin
else
  bin=$HOME/.local/bin
fi
mkdir -p "$bin"
ln -sf "$cache/kubectl" "$bin/kubectl"
echo "install-kubectl: $bin/kubectl -> $cache/kubectl ($("$bin/kubectl" version --client 2>/dev/null | head -1))"
command -v kubectl >/dev/null || echo "install-kubectl: add $bin to PATH"
