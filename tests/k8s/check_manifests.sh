#!/usr/bin/env bash
# The deployment holds together: the base and every overlay render with
# `kubectl kustomize`, and check_manifests.py reads each rendering's objects
# (the pod's config with its env, grace period above cluster.shutdown-timeout,
# Secrets, RBAC verbs, PDB, probes, requests); the kind scripts and these
# tests pass shellcheck where it is installed. PyYAML: the python3 one, else a venv
# cached under ${XDG_CACHE_HOME:-~/.cache}/ukko. Usage: check_manifests.sh path/to/ukko
set -euo pipefail
ukko=$(realpath "$1")
cd "$(dirname "$0")/../.."
"$ukko" check-config k8s/base/ukko.json > /dev/null
if command -v shellcheck > /dev/null; then
  shellcheck k8s/kind/*.sh tests/k8s/*.sh
  echo "shellcheck: k8s/kind/*.sh tests/k8s/*.sh clean"
else
  echo "shellcheck is not installed (apt-get install shellcheck): the kind scripts are not linted"
fi
if ! command -v kubectl > /dev/null; then
  echo "SKIPPED: kubectl is not installed (scripts/install-kubectl.sh builds it), overlays not rendered"; exit 0
fi
py=python3
if ! python3 -c 'import yaml' 2> /dev/null; then
  venv=${XDG_CACHE_HOME:-$HOME/.cache}/ukko/pyyaml-venv
  if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import yaml' 2> /dev/null; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" > /dev/null 2>&1 ||
       ! "$venv/bin/pip" install -q PyYAML > /dev/null 2>&1; then
      rm -rf "$venv"
      echo "SKIPPED: no PyYAML (python3 has none and pip could not install it into $venv), renderings not checked"
      exit 0
    fi
  fi
  py=$venv/bin/python
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
for dir in k8s/base k8s/overlays/*/; do
  name=${dir%/}
  kubectl kustomize "$dir" > "$tmp/rendered.yaml" || { echo "FAIL: $name does not render"; exit 1; }
  "$py" tests/k8s/check_manifests.py --ukko "$ukko" --name "$name" "$tmp/rendered.yaml"
  n=$((n + 1))
done
[[ -d k8s/overlays/kind && -d k8s/overlays/prod ]] || { echo "FAIL: the kind and prod overlays must exist"; exit 1; }
echo "manifests OK ($n renderings)"
