#!/usr/bin/env bash
# ukko on a local kind cluster: creates the cluster (once), builds the image
# from k8s/Dockerfile and loads it into the kind node, applies
# k8s/overlays/kind (3 ukko pods running --app orders, a one-broker Kafka and
# its topics), waits until every pod is ready, and prints the pods and the
# cluster's members. Needs Docker, kind and kubectl; run it again after a
# change to rebuild and roll the pods. k8s/kind/down.sh deletes the cluster.
# Usage: k8s/kind/up.sh            (KIND_CLUSTER_NAME: the cluster, default ukko)
set -euo pipefail
cd "$(dirname "$0")/../.."
cluster=${KIND_CLUSTER_NAME:-ukko}
image=ukko:dev                 # k8s/overlays/kind/kustomization.yaml: images newTag dev
ctx=kind-$cluster
timeout=300s

for tool in docker kind kubectl; do
  if ! command -v "$tool" > /dev/null; then
    echo "up.sh: $tool is not installed; it needs Docker, kind and kubectl (README.md, Kubernetes)" >&2
    exit 2
  fi
done
if ! docker info > /dev/null 2>&1; then
  echo "up.sh: docker cannot reach a Docker engine (is it running, and may this user use it?)" >&2
  exit 2
fi
k() { kubectl --context "$ctx" "$@"; }

if ! kind get clusters 2> /dev/null | grep -qx "$cluster"; then
  echo "up.sh: creating kind cluster $cluster"
  kind create cluster --name "$cluster" --config k8s/kind/cluster.yaml --wait 120s
fi

echo "up.sh: building $image from k8s/Dockerfile"
docker build -f k8s/Dockerfile -t "$image" .
kind load docker-image "$image" --name "$cluster"

# A StatefulSet that already ran keeps its pods on the old image of the same
# tag: roll them after the apply so they run what was just built.
existed=0
k get statefulset ukko > /dev/null 2>&1 && existed=1
k apply -k k8s/overlays/kind
if [[ $existed == 1 ]]; then
  k rollout restart statefulset/ukko
fi

echo "up.sh: waiting for Kafka, its topics and the ukko pods (up to $timeout each)"
k rollout status deployment/kafka --timeout="$timeout"
k wait --for=condition=complete job/kafka-topics --timeout="$timeout"
k rollout status statefulset/ukko --timeout="$timeout"
k wait --for=condition=Ready pod -l 'app in (ukko,kafka)' --timeout="$timeout"

k get pods -o wide
echo
echo "members, as ukko-0 sees them (GET /cluster/members):"
k exec ukko-0 -c ukko -- ukko members
cat << 'NEXT'

Orders in, results out (the orders app keys by customer):
  for i in $(seq 1000); do echo "c$((i % 50))|{\"order_id\": $i, \"amount\": 9.5}"; done |
    kubectl exec -i deploy/kafka -- /opt/kafka/bin/kafka-console-producer.sh \
      --bootstrap-server kafka:9092 --topic orders --property parse.key=true --property 'key.separator=|'
  kubectl exec deploy/kafka -- /opt/kafka/bin/kafka-console-consumer.sh \
      --bootstrap-server kafka:9092 --topic orders-processed --from-beginning --max-messages 5
Scale:       kubectl scale statefulset ukko --replicas=5
Shards:      kubectl port-forward pod/ukko-0 8558 &  curl localhost:8558/cluster/shards/orders
Delete it:   k8s/kind/down.sh
NEXT
