#!/usr/bin/env bash
# Deletes the kind cluster that k8s/kind/up.sh made, and everything in it.
# Usage: k8s/kind/down.sh          (KIND_CLUSTER_NAME: the cluster, default ukko)
set -euo pipefail
cluster=${KIND_CLUSTER_NAME:-ukko}
if ! command -v kind > /dev/null; then
  echo "down.sh: kind is not installed, so there is no kind cluster to delete" >&2
  exit 2
fi
if kind get clusters 2> /dev/null | grep -qx "$cluster"; then
  kind delete cluster --name "$cluster"
else
  echo "down.sh: no kind cluster named $cluster"
fi
