#!/usr/bin/env bash
# The one command that runs kubemaker's whole test suite:  sudo scripts/test.sh
#
# Installs the test dependencies (Debian packages, reference pacemaker-remoted, a Kubernetes API
# server, etcd, kubectl and helm built from the Go module proxy), then runs
# rustfmt, clippy and every test target. Integration tests start a throwaway one-node Pacemaker
# cluster (scripts/test-cluster.sh); it is stopped at the end, also on failure.
# Respects CARGO_TARGET_DIR (default /var/tmp/kubemaker-cache/target).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh must run as root (network namespaces, a real cluster): sudo $0" >&2
    exit 1
fi

cleanup() {
    local rc=$?
    step "stopping the test cluster"
    bash scripts/test-cluster.sh stop || echo "warning: scripts/test-cluster.sh stop failed" >&2
    bash scripts/test-apiserver.sh stop || echo "warning: scripts/test-apiserver.sh stop failed" >&2
    bash scripts/local-k8s.sh down || echo "warning: scripts/local-k8s.sh down failed" >&2
    if [ "$rc" -eq 0 ]; then
        step "all checks passed"
    else
        step "FAILED (exit code $rc)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "installing test dependencies"
bash scripts/install-test-deps.sh

step "building the Kubernetes test binaries (control plane, kubelet, kube-proxy, etcd, kubectl, helm; cached, ~10 min cold)"
bash scripts/install-k8s-test-deps.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/kubemaker-cache/target}"
echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test --all-targets --no-fail-fast"
cargo test --all-targets --no-fail-fast
