#!/usr/bin/env bash
# The deployment shape holds together: every overlay renders with kustomize,
# the probes point at the management routes, and the pod's config file is a
# valid ukko config. Usage: check_manifests.sh path/to/ukko
set -euo pipefail
ukko=$1
cd "$(dirname "$0")/../.."
"$ukko" check-config k8s/base/ukko.json > /dev/null
if ! command -v kubectl > /dev/null; then
  echo "SKIPPED: kubectl is not installed (scripts/install-kubectl.sh builds it), overlays not rendered"; exit 0
fi
for o in k8s/overlays/*/; do
  out=$(kubectl kustomize "$o")
  for want in "path: /alive" "path: /ready" "path: /startup" "kind: PodDisruptionBudget" \
              "kind: Role" "publishNotReadyAddresses: true" "containerPort: 8558"; do
    grep -q "$want" <<< "$out" || { echo "FAIL: $o renders without '$want'"; exit 1; }
  done
done
echo "manifests OK"
