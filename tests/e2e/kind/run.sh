#!/usr/bin/env bash
# The end-to-end test of the chart's real pods (tests/k8s_nodes.rs) on a kind cluster instead of the
# local kubelet nodes of scripts/local-k8s.sh: the same test body, only the Kubernetes provider
# differs. The Pacemaker side is the same too: the test cluster on this machine
# (scripts/test-cluster.sh), which kind's nodes reach through the Docker network's gateway.
#
#   sudo tests/e2e/kind/run.sh                     build, create, test, delete
#   KUBEMAKER_E2E_KEEP=1 sudo tests/e2e/kind/run.sh   keep the kind cluster afterwards
#
# Needs root (the Pacemaker test cluster), Debian's pacemaker/corosync packages
# (scripts/install-test-deps.sh), a Docker daemon, kind (v0.20 or later), kubectl, helm 3 and
# cargo. Knobs: KUBEMAKER_KIND_CLUSTER (default kubemaker-e2e).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

NAME=${KUBEMAKER_KIND_CLUSTER:-kubemaker-e2e}
TAG=e2e
KEEP=${KUBEMAKER_E2E_KEEP:-0}

say() { printf '[kind-e2e] %s\n' "$*"; }
die() { printf '[kind-e2e] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl helm cargo; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ "$(id -u)" = 0 ] || die "run as root: the test starts the Pacemaker test cluster"
docker info >/dev/null 2>&1 || die "no usable Docker daemon"

cleanup() {
    local rc=$?
    if [ "$KEEP" = 1 ]; then
        say "keeping kind cluster $NAME (delete with: kind delete cluster --name $NAME)"
    else
        kind delete cluster --name "$NAME" >/dev/null 2>&1 || true
    fi
    exit "$rc"
}
trap cleanup EXIT

say "building the image kubemaker:$TAG from the Dockerfile"
docker build -t "kubemaker:$TAG" .

say "creating kind cluster $NAME (one control plane, two workers)"
kind delete cluster --name "$NAME" >/dev/null 2>&1 || true
kind create cluster --name "$NAME" --wait 180s --config - <<'YAML'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
  - role: worker
YAML
for node in $(kubectl --context "kind-$NAME" get nodes -o name -l '!node-role.kubernetes.io/control-plane'); do
    kubectl --context "kind-$NAME" label "$node" node-role.kubernetes.io/worker= --overwrite
done
kind load docker-image "kubemaker:$TAG" --name "$NAME"

say "running tests/k8s_nodes.rs with the kind provider"
KUBEMAKER_K8S_PROVIDER=kind KUBEMAKER_KIND_CLUSTER=$NAME KUBEMAKER_IMAGE_TAG=$TAG \
    cargo test --test k8s_nodes -- --nocapture
