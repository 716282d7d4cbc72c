#!/usr/bin/env bash
# End-to-end check on a throwaway kind cluster: build the image, load it, deploy MLflow +
# PostgreSQL from k8s/, launch a short sweep with `trainer launch`, wait for the Jobs, check
# that relaunching creates nothing, then tear everything down.
#
#   bash scripts/kind_e2e.sh            # needs docker and kind in PATH, plus `make setup tools`
#   KEEP_CLUSTER=1 bash scripts/kind_e2e.sh
#
# Not run by the test suite: the development machine has no Docker engine or cluster.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CLUSTER="${CLUSTER:-pyboy-trainer-e2e}"
NAMESPACE=pyboy-trainer
VERSION="$(.venv/bin/python -c 'import trainer; print(trainer.__version__)')"
IMAGE="ghcr.io/pyboy-trainer/trainer:${VERSION}"
KUBECTL="$ROOT/.tools/bin/kubectl"   # never /usr/bin/kubectl (see docs/kubernetes.md)
TRAINER="$ROOT/.venv/bin/trainer"
export KUBECONFIG="${KUBECONFIG_E2E:-$(mktemp -d)/kubeconfig}"

for tool in docker kind; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done
[[ -x "$KUBECTL" ]] || { echo "error: $KUBECTL missing: run make tools" >&2; exit 1; }
[[ -x "$TRAINER" ]] || { echo "error: $TRAINER missing: run make setup" >&2; exit 1; }

cleanup() {
  if [[ -z "${KEEP_CLUSTER:-}" ]]; then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  else
    echo "cluster $CLUSTER kept (KUBECONFIG=$KUBECONFIG)"
  fi
}
trap cleanup EXIT

echo "== build $IMAGE"
docker build -t "$IMAGE" .

echo "== cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --wait 120s
kind load docker-image "$IMAGE" --name "$CLUSTER"

echo "== namespace, RBAC, network policies, MLflow + PostgreSQL"
"$KUBECTL" apply -f k8s/namespace.yaml -f k8s/rbac.yaml -f k8s/networkpolicy.yaml
"$KUBECTL" create secret generic mlflow-postgres -n "$NAMESPACE" \
  --from-literal=password="$(openssl rand -hex 24)"
"$KUBECTL" apply -f k8s/mlflow.yaml
"$KUBECTL" rollout status -n "$NAMESPACE" statefulset/mlflow-postgres --timeout=300s
"$KUBECTL" rollout status -n "$NAMESPACE" deployment/mlflow --timeout=300s

echo "== launch a short sweep (1 and 2 envs, 2048 steps each)"
SMALL=(--envs 1,2 -n "$NAMESPACE" --set ppo.total_steps=2048 --set resources.memory_per_env=128Mi
       --set resources.learner_memory=768Mi --set resources.cpu_per_env=0.25 --set resources.learner_cpu=0.5)
"$TRAINER" launch configs/sweep.yaml --backend kubernetes "${SMALL[@]}" --wait

echo "== relaunch: everything exists, nothing is created"
out="$("$TRAINER" launch configs/sweep.yaml --backend kubernetes "${SMALL[@]}")"
echo "$out"
grep -q "Jobs: 0 created, 2 already existed" <<<"$out"

"$TRAINER" status configs/sweep.yaml "${SMALL[@]}"
job="$("$KUBECTL" get jobs -n "$NAMESPACE" -o jsonpath='{.items[0].metadata.name}')"
"$TRAINER" logs "$job" -n "$NAMESPACE" | tail -n 20

echo "== cancel"
"$TRAINER" cancel configs/sweep.yaml "${SMALL[@]}"
echo "kind e2e: OK"
